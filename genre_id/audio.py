"""Audio decoding: any supported file, stream or array to mono float32 samples at one rate.

Decoding goes through libsndfile (``soundfile``), which reads wav, flac, ogg
(vorbis and opus), mp3 and au among others.  What libsndfile cannot read goes
to FFmpeg through PyAV, imported only then: m4a/mp4 (AAC, ALAC), .aac (ADTS),
.wma, .webm, and the audio track of mp4/mkv video.  Resampling goes through
soxr, librosa's default resampler.  Long inputs are read block by block
(:func:`iter_windows`), so the memory needed does not grow with their length.

Inputs are paths, or bytes and binary streams (stdin) through
:func:`open_stream`; in-memory samples are validated by :func:`to_mono` and
:func:`check_samples`.

Every failure is raised as :class:`~genre_id.errors.AudioError` with a one-line
message naming the input and the problem: a missing, unreadable or empty file,
a format neither decoder recognises, a file without an audio track, a sample
rate outside :data:`MIN_SAMPLE_RATE`..:data:`MAX_SAMPLE_RATE`, a truncated
file (its header promises more audio than it holds), corrupt audio data, NaN
or infinite samples, samples of a type or shape that is not audio.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, AudioTooShortError
from .files import PathLike
from .textsafe import one_line

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "MAX_CHANNELS",
    "MAX_STREAM_BYTES",
    "AudioInfo",
    "AudioStream",
    "open_stdin",
    "open_stream",
    "info",
    "load",
    "to_mono",
    "resample",
    "check_samples",
    "window_spans",
    "iter_windows",
]

#: File name endings the project accepts as audio (case-insensitive): those
#: libsndfile reads, then those read through FFmpeg (PyAV), video included.
SUPPORTED_EXTENSIONS = (
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".au", ".snd", ".aiff", ".aif", ".caf",
    ".m4a", ".m4b", ".mp4", ".mov", ".aac", ".wma", ".asf", ".webm", ".mka", ".mkv",
)

#: Sample rates (Hz) a file may have.  Below 1 kHz there is no music to judge,
#: and a tiny file claiming a rate of a few Hz would be hours of "audio".
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768000

#: The most channels an in-memory array may have (7.1 surround is 8).  Files
#: may have more: their layout is stated by their header.
MAX_CHANNELS = 8

#: The most bytes :func:`open_stream` accepts (2 GiB: over three hours of
#: 16-bit stereo WAV at 44.1 kHz, days of compressed audio).
MAX_STREAM_BYTES = 2 << 30

#: Streams up to this size are held in memory; larger ones are spooled to an
#: anonymous temporary file, so reading stdin needs little memory whatever its size.
_SPOOL_IN_MEMORY = 32 << 20
_SPOOL_CHUNK = 1 << 20

#: Samples (frames times channels) decoded per read, so that a header claiming
#: an absurd length or channel count cannot make one read allocate gigabytes.
_CHUNK_SAMPLES = 1 << 20

#: FFmpeg demuxers the fallback may use.  Others (playlists such as HLS, which
#: open further files or URLs; images; subtitles) are refused.
_FFMPEG_DEMUXERS = "mov,matroska,asf,aac,ogg,mp3,wav,w64,flac,aiff,au,caf,ac3,eac3,wv,ape,tta,amr"
#: Bytes FFmpeg may read while it looks for the audio track when opening a file: a file of zeros
#: (or of noise) with an audio name is otherwise read to its end, however large.
PROBE_LIMIT_BYTES = 32 << 20
#: Demuxers whose stated duration is exact (not estimated from the bit rate),
#: so a file decoding to clearly less is truncated.
_EXACT_DURATION = ("mov", "matroska", "asf")

_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError, MemoryError, OverflowError)
_MAX_NAME = 200


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says about it."""

    path: str
    sample_rate: int  #: samples per second of the file, in Hz
    channels: int
    frames: int  #: samples per channel as the header claims them
    format: str  #: container name: libsndfile's (``"WAV"``, ``"MP3"``) or FFmpeg's (``"MOV"``, ``"MATROSKA"``)

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
    return _one_line(text).rstrip(".")


