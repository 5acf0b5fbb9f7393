"""The library API on real and synthetic audio."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from genre_id import Prediction
from genre_id.errors import AudioTooShortError, FeatureVersionError, SilentAudioError
from genre_id.features import Features


@pytest.mark.slow
def test_default_model_names_the_real_clips(default_recognizer, mini_features):
    """The shipped model was trained on the table of all 1000 clips, these 100 included."""
    rec = default_recognizer
    right = 0
    for path, windows in mini_features.items():
        pred = rec.classify(windows)
        right += pred.genre == path.parent.name
        assert abs(sum(pred.probabilities.values()) - 1) < 1e-4
        assert pred.top[0].genre == pred.genre and pred.confidence == pred.top[0].probability
        assert [s.probability for s in pred.top] == sorted((s.probability for s in pred.top), reverse=True)
    assert right >= 80, f"only {right}/100 real clips named right"


@pytest.mark.slow
def test_file_and_samples_give_the_same_answer(default_recognizer, mini_files, tmp_path):
    path = mini_files[37]
    from_file = default_recognizer.identify(path)
    y, sr = sf.read(path, dtype="float32")
    from_samples = default_recognizer.identify(y, sample_rate=sr)
    assert from_file.genre == from_samples.genre
    np.testing.assert_allclose(list(from_file.probabilities.values()),
                               list(from_samples.probabilities.values()), atol=1e-4)
    # The same clip, stereo at 44.1 kHz, keeps its answer.
    stereo = tmp_path / "stereo 44k.wav"
    import soxr

    y44 = soxr.resample(y, sr, 44100)
    sf.write(stereo, np.stack([y44, y44], axis=1), 44100)
    assert default_recognizer.identify(stereo).genre == from_file.genre


@pytest.mark.slow
def test_long_audio_gets_a_timeline_of_windows(default_recognizer, mini_files):
    # Three real clips of different genres, back to back: 90 s.
    picks = [mini_files[10], mini_files[60], mini_files[10]]  # classical, metal, classical
    y = np.concatenate([sf.read(p, dtype="float32")[0][: 30 * 22050] for p in picks])
    pred = default_recognizer.identify(y, sample_rate=22050)
    assert [(s.start, s.end) for s in pred.segments] == [(0, 30), (30, 60), (60, 90)]
    assert [s.genre for s in pred.segments] == ["classical", "metal", "classical"]
    assert pred.genre == "classical" and pred.duration == 90


def test_silence_gets_an_explicit_answer_not_a_genre(default_recognizer):
    with pytest.raises(SilentAudioError, match="silent"):
        default_recognizer.identify(np.zeros(22050 * 10, dtype=np.float32), sample_rate=22050)


def test_too_short_audio_is_refused(default_recognizer):
    with pytest.raises(AudioTooShortError, match="at least 3 s"):
        default_recognizer.identify(tone(2.0), sample_rate=22050)


def test_a_silent_window_inside_long_audio_is_marked(default_recognizer):
    y = np.concatenate([tone(30.0), np.zeros(30 * 22050, dtype=np.float32)])
    pred = default_recognizer.identify(y, sample_rate=22050)
    assert [s.genre is None for s in pred.segments] == [False, True]
    assert isinstance(pred, Prediction) and pred.genre in default_recognizer.labels


def test_features_of_another_version_are_refused(default_recognizer):
    stale = Features(values=np.zeros((1, 57)), feature_set="gtzan57", version=0)
    with pytest.raises(FeatureVersionError, match="version 0"):
        default_recognizer.classify(stale)


#: Paths opened while a test listens (see _files_opened_under); None when none does.
_opened: list[Path] | None = None
_AUDIT_HOOKS: list = []


def _record_opens(event: str, args: tuple) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(Path(os.fsdecode(args[0])).resolve())


@contextmanager
def _files_opened_under(*folders: Path):
    """The files under ``folders`` that this process opens in the block (any way: open, os.open, np.load, zipfile)."""
    global _opened
    if _record_opens not in _AUDIT_HOOKS:  # an audit hook cannot be removed: add it once, listen when asked
        sys.addaudithook(_record_opens)
        _AUDIT_HOOKS.append(_record_opens)
    seen: list[Path] = []
    _opened = seen
    try:
        yield seen
    finally:
        _opened = None
    seen[:] = [p for p in seen if any(p.is_relative_to(f.resolve()) for f in folders)]


def test_the_recognizer_is_loaded_once_and_reused():
    """Recognizer.load reads the model's files; identify never reads them again, however often it is called.

    The default model is an ensemble whose musicnn member hears through the packaged MSD_musicnn
    network: its weights are read on first use, once per process, and never after."""
    import genre_id.musicnn as musicnn
    from genre_id import Recognizer
    from genre_id.model import DEFAULT_MODEL_DIR

    musicnn._default_model.cache_clear()  # this test sees the first use, whatever ran before it
    watched = (DEFAULT_MODEL_DIR, musicnn.WEIGHTS_DIR)
    with _files_opened_under(*watched) as at_load:
        rec = Recognizer.load()
    with _files_opened_under(*watched) as at_first_use:
        first = rec.identify(tone(4.0), sample_rate=22050)
    with _files_opened_under(*watched) as afterwards:
        again = [rec.identify(tone(4.0, seed=seed), sample_rate=22050) for seed in range(1, 4)]
        assert rec.identify(tone(4.0), sample_rate=22050).probabilities == first.probabilities

    members = [m.path for m in rec.bundle.members]
    assert {p.relative_to(DEFAULT_MODEL_DIR.resolve()).as_posix() for p in at_load} >= {
        "model.json", *(f"{m.name}/{f}" for m in members for f in ("model.json", "weights.npz"))}
    assert at_first_use and all(p.is_relative_to(musicnn.WEIGHTS_DIR.resolve()) for p in at_first_use), at_first_use
    assert afterwards == [], f"identify read the model again: {afterwards}"
    assert all(p.genre in rec.labels for p in again)


from genre_id.errors import GenreIdError  # noqa: E402


def test_samples_that_are_not_audio_get_a_genre_id_error(default_recognizer):
    n = 4 * 22050
    for source, kw, words in [
        (np.array(["a"] * n), {"sample_rate": 22050}, "must be numbers"),
        (np.ones(n, complex), {"sample_rate": 22050}, "not complex"),
        (np.zeros((2, 2, 2)), {"sample_rate": 22050}, "shape"),
        (np.zeros((n, 0)), {"sample_rate": 22050}, "no channels"),
        (np.full(n, 1e300), {"sample_rate": 22050}, "NaN or infinite"),
        (tone(4.0), {"sample_rate": 0}, "positive whole number"),
        (tone(4.0), {"sample_rate": 22050.0}, "positive whole number"),
        (tone(4.0), {"sample_rate": 100}, "not supported"),
        (tone(4.0), {}, "needs sample_rate"),
        (3.14, {}, "cannot identify a float"),
        (None, {}, "cannot identify a NoneType"),
    ]:
        with pytest.raises(GenreIdError, match=words):
            default_recognizer.identify(source, **kw)
