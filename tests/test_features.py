"""Feature sets: the measured descriptors reproduce the GTZAN table on real clips."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from genre_id.errors import FeatureVersionError
from genre_id.features import FEATURE_SETS, get_feature_set, gtzan57_columns, measure

# harmony_mean and perceptr_mean are means of waveforms: near zero, pure noise.
NEAR_ZERO = {"harmony_mean", "perceptr_mean"}


def _table_rows(table_path):
    with open(table_path, newline="") as fh:
        return {row["filename"].rsplit(".", 1)[0]: row for row in csv.DictReader(fh)}


def _relative_errors(files, table_path, columns):
    rows = _table_rows(table_path)
    ours, ref = [], []
    for path in files:
        y, sr = sf.read(path, dtype="float32")
        assert sr == 22050
        ours.append(measure(y, sr=22050, columns=columns))
        ref.append([float(rows[path.stem][c]) for c in columns])
    ours, ref = np.asarray(ours), np.asarray(ref)
    return np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-12)


def test_gtzan57_columns_match_the_table_header(table_path):
    with open(table_path, newline="") as fh:
        header = next(csv.reader(fh))
    assert list(FEATURE_SETS["gtzan57"].columns) == [c for c in header if c not in ("filename", "length", "label")]
    assert len(gtzan57_columns()) == 57


@pytest.mark.slow
def test_measured_columns_agree_with_the_table_on_the_100_real_clips(mini_files, table_path):
    """Every column but the costly HPSS ones on all 100 clips: median relative error under 1%."""
    columns = [c for c in gtzan57_columns() if not c.startswith(("harmony", "perceptr"))]
    rel = _relative_errors(mini_files, table_path, columns)
    medians = dict(zip(columns, np.median(rel, axis=0)))
    worst = max(medians, key=medians.get)
    assert medians[worst] < 0.01, f"{worst}: median relative error {medians[worst]:.4f}"
    assert np.median(list(medians.values())) < 0.002, "most columns agree to about 0.1%"


@pytest.mark.train
@pytest.mark.slow
def test_hpss_columns_agree_with_the_table(mini_files, table_path):
    """The harmonic/percussive columns (slow to compute) on one clip per genre."""
    columns = ["harmony_var", "perceptr_var"]
    rel = _relative_errors(mini_files[::10], table_path, columns)
    assert np.median(rel, axis=0).max() < 0.01


def test_levelfree_features_ignore_playback_gain():
    fs = get_feature_set("levelfree")
    y = tone(8.0, freq=220.0) + tone(8.0, freq=1250.0, amp=0.1, seed=3)
    quiet, loud = fs.extract(y * 0.05).values, fs.extract(y * 0.8).values
    np.testing.assert_allclose(quiet, loud, rtol=1e-3, atol=1e-3)
    # ... whereas the raw table columns it is derived from follow it.
    columns = fs.measured_columns
    assert not np.allclose(measure(y * 0.05, sr=22050, columns=columns), measure(y * 0.8, sr=22050, columns=columns),
                           rtol=1e-2)


def _expected_levelfree(stat) -> dict[str, float]:
    """The ``levelfree`` features by their names, from ``stat(descriptor, "mean" | "var")`` and ``stat("tempo")``.

    Written from the column names and the README's description, not from ``features.py``: ``log_NAME`` is the
    natural log of the GTZAN table column NAME, ``log_rms_cv2`` the log of RMS's variance over its squared mean,
    any other name the table column itself."""
    out = {}
    for c in LEVELFREE_COLUMNS:
        if c == "log_rms_cv2":
            out[c] = np.log(stat("rms", "var") / stat("rms", "mean") ** 2)
            continue
        name = c.removeprefix("log_")
        value = stat("tempo") if name == "tempo" else stat(*name.rsplit("_", 1))
        out[c] = np.log(value) if c.startswith("log_") else value
    return out


#: The 51 ``levelfree`` columns: the GTZAN table's less RMS, the first MFCC's mean and the HPSS columns;
#: variances and the frequency-like means on a log scale; and RMS's coefficient of variation.
LEVELFREE_COLUMNS = (
    ["chroma_stft_mean", "log_chroma_stft_var"]
    + [f"log_{d}_{s}" for d in ("spectral_centroid", "spectral_bandwidth", "rolloff", "zero_crossing_rate")
       for s in ("mean", "var")]
    + ["log_tempo", "log_mfcc1_var"]
    + [c for i in range(2, 21) for c in (f"mfcc{i}_mean", f"log_mfcc{i}_var")]
    + ["log_rms_cv2"]
)


def test_levelfree_has_the_documented_columns():
    assert list(get_feature_set("levelfree").columns) == LEVELFREE_COLUMNS


SR, N_FFT, HOP = 22050, 2048, 512


@pytest.mark.parametrize("k", [47, 93, 280])
def test_levelfree_features_of_a_pure_tone_have_known_values(k):
    """A sine centred on FFT bin ``k``: its spectral centroid is its frequency, its 85% rolloff the next bin's,
    its zero-crossing rate 2 f / sr, its level steady; all to the small blur of the two half-empty edge frames."""
    f = k * SR / N_FFT
    y = (0.3 * np.sin(2 * np.pi * f * np.arange(30 * SR) / SR)).astype(np.float32)  # a GTZAN clip's length
    got = dict(zip(get_feature_set("levelfree").columns, get_feature_set("levelfree").extract(y).values))
    assert np.exp(got["log_spectral_centroid_mean"]) == pytest.approx(f, rel=1e-2)
    assert np.exp(got["log_rolloff_mean"]) == pytest.approx((k + 1) * SR / N_FFT, rel=1e-2)
    assert np.exp(got["log_zero_crossing_rate_mean"]) == pytest.approx(2 * f / SR, rel=1e-2)
    assert np.exp(got["log_spectral_bandwidth_mean"]) < 2 * SR / N_FFT  # the window's main lobe: a bin or two
    assert np.exp(got["log_rms_cv2"]) < 1e-3  # a steady level
    assert np.exp(got["log_zero_crossing_rate_var"]) < 1e-3 * np.exp(got["log_zero_crossing_rate_mean"])


def test_the_tempo_of_a_click_track_is_its_beat():
    """Clicks every 24 hops: 60 * 22050 / (24 * 512) = 107.67 BPM, a tempo the estimator can name exactly."""
    y = np.zeros(10 * SR, dtype=np.float32)
    click = (np.hanning(50) * np.sin(np.arange(50))).astype(np.float32)
    for start in range(0, y.size - click.size, 24 * HOP):
        y[start:start + click.size] = click
    got = dict(zip(get_feature_set("levelfree").columns, get_feature_set("levelfree").extract(y).values))
    assert np.exp(got["log_tempo"]) == pytest.approx(60 * SR / (24 * HOP), rel=1e-6)


@pytest.mark.train
@pytest.mark.slow
def test_levelfree_features_equal_librosas_on_real_clips(mini_files):
    """Training from the table and predicting from audio derive the features the same way: the features
    extracted from two real clips equal those derived, by their names, from librosa's own descriptors
    (the functions the GTZAN table was made with, at their defaults) of the same audio."""
    import librosa

    fs = get_feature_set("levelfree")
    for path in (mini_files[10], mini_files[60]):  # classical, metal
        y, sr = sf.read(path, dtype="float32")
        frames = {
            "chroma_stft": librosa.feature.chroma_stft(y=y, sr=sr),
            "rms": librosa.feature.rms(y=y),
            "spectral_centroid": librosa.feature.spectral_centroid(y=y, sr=sr),
            "spectral_bandwidth": librosa.feature.spectral_bandwidth(y=y, sr=sr),
            "rolloff": librosa.feature.spectral_rolloff(y=y, sr=sr),
            "zero_crossing_rate": librosa.feature.zero_crossing_rate(y),
            **{f"mfcc{i}": row for i, row in enumerate(librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20), start=1)},
        }
        tempo = float(np.atleast_1d(librosa.feature.tempo(y=y, sr=sr))[0])

        def stat(name, how=None):
            if name == "tempo":
                return tempo
            x = np.asarray(frames[name], dtype=np.float64)
            return x.mean() if how == "mean" else x.var()

        expected = _expected_levelfree(stat)
        got = dict(zip(fs.columns, fs.extract(y).values))
        assert got.keys() == expected.keys()
        for c in fs.columns:
            # chroma: the tuning is estimated on every 4th frame (0.01 bin off), which moves it by up to about 1%.
            rtol = 3e-2 if c.startswith(("chroma", "log_chroma")) else 1e-4
            assert got[c] == pytest.approx(expected[c], rel=rtol, abs=1e-4), f"{path.name}: {c}"


def test_a_stored_feature_set_of_another_version_is_refused():
    stored = get_feature_set("levelfree").to_dict()
    stored["version"] += 1
    with pytest.raises(FeatureVersionError, match="version"):
        get_feature_set(stored)
    with pytest.raises(FeatureVersionError, match="unknown feature set"):
        get_feature_set("no-such-set")