def _describe_av(exc: BaseException) -> str:
    """FFmpeg's explanation without the file name PyAV appends."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return _one_line(str(text)).rstrip(".")


def _one_line(text: str) -> str:
    """A library's message or a stream's name as one line of at most :data:`_MAX_NAME` characters."""
    return one_line(text, controls="space", max_chars=_MAX_NAME)


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


# --- inputs: paths and streams -------------------------------------------------------------------


class AudioStream(contextlib.AbstractContextManager):
    """Encoded audio held in memory or in an anonymous temporary file (see :func:`open_stream`).

    :func:`load`, :func:`info` and :func:`iter_windows` accept it in place of
    a path, one at a time; messages name it by :attr:`name`.  Close it (or use
    it as a context manager) to free the memory or the temporary file.
    """

    def __init__(self, file: IO[bytes], *, name: str, size: int) -> None:
        self._file = file
        self.name = name  #: what messages call it, e.g. ``"<stdin>"``
        self.size = size  #: bytes held

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"AudioStream(name={self.name!r}, size={self.size})"

    def close(self) -> None:
        self._file.close()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rewound(self) -> IO[bytes]:
        if self._file.closed:
            raise AudioError(f"{self.name}: the stream is closed")
        self._file.seek(0)
        return self._file


def _stream_name(source: Any) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    try:
        if source.fileno() == 0:
            return "<stdin>"
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    name = getattr(source, "name", None)
    return _one_line(name) if isinstance(name, str) and name else "<stream>"


def open_stdin() -> "AudioStream":
    """Standard input as an :class:`AudioStream` named ``<stdin>`` (read to its end now).

    Raises :class:`AudioError` when the program was started without one (``<&-``).
    """
    if sys.stdin is None:
        raise AudioError("<stdin>: standard input is closed")
    return open_stream(sys.stdin.buffer, name="<stdin>")


def open_stream(
    source: bytes | bytearray | memoryview | IO[bytes],
    *,
    name: str | None = None,
    max_bytes: int = MAX_STREAM_BYTES,
) -> AudioStream:
    """Take encoded audio from ``bytes`` or a binary stream (such as ``sys.stdin.buffer``) for decoding.

    A stream is read to its end now, in chunks, into memory up to 32 MiB and
    beyond that into an anonymous temporary file (deleted when closed, even on
    a crash), so a pipe needs little memory however long it is; decoding then
    needs to seek, which most containers (mp4, wav) require.  Inputs larger
    than ``max_bytes`` (:data:`MAX_STREAM_BYTES`, 2 GiB) are refused without
    reading further.  ``name`` is what messages call the input (one line,
    at most 200 characters); by default ``"<bytes>"``, ``"<stdin>"``, the
    stream's file name, or ``"<stream>"``.  Messages never quote the data.
    """
    label = _one_line(name) if isinstance(name, str) and name.strip() else _stream_name(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = memoryview(source).cast("B") if not isinstance(source, bytes) else source
        size = len(data)
        if size == 0:
            raise AudioError(f"{label}: input is empty")
        if size > max_bytes:
            raise AudioError(f"{label}: input is larger than the limit of {_size(max_bytes)}")
        return AudioStream(io.BytesIO(data), name=label, size=size)
    if not callable(getattr(source, "read", None)):
        raise AudioError(f"{label}: cannot read audio from a {type(source).__name__}; "
                         "pass bytes or a binary stream")
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
    size = 0
    try:
        while True:
            try:
                chunk = source.read(min(_SPOOL_CHUNK, max_bytes + 1 - size))
            except (OSError, ValueError) as exc:
                raise AudioError(f"{label}: cannot read the input ({_describe_av(exc)})") from None
            if not chunk:
                break
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise AudioError(f"{label}: the stream gives {type(chunk).__name__}, not bytes; "
                                 "open it in binary mode")
            size += len(chunk)
            if size > max_bytes:
                raise AudioError(f"{label}: input is larger than the limit of {_size(max_bytes)}")
            spool.write(chunk)
        if size == 0:
            raise AudioError(f"{label}: input is empty")
    except OSError as exc:  # the temporary file cannot be written (disk full)
        spool.close()
        raise AudioError(f"{label}: cannot hold the input ({_describe_av(exc)})") from None
    except BaseException:
        spool.close()
        raise
    return AudioStream(spool, name=label, size=size)


def _size(n: int) -> str:
    return f"{n / 2**30:g} GiB" if n >= 2**30 else f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


def _check_path(path: PathLike) -> Path:
    try:
        p = Path(os.fsdecode(path) if isinstance(path, bytes) else path)
    except TypeError:
        raise AudioError(f"{_one_line(repr(path))}: not a file path") from None
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


# --- decoders: libsndfile, then FFmpeg -----------------------------------------------------------

# libsndfile's log notes where a header's data size disagrees with the file,
# e.g. "data : 100000000 (should be 441000)" (WAV), "Data Size : ..." (AU),
# "SSND : ..." (AIFF).
_SIZE_NOTE = re.compile(r"^\s*(?:data|Data Size|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMING_SIZE = 0x7FFFF000  # sizes from here up are placeholders written by streaming encoders


def _check_rate(sr: int, channels: int, name: str) -> None:
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{name}: sample rate {sr} Hz is not supported (from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)"
        )
    if channels < 1:
        raise AudioError(f"{name}: the header declares {channels} channels")


def _check_header(f: sf.SoundFile, name: str) -> None:
    """Refuse what the header already shows to be unusable."""
    _check_rate(int(f.samplerate), int(f.channels), name)
    try:
        log = str(f.extra_info)
    except _ERRORS:
        return
    for claimed, actual in _SIZE_NOTE.findall(log):
        if int(actual) < int(claimed) < _STREAMING_SIZE:
            raise AudioError(
                f"{name}: file is truncated (its header promises {int(claimed)} bytes of audio data, "
                f"the file holds {int(actual)})"
            )
    if f.format == "OGG" and "end-of-stream" in log.lower():
        raise AudioError(f"{name}: file is truncated (the Ogg stream stops without its end-of-stream mark)")


def _mp3_length_is_exact(fh: IO[bytes]) -> bool:
    """Whether an MP3 carries a Xing, Info or VBRI frame, whose frame count libsndfile reports.

    Without one, libsndfile estimates the length from the file size and the
    first frame's bit rate, which may be far off for valid files.  The
    stream's position is left where it was.
    """
    try:
        pos = fh.tell()
        try:
            fh.seek(0)
            head = fh.read(10)
            skip = 0
            if head[:3] == b"ID3" and len(head) == 10:  # skip an ID3v2 tag
                skip = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
            fh.seek(skip)
            first = fh.read(4096)
        finally:
            fh.seek(pos)
    except (OSError, ValueError):
        return False
    return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))


class _SndfileReader:
    """Mono blocks from libsndfile."""

    def __init__(self, f: sf.SoundFile, name: str, exact: bool) -> None:
        self._f, self.name = f, name
        self.sample_rate, self.channels = int(f.samplerate), int(f.channels)
        self.format = str(f.format)
        self.frames = int(max(f.frames, 0))  #: as the header claims
        self.exact = exact  #: whether :attr:`frames` is stated, not estimated

    def read(self, frames: int) -> np.ndarray:
        """Up to ``frames`` frames mixed to mono (fewer only at the end), in chunks of bounded size."""
        step = max(1, _CHUNK_SAMPLES // max(1, self.channels))
        parts: list[np.ndarray] = []
        got = 0
        try:
            with _quiet_stderr():
                while got < frames:
                    want = min(step, frames - got)
                    chunk = self._f.read(want, dtype="float32", always_2d=True)
                    if chunk.shape[0]:
                        parts.append(_mix(check_samples(chunk, name=self.name)))
                        got += chunk.shape[0]
                    if chunk.shape[0] < want:
                        break
        except _ERRORS as exc:
            raise AudioError(f"{self.name}: audio data is corrupt or truncated ({_describe(exc)})") from None
        return _join(parts)

    def skip(self, frames: int) -> None:
        try:
            self._f.seek(frames)
        except _ERRORS as exc:
            raise AudioError(f"{self.name}: cannot seek to {frames / self.sample_rate:.2f} s "
                             f"({_describe(exc)})") from None

    def close(self) -> None:
        self._f.close()


def _import_av() -> Any:
    """PyAV, imported on first use.  Its FFmpeg log stays off (PyAV's default), so nothing reaches stderr."""
    import av  # noqa: PLC0415 - deliberately lazy: wav/flac never pay for FFmpeg

    return av


def _pcm_dtype_scale(dtype: np.dtype) -> tuple[float, float] | None:
    """``(offset, scale)`` mapping integer PCM of ``dtype`` onto -1..1: ``(x - offset) * scale``."""
    if dtype.kind == "i":
        return 0.0, 2.0 ** (1 - 8 * dtype.itemsize)
    if dtype.kind == "u":
        half = 2.0 ** (8 * dtype.itemsize - 1)
        return half, 1.0 / half
    return None


#: Skips of at least this many seconds seek in the container instead of decoding what they pass.
SEEK_MIN_SECONDS = 10.0
#: How far before its target a seek lands (s): frames decoded from there settle the decoder first.
SEEK_PREROLL_SECONDS = 1.0

#: numpy types of FFmpeg's sample formats (planar ones end in "p").
_AV_SAMPLE_TYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64,
                    "flt": np.float32, "dbl": np.float64}


