"""From audio to a feature matrix: one row per analysis window.

Audio is cut into windows as long as the model's training clips
(:func:`genre_id.audio.window_spans`); each window gets one feature vector.
A window is judged only when it holds at least :data:`MIN_ACTIVE_SECONDS` of
active audio: 50 ms frames whose RMS level around the window's mean (so a
constant DC offset counts as silence) reaches :data:`SILENCE_RMS`.  Other
windows (silence, near-silence, a lone click, a fraction of a second of
music in a silent window) are marked silent and get no features: there is
no genre to name in them, and they never pull a file's answer.

:func:`extract_files` runs over many files on all cores, with a progress bar
and an optional on-disk cache; a file that cannot be read is reported in the
result and the others go on, even when a decoder crashes its worker process.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import audio
from .cache import FeatureCache, file_digest
from .config import MIN_ACTIVE_SECONDS, SILENCE_RMS, AnalysisConfig
from .errors import AudioError, AudioTooShortError, GenreIdError
from .features import DEFAULT_FEATURE_SET, FeatureSet, Features, get_feature_set
from .parallel import FileFailure, WorkerDiedError, map_ahead, map_files

__all__ = [
    "SILENCE_RMS",
    "MIN_ACTIVE_SECONDS",
    "PARALLEL_MIN_WINDOWS",
    "active_seconds",
    "WindowFeatures",
    "FileFailure",
    "extract_windows",
    "stream_windows",
    "excerpt_windows",
    "EXCERPT_POSITIONS",
    "EXCERPT_MIN_SECONDS",
    "extract_stream",
    "extract_file",
    "extract_samples",
    "extract_files",
]

_FRAME_SECONDS = 0.05
#: A file needs this many windows (4 minutes of 30 s windows) before its windows are spread over
#: processes: below it, starting them costs about what they save.
PARALLEL_MIN_WINDOWS = 8


def active_seconds(samples: np.ndarray, *, sr: int, silence_rms: float = SILENCE_RMS) -> float:
    """Seconds of ``samples`` (mono, at ``sr`` Hz) in 50 ms frames whose RMS around the mean reaches ``silence_rms``.

    NaN when the samples are not finite (that is not silence: the features then say what is wrong).
    """
    frame = max(1, int(round(_FRAME_SECONDS * sr)))
    n = len(samples) // frame
    if n == 0:
        return 0.0
    with np.errstate(all="ignore"):
        x = samples[: n * frame].astype(np.float64).reshape(n, frame)
        x -= x.mean()
        rms = np.sqrt(np.mean(x * x, axis=1))
    if not np.isfinite(rms).all():
        return float("nan")
    return float(np.count_nonzero(rms >= silence_rms)) * frame / sr


@dataclass(frozen=True)
class WindowFeatures:
    """Features of one recording, one row per window.

    ``starts`` and ``ends`` are in seconds; rows of ``silent`` windows are
    zeros and must not be classified.
    """

    starts: np.ndarray
    ends: np.ndarray
    values: np.ndarray
    silent: np.ndarray
    feature_set: str
    version: int

    @property
    def duration(self) -> float:
        """Seconds of audio analysed."""
        return float(self.ends.max()) if self.ends.size else 0.0

    def features(self) -> Features:
        """The rows of the non-silent windows, tagged with their feature set."""
        return Features(values=self.values[~self.silent], feature_set=self.feature_set, version=self.version)


def _recipe_errors() -> tuple[type[BaseException], ...]:
    """What a feature recipe raises on audio it cannot measure (other exceptions are bugs)."""
    errors: list[type[BaseException]] = [ValueError, ArithmeticError, MemoryError]
    if "librosa" in sys.modules:  # only the librosa engine (HPSS columns) raises librosa's errors; never import it
        try:
            from librosa.util.exceptions import LibrosaError

            errors.append(LibrosaError)
        except ImportError:  # pragma: no cover
            pass
    return tuple(errors)


def _window_features(samples: np.ndarray, feature_set: FeatureSet, name: str) -> np.ndarray:
    """One window's feature vector; odd audio that defeats the recipe is an :class:`AudioError`."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            # librosa's and numpy's numeric warnings on odd audio are not the user's business
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            values = np.asarray(feature_set.extract(samples).values, dtype=np.float64)
    except GenreIdError:
        raise
    except _recipe_errors() as exc:  # e.g. librosa's "Input must be finite" when huge samples overflow
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    else:
        if values.shape == (feature_set.n_features,) and np.isfinite(values).all():
            return values
        problem = "the features are not finite"
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    raise AudioError(f"{name}: features cannot be computed from this audio "
                     f"({problem}; sample peak {peak:.3g})")


