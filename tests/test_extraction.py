"""Windowing and the silence rule: only windows with enough active audio are judged."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from genre_id import extraction
from genre_id.audio import open_stream
from genre_id.config import AnalysisConfig
from genre_id.errors import GenreIdError, SilentAudioError
from genre_id.extraction import (
    MIN_ACTIVE_SECONDS,
    PARALLEL_MIN_WINDOWS,
    SILENCE_RMS,
    active_seconds,
    extract_file,
    extract_samples,
)

SR = 22050
CONFIG = AnalysisConfig.for_window(sample_rate=SR, window_seconds=30.0)
FIVE = AnalysisConfig.for_window(sample_rate=SR, window_seconds=5.0)


def _real(mini_dir, name: str) -> np.ndarray:
    y, sr = sf.read(mini_dir / name.split(".")[0] / f"{name}.flac", dtype="float32")
    assert sr == SR
    return y


def test_active_seconds_counts_frames_above_the_floor_around_the_mean():
    y = np.full(10 * SR, 0.3, dtype=np.float32)  # a DC offset is not sound
    assert active_seconds(y, sr=SR) == 0.0
    y[: 3 * SR] += 0.01 * np.sin(np.arange(3 * SR) * 0.1).astype(np.float32)
    assert active_seconds(y, sr=SR) == pytest.approx(3.0, abs=0.06)
    quiet = (0.5 * SILENCE_RMS * np.sin(np.arange(10 * SR) * 0.1)).astype(np.float32)
    assert active_seconds(quiet, sr=SR) == 0.0
    assert np.isnan(active_seconds(np.full(SR, np.nan, dtype=np.float32), sr=SR))


def test_a_click_in_silence_is_silence(default_recognizer):
    y = np.zeros(30 * SR, dtype=np.float32)
    y[12345] = 1.0
    with pytest.raises(SilentAudioError, match="silent"):
        default_recognizer.identify(y, sample_rate=SR)


def test_a_sliver_of_music_in_a_silent_window_does_not_pull_the_answer(default_recognizer, mini_dir):
    classical, metal = _real(mini_dir, "classical.00000"), _real(mini_dir, "metal.00000")
    y = np.zeros(60 * SR, dtype=np.float32)
    y[: SR // 100] = classical[: SR // 100]  # 0.01 s of music, then 29.99 s of silence
    y[30 * SR:] = metal[: 30 * SR]
    p = default_recognizer.identify(y, sample_rate=SR)
    assert [s.genre for s in p.segments] == [None, "metal"]
    alone = default_recognizer.identify(metal[: 30 * SR], sample_rate=SR)
    assert p.probabilities == pytest.approx(alone.probabilities, abs=1e-6)


def test_a_window_needs_two_seconds_of_active_audio(mini_dir):
    music = _real(mini_dir, "jazz.00001")
    y = np.zeros(30 * SR, dtype=np.float32)
    short = int((MIN_ACTIVE_SECONDS - 0.5) * SR)
    y[:short] = music[:short]
    assert extract_samples(y, sample_rate=SR, config=CONFIG).silent.tolist() == [True]
    y[: int((MIN_ACTIVE_SECONDS + 0.5) * SR)] = music[: int((MIN_ACTIVE_SECONDS + 0.5) * SR)]
    assert extract_samples(y, sample_rate=SR, config=CONFIG).silent.tolist() == [False]


@pytest.mark.parametrize("kind", ["dc", "noise", "impulse", "alternating"])
@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1e6, 1e30, 3e38])
def test_odd_but_finite_signals_give_a_genre_or_a_clear_error(default_recognizer, kind, scale):
    n = 3 * 22050
    base = {"dc": np.ones(n), "noise": np.random.default_rng(0).standard_normal(n), "impulse": np.eye(1, n, 99)[0],
            "alternating": np.tile([1.0, -1.0], n // 2 + 1)[:n]}[kind]
    y = np.clip(base * scale, -3e38, 3e38).astype(np.float32)
    try:
        pred = default_recognizer.identify(y, sample_rate=22050)
    except GenreIdError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("audio: ")
    else:
        assert pred.genre in default_recognizer.labels and np.isfinite(list(pred.probabilities.values())).all()


@pytest.mark.slow
def test_a_long_file_spread_over_processes_gives_the_same_windows(mini_dir, tmp_path, monkeypatch):
    # 5 s windows: 30 s of classical, 10 s of silence, 10 s of metal = 10 windows, two of them silent.
    y = np.concatenate([_real(mini_dir, "classical.00000"), np.zeros(10 * SR, dtype=np.float32),
                        _real(mini_dir, "metal.00000")[: 10 * SR]])
    long = tmp_path / "long.flac"
    sf.write(long, y, SR)
    assert len(y) / SR >= PARALLEL_MIN_WINDOWS * 5
    here = extract_file(long, feature_set="levelfree+musicnn-msd", config=FIVE, workers=1)
    spread = extract_file(long, feature_set="levelfree+musicnn-msd", config=FIVE, workers=2)
    assert here.silent.tolist() == spread.silent.tolist() == [False] * 6 + [True] * 2 + [False] * 2
    assert np.array_equal(here.starts, spread.starts) and np.array_equal(here.ends, spread.ends)
    np.testing.assert_allclose(spread.values, here.values, rtol=1e-5, atol=1e-6)
    with open_stream(long.read_bytes(), name="<bytes>") as stream:  # encoded audio in memory, as stdin is
        streamed = extract_file(stream, feature_set="levelfree+musicnn-msd", config=FIVE, workers=2)
    np.testing.assert_allclose(streamed.values, here.values, rtol=1e-5, atol=1e-6)

    def no_processes(*args, **kwargs):
        raise AssertionError("a short file is measured in this process")

    monkeypatch.setattr(extraction, "map_ahead", no_processes)
    short = tmp_path / "short.flac"
    sf.write(short, y[: int((PARALLEL_MIN_WINDOWS - 1) * 5 * SR)], SR)
    assert len(extract_file(short, feature_set="levelfree", config=FIVE, workers=2).starts) == 7