class _FFmpegReader:
    """Mono blocks from FFmpeg (PyAV), decoded packet by packet."""

    def __init__(self, av: Any, container: Any, name: str) -> None:
        self._av, self._c, self.name = av, container, name
        streams = container.streams.audio
        if not streams:
            raise AudioError(f"{name}: has no audio track")
        self._s = s = self._first_with_audio(streams)
        ctx = s.codec_context
        if ctx is None:
            raise AudioError(f"{name}: not a readable audio file (no decoder for its audio codec)")
        self.sample_rate, self.channels = int(ctx.sample_rate or 0), int(ctx.channels or 0)
        _check_rate(self.sample_rate, self.channels, name)
        demuxer = container.format.name.split(",")[0]
        self.format = demuxer.upper()
        seconds, stated = self._duration()
        self.frames = int(round(seconds * self.sample_rate))
        self.exact = stated and demuxer in _EXACT_DURATION
        self._pending: list[np.ndarray] = []
        self._blocks = self._decode()
        self._started = False  # whether anything was decoded yet (a seek is tried only before)

    def _first_with_audio(self, streams: Any) -> Any:
        """The first audio track whose stated length is not zero (an empty first track is skipped), else the first."""
        for s in streams:
            self._s = s
            seconds, stated = self._duration()
            if not stated or seconds > 0:
                return s
        return streams[0]

    def _duration(self) -> tuple[float, bool]:
        """Seconds of this audio track and whether the container states them for this track."""
        s, c = self._s, self._c
        tag = s.metadata.get("DURATION") or s.metadata.get("duration")  # Matroska's per-track tag: this track's own
        m = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", str(tag or "").strip())
        if m:
            return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]), True
        if s.duration and s.time_base:
            return float(s.duration * s.time_base), True
        if c.duration:
            # The container's length is the longest track's: this track's only when it is alone.
            return c.duration / 1e6, len(c.streams) == 1
        return 0.0, False

    def _decode(self, *, timed: bool = False) -> Iterator[Any]:
        """Mono blocks, frame by frame; ``timed``: ``(first frame index or None, block)`` pairs."""
        first = float(self._s.start_time * self._s.time_base) if timed else 0.0
        for packet in self._c.demux(self._s):
            for frame in packet.decode():
                if frame.sample_rate != self.sample_rate:
                    raise AudioError(f"{self.name}: sample rate changes from {self.sample_rate} Hz "
                                     f"to {frame.sample_rate} Hz within the track")
                if not timed:
                    yield self._mono(frame)
                else:
                    at = None if frame.time is None else int(round((frame.time - first) * self.sample_rate))
                    yield at, self._mono(frame)

    def _mono(self, frame: Any) -> np.ndarray:
        """A decoded frame's samples mixed to mono float32 (integer formats scaled by their range)."""
        n, channels = frame.samples, frame.layout.nb_channels
        dtype = _AV_SAMPLE_TYPES.get(frame.format.name.rstrip("p"))
        if dtype is None:
            raise AudioError(f"{self.name}: the decoder gives samples of an unknown format ({frame.format.name})")
        if not frame.format.is_planar:  # interleaved
            return _mix(_pcm_to_float(np.frombuffer(frame.planes[0], dtype, count=n * channels).reshape(n, channels)))
        mono = np.array(_pcm_to_float(np.frombuffer(frame.planes[0], dtype, count=n)))
        for plane in frame.planes[1:channels]:
            mono += _pcm_to_float(np.frombuffer(plane, dtype, count=n))
        if channels > 1:
            mono *= np.float32(1.0 / channels)
        return mono

    def read(self, frames: int) -> np.ndarray:
        """Up to ``frames`` frames mixed to mono (fewer only at the end)."""
        self._started = True
        got = sum(b.size for b in self._pending)
        try:
            while got < frames:
                block = next(self._blocks, None)
                if block is None:
                    break
                self._pending.append(block)
                got += block.size
        except (self._av.FFmpegError, *_ERRORS) as exc:
            raise AudioError(f"{self.name}: audio data is corrupt or truncated ({_describe_av(exc)})") from None
        out = _join(self._pending)
        self._pending = [out[frames:].copy()] if out.size > frames else []  # a copy: ``out`` is not kept
        return check_samples(out[:frames], name=self.name)

    def skip(self, frames: int) -> None:
        """Move ``frames`` frames on, before anything is read.

        A long skip seeks in the container to a little before the target and
        drops the decoded frames before it, placed by their timestamps (MP4,
        ASF); where the container cannot seek or its timestamps cannot place
        single samples (Matroska and WebM count milliseconds), every frame up
        to the target is decoded and dropped.
        """
        if not self._started and frames >= SEEK_MIN_SECONDS * self.sample_rate and self._seek(frames):
            return
        self._started = True
        while frames > 0:
            n = self.read(min(frames, _CHUNK_SAMPLES)).size
            if n == 0:
                return
            frames -= n

    def _seek(self, frames: int) -> bool:
        """Seek to frame ``frames`` of the track; False (back at the start) where that cannot be done exactly."""
        s, av = self._s, self._av
        base, start = s.time_base, s.start_time
        if not base or start is None or base * self.sample_rate > 1:
            return False  # no timestamps, or too coarse to place single samples (Matroska's milliseconds)
        first = float(start * base)  # the first sample's time: frame 0
        target = frames / self.sample_rate
        try:
            self._c.seek(int((first + max(0.0, target - SEEK_PREROLL_SECONDS)) / base), stream=s, backward=True)
            blocks = self._decode(timed=True)
            for begins, block in blocks:
                if begins is None or begins > frames:  # no timestamp, or past the target: not exact
                    break
                if begins + block.size > frames:
                    self._pending = [block[frames - begins:]]
                    self._blocks = (b for _, b in blocks)
                    self._started = True
                    return True
            else:
                self._blocks, self._started = iter(()), True  # the target is past the end
                return True
            self._c.seek(int(first / base), stream=s, backward=True)
        except (av.FFmpegError, *_ERRORS) as exc:
            raise AudioError(f"{self.name}: cannot seek to {target:.2f} s ({_describe_av(exc)})") from None
        self._blocks = self._decode()
        return False

    def close(self) -> None:
        self._c.close()


