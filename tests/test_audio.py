"""Decoding: formats, channels, rates, windows, and errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from genre_id import audio
from genre_id.errors import AudioError, AudioTooShortError


@pytest.mark.parametrize("ext,subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"),
                                         ("mp3", "MPEG_LAYER_III"), ("au", "PCM_16")])
def test_every_supported_format_decodes_to_the_same_signal(tmp_path, ext, subtype):
    y = tone(4.0, 22050, freq=441.0)
    path = tmp_path / f"clip.{ext}"
    sf.write(path, y, 22050, subtype=subtype)
    got = audio.load(path)
    assert got.dtype == np.float32 and got.ndim == 1
    # Lossy codecs pad or trim a little and shift the phase; compare length and spectrum.
    assert abs(got.size - y.size) < 0.05 * 22050
    spectrum = np.abs(np.fft.rfft(got[:22050]))
    assert abs(np.argmax(spectrum) - 441) <= 1


def test_stereo_is_mixed_to_mono_and_rate_is_converted(tmp_path):
    left, right = tone(3.5, 44100, freq=300.0), tone(3.5, 44100, freq=300.0, seed=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100)
    got = audio.load(path, sample_rate=22050)
    assert got.shape == (int(3.5 * 22050),)
    assert abs(np.argmax(np.abs(np.fft.rfft(got[:22050]))) - 300) <= 1
    assert audio.info(path).channels == 2 and audio.info(path).sample_rate == 44100


@pytest.mark.parametrize("n", [2500, 30000, 30010, 44000, 45000, 61000, 90000, 100000])
def test_streamed_windows_follow_window_spans(tmp_path, n):
    sr = 1000
    y = np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1
    path = tmp_path / "w.wav"
    sf.write(path, y, sr, subtype="FLOAT")
    streamed = list(audio.iter_windows(path, sample_rate=sr, window_seconds=30, min_seconds=1))
    spans = audio.window_spans(n, 30000)
    assert [(round(s * sr), round(s * sr) + x.size) for s, x in streamed] == spans
    for (start, x), (a, b) in zip(streamed, spans):
        np.testing.assert_allclose(x, y[a:b], atol=1e-7)
    # The windows cover everything, whole windows except when the audio is shorter than one.
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(b - a >= min(n, 30000) for a, b in spans)


def test_a_gtzan_length_clip_is_one_window():
    assert audio.window_spans(661794, 661500) == [(0, 661794)]


def test_too_short_audio_says_the_minimum(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, tone(1.0), 22050)
    with pytest.raises(AudioTooShortError, match=r"short\.wav: audio is 1\.00 s long; at least 3 s"):
        list(audio.iter_windows(path, min_seconds=3.0))


@pytest.mark.parametrize("make,problem", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes(b""), "file is empty"),
    (lambda p: p.write_text("hello, I am not audio\n" * 20), "not a readable audio file"),
])
def test_bad_files_get_one_line_naming_the_file(tmp_path, make, problem):
    path = tmp_path / "bad input.wav"
    make(path)
    with pytest.raises(AudioError) as info:
        audio.load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and problem in message


def test_nan_samples_are_refused(tmp_path):
    y = tone(4.0)
    y[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, y, 22050, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        audio.load(path)
