"""Decoding: formats, channels, rates, windows, and errors that name the file.

Every bad input file gets one line naming the file and the problem (a
GenreIdError) and unusual but valid files are identified; an hour of audio is
decoded in bounded memory.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, tone
from genre_id import audio
from genre_id.errors import AudioError, AudioTooShortError, SilentAudioError

PY = sys.executable


def _run(args, *, timeout=300, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8"}
    env.update(kw.pop("env", {}))
    return subprocess.run([PY, *args], capture_output=True, text=True, errors="surrogateescape", timeout=timeout, env=env, **kw)



@pytest.mark.parametrize("ext,subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"),
                                         ("mp3", "MPEG_LAYER_III"), ("au", "PCM_16")])
def test_every_supported_format_decodes_to_the_same_signal(tmp_path, ext, subtype):
    y = tone(4.0, 22050, freq=441.0)
    path = tmp_path / f"clip.{ext}"
    sf.write(path, y, 22050, subtype=subtype)
    got, sr = audio.load(path)
    assert got.dtype == np.float32 and got.ndim == 1 and sr == 22050  # the rate travels with the samples
    # Lossy codecs pad or trim a little and shift the phase; compare length and spectrum.
    assert abs(got.size - y.size) < 0.05 * 22050
    spectrum = np.abs(np.fft.rfft(got[:22050]))
    assert abs(np.argmax(spectrum) - 441) <= 1


def test_stereo_is_mixed_to_mono_and_rate_is_converted(tmp_path):
    left, right = tone(3.5, 44100, freq=300.0), tone(3.5, 44100, freq=300.0, seed=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100)
    got, sr = audio.load(path, sample_rate=22050)
    assert got.shape == (int(3.5 * 22050),) and sr == 22050
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
        list(audio.iter_windows(path, sample_rate=22050, window_seconds=30.0, min_seconds=3.0))


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


# --- inputs ----------------------------------------------------------------------------------------

def _write(path: Path, y: np.ndarray, sr: int, **kw) -> Path:
    sf.write(path, y, sr, **kw)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _truncated(path: Path, y: np.ndarray, sr: int, fraction: float = 0.5, **kw) -> Path:
    sf.write(path, y, sr, **kw)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _claims_more(path: Path) -> Path:
    """A wav whose data chunk claims 100 MB while the file holds 8 s."""
    sf.write(path, tone(8.0), 22050)
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at:at + 4] = struct.pack("<I", 100_000_000)
    path.write_bytes(bytes(data))
    return path


def _with_bad_sample(path: Path, value: float) -> Path:
    y = tone(5.0)
    y[1000] = value
    return _write(path, y, 22050, subtype="FLOAT")


def _undecodable_name(path: Path) -> Path:
    target = Path(os.fsdecode(bytes(path.parent) + b"/bad\xff\xfe name.wav"))
    os.rename(path, target)
    return target


def _multi(seconds: float, sr: int, channels: int) -> np.ndarray:
    y = tone(seconds, sr)
    return np.stack([y * (1 - 0.05 * c) for c in range(channels)], axis=1)


# name -> (make(tmp_dir) -> path, expected error type, words in the message)
BAD_INPUTS = {
    "missing path": (lambda d: d / "missing.wav", AudioError, "no such file"),
    "a directory": (lambda d: _folder(d / "folder.wav"), AudioError, "is a directory"),
    "an empty file": (lambda d: _bytes(d / "empty.wav", b""), AudioError, "file is empty"),
    "a named pipe": (lambda d: _fifo(d / "pipe.wav"), AudioError, "not a regular file"),
    "text named .mp3": (lambda d: _bytes(d / "notes.mp3", b"not audio at all\n" * 50), AudioError,
                        "not a readable audio file"),
    "a png named .flac": (lambda d: _bytes(d / "cover.flac", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20),
                          AudioError, "not a readable audio file"),
    "wav header claims more data than the file holds": (lambda d: _claims_more(d / "claims.wav"), AudioError,
                                                        "file is truncated (its header promises 100000000 bytes"),
    "truncated mp3": (lambda d: _truncated(d / "cut.mp3", tone(10.0), 22050, subtype="MPEG_LAYER_III"), AudioError,
                      "file is truncated (its header promises 10.00 s of audio"),
    "truncated flac": (lambda d: _truncated(d / "cut.flac", tone(10.0), 22050), AudioError,
                       "audio data is corrupt or truncated"),
    "truncated ogg": (lambda d: _truncated(d / "cut.ogg", tone(10.0), 22050), AudioError, "file is truncated"),
    "truncated au": (lambda d: _truncated(d / "cut.au", tone(10.0), 22050), AudioError, "file is truncated"),
    "shorter than 3 s": (lambda d: _write(d / "short.wav", tone(2.9), 22050), AudioTooShortError,
                         "audio is 2.90 s long; at least 3 s is needed"),
    "pure silence": (lambda d: _write(d / "silence.wav", np.zeros(10 * 22050, np.float32), 22050),
                     SilentAudioError, "audio is silent"),
    "a constant DC offset (silence too)": (lambda d: _write(d / "dc.wav", np.full(5 * 22050, 0.25, np.float32),
                                                            22050), SilentAudioError, "audio is silent"),
    "float wav with NaN": (lambda d: _with_bad_sample(d / "nan.wav", np.nan), AudioError, "NaN or infinite samples"),
    "float wav with infinity": (lambda d: _with_bad_sample(d / "inf.wav", np.inf), AudioError,
                                "NaN or infinite samples"),
    "float wav with huge finite values": (
        lambda d: _write(d / "huge.wav", tone(4.0) * np.float32(1e30), 22050, subtype="FLOAT"), AudioError,
        "features cannot be computed"),
    "a 500 Hz sample rate": (lambda d: _write(d / "slow.wav", tone(8.0, 500), 500), AudioError,
                             "sample rate 500 Hz is not supported (from 1000 to 768000 Hz)"),
}

GOOD_INPUTS = {
    "8-bit PCM": lambda d: _write(d / "u8.wav", tone(4.0), 22050, subtype="PCM_U8"),
    "24-bit PCM": lambda d: _write(d / "p24.wav", _multi(4.0, 44100, 2), 44100, subtype="PCM_24"),
    "32-bit float": lambda d: _write(d / "f32.wav", tone(4.0, 44100), 44100, subtype="FLOAT"),
    "8 channels": lambda d: _write(d / "ch8.flac", _multi(4.0, 48000, 8), 48000),
    "8 kHz": lambda d: _write(d / "8k.wav", tone(4.0, 8000), 8000),
    "192 kHz": lambda d: _write(d / "192k.flac", _multi(4.0, 192000, 2), 192000, subtype="PCM_24"),
    "exactly 3 s (the minimum)": lambda d: _write(d / "three.wav", tone(3.0), 22050),
    "spaces and non-ASCII in the name": lambda d: _write(d / "Ünïcødé song — 日本 (live).wav", tone(4.0),
                                                         22050),
    "a name that is not UTF-8": lambda d: _undecodable_name(_write(d / "plain.wav", tone(4.0), 22050)),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_one_line_naming_the_file_and_the_problem(default_recognizer, tmp_path, case):
    make, error, words = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(error) as info:
        default_recognizer.identify(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)) and words in message, message


@pytest.mark.parametrize("case", list(GOOD_INPUTS))
def test_unusual_but_valid_input_is_identified(default_recognizer, tmp_path, case):
    path = GOOD_INPUTS[case](tmp_path)
    pred = default_recognizer.identify(path)
    assert pred.genre in default_recognizer.labels and 0 < pred.confidence <= 1
    assert abs(sum(pred.probabilities.values()) - 1) < 1e-4 and len(pred.segments) == 1


def test_a_file_without_read_permission_mocked(default_recognizer, tmp_path, monkeypatch):
    """os.access is what the library asks; as root it always says yes, so it is told no here."""
    path = _write(tmp_path / "locked.wav", tone(4.0), 22050)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == path else real_access(p, mode, **k))
    with pytest.raises(AudioError, match=r"locked\.wav: permission denied"):
        default_recognizer.identify(path)


# --- an hour of audio ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hour_flac(tmp_path_factory) -> Path:
    """60 minutes of quiet tone and noise at 8 kHz, written block by block (about 1 s, 39 MB)."""
    path = tmp_path_factory.mktemp("hour") / "an hour.flac"
    sr = 8000
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 1, format="FLAC", subtype="PCM_16") as f:
        for minute in range(60):
            t = np.arange(minute * 60 * sr, (minute + 1) * 60 * sr) / sr
            f.write((0.05 * np.sin(2 * np.pi * (220 + 5 * minute) * t) + 0.01 * rng.standard_normal(t.size))
                    .astype(np.float32))
    return path


_PEAK = """
def peak_mb():
    # The high-water mark of this process's memory.  getrusage's ru_maxrss would do, but Linux carries it
    # over execve from the forked parent (pytest, maybe with TensorFlow loaded); VmHWM starts afresh.
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) // 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
"""

_STREAM = _PEAK + """
import sys
from genre_id import audio