def _open_ffmpeg(fh: IO[bytes], name: str) -> _FFmpegReader | None:
    """FFmpeg's reader of ``fh``, or None when PyAV is missing or no allowed demuxer recognises it."""
    try:
        av = _import_av()
    except ImportError:
        return None
    probe = _Bounded(fh, PROBE_LIMIT_BYTES)
    try:
        fh.seek(0)
        container = av.open(probe, "r", container_options={"format_whitelist": _FFMPEG_DEMUXERS})
    except (av.FFmpegError, *_ERRORS):
        if probe.exceeded:
            raise AudioError(f"{name}: not a readable audio file (no audio track found in "
                             f"{PROBE_LIMIT_BYTES >> 20} MB of it)") from None
        try:
            fh.seek(4)
            mp4 = fh.read(4) == b"ftyp"
        except (OSError, ValueError):
            mp4 = False
        if mp4:  # the index of an MP4 file usually comes last: without it nothing can be found
            raise AudioError(f"{name}: file is truncated or incomplete (an MP4 file without its moov index)") from None
        return None
    probe.limit = None  # found: the decoder reads on as far as the track goes
    try:
        return _FFmpegReader(av, container, name)
    except BaseException:
        container.close()
        raise


class _Bounded:
    """``fh`` for FFmpeg, refusing (OSError) to read more than ``limit`` bytes in all while ``limit`` is set.

    Bytes read count, not the position: an MP4 file's index may sit at its
    end, and FFmpeg seeks there to read it.
    """

    def __init__(self, fh: IO[bytes], limit: int | None) -> None:
        self._fh, self.limit, self.exceeded, self.read_bytes = fh, limit, False, 0
        if isinstance(getattr(fh, "name", None), str):
            self.name = fh.name  # FFmpeg guesses from the extension too, as with the file itself

    def read(self, n: int = -1) -> bytes:
        if self.limit is not None:
            room = self.limit - self.read_bytes
            if room <= 0:
                self.exceeded = True
                raise OSError("read limit reached")
            n = room if n is None or n < 0 else min(n, room)
        data = self._fh.read(n)
        self.read_bytes += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def seekable(self) -> bool:
        return self._fh.seekable()