def _window_row(window: tuple[float, np.ndarray], *, feature_set: FeatureSet | str, config: AnalysisConfig,
                name: str) -> tuple[float, float, bool, np.ndarray | None]:
    """One window's ``(start, end, silent, features)``: seconds, seconds, no genre to name here, the row (or None)."""
    fs = get_feature_set(feature_set)
    start, samples = window
    sr = config.sample_rate
    active = active_seconds(samples, sr=sr, silence_rms=config.silence_rms)
    quiet = active < min(config.min_active_seconds, 0.9 * len(samples) / sr)  # NaN is not silence
    return start, start + len(samples) / sr, quiet, None if quiet else _window_features(samples, fs, name)


def _check_config(fs: FeatureSet, config: AnalysisConfig) -> None:
    if config.sample_rate != fs.sample_rate:
        raise GenreIdError(f"the analysis rate ({config.sample_rate} Hz) is not the rate feature set "
                           f"'{fs.name}' is measured at ({fs.sample_rate} Hz)")


def extract_windows(
    windows: Iterable[tuple[float, np.ndarray]], *, feature_set: FeatureSet, config: AnalysisConfig,
    name: str = "audio", workers: int = 1,
) -> WindowFeatures:
    """Features of ``(start_seconds, samples)`` windows already at ``config.sample_rate``.

    Windows quieter than ``config``'s silence rule are marked silent and get
    no features.  ``name`` (the file's) starts the message of any error.  With ``workers``
    above 1 the windows are measured by that many local processes while this
    one decodes (:func:`genre_id.parallel.map_ahead`: a few windows in
    flight, so memory stays bounded); the result is the same.
    """
    _check_config(feature_set, config)
    if workers > 1:
        measure = partial(_window_row, feature_set=feature_set.name, config=config, name=name)
        try:
            rows = list(map_ahead(measure, windows, workers=workers))
        except WorkerDiedError as exc:
            raise AudioError(f"{name}: {exc}") from None
    else:
        rows = [_window_row(w, feature_set=feature_set, config=config, name=name) for w in windows]
    return WindowFeatures(
        starts=np.asarray([r[0] for r in rows], dtype=np.float64),
        ends=np.asarray([r[1] for r in rows], dtype=np.float64),
        values=(np.vstack([np.zeros(feature_set.n_features) if r[3] is None else r[3] for r in rows]).astype(np.float64)
                if rows else np.zeros((0, feature_set.n_features))),
        silent=np.asarray([r[2] for r in rows], dtype=bool),
        feature_set=feature_set.name,
        version=feature_set.version,
    )


def _sample_windows(
    samples: np.ndarray, *, window: int, min_samples: int, name: str, sr: int
) -> Iterator[tuple[float, np.ndarray]]:
    if samples.size < min_samples:
        raise AudioTooShortError(
            f"{name}: audio is {samples.size / sr:.2f} s long; at least {min_samples / sr:g} s is needed"
        )
    for start, end in audio.window_spans(samples.size, window):
        yield start / sr, samples[start:end]


