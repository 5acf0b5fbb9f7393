"""Audio decoding: any supported file to mono float32 samples at one rate.

Decoding goes through libsndfile (``soundfile``), which reads wav, flac, ogg,
mp3 and au among others; resampling goes through soxr, librosa's default
resampler.  Long files are read block by block (:func:`iter_windows`), so the
memory needed does not grow with the file's length.

Every failure is raised as :class:`~genre_id.errors.AudioError` with a message
naming the file and the problem: a missing, unreadable or empty file, a
format libsndfile does not recognise, a sample rate outside
:data:`MIN_SAMPLE_RATE`..:data:`MAX_SAMPLE_RATE`, a truncated file (its header
promises more audio than it holds), corrupt audio data, NaN or infinite samples.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, AudioTooShortError
from .files import PathLike

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "AudioInfo",
    "info",
    "load",
    "to_mono",
    "resample",
    "check_samples",
    "window_spans",
    "iter_windows",
]

#: File name endings the project accepts as audio (case-insensitive).
SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".au", ".snd", ".aiff", ".aif")

#: Sample rates (Hz) a file may have.  Below 1 kHz there is no music to judge,
#: and a tiny file claiming a rate of a few Hz would be hours of "audio".
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768000

#: Samples (frames times channels) decoded per read, so that a header claiming
#: an absurd length or channel count cannot make one read allocate gigabytes.
_CHUNK_SAMPLES = 1 << 20

_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError, MemoryError, OverflowError)


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says about it."""

    path: str
    sample_rate: int  #: samples per second of the file, in Hz
    channels: int
    frames: int  #: samples per channel as the header claims them
    format: str  #: libsndfile's container name, such as ``"WAV"`` or ``"MP3"``

    @property
    def duration(self) -> float:
        """Length in seconds, as the header claims it."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    # libsndfile's messages repeat the path; keep only its explanation.
    if "Error opening" in text and ":" in text:
        text = text.rsplit(":", 1)[-1].strip()
    text = re.sub(r"^Error\s*:\s*", "", text)  # "Error : flac decoder lost sync"
    if not text and not isinstance(exc, sf.LibsndfileError):
        text = type(exc).__name__
    if not text or "possibly a pipe" in text:  # what libsndfile says of an mp3 it cannot parse
        text = "format not recognised or header corrupt"
    return text.rstrip(".")


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence what C decoders (mpg123) print on file descriptor 2 while they run."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_path(path: PathLike) -> Path:
    try:
        p = Path(os.fsdecode(path) if isinstance(path, bytes) else path)
    except TypeError:
        raise AudioError(f"{path!r}: not a file path") from None
    try:
        if not p.exists():
            raise AudioError(f"{p}: no such file")
        if p.is_dir():
            raise AudioError(f"{p}: is a directory, not an audio file")
        if not p.is_file():
            raise AudioError(f"{p}: not a regular file")
        if not os.access(p, os.R_OK):
            raise AudioError(f"{p}: permission denied")
        if p.stat().st_size == 0:
            raise AudioError(f"{p}: file is empty")
    except OSError as exc:  # e.g. a folder on the way that may not be entered
        raise AudioError(f"{p}: cannot access the file ({exc.strerror or exc})") from None
    return p


# libsndfile's log notes where a header's data size disagrees with the file,
# e.g. "data : 100000000 (should be 441000)" (WAV), "Data Size : ..." (AU),
# "SSND : ..." (AIFF).
_SIZE_NOTE = re.compile(r"^\s*(?:data|Data Size|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMING_SIZE = 0x7FFFF000  # sizes from here up are placeholders written by streaming encoders


def _check_header(f: sf.SoundFile, p: Path) -> None:
    """Refuse what the header already shows to be unusable."""
    sr, channels = int(f.samplerate), int(f.channels)
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{p}: sample rate {sr} Hz is not supported (from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)"
        )
    if channels < 1:
        raise AudioError(f"{p}: the header declares {channels} channels")
    try:
        log = str(f.extra_info)
    except _ERRORS:
        return
    for claimed, actual in _SIZE_NOTE.findall(log):
        if int(actual) < int(claimed) < _STREAMING_SIZE:
            raise AudioError(
                f"{p}: file is truncated (its header promises {int(claimed)} bytes of audio data, "
                f"the file holds {int(actual)})"
            )
    if f.format == "OGG" and "end-of-stream" in log.lower():
        raise AudioError(f"{p}: file is truncated (the Ogg stream stops without its end-of-stream mark)")


def _open(path: PathLike) -> sf.SoundFile:
    p = _check_path(path)
    try:
        with _quiet_stderr():
            # Bytes, so that names that are not valid UTF-8 open too.
            f = sf.SoundFile(str(p) if os.name == "nt" else os.fsencode(p))
    except _ERRORS as exc:
        raise AudioError(f"{p}: not a readable audio file ({_describe(exc)})") from None
    try:
        _check_header(f, p)
    except BaseException:
        f.close()
        raise
    return f


def _mp3_length_is_exact(path: PathLike) -> bool:
    """Whether an MP3 carries a Xing, Info or VBRI frame, whose frame count libsndfile reports.

    Without one, libsndfile estimates the length from the file size and the
    first frame's bit rate, which may be far off for valid files.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(10)
            skip = 0
            if head[:3] == b"ID3" and len(head) == 10:  # skip an ID3v2 tag
                skip = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
            fh.seek(skip)
            first = fh.read(4096)
    except OSError:
        return False
    return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))