@contextlib.contextmanager
def _open(source: PathLike | AudioStream) -> Iterator[_SndfileReader | _FFmpegReader]:
    """The input's decoder: libsndfile, or FFmpeg for what libsndfile cannot open."""
    with contextlib.ExitStack() as stack:
        if isinstance(source, AudioStream):
            name, fh = source.name, source._rewound()
            shown, target = name, fh
        else:
            p = _check_path(source)
            name, fh = os.fsdecode(os.fspath(source)), None  # read errors name the path as given
            shown = str(p)
            target = shown if os.name == "nt" else os.fsencode(p)  # bytes: names that are not UTF-8 open too
        try:
            with _quiet_stderr():
                f = sf.SoundFile(target)
        except _ERRORS as exc:
            problem = _describe(exc)
            if fh is None:
                try:
                    fh = stack.enter_context(open(p, "rb"))  # a file object: FFmpeg never reads the name as a URL
                except OSError as err:
                    raise AudioError(f"{p}: cannot access the file ({err.strerror or err})") from None
            try:
                reader = _open_ffmpeg(fh, shown)
            except AudioError:
                if "channel" in problem.lower():  # libsndfile said why (e.g. 65535 channels): FFmpeg only sees 0
                    raise AudioError(f"{shown}: not a readable audio file ({problem})") from None
                raise
            if reader is None:
                raise AudioError(f"{shown}: not a readable audio file ({problem})") from None
            reader.name = name
        else:
            stack.callback(f.close)
            _check_header(f, shown)
            exact = f.format != "MP3"
            if not exact:
                if fh is None:
                    try:
                        with open(p, "rb") as head:
                            exact = _mp3_length_is_exact(head)
                    except OSError:
                        exact = False
                else:
                    exact = _mp3_length_is_exact(fh)
            reader = _SndfileReader(f, name, exact)
        stack.callback(reader.close)
        yield reader


