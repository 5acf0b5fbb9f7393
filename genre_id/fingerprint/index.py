"""The fingerprint index: add songs, list and remove them, identify a recording.

>>> from genre_id.fingerprint import FingerprintIndex
>>> with FingerprintIndex.open("data/fingerprints.sqlite") as index:   # doctest: +SKIP
...     report = index.add_folder("~/Music")
...     match = index.match_file("unknown.mp3")
...     print(match.title if match else "no match")

Files are keyed by the sha256 of their bytes: adding an unchanged file again
does nothing.  Titles and artists come from the file's tags, else from its
name (:mod:`genre_id.fingerprint.metadata`).  A match names a recording only
when the evidence is conservative enough (:class:`~genre_id.fingerprint.matching.MatchThreshold`):
an unknown song gives ``None``, never a wrong name.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np

from ..audio import iter_windows
from ..errors import AudioError, GenreIdError
from ..files import PathLike
from ..parallel import FileFailure, map_files
from ..textsafe import path_fields
from .landmarks import DEFAULT_PARAMS, FingerprintParams, Landmarks, fingerprint
from .matching import DEFAULT_THRESHOLD, Candidate, MatchThreshold, decide, join_hits, rank_candidates
from .metadata import file_sha256, find_audio_files, title_and_artist
from .store import FingerprintDBError, FingerprintStore, NewRecording, Recording, SQLiteStore

__all__ = [
    "AddReport",
    "FileResult",
    "FingerprintIndex",
    "Match",
    "RecordingNotFoundError",
    "LandmarkBuilder",
    "fingerprint_file",
]


#: Files are decoded in blocks of this many seconds, so memory does not grow with length.
BLOCK_SECONDS = 120.0

#: Audio shorter than this (seconds) is refused when indexing.
MIN_SECONDS = 1.0

#: A query longer than this (seconds) is judged in segments of this length, so
#: that chance alignments stay as rare as on the queries the threshold was tuned on.
QUERY_SEGMENT_SECONDS = 30.0


class RecordingNotFoundError(GenreIdError):
    """No recording in the database has the given id or path."""


@dataclass(frozen=True)
class Match:
    """The recording a query was identified as."""

    recording_id: int
    title: str
    artist: str | None  #: ``None`` when unknown
    file: str  #: the file the recording was indexed from
    offset: float  #: seconds into the recording where the query starts (negative if before it)
    score: int  #: query hashes aligned at that offset
    second_score: int  #: the best score of any other recording
    query_hashes: int  #: hashes the query produced

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: title, artist, file, offset (s), score, ...

        ``file`` is always valid Unicode; a path that is not valid UTF-8 adds
        ``file_bytes``, the base64 of its exact bytes (:func:`genre_id.textsafe.path_fields`).
        """
        return {
            "title": self.title,
            "artist": self.artist,
            **path_fields(self.file),
            "offset": round(self.offset, 2),
            "score": self.score,
            "second_score": self.second_score,
            "query_hashes": self.query_hashes,
            "recording_id": self.recording_id,
        }


@dataclass(frozen=True)
class FileResult:
    """What happened to one file of a folder."""

    path: Path
    status: Literal["added", "unchanged", "failed"]
    message: str = ""  #: for failures: one line naming the file and the problem
    internal: bool = False  #: for failures: a bug met on this file, not a fault of the file


@dataclass
class AddReport:
    """What :meth:`FingerprintIndex.add_folder` did, file by file."""

    added: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)  #: ``(file, one-line message)``

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def record(self, result: FileResult) -> None:
        """Count one file's result."""
        if result.status == "added":
            self.added.append(result.path)
        elif result.status == "unchanged":
            self.unchanged.append(result.path)
        else:
            self.failed.append((result.path, result.message))