def _check_complete(f: sf.SoundFile, decoded_to: int, path: PathLike) -> None:
    """Refuse a file whose header promises clearly more frames than could be decoded (it is truncated)."""
    claimed, sr = int(f.frames), int(f.samplerate)
    if claimed - decoded_to <= max(0.1 * sr, 0.01 * claimed):
        return
    if f.format == "MP3" and not _mp3_length_is_exact(path):
        return
    raise AudioError(
        f"{path}: file is truncated (its header promises {claimed / sr:.2f} s of audio, "
        f"only {decoded_to / sr:.2f} s could be decoded)"
    )


def info(path: PathLike) -> AudioInfo:
    """Read a file's header: sample rate, channels, length and container."""
    with _open(path) as f:
        return AudioInfo(str(path), int(f.samplerate), int(f.channels), int(max(f.frames, 0)), str(f.format))


def _as_float32(samples: np.ndarray, name: str) -> np.ndarray:
    if isinstance(samples, np.ndarray) and samples.dtype == np.float32:
        return samples
    if np.iscomplexobj(samples):
        raise AudioError(f"{name}: samples must be real numbers, not complex")
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range becomes inf, refused later
            return np.asarray(samples, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise AudioError(f"{name}: samples must be numbers ({exc})") from None


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of ``samples`` (shape ``(n,)`` or ``(n, channels)``)."""
    samples = _as_float32(samples, "audio")
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise AudioError(f"samples must have shape (n,) or (n, channels), not {samples.shape}")
    if samples.shape[1] == 0:
        raise AudioError(f"samples of shape {samples.shape} have no channels")
    return samples.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono ``samples`` from ``orig_sr`` to ``target_sr`` Hz (soxr, high quality)."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(samples, dtype=np.float32)
    try:
        out = soxr.resample(np.ascontiguousarray(samples, dtype=np.float32), orig_sr, target_sr, quality="HQ")
    except (ValueError, TypeError, RuntimeError, MemoryError, OverflowError) as exc:
        raise AudioError(f"cannot resample from {orig_sr} Hz to {target_sr} Hz ({exc})") from None
    return np.asarray(out, dtype=np.float32)


def check_samples(samples: np.ndarray, *, name: str = "audio") -> np.ndarray:
    """Refuse samples that hold NaN or infinity (or beyond float32's range); return them as float32."""
    samples = _as_float32(samples, name)
    if samples.size and not np.isfinite(samples).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    return samples


def _read_block(f: sf.SoundFile, frames: int, path: PathLike) -> np.ndarray:
    """Up to ``frames`` frames (all that is left when negative) as checked mono samples.

    Reads in chunks of at most :data:`_CHUNK_SAMPLES` samples, so memory follows
    the audio actually decoded, not what the header claims.
    """
    step = max(1, _CHUNK_SAMPLES // max(1, int(f.channels)))
    parts: list[np.ndarray] = []
    got = 0
    try:
        with _quiet_stderr():
            while frames < 0 or got < frames:
                want = step if frames < 0 else min(step, frames - got)
                chunk = f.read(want, dtype="float32", always_2d=True)
                if chunk.shape[0]:
                    parts.append(to_mono(check_samples(chunk, name=str(path))))
                    got += chunk.shape[0]
                if chunk.shape[0] < want:
                    break
    except _ERRORS as exc:
        raise AudioError(f"{path}: audio data is corrupt or truncated ({_describe(exc)})") from None
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def load(
    path: PathLike,
    *,
    sample_rate: int = 22050,
    offset: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Decode ``path`` to mono float32 samples at ``sample_rate`` Hz.

    ``offset`` and ``duration`` (seconds) select a part of the file; the whole
    file is read by default.
    """
    with _open(path) as f:
        sr = int(f.samplerate)
        first = 0
        if offset > 0:
            first = int(round(offset * sr))
            try:
                f.seek(first)
            except _ERRORS as exc:
                raise AudioError(f"{path}: cannot seek to {offset:.2f} s ({_describe(exc)})") from None
        frames = -1 if duration is None else int(round(duration * sr))
        y = _read_block(f, frames, path)
        if frames < 0 or y.size < frames:  # read to the end
            _check_complete(f, first + y.size, path)
    return resample(y, orig_sr=sr, target_sr=sample_rate)


def window_spans(n_samples: int, window: int) -> list[tuple[int, int]]:
    """``(start, end)`` sample indices of the analysis windows over ``n_samples`` samples.

    Windows are ``window`` samples long and do not overlap.  What is left at
    the end joins the last window when it is under half a window (so a
    30.01 s clip is one window of 30 s windows), and otherwise gets a window
    of its own that ends at the end of the audio (overlapping the one
    before).  Audio shorter than one window is a single window.
    """
    if n_samples <= window:
        return [(0, n_samples)]
    full, rest = divmod(n_samples, window)
    spans = [(i * window, (i + 1) * window) for i in range(full)]
    if rest and rest < window / 2:
        spans[-1] = (spans[-1][0], n_samples)
    elif rest:
        spans.append((n_samples - window, n_samples))
    return spans


def iter_windows(
    path: PathLike,
    *,
    sample_rate: int = 22050,
    window_seconds: float = 30.0,
    min_seconds: float = 3.0,
) -> Iterator[tuple[float, np.ndarray]]:
    """Decode ``path`` window by window: yield ``(start_seconds, samples)``.

    Samples are mono float32 at ``sample_rate`` Hz.  Windows follow
    :func:`window_spans`; the file is read sequentially, and at most two
    windows of audio are held at once, so an hour-long file needs no more
    memory than a 30-second one.  Raises :class:`AudioTooShortError` when the
    whole file is shorter than ``min_seconds``, and :class:`AudioError` when
    it is truncated (found once the end is reached, after the windows before).
    """
    with _open(path) as f:
        src_sr = int(f.samplerate)
        w = max(1, int(round(window_seconds * src_sr)))
        prev: np.ndarray | None = None  # the last whole window read, not yet yielded
        start = 0  # its first sample
        while True:
            block = _read_block(f, w, path)
            if block.size == w:
                if prev is not None:
                    yield start / src_sr, resample(prev, orig_sr=src_sr, target_sr=sample_rate)
                    start += w
                prev = block
                continue
            break  # a partial (possibly empty) block: the end of the file
        rest = block.size
        _check_complete(f, rest if prev is None else start + w + rest, path)
        if prev is None:
            if rest == 0:
                raise AudioTooShortError(f"{path}: no audio samples could be decoded")
            if rest < min_seconds * src_sr:
                raise AudioTooShortError(
                    f"{path}: audio is {rest / src_sr:.2f} s long; at least {min_seconds:g} s is needed"
                )
            yield 0.0, resample(block, orig_sr=src_sr, target_sr=sample_rate)
        elif rest and rest < w / 2:
            yield start / src_sr, resample(np.concatenate([prev, block]), orig_sr=src_sr, target_sr=sample_rate)
        else:
            yield start / src_sr, resample(prev, orig_sr=src_sr, target_sr=sample_rate)
            if rest:
                tail = np.concatenate([prev[rest:], block])
                yield (start + rest) / src_sr, resample(tail, orig_sr=src_sr, target_sr=sample_rate)
