"""The numpy engine (genre_id.spectral) reproduces librosa's numbers, and identify never imports librosa.

The default feature set is measured by :mod:`genre_id.spectral`, a numpy
transcription of the librosa 0.11 functions ``measure`` used to call.  These
tests compare the two engines of :func:`genre_id.features.measure` column by
column: on the 100 real GTZAN clips, and on synthetic edge cases.  All but
the MFCC columns come out bit-identical; the MFCCs differ in float rounding
only (scipy's DCT runs in float32, ours in float64), at most about 2e-5
relative on a mean of 0.008 over the 100 clips.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, tone
from genre_id.features import FEATURE_SETS, measure

COLUMNS = FEATURE_SETS["levelfree"].measured_columns
MFCC = [i for i, c in enumerate(COLUMNS) if c.startswith("mfcc")]
TEMPO = COLUMNS.index("tempo")
RTOL = 1e-4


def _both_engines(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns on empty tuning sets and short input: not the point here
        return (measure(y, sr=22050, columns=COLUMNS, engine="numpy"), measure(y, sr=22050, columns=COLUMNS, engine="librosa"))


def _measure_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Worker: both engines on one clip (module level, so a spawned process can run it)."""
    y, sr = sf.read(path, dtype="float32")
    assert sr == 22050 and y.ndim == 1
    return _both_engines(y)


def _relative(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-300)


def _worst(rel: np.ndarray) -> str:
    flat = np.nanargmax(rel)
    clip, col = np.unravel_index(flat, rel.shape) if rel.ndim == 2 else (0, flat)
    return f"{COLUMNS[col]} (row {clip}): relative error {rel.flat[flat]:.3g}"


@pytest.mark.train
@pytest.mark.slow
def test_numpy_engine_agrees_with_librosa_on_the_100_real_clips(mini_files, monkeypatch):
    """Every levelfree measured column to a relative 1e-4 on every clip; the tempo identical on every clip."""
    # Spawned (not forked) workers: the test process may hold threads (BLAS, TensorFlow) that fork would copy.
    # One BLAS thread each: two workers already fill two cores.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_measure_file, [str(p) for p in mini_files], chunksize=10))
    ours = np.array([r[0] for r in results])
    ref = np.array([r[1] for r in results])
    assert ours.shape == ref.shape == (100, len(COLUMNS))
    assert np.isfinite(ours).all() and np.isfinite(ref).all()

    tempo_same = ours[:, TEMPO] == ref[:, TEMPO]
    assert tempo_same.all(), [(mini_files[i].name, ours[i, TEMPO], ref[i, TEMPO]) for i in np.flatnonzero(~tempo_same)]
    rel = _relative(ours, ref)
    assert rel.max() < RTOL, _worst(rel)
    # Everything but the MFCCs is the same arithmetic, and in practice the same bits.
    others = [i for i in range(len(COLUMNS)) if i not in MFCC]
    assert rel[:, others].max() < 1e-6, _worst(np.where(np.isin(np.arange(len(COLUMNS)), others), rel, 0))


def _sine(seconds: float, freq: float, sr: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _noise_from_8k(seconds: float, sr: int = 22050) -> np.ndarray:
    """White noise made at 8 kHz and resampled (as the audio loader does): nothing above 4 kHz."""
    import soxr

    y8 = 0.3 * np.random.default_rng(8).standard_normal(int(seconds * 8000))
    return soxr.resample(y8, 8000, sr).astype(np.float32)


EDGE_CASES = {
    "3 s of tone and noise": lambda: tone(3.0, freq=330.0),
    "3 s of noise (exactly the minimum length)": lambda: (0.1 * np.random.default_rng(3).standard_normal(3 * 22050)
                                                          ).astype(np.float32),
    "digital silence": lambda: np.zeros(5 * 22050, np.float32),
    "a pure 440 Hz tone": lambda: _sine(4.0, 440.0),
    "a pure tone between chroma bins": lambda: _sine(4.0, 452.0),
    "white noise resampled from 8 kHz": lambda: _noise_from_8k(6.0),
    "a constant DC offset": lambda: np.full(3 * 22050, 0.25, np.float32),
    "shorter than one FFT frame": lambda: tone(0.05),
}


@pytest.mark.train
@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_numpy_engine_agrees_with_librosa_on_edge_cases(case):
    ours, ref = _both_engines(EDGE_CASES[case]())
    assert np.array_equal(np.isfinite(ours), np.isfinite(ref))
    assert ours[TEMPO] == ref[TEMPO]
    # atol only matters where librosa's float32 DCT leaves rounding noise on an exact zero (silence, DC).
    np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=1e-12, equal_nan=True)