class LandmarkBuilder:
    """Landmarks of audio fed in time order, block by block, so memory does not grow with length.

    :meth:`add` takes ``(start_seconds, samples)`` pieces at ``sample_rate``
    Hz, such as the analysis windows of :func:`genre_id.audio.iter_windows`
    (a piece may overlap what was fed before: only its new part counts).
    The audio is fingerprinted in blocks of :data:`BLOCK_SECONDS` and the
    anchor times shifted to the recording's time line; only pairs that
    straddle a block boundary are lost.  :meth:`result` gives the landmarks.
    """

    def __init__(self, *, sample_rate: int, params: FingerprintParams = DEFAULT_PARAMS) -> None:
        self.sample_rate, self.params = int(sample_rate), params
        self._block = max(1, int(round(BLOCK_SECONDS * self.sample_rate)))
        self._pending: list[np.ndarray] = []
        self._pending_size = 0
        self._start = 0  # first sample of the pending audio
        self._fed = 0  # samples fed so far
        self._hashes: list[np.ndarray] = []
        self._times: list[np.ndarray] = []
        self._peaks = 0

    def add(self, start_seconds: float, samples: np.ndarray) -> None:
        """Feed mono ``samples`` that start ``start_seconds`` into the audio."""
        new = samples[max(0, self._fed - int(round(start_seconds * self.sample_rate))):]
        if not new.size:
            return
        self._pending.append(new)
        self._pending_size += new.size
        self._fed += new.size
        while self._pending_size >= self._block + self._block // 2:  # a short tail joins the block before it
            self._flush(self._block)

    def tap(self, windows: Iterable[tuple[float, np.ndarray]]) -> Iterator[tuple[float, np.ndarray]]:
        """Yield ``windows`` unchanged, feeding each to :meth:`add` on the way."""
        for start, samples in windows:
            self.add(start, samples)
            yield start, samples

    def _flush(self, n: int) -> None:
        audio = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        block, rest = audio[:n], audio[n:]
        self._pending, self._pending_size = ([rest] if rest.size else []), rest.size
        lm = fingerprint(block, sample_rate=self.sample_rate, params=self.params)
        self._hashes.append(lm.hashes)
        self._times.append(lm.times + int(round(self._start / self.sample_rate / self.params.frame_seconds)))
        self._peaks += lm.n_peaks
        self._start += block.size

    def result(self) -> Landmarks:
        """The landmarks of everything fed."""
        if self._pending_size:
            self._flush(self._pending_size)
        empty = np.zeros(0, dtype=np.int64)
        return Landmarks(hashes=np.concatenate(self._hashes) if self._hashes else empty,
                         times=np.concatenate(self._times) if self._times else empty,
                         n_peaks=self._peaks, duration=self._fed / self.sample_rate)


def fingerprint_file(
    path: PathLike,
    *,
    params: FingerprintParams = DEFAULT_PARAMS,
    min_seconds: float = MIN_SECONDS,
) -> Landmarks:
    """Landmarks of a whole file, decoded block by block (:class:`LandmarkBuilder`).

    Raises :class:`AudioError` (file and problem) when the file cannot be
    decoded or is shorter than ``min_seconds``.
    """
    builder = LandmarkBuilder(sample_rate=params.sample_rate, params=params)
    for _ in builder.tap(iter_windows(path, sample_rate=params.sample_rate, window_seconds=BLOCK_SECONDS,
                                      min_seconds=min_seconds)):
        pass
    return builder.result()


def _fingerprint_new(path: Path, *, params: FingerprintParams) -> tuple[NewRecording, Landmarks]:
    """What :meth:`FingerprintIndex.add` stores for ``path`` (may run in a worker process)."""
    sha = file_sha256(path)
    landmarks = fingerprint_file(path, params=params)
    if len(landmarks) == 0:
        raise AudioError(f"{path}: no fingerprint could be made (silent, or no distinct peaks)")
    title, artist = title_and_artist(path)
    new = NewRecording(title=title, artist=artist, path=str(path.resolve()), sha256=sha, duration=landmarks.duration)
    return new, landmarks


def _is_id(value: object) -> bool:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return True
    return isinstance(value, str) and value.strip().isdigit() and not Path(value).exists()


