"""The library API on real and synthetic audio."""

from __future__ import annotations

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


def test_the_recognizer_is_loaded_once_and_reused(monkeypatch):
    import genre_id.recognizer as r

    calls = []
    real = r.load_bundle
    monkeypatch.setattr(r, "load_bundle", lambda *a, **k: calls.append(1) or real(*a, **k))
    rec = r.Recognizer.load()
    assert calls == [1]

    def no_reading(*a, **k):
        raise AssertionError("the model was read again")

    monkeypatch.setattr(np, "load", no_reading)  # the weights are read with np.load
    for seed in range(3):
        rec.identify(tone(4.0, seed=seed), sample_rate=22050)
    assert calls == [1]


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