@pytest.mark.train
def test_a_single_impulse_agrees_to_float32_rounding():
    """Nearly constant spectra: the MFCCs beyond the first are rounding noise, so they agree to float32 precision.

    librosa's float32 DCT rounds each coefficient to about eps32 times the
    largest one (|mfcc1|, here about 1100); means and variances over frames
    differ by that much at most.  Every other column agrees to 1e-4.
    """
    ours, ref = _both_engines(np.eye(1, 3 * 22050, 99)[0].astype(np.float32))
    others = [i for i in range(len(COLUMNS)) if i not in MFCC]
    np.testing.assert_allclose(ours[others], ref[others], rtol=RTOL, atol=1e-12)
    delta = 8 * np.finfo(np.float32).eps * abs(ref[COLUMNS.index("mfcc1_mean")])  # per-frame rounding bound
    for i in MFCC:
        c = COLUMNS[i]
        bound = delta if c.endswith("_mean") else 2 * np.sqrt(ref[i]) * delta + delta**2
        assert abs(ours[i] - ref[i]) <= bound + RTOL * abs(ref[i]), (c, ours[i], ref[i])


@pytest.mark.filterwarnings("ignore")  # both engines warn on the way to the error (NaN and inf arithmetic)
@pytest.mark.parametrize("samples, words", [
    (np.full(3 * 22050, np.nan, np.float32), "not finite"),
    (np.full(3 * 22050, 1e30, np.float32), "must be finite"),  # the power spectrum overflows float32
])
@pytest.mark.train
def test_both_engines_refuse_what_they_cannot_measure_with_the_same_words(samples, words):
    from librosa.util.exceptions import ParameterError

    with pytest.raises(ValueError, match=words) as numpy_error:
        measure(samples, sr=22050, columns=COLUMNS, engine="numpy")
    with pytest.raises(ParameterError) as librosa_error:
        measure(samples, sr=22050, columns=COLUMNS, engine="librosa")
    assert str(numpy_error.value) == str(librosa_error.value)


def test_engine_choice_depends_on_the_columns_only():
    y = tone(4.0)
    with pytest.raises(ValueError, match="HPSS"):
        measure(y, sr=22050, columns=["harmony_var"], engine="numpy")
    with pytest.raises(ValueError, match="engine"):
        measure(y, sr=22050, columns=COLUMNS, engine="torch")
    np.testing.assert_array_equal(measure(y, sr=22050, columns=COLUMNS), measure(y, sr=22050, columns=COLUMNS, engine="numpy"))
    np.testing.assert_array_equal(FEATURE_SETS["levelfree"].extract(y).values,
                                  FEATURE_SETS["levelfree"].from_table(measure(y, sr=22050, columns=COLUMNS, engine="numpy"))[0])


def test_memoised_filter_banks_are_read_only():
    from genre_id import spectral

    for bank in (spectral.mel_filters(sr=22050, n_fft=2048), spectral.chroma_filters(sr=22050, n_fft=2048),
                 spectral.hann_window(length=2048)):
        with pytest.raises(ValueError):
            bank[0] = 1.0


#: Runs identify through the CLI's main in a fresh interpreter; prints its exit code and the heavy modules loaded.
IDENTIFY_AND_LIST = r"""
import json, sys
from genre_id.cli import main
code = main(["identify", "--json", sys.argv[1]])
heavy = [m for m in sys.modules if m.split(".")[0] in ("librosa", "numba", "llvmlite", "tensorflow", "keras")
         or m.startswith(("scipy.signal", "scipy.ndimage"))]
print(json.dumps({"code": code, "heavy": sorted(heavy)}))
"""


def test_identify_imports_neither_librosa_nor_numba_nor_scipy_signal(tmp_path):
    clip = tmp_path / "clip.wav"
    sf.write(clip, tone(10.0, freq=220.0) + tone(10.0, freq=1250.0, amp=0.1, seed=2), 22050)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", IDENTIFY_AND_LIST, str(clip)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    prediction, report = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert report == {"code": 0, "heavy": []}, report
    assert prediction["file"] == str(clip) and prediction["genre"]