def _check_complete(reader: _SndfileReader | _FFmpegReader, decoded_to: int) -> None:
    """Refuse an input whose header promises clearly more frames than could be decoded (it is truncated)."""
    claimed, sr = reader.frames, reader.sample_rate
    if not reader.exact:
        return
    if decoded_to - claimed > max(0.1 * sr, 0.01 * claimed) and reader.format in ("MATROSKA", "MOV"):
        # e.g. a Matroska header declaring 1e12 Hz, which FFmpeg replaces by 8 kHz: the samples' times are wrong
        raise AudioError(
            f"{reader.name}: the header's sample rate is wrong or unusable (the track states {claimed / sr:.2f} s; "
            f"its samples last {decoded_to / sr:.2f} s at the {sr} Hz the decoder uses)"
        )
    if claimed - decoded_to <= max(0.1 * sr, 0.01 * claimed):
        return
    raise AudioError(
        f"{reader.name}: file is truncated (its header promises {claimed / sr:.2f} s of audio, "
        f"only {decoded_to / sr:.2f} s could be decoded)"
    )


def info(path: PathLike | AudioStream) -> AudioInfo:
    """Read an input's header: sample rate, channels, length and container."""
    with _open(path) as r:
        return AudioInfo(r.name, r.sample_rate, r.channels, r.frames, r.format)


# --- samples -------------------------------------------------------------------------------------


def _pcm_to_float(a: np.ndarray) -> np.ndarray:
    """Numbers as float32; integer PCM scaled by its type's range onto -1..1."""
    scale = _pcm_dtype_scale(a.dtype)
    if scale is None:
        return np.asarray(a, dtype=np.float32)
    offset, factor = scale
    out = a.astype(np.float32)
    if offset:
        out -= np.float32(offset)
    out *= np.float32(factor)
    return out


