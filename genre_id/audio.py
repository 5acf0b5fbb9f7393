"""Audio decoding: any supported file to mono float32 samples at one rate.

Decoding goes through libsndfile (``soundfile``), which reads wav, flac, ogg,
mp3 and au among others; resampling goes through soxr, librosa's default
resampler.  Long files are read block by block (:func:`iter_windows`), so the
memory needed does not grow with the file's length.

Every failure is raised as :class:`~genre_id.errors.AudioError` with a message
naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, AudioTooShortError

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "AudioInfo",
    "info",
    "load",
    "to_mono",
    "resample",
    "check_samples",
    "window_spans",
    "iter_windows",
]

PathLike = Union[str, "os.PathLike[str]"]

#: File name endings the project accepts as audio (case-insensitive).
SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".au", ".snd", ".aiff", ".aif")


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
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if p.is_dir():
        raise AudioError(f"{p}: is a directory, not an audio file")
    if not os.access(p, os.R_OK):
        raise AudioError(f"{p}: permission denied")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: file is empty")
    return p


def _open(path: PathLike) -> sf.SoundFile:
    p = _check_path(path)
    try:
        with _quiet_stderr():
            return sf.SoundFile(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        raise AudioError(f"{p}: not a readable audio file ({_describe(exc)})") from None


def info(path: PathLike) -> AudioInfo:
    """Read a file's header: sample rate, channels, length and container."""
    with _open(path) as f:
        return AudioInfo(str(path), int(f.samplerate), int(f.channels), int(max(f.frames, 0)), str(f.format))


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of ``samples`` (shape ``(n,)`` or ``(n, channels)``)."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise AudioError(f"samples must have shape (n,) or (n, channels), not {samples.shape}")
    return samples.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono ``samples`` from ``orig_sr`` to ``target_sr`` Hz (soxr, high quality)."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(samples, dtype=np.float32)
    out = soxr.resample(np.ascontiguousarray(samples, dtype=np.float32), orig_sr, target_sr, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def check_samples(samples: np.ndarray, *, name: str = "audio") -> np.ndarray:
    """Refuse samples that hold NaN or infinity; return them as float32."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.size and not np.isfinite(samples).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    return samples


def _read_block(f: sf.SoundFile, frames: int, path: PathLike) -> np.ndarray:
    try:
        with _quiet_stderr():
            block = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise AudioError(f"{path}: audio data is corrupt or truncated ({_describe(exc)})") from None
    return to_mono(block)


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
        if offset > 0:
            try:
                f.seek(int(round(offset * sr)))
            except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
                raise AudioError(f"{path}: cannot seek to {offset:.2f} s ({_describe(exc)})") from None
        frames = -1 if duration is None else int(round(duration * sr))
        y = _read_block(f, frames, path)
    y = check_samples(y, name=str(path))
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
    whole file is shorter than ``min_seconds``.
    """
    with _open(path) as f:
        src_sr = int(f.samplerate)
        w = int(round(window_seconds * src_sr))
        prev: np.ndarray | None = None  # the last whole window read, not yet yielded
        start = 0  # its first sample
        while True:
            block = check_samples(_read_block(f, w, path), name=str(path))
            if block.size == w:
                if prev is not None:
                    yield start / src_sr, resample(prev, orig_sr=src_sr, target_sr=sample_rate)
                    start += w
                prev = block
                continue
            break  # a partial (possibly empty) block: the end of the file
        rest = block.size
        if prev is None:
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