def extract_samples(
    samples: np.ndarray,
    *,
    sample_rate: int,
    feature_set: str | FeatureSet = DEFAULT_FEATURE_SET,
    config: AnalysisConfig,
    name: str = "audio",
) -> WindowFeatures:
    """Window features of in-memory ``samples`` (shape ``(n,)`` or ``(n, channels)``) at ``sample_rate`` Hz,
    cut and judged as ``config`` says."""
    fs = get_feature_set(feature_set)
    _check_config(fs, config)
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise GenreIdError(f"{name}: sample_rate must be a positive whole number of Hz, not {sample_rate!r}")
    if not audio.MIN_SAMPLE_RATE <= sample_rate <= audio.MAX_SAMPLE_RATE:
        raise AudioError(f"{name}: sample rate {sample_rate} Hz is not supported "
                         f"(from {audio.MIN_SAMPLE_RATE} to {audio.MAX_SAMPLE_RATE} Hz)")
    mono = audio.check_samples(audio.to_mono(samples), name=name)
    mono = audio.resample(mono, orig_sr=int(sample_rate), target_sr=fs.sample_rate)
    windows = _sample_windows(
        mono,
        window=config.window_samples,
        min_samples=int(round(config.min_seconds * fs.sample_rate)),
        name=name,
        sr=fs.sample_rate,
    )
    return extract_windows(windows, feature_set=fs, config=config, name=name)


def _namespace(fs: FeatureSet, config: AnalysisConfig) -> str:
    """The cache's folder for ``fs`` and ``config``: every part's version counts (a combined set has none of its own)."""
    version = "+".join(str(m.version) for m in fs.members) if fs.members else str(fs.version)
    silence = "" if config.silence_rms == SILENCE_RMS else f"-s{config.silence_rms:g}"
    return (f"{fs.name}-v{version}-w{config.window_seconds:g}-m{config.min_seconds:g}"
            f"-a{config.min_active_seconds:g}{silence}")


def extract_file(
    path: str | os.PathLike[str],
    *,
    feature_set: str | FeatureSet = DEFAULT_FEATURE_SET,
    config: AnalysisConfig,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int = 1,
) -> WindowFeatures:
    """Window features of the audio file ``path``, decoded block by block and cut as ``config`` says.

    With ``cache_dir``, results are cached by the file's content; a cached
    entry is checked before use and recomputed if it is not sound.  With
    ``workers`` above 1, a file of at least :data:`PARALLEL_MIN_WINDOWS`
    windows has its windows measured by that many processes (a long
    recording on all cores); shorter ones are measured here.
    """
    fs = get_feature_set(feature_set)
    cache = digest = stamp = None
    if cache_dir is not None:
        cache = FeatureCache(cache_dir, namespace=_namespace(fs, config))
        try:
            if isinstance(path, (str, os.PathLike)) and os.path.isfile(path):  # a real file, not a pipe or a stream
                stamp = _stamp(path)
                digest = file_digest(path)
        except OSError:
            digest = None  # let the decoder name the problem
        entry = cache.get(digest) if digest else None
        if entry is not None and _entry_is_sound(entry, fs):
            return WindowFeatures(
                starts=entry["starts"], ends=entry["ends"], values=entry["values"], silent=entry["silent"],
                feature_set=fs.name, version=fs.version,
            )
    result = extract_stream(path, feature_set=fs, config=config, workers=workers)
    if cache is not None and digest:
        try:
            unchanged = _stamp(path) == stamp  # else the features may not be those of the digested bytes
        except OSError:
            unchanged = False
        if unchanged:
            try:
                cache.put(digest, starts=result.starts, ends=result.ends, values=result.values, silent=result.silent)
            except OSError:
                pass  # a cache that cannot be written (full disk, read-only) only costs time
    return result


def stream_windows(path: str | os.PathLike[str] | audio.AudioStream, *,
                   config: AnalysisConfig) -> Iterator[tuple[float, np.ndarray]]:
    """``(start_seconds, samples)`` windows of ``path`` as ``config`` cuts them (decoded block by block)."""
    return audio.iter_windows(path, sample_rate=config.sample_rate, window_seconds=config.window_seconds,
                              min_seconds=config.min_seconds)