def _as_float32(samples: Any, name: str) -> np.ndarray:
    """Samples as a float32 array, refusing what is not audio.

    Float arrays and sequences of numbers are taken as they are.  Integer
    numpy arrays are PCM, scaled by their type's range: signed ``x / 2**(bits-1)``
    (int16 / 32768, int32 / 2**31), unsigned ``(x - 2**(bits-1)) / 2**(bits-1)``
    (uint8: (x - 128) / 128).  Booleans, masked arrays, complex numbers,
    text, Python objects, dates and records are refused.
    """
    if isinstance(samples, np.ndarray) and samples.dtype == np.float32 and type(samples) is np.ndarray:
        return samples
    if isinstance(samples, np.ma.MaskedArray):
        raise AudioError(f"{name}: masked arrays are not audio; fill the masked samples first (.filled(0))")
    is_array = isinstance(samples, np.ndarray)
    if not is_array:
        try:
            samples = np.asarray(samples)
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. ragged nested lists
            raise AudioError(f"{name}: samples must be numbers ({_one_line(str(exc))})") from None
    kind = samples.dtype.kind
    if kind == "c":
        raise AudioError(f"{name}: samples must be real numbers, not complex")
    if kind == "b":
        raise AudioError(f"{name}: samples must be numbers, not booleans")
    if kind not in "iuf":
        what = {"U": "text", "S": "bytes", "O": "Python objects", "M": "dates", "m": "time spans"}.get(kind, "records")
        raise AudioError(f"{name}: samples must be numbers, not {what} (dtype {samples.dtype})")
    if kind in "iu" and not is_array:
        samples = samples.astype(np.float64)  # plain Python numbers are values, not PCM of some width
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range becomes inf, refused later
        return _pcm_to_float(np.asarray(samples))


def _mix(frames: np.ndarray) -> np.ndarray:
    """Average the channels of decoded ``(n, channels)`` float32 frames."""
    return frames[:, 0] if frames.shape[1] == 1 else frames.mean(axis=1, dtype=np.float32)


