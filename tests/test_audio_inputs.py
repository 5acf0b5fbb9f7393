"""Inputs that are not file paths: bytes and binary streams (stdin), and in-memory sample arrays."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import CONFIG, tone
from genre_id import audio
from genre_id.errors import AudioError

ROOT = Path(__file__).resolve().parents[1]
SR = 22050


@pytest.fixture(scope="module")
def real_clip(mini_dir) -> tuple[Path, np.ndarray]:
    path = mini_dir / "blues" / "blues.00000.flac"
    return path, audio.load(path)[0]


def _one_line(exc: pytest.ExceptionInfo, name: str, words: str) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"{name}: ") and words in message, message
    assert len(message) < 400, message
    return message


# --- bytes and streams -----------------------------------------------------------------------------


def test_bytes_decode_like_the_file(real_clip):
    path, want = real_clip
    with audio.open_stream(path.read_bytes()) as s:
        assert s.name == "<bytes>" and str(s) == "<bytes>" and s.size == path.stat().st_size
        np.testing.assert_array_equal(audio.load(s)[0], want)
        windows = list(audio.iter_windows(s, sample_rate=SR, window_seconds=10, min_seconds=3.0))  # the same stream, read again
        assert audio.info(s).frames == audio.info(path).frames
    np.testing.assert_array_equal(np.concatenate([x for _, x in windows]), want[: sum(x.size for _, x in windows)])
    assert [s for s, _ in windows] == [0.0, 10.0, 20.0]


def test_ffmpeg_formats_decode_from_bytes_and_file_objects(tmp_path, real_clip):
    pytest.importorskip("av")
    from test_audio_formats import encode

    _, y = real_clip
    path = encode(tmp_path / "clip.m4a", y[None, :], SR, fmt="ipod", codec="aac")  # moov last: needs seeking
    from_path, _ = audio.load(path)
    assert np.corrcoef(from_path[: y.size], y[: from_path.size])[0, 1] > 0.98
    with audio.open_stream(bytearray(path.read_bytes())) as s:
        np.testing.assert_array_equal(audio.load(s)[0], from_path)
    with open(path, "rb") as fh, audio.open_stream(fh) as s:
        assert s.name == str(path)  # a file object is named by its file
        np.testing.assert_array_equal(audio.load(s)[0], from_path)
    data = path.read_bytes()
    with pytest.raises(AudioError) as exc, audio.open_stream(data[: len(data) // 2], name="upload") as s:
        audio.load(s)
    _one_line(exc, "upload", "truncated or incomplete")


def test_a_pipe_is_spooled_in_chunks_and_decodes(tmp_path):
    """A pipe (no seeking) holding a WAV larger than what is kept in memory: spooled to a temporary file."""
    y = np.random.default_rng(0).uniform(-0.5, 0.5, 9_000_000).astype(np.float32)  # 36 MB as float WAV
    wav = tmp_path / "big.wav"
    sf.write(wav, y, 8000, subtype="FLOAT")
    assert wav.stat().st_size > audio._SPOOL_IN_MEMORY
    read_end, write_end = os.pipe()

    def feed():
        with open(wav, "rb") as src, os.fdopen(write_end, "wb") as dst:
            while chunk := src.read(1 << 16):
                dst.write(chunk)

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(read_end, "rb") as pipe:
        s = audio.open_stream(pipe, name="pipe")
    writer.join()
    with s:
        assert s._file._rolled  # on disk, not in memory
        spans = []
        for start, x in audio.iter_windows(s, sample_rate=8000, window_seconds=300, min_seconds=3.0):
            i = round(start * 8000)
            np.testing.assert_array_equal(x, y[i:i + x.size])
            spans.append((i, i + x.size))
    assert spans == audio.window_spans(y.size, 300 * 8000)


def test_stdin_is_named_stdin():
    wav = io.BytesIO()
    sf.write(wav, tone(4.0), SR, format="WAV")
    code = ("import sys\nfrom genre_id import audio\nfrom genre_id.errors import AudioError\n"
            "s = audio.open_stream(sys.stdin.buffer)\n"
            "print(s.name, audio.load(s)[0].size)\n"
            "try:\n    audio.load(audio.open_stream(sys.stdin.buffer))\n"
            "except AudioError as exc:\n    print(exc)\n")
    r = subprocess.run([sys.executable, "-c", code], input=wav.getvalue(), capture_output=True, timeout=60,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    assert r.stdout.decode().splitlines() == [f"<stdin> {4 * SR}", "<stdin>: input is empty"]


def test_oversized_streams_are_refused_without_reading_them_to_the_end():
    source = io.BytesIO(b"RIFF" + bytes(10_000_000))
    with pytest.raises(AudioError) as exc:
        audio.open_stream(source, max_bytes=1 << 20)
    _one_line(exc, "<stream>", "input is larger than the limit of 1 MiB")
    assert source.tell() <= (1 << 20) + 1
    with pytest.raises(AudioError) as exc:
        audio.open_stream(bytes(3000), max_bytes=2000)
    _one_line(exc, "<bytes>", "input is larger than the limit of 2000 bytes")


@pytest.mark.parametrize("source,kw,name,words", [
    (b"", {}, "<bytes>", "input is empty"),
    (b"password=hunter2\n" * 50, {}, "<bytes>", "not a readable audio file"),
    (bytes(range(256)) * 40, {"name": "line one\nline two"}, "line one line two", "not a readable audio file"),
    (b"\x00" * 5000, {"name": "x" * 1000}, "x" * 197 + "...", "not a readable audio file"),
    (io.StringIO("text"), {}, "<stream>", "open it in binary mode"),
    (12345, {}, "<stream>", "cannot read audio from a int"),
])
def test_stream_errors_are_one_bounded_line_without_the_data(source, kw, name, words):
    with pytest.raises(AudioError) as exc:
        with audio.open_stream(source, **kw) as s:
            audio.load(s)
    message = _one_line(exc, name, words)
    assert "hunter2" not in message and "\\x" not in message


def test_a_closed_stream_is_refused():
    wav = io.BytesIO()
    sf.write(wav, tone(4.0), SR, format="WAV")
    s = audio.open_stream(wav.getvalue(), name="clip")
    s.close()
    with pytest.raises(AudioError, match="^clip: the stream is closed$"):
        audio.load(s)


# --- arrays ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,values,expected", [
    (np.int16, [0, 16384, -32768, 32767], [0.0, 0.5, -1.0, 32767 / 32768]),
    (np.int32, [0, 2**30, -2**31], [0.0, 0.5, -1.0]),
    (np.int8, [0, 64, -128], [0.0, 0.5, -1.0]),
    (np.int64, [0, 2**62, -2**63], [0.0, 0.5, -1.0]),
    (np.uint8, [128, 0, 255, 192], [0.0, -1.0, 127 / 128, 0.5]),
    (np.uint16, [32768, 0, 49152], [0.0, -1.0, 0.5]),
    (np.float64, [0.25, -2.0], [0.25, -2.0]),
    (np.float16, [0.5], [0.5]),
])
def test_integer_pcm_is_scaled_by_its_range(dtype, values, expected):
    got = audio.check_samples(np.array(values, dtype=dtype))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(audio.to_mono(np.array(values, dtype=dtype)), expected, rtol=1e-6)


def test_plain_python_numbers_are_values_not_pcm():
    np.testing.assert_array_equal(audio.to_mono([1, 0, -1]), [1.0, 0.0, -1.0])


def test_pcm_arrays_give_the_features_of_the_float_audio(real_clip):
    from genre_id.extraction import extract_samples

    _, y = real_clip
    pcm16 = np.round(np.clip(y, -1, 1 - 2**-15) * 32768).astype(np.int16)
    want = extract_samples(pcm16.astype(np.float32) / 32768, sample_rate=SR, config=CONFIG).values
    np.testing.assert_allclose(extract_samples(pcm16, sample_rate=SR, config=CONFIG).values, want, rtol=1e-5, atol=1e-6)
    stereo_first = np.stack([pcm16, pcm16])  # librosa's mono=False layout
    np.testing.assert_allclose(extract_samples(stereo_first, sample_rate=SR, config=CONFIG).values, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 2, 6, 8])
def test_both_channel_layouts_give_the_same_mono(channels):
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((1000, channels)).astype(np.float32)
    want = x.mean(axis=1)
    np.testing.assert_allclose(audio.to_mono(x), want, atol=1e-6)
    np.testing.assert_allclose(audio.to_mono(x.T), want, atol=1e-6)
    np.testing.assert_allclose(audio.to_mono(np.asfortranarray(x.T)), want, atol=1e-6)


@pytest.mark.parametrize("samples,words", [
    (np.zeros((2, 2)), "cannot tell channels from samples in shape (2, 2); expected (n,), (n, channels) or "
                       "(channels, n) with 1 to 8 channels"),
    (np.zeros((8, 5)), "cannot tell channels from samples"),
    (np.zeros((16, 1000)), "have more than 8 channels; expected (n,), (n, channels) or (channels, n)"),
    (np.zeros((1000, 9)), "have more than 8 channels"),
    (np.zeros((2, 100, 2)), "must have shape (n,), (n, channels) or (channels, n), not (2, 100, 2)"),
    (np.zeros(()), "must have shape"),
    (np.zeros((1000, 0)), "have no channels"),
    (np.ones(1000, dtype=bool), "must be numbers, not booleans"),
    (np.ma.masked_array(np.zeros(1000), mask=np.zeros(1000, bool)), "masked arrays are not audio"),
    (np.zeros(1000, dtype=object), "must be numbers, not Python objects"),
    (np.array(["0.5"] * 1000), "must be numbers, not text"),
    (np.array([b"\x01"] * 1000), "must be numbers, not bytes"),
    (np.zeros(1000, dtype="datetime64[s]"), "must be numbers, not dates"),
    (np.zeros(1000, dtype=[("a", "f4")]), "must be numbers, not records"),
    (np.ones(1000, dtype=complex), "must be real numbers, not complex"),
    ([[1.0, 2.0], [3.0]], "must be numbers"),
])
def test_arrays_that_are_not_audio_are_refused_saying_why(samples, words):
    with pytest.raises(AudioError) as exc:
        audio.to_mono(samples, name="my clip")
    _one_line(exc, "my clip", words)


def test_empty_samples_stay_empty():
    assert audio.to_mono(np.zeros((0, 2))).shape == (0,)
    assert audio.to_mono(np.zeros(0, np.int16)).shape == (0,)