n = sum(1 for _ in audio.iter_windows(sys.argv[1], sample_rate=22050, window_seconds=30.0, min_seconds=3.0))
print(n, peak_mb())
"""


def test_an_hour_of_audio_streams_in_bounded_memory(hour_flac):
    """Decoding and resampling the hour holds two windows at a time (all of it at 22.05 kHz would be 318 MB)."""
    r = _run(["-c", _STREAM, str(hour_flac)])
    windows, peak_mb = map(int, r.stdout.split())
    assert windows == 120 and peak_mb < 250, (windows, peak_mb)


_IDENTIFY_WITH_PEAK = _PEAK + """
import sys
from genre_id.cli import main

code = main(["identify", "--json", sys.argv[1]])
print(peak_mb(), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.slow
def test_an_hour_of_audio_is_identified(hour_flac):
    r = _run(["-c", _IDENTIFY_WITH_PEAK, str(hour_flac)], timeout=1800)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["segments"]) == 120 and abs(out["duration"] - 3600) < 1e-6
    assert [s["start"] for s in out["segments"]] == [30.0 * i for i in range(120)]
    peak_mb = int(r.stderr.split()[-1])
    assert peak_mb < 1500, f"peak memory {peak_mb} MB"


def test_a_wav_declaring_65535_channels_says_too_many_channels(tmp_path):
    import struct

    data = b"\x00\x00" * 65535 * 4
    fmt = struct.pack("<IHHIIHH", 16, 1, 65535, 22050, (22050 * 2 * 65535) & 0xFFFFFFFF, (2 * 65535) & 0xFFFF, 16)
    path = tmp_path / "many.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + fmt + b"data"
                     + struct.pack("<I", len(data)) + data)
    with pytest.raises(AudioError, match="many.wav: .*Too many channels"):
        audio.load(path)