def _join(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def to_mono(samples: Any, *, name: str = "audio") -> np.ndarray:
    """Validate in-memory ``samples`` and average their channels to mono float32.

    Layouts: ``(n,)``; ``(n, channels)`` (soundfile's); or ``(channels, n)``
    (librosa's ``mono=False``).  The channels axis is the one of at most
    :data:`MAX_CHANNELS` (8) entries while the other is longer; a shape where
    both or neither are that small, such as ``(2, 2)`` or ``(100, 200)``, is
    refused.  Integer arrays are PCM scaled by their type's range (see
    :func:`check_samples`); non-numeric, boolean and masked arrays are refused.
    """
    samples = _as_float32(samples, name)
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise AudioError(f"{name}: samples must have shape (n,), (n, channels) or (channels, n), "
                         f"not {samples.shape}")
    rows, cols = samples.shape
    if cols == 0:
        raise AudioError(f"{name}: samples of shape {samples.shape} have no channels")
    if rows == 0:
        return np.zeros(0, dtype=np.float32)
    if cols <= MAX_CHANNELS < rows:
        return _mix(samples)
    if rows <= MAX_CHANNELS < cols:
        return _mix(samples.T)
    expected = (f"expected (n,), (n, channels) or (channels, n) with 1 to {MAX_CHANNELS} channels "
                f"and more samples than channels")
    if rows <= MAX_CHANNELS:
        raise AudioError(f"{name}: cannot tell channels from samples in shape {samples.shape}; {expected}")
    raise AudioError(f"{name}: samples of shape {samples.shape} have more than {MAX_CHANNELS} channels; {expected}")


def resample(samples: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample mono ``samples`` from ``orig_sr`` to ``target_sr`` Hz (soxr, high quality)."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(samples, dtype=np.float32)
    try:
        out = soxr.resample(np.ascontiguousarray(samples, dtype=np.float32), orig_sr, target_sr, quality="HQ")
    except (ValueError, TypeError, RuntimeError, MemoryError, OverflowError) as exc:
        raise AudioError(f"cannot resample from {orig_sr} Hz to {target_sr} Hz ({exc})") from None
    return np.asarray(out, dtype=np.float32)


def check_samples(samples: Any, *, name: str = "audio") -> np.ndarray:
    """Samples as float32, refusing NaN, infinity (or beyond float32's range) and what is not numbers.

    Integer numpy arrays are PCM scaled by their type's range onto -1..1:
    signed ``x / 2**(bits-1)`` (int8 / 128, int16 / 32768, int32 / 2**31,
    int64 / 2**63), unsigned ``(x - 2**(bits-1)) / 2**(bits-1)`` (uint8:
    ``(x - 128) / 128``).  Floats, and sequences of plain numbers, are taken as
    they are.  Booleans, masked arrays, complex numbers, text, objects, dates
    and records are refused.  The shape is kept.
    """
    samples = _as_float32(samples, name)
    if samples.size and not np.isfinite(samples).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    return samples


def load(
    path: PathLike | AudioStream,
    *,
    sample_rate: int | None = None,
    offset: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode ``path`` (a file, or an :class:`AudioStream`) to mono float32 samples.

    Parameters
    ----------
    path
        The input.
    sample_rate
        Hz to resample to; ``None`` keeps the input's own rate.
    offset, duration
        The part of the input to read (s); the whole input by default.

    Returns
    -------
    y : np.ndarray, shape ``(n,)``, float32
        The samples, channels averaged.
    sr : int
        Their rate in Hz (``sample_rate``, or the input's own).
    """
    with _open(path) as r:
        sr = r.sample_rate
        first = 0
        if offset > 0:
            first = int(round(offset * sr))
            r.skip(first)
        frames = -1 if duration is None else int(round(duration * sr))
        if frames < 0:
            parts = []
            while True:
                block = r.read(_CHUNK_SAMPLES)
                parts.append(block)
                if block.size < _CHUNK_SAMPLES:
                    break
            y = _join(parts)
        else:
            y = r.read(frames)
        if frames < 0 or y.size < frames:  # read to the end
            _check_complete(r, first + y.size)
    if sample_rate is None:
        return y, sr
    return resample(y, orig_sr=sr, target_sr=sample_rate), int(sample_rate)


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
    path: PathLike | AudioStream,
    *,
    sample_rate: int,
    window_seconds: float,
    min_seconds: float,
) -> Iterator[tuple[float, np.ndarray]]:
    """Decode ``path`` (a file, or an :class:`AudioStream`) window by window: yield ``(start_seconds, samples)``.

    Samples are mono float32 at ``sample_rate`` Hz.  Windows follow
    :func:`window_spans`; the input is read sequentially, and at most two
    windows of audio are held at once, so an hour-long file needs no more
    memory than a 30-second one.  Raises :class:`AudioTooShortError` when the
    whole input is shorter than ``min_seconds``, and :class:`AudioError` when
    it is truncated (found once the end is reached, after the windows before).
    """
    with _open(path) as r:
        src_sr, name = r.sample_rate, r.name
        w = max(1, int(round(window_seconds * src_sr)))
        prev: np.ndarray | None = None  # the last whole window read, not yet yielded
        start = 0  # its first sample
        while True:
            block = r.read(w)
            if block.size == w:
                if prev is not None:
                    yield start / src_sr, resample(prev, orig_sr=src_sr, target_sr=sample_rate)
                    start += w
                prev = block
                continue
            break  # a partial (possibly empty) block: the end of the input
        rest = block.size
        _check_complete(r, rest if prev is None else start + w + rest)
        if prev is None:
            if rest == 0:
                raise AudioTooShortError(f"{name}: no audio samples could be decoded")
            if rest < min_seconds * src_sr:
                raise AudioTooShortError(
                    f"{name}: audio is {rest / src_sr:.2f} s long; at least {min_seconds:g} s is needed"
                )
            yield 0.0, resample(block, orig_sr=src_sr, target_sr=sample_rate)
        elif rest and rest < w / 2:
            yield start / src_sr, resample(np.concatenate([prev, block]), orig_sr=src_sr, target_sr=sample_rate)
        else:
            yield start / src_sr, resample(prev, orig_sr=src_sr, target_sr=sample_rate)
            if rest:
                tail = np.concatenate([prev[rest:], block])
                yield (start + rest) / src_sr, resample(tail, orig_sr=src_sr, target_sr=sample_rate)