class FingerprintIndex(contextlib.AbstractContextManager):
    """Songs fingerprinted into a :class:`~genre_id.fingerprint.store.FingerprintStore`.

    Open one with :meth:`open` (an SQLite file) or wrap any store.  Use it as a
    context manager, or call :meth:`close`.
    """

    def __init__(self, store: FingerprintStore, *, threshold: MatchThreshold = DEFAULT_THRESHOLD) -> None:
        self.store = store
        self.threshold = threshold

    @classmethod
    def open(
        cls,
        db_path: PathLike | None = None,
        *,
        create: bool = True,
        threshold: MatchThreshold = DEFAULT_THRESHOLD,
    ) -> FingerprintIndex:
        """Open the SQLite database at ``db_path``; make it if absent and ``create``.

        ``db_path`` defaults to :func:`genre_id.locations.default_db_path`
        (``$GENRE_ID_DB``, else the platform's user data folder).

        With ``create`` the database is opened for writing (``index add``);
        without, read-only, so that queries work on read-only media and never
        write, and it is reopened for writing only by :meth:`remove`.  A
        database that is not a genre-id fingerprint database is refused before
        anything is written to it (see
        :meth:`~genre_id.fingerprint.store.SQLiteStore.open`).

        Raises :class:`~genre_id.fingerprint.store.FingerprintDBError` when it
        is missing (and not ``create``), unreadable, or of other parameters.
        """
        if db_path is None:
            from ..locations import default_db_path

            db_path = default_db_path()
        return cls(SQLiteStore.open(db_path, create=create), threshold=threshold)

    @property
    def params(self) -> FingerprintParams:
        """The fingerprint parameters of the database."""
        return self.store.params

    def close(self) -> None:
        """Close the database."""
        self.store.close()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building ----------------------------------------------------------------

    def add(self, path: PathLike) -> bool:
        """Fingerprint one file into the database; ``False`` if its exact bytes are already there.

        A file changed since it was added from the same path replaces its old
        entry.  Raises :class:`~genre_id.errors.AudioError` (file and problem)
        when the file cannot be read or decoded, or yields no fingerprint
        (silence); the database is then unchanged.
        """
        p = Path(path).expanduser()
        if self.store.get_by_sha256(file_sha256(p)) is not None:
            return False
        return self.store.add(*_fingerprint_new(p, params=self.params)) is not None

    def add_folder(
        self,
        directory: PathLike,
        *,
        on_file: Callable[[FileResult], None] | None = None,
        workers: int | None = None,
    ) -> AddReport:
        """Add every audio file under ``directory`` (recursively); report what happened.

        A file that fails is recorded in the report (one line: file and
        problem) and skipped; the others are still added.  ``on_file`` is
        called after each file, for progress.  Raises
        :class:`~genre_id.errors.AudioError` only when ``directory`` is not a
        folder; a database that cannot be written stops the run
        (:class:`~genre_id.fingerprint.store.FingerprintDBError`).
        """
        return self.add_files(find_audio_files(Path(directory).expanduser()), on_file=on_file, workers=workers)

    def add_files(
        self,
        paths: builtins.list[PathLike],
        *,
        on_file: Callable[[FileResult], None] | None = None,
        workers: int | None = None,
    ) -> AddReport:
        """Add ``paths``, fingerprinted by ``workers`` processes (default: one per core); report what happened.

        Files whose exact bytes are already stored are skipped without being
        decoded.  A file that fails is recorded in the report and skipped;
        ``on_file`` is called after each file, in order.  A database that
        cannot be written stops the run (:class:`~genre_id.fingerprint.store.FingerprintDBError`).
        """
        report = AddReport()
        files = [Path(p).expanduser() for p in paths]
        known: dict[int, FileResult] = {}
        for i, path in enumerate(files):
            try:
                if self.store.get_by_sha256(file_sha256(path)) is not None:
                    known[i] = FileResult(path, "unchanged")
            except FingerprintDBError:
                raise
            except GenreIdError as exc:
                known[i] = FileResult(path, "failed", str(exc))
        made = map_files(partial(_fingerprint_new, params=self.params),
                         [p for i, p in enumerate(files) if i not in known], workers=workers)
        for i, path in enumerate(files):
            result = known.get(i)
            if result is None:
                new = next(made)
                if isinstance(new, FileFailure):
                    result = FileResult(path, "failed", new.message, internal=new.internal)
                else:
                    result = FileResult(path, "added" if self.store.add(*new) is not None else "unchanged")
            report.record(result)
            if on_file is not None:
                on_file(result)
        self.store.checkpoint()
        return report

    # -- managing ----------------------------------------------------------------

    def list(self) -> builtins.list[Recording]:
        """Every recording in the database, by id."""
        return self.store.recordings()

    def find(self, id_or_path: int | PathLike) -> Recording:
        """The recording with this id (an int or a string of digits) or added from this path.

        Raises :class:`RecordingNotFoundError` when there is none.
        """
        if _is_id(id_or_path):
            number = int(id_or_path)  # type: ignore[arg-type]
            rec = self.store.get(number) if number < 1 << 63 else None  # SQLite's ids are 64-bit
        else:
            p = Path(id_or_path).expanduser()  # type: ignore[arg-type]
            rec = self.store.get_by_path(str(p.resolve()))
            if rec is None and p.is_file():
                rec = self.store.get_by_sha256(file_sha256(p))
        if rec is None:
            raise RecordingNotFoundError(f"{id_or_path}: no such recording in the fingerprint database")
        return rec

    def remove(self, id_or_path: int | PathLike) -> Recording:
        """Remove a recording (by id, or by the path it was added from); return it.

        Raises :class:`RecordingNotFoundError` when there is none.
        """
        rec = self.find(id_or_path)
        if not self.store.remove(rec.id):
            raise RecordingNotFoundError(f"{id_or_path}: no such recording in the fingerprint database")
        return rec

    # -- identifying -------------------------------------------------------------

    def match_landmarks(self, landmarks: Landmarks) -> Match | None:
        """The recording these query landmarks come from, or ``None``.

        Queries longer than :data:`QUERY_SEGMENT_SECONDS` are judged segment by
        segment; the accepted segment with the highest score wins.
        """
        if len(landmarks) == 0:
            return None
        hit_hashes, hit_recs, hit_times = self.store.lookup(landmarks.hashes)
        query_index, hit_index = join_hits(landmarks.hashes, hit_hashes)
        recs, times = hit_recs[hit_index], hit_times[hit_index]
        segment_frames = max(1, int(round(QUERY_SEGMENT_SECONDS / self.params.frame_seconds)))
        segment = (landmarks.times - landmarks.times.min()) // segment_frames
        hit_segment = segment[query_index]
        found: tuple[Candidate, int] | None = None
        for s in np.unique(segment):
            inside = hit_segment == s
            candidates = rank_candidates(landmarks.times, query_index[inside], recs[inside], times[inside])
            best = decide(candidates, threshold=self.threshold)
            if best is not None and (found is None or best.score > found[0].score):
                found = (best, candidates[1].score if len(candidates) > 1 else 0)
        if found is None:
            return None
        best, second = found
        rec = self.store.get(best.recording_id)
        if rec is None:  # removed by another process since the lookup
            return None
        return Match(
            recording_id=rec.id,
            title=rec.title,
            artist=rec.artist,
            file=rec.path,
            offset=best.offset_frames * self.params.frame_seconds,
            score=best.score,
            second_score=second,
            query_hashes=len(landmarks),
        )

    def match(self, samples: np.ndarray, sample_rate: int) -> Match | None:
        """The recording mono ``samples`` (at ``sample_rate`` Hz) come from, or ``None``."""
        return self.match_landmarks(fingerprint(samples, sample_rate=sample_rate, params=self.params))

    def match_file(self, path: PathLike) -> Match | None:
        """The recording the audio file ``path`` comes from, or ``None``.

        Raises :class:`~genre_id.errors.AudioError` when the file cannot be decoded.
        """
        return self.match_landmarks(fingerprint_file(Path(path).expanduser(), params=self.params, min_seconds=0.0))