#: Where :func:`excerpt_windows` takes its windows, as fractions of a recording's length.
EXCERPT_POSITIONS = (0.2, 0.5, 0.8)
#: Recordings shorter than this (s) are read whole even when excerpts are asked for: three
#: windows would cover most of them anyway.
EXCERPT_MIN_SECONDS = 120.0


def excerpt_windows(path: str | os.PathLike[str], *, config: AnalysisConfig, duration: float,
                    positions: Sequence[float] = EXCERPT_POSITIONS) -> Iterator[tuple[float, np.ndarray]]:
    """``(start_seconds, samples)``: one window of ``config`` centred on each of ``positions`` of ``path``.

    Each window is read by seeking in the file (``audio.load`` with an
    offset), not by decoding what comes before it.

    Parameters
    ----------
    path
        The recording.
    config
        The model's window length (s) and sample rate (Hz).
    duration
        The recording's length (s), e.g. from :func:`genre_id.audio.info`.
    positions
        Window centres as fractions of ``duration`` (0 to 1); windows are
        moved inside the recording where a centre is too near an end.
    """
    length = config.window_seconds
    for position in positions:
        start = max(0.0, min(duration * position - length / 2, duration - length))
        samples, _ = audio.load(path, sample_rate=config.sample_rate, offset=start, duration=length)
        yield start, samples


def extract_stream(
    path: str | os.PathLike[str] | audio.AudioStream,
    *,
    feature_set: FeatureSet,
    config: AnalysisConfig,
    workers: int = 1,
    windows: Iterable[tuple[float, np.ndarray]] | None = None,
) -> WindowFeatures:
    """Window features of ``path`` (a file or a stream), without a cache.

    ``windows`` are its decoded windows when the caller taps them on the way
    (e.g. to fingerprint the same samples); by default they are decoded here.
    """
    if windows is None:
        windows = stream_windows(path, config=config)
    if workers > 1 and not _long_file(path, config.window_seconds):
        workers = 1
    return extract_windows(windows, feature_set=feature_set, config=config, name=str(path), workers=workers)


def _long_file(path: str | os.PathLike[str] | audio.AudioStream, window_seconds: float) -> bool:
    """Whether ``path`` (a file, or a stream, rewound after) has a header promising at least
    :data:`PARALLEL_MIN_WINDOWS` windows."""
    if not isinstance(path, (str, os.PathLike, audio.AudioStream)):
        return False
    try:
        return audio.info(path).duration >= PARALLEL_MIN_WINDOWS * window_seconds
    except GenreIdError:
        return False  # the decoder names the problem


def _stamp(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino


def _entry_is_sound(entry: dict[str, np.ndarray], fs: FeatureSet) -> bool:
    """Whether a cache entry has the shape and contents of a :class:`WindowFeatures` of ``fs``."""
    try:
        starts, ends, values, silent = (entry[k] for k in ("starts", "ends", "values", "silent"))
    except KeyError:
        return False
    try:
        n = len(values)
        return (
            n > 0
            and values.shape == (n, fs.n_features)
            and starts.shape == ends.shape == silent.shape == (n,)
            and silent.dtype == bool
            and all(np.issubdtype(a.dtype, np.floating) for a in (starts, ends, values))
            and bool(np.isfinite(values).all() and np.isfinite(starts).all() and np.all(ends > starts))
        )
    except (TypeError, ValueError):
        return False


def extract_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    feature_set: str | FeatureSet = DEFAULT_FEATURE_SET,
    config: AnalysisConfig,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
    description: str = "extracting features",
) -> list[WindowFeatures | FileFailure]:
    """Window features of many files, in order, using ``workers`` processes (default: all cores).

    A file that fails becomes a :class:`~genre_id.parallel.FileFailure` in its
    place; the rest go on, even when a decoder crashes its worker process
    (:func:`genre_id.parallel.map_files`).
    """
    fs = get_feature_set(feature_set)
    extract = partial(extract_file, feature_set=fs.name, config=config,
                      cache_dir=None if cache_dir is None else str(cache_dir))
    return list(map_files(extract, [str(Path(p)) for p in paths], workers=workers,
                          progress=description if progress else None))
