"""Tag a whole music library: scan a folder into a SQLite store of results, write genre tags, undo them.

:class:`ResultStore` keeps one row per file (path, size, mtime, content hash,
the model's answer, and what tag writing changed).  :func:`scan` walks a
folder (:func:`genre_id.folders.walk_audio`) and analyses only what is new:

* a file whose size, modification time and model are unchanged is skipped
  without decoding or hashing it;
* a file that changed is hashed and analysed again;
* a file at a new path whose content hash is already stored (a move, a
  copy) takes the stored result without being analysed.

Results are written in batches, one transaction each, so an interrupted
scan (Ctrl-C, ``kill -9``) loses at most the batch in flight; the next scan
goes on from there.

:func:`write_tags` writes the stored genres into the files' tags (mutagen),
on a copy in the same folder that then replaces the file; :func:`undo_tags`
puts back what was there.  This module prints nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from .files import PathLike

__all__ = ["ROW_FIELDS", "ResultStore", "ScanSummary", "TagChange", "display_genre", "export",
           "scan", "store_files", "undo_tags", "write_tags"]

ROW_FIELDS = ("path", "size", "mtime_ns", "sha256", "genre", "confidence", "top", "probabilities", "model_name",
              "model_version", "duration", "error", "previous_genre", "tags_written", "quick")
#: Columns added since the first stores were made (added to an older store when it is opened).
_ADDED = {"quick": "INTEGER NOT NULL DEFAULT 0"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT,
    genre TEXT,
    confidence REAL,
    top TEXT,
    probabilities TEXT,
    model_name TEXT,
    model_version TEXT,
    duration REAL,
    error TEXT,
    previous_genre TEXT,
    tags_written INTEGER NOT NULL DEFAULT 0,
    quick INTEGER NOT NULL DEFAULT 0  -- 1: judged from excerpts (scan --quick on a long file)
);
CREATE INDEX IF NOT EXISTS results_sha256 ON results (sha256);
"""


class ResultStore:
    """The SQLite file of scan results (WAL mode: readers do not block the scan)."""

    def __init__(self, path: PathLike) -> None:
        from .errors import GenreIdError

        self.path = Path(path)
        _check_store_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30)
        self.db.row_factory = sqlite3.Row
        try:
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            columns = {r[1] for r in self.db.execute("PRAGMA table_info(results)")}
        except sqlite3.DatabaseError:
            self.db.close()
            raise GenreIdError(f"{path}: not a results database") from None
        if (tables and "results" not in tables) or ("results" in tables and not set(ROW_FIELDS) - set(_ADDED) <= columns):
            self.db.close()  # another program's database (a fingerprint database): never extended
            raise GenreIdError(f"{path}: not a results database (a SQLite file of other tables)")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        for name, kind in _ADDED.items():
            if columns and name not in columns:
                self.db.execute(f"ALTER TABLE results ADD COLUMN {name} {kind}")
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM results WHERE path = ?", (_key(path),)).fetchone()
        return None if row is None else _row(row)

    def by_hash(self, sha256: str, model_name: str, model_version: str, *,
                quick: bool = False) -> dict[str, Any] | None:
        """A stored, analysed row with this content and model (any path); only a whole analysis unless ``quick``."""
        row = self.db.execute("SELECT * FROM results WHERE sha256 = ? AND model_name = ? AND model_version = ? "
                              "AND error IS NULL AND (quick = 0 OR ?) ORDER BY quick LIMIT 1",
                              (sha256, model_name, model_version, int(quick))).fetchone()
        return None if row is None else _row(row)

    def put_many(self, rows: Iterable[dict[str, Any]]) -> None:
        """Store ``rows`` in one transaction (all or none)."""
        with self.db:
            self.db.executemany(f"INSERT OR REPLACE INTO results ({', '.join(ROW_FIELDS)}) VALUES "
                                f"({', '.join('?' * len(ROW_FIELDS))})",
                                [tuple(_stored_value(k, r.get(k)) for k in ROW_FIELDS) for r in rows])

    def delete(self, paths: Iterable[str]) -> None:
        with self.db:
            self.db.executemany("DELETE FROM results WHERE path = ?", [(_key(p),) for p in paths])

    def rows(self) -> Iterator[dict[str, Any]]:
        for row in self.db.execute("SELECT * FROM results ORDER BY path"):
            yield _row(row)

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def _key(path: str) -> str | bytes:
    """How ``path`` is stored: as text, or as its bytes where the name is not UTF-8 (SQLite text must be)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def _stored_value(column: str, value: Any) -> Any:
    if column == "path":
        return _key(value)
    return _text(value) if isinstance(value, str) else value


def _row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    if isinstance(out["path"], bytes):
        out["path"] = os.fsdecode(out["path"])
    return out


#: The first bytes of every SQLite 3 database.
_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_store_file(path: Path) -> None:
    """Refuse (one line) a results path that is not a SQLite file or nothing: a link to nothing, a loop, a folder,
    a device, a FIFO, an audio file.  Read without blocking and without following a device."""
    import errno

    from .errors import GenreIdError
    from .files import open_regular

    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:  # never follow a link to nothing into a new file
            what = "a loop of links" if exc.errno == errno.ELOOP else "a link to nothing"
            raise GenreIdError(f"{path}: is {what}; not a results database") from None
    if not os.path.lexists(path):
        return
    if path.is_dir():
        raise GenreIdError(f"{path}: is a folder, not a results database")
    with open_regular(path, max_bytes=1 << 62, missing=f"{path}: no such file", error=GenreIdError) as fh:
        head = fh.read(len(_SQLITE_HEADER))
    if head and head != _SQLITE_HEADER:
        raise GenreIdError(f"{path}: not a results database")


def store_files(path: PathLike) -> list[str]:
    """The results file and the files SQLite keeps beside it, links resolved."""
    real = os.path.realpath(path)
    return [real, *(real + s for s in ("-journal", "-wal", "-shm"))]


@dataclass
class ScanSummary:
    """What :func:`scan` did, file by file counted."""

    files: int = 0  #: audio files found
    unchanged: int = 0  #: skipped: same size, mtime and model
    moved: int = 0  #: result copied from a stored file with the same content
    analysed: int = 0  #: decoded and judged
    failed: int = 0  #: not settled: unreadable, or analysed with an error (each one in ``errors``)
    removed: int = 0  #: rows of files under the folder that are gone
    errors: list[str] = field(default_factory=list)


def _stat_key(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _result_fields(source: Any) -> dict[str, Any]:
    """The result columns of a stored row, or of an analysed :class:`~genre_id.analysis.Report`."""
    if isinstance(source, dict):
        return {k: source[k] for k in ("genre", "confidence", "top", "probabilities", "duration", "error",
                                        "previous_genre", "tags_written", "quick")}
    if source.prediction is None:
        return {"error": source.error, "tags_written": 0}
    p = source.prediction
    return {"genre": p.genre, "confidence": float(p.confidence),
            "top": json.dumps([[g.genre, float(g.probability)] for g in p.top]),
            "probabilities": json.dumps({k: float(v) for k, v in p.probabilities.items()}),
            "duration": p.duration, "error": None, "tags_written": 0}


def _analyse(analyzer: Any, paths: list[str], *, quick: bool) -> Iterator[dict[str, Any]]:
    """Result columns for each path, in order (``quick``: long files from three excerpts)."""
    from .extraction import EXCERPT_MIN_SECONDS

    for report in analyzer.analyze_many(paths, quick=quick):
        fields = _result_fields(report)
        fields["quick"] = int(quick and (fields.get("duration") or 0) >= EXCERPT_MIN_SECONDS)
        yield fields


def scan(root: PathLike, analyzer: Any, store: ResultStore, *, batch: int = 50, quick: bool = False,
         on_file: Callable[[str, str], None] | None = None) -> ScanSummary:
    """Bring ``store`` up to date with the audio files under ``root``.

    ``on_file(path, what)`` is called once per file as it is settled, with
    ``what`` one of ``unchanged``, ``moved``, ``analysed``, ``failed``.
    """
    from .cache import UnreadableFile, file_digest
    from .folders import walk_audio

    model = analyzer.model
    summary = ScanSummary()
    own = set(store_files(store.path))  # the results file itself, even with an audio name, is no recording
    paths = [a for a in (os.path.abspath(p) for p in walk_audio(root).files) if os.path.realpath(a) not in own]
    summary.files = len(paths)
    tell = on_file or (lambda path, what: None)
    pending: list[tuple[str, dict[str, Any]]] = []  # files to analyse, with their identity columns
    settled: list[dict[str, Any]] = []  # moved files, written with the next batch

    def flush() -> None:
        todo = pending[:batch]
        del pending[:batch]
        rows = list(settled)
        settled.clear()
        for (path, identity), result in zip(todo, _analyse(analyzer, [p for p, _ in todo], quick=quick)):
            rows.append({**identity, **result})
            what = "failed" if result.get("error") else "analysed"
            summary.failed += what == "failed"
            summary.analysed += what == "analysed"
            if result.get("error"):
                summary.errors.append(result["error"])
            tell(path, what)
        store.put_many(rows)

    for path in paths:
        try:
            size, mtime_ns = _stat_key(path)
        except OSError as exc:
            summary.errors.append(f"{path}: {exc.strerror}")
            summary.failed += 1
            tell(path, "failed")
            continue
        old = store.get(path)
        if (old is not None and (old["size"], old["mtime_ns"]) == (size, mtime_ns)
                and (old["model_name"], old["model_version"]) == (model.name, model.version)
                and (quick or not old["quick"])):  # a whole analysis replaces a quick one
            summary.unchanged += 1
            tell(path, "unchanged")
            continue
        try:
            digest = file_digest(path)
        except (UnreadableFile, OSError) as exc:
            summary.errors.append(str(exc))
            summary.failed += 1
            tell(path, "failed")
            continue
        identity = {"path": path, "size": size, "mtime_ns": mtime_ns, "sha256": digest, "model_name": model.name,
                    "model_version": model.version}
        same = store.by_hash(digest, model.name, model.version, quick=quick)
        if same is not None:
            settled.append({**identity, **_result_fields(same)})
            summary.moved += 1
            tell(path, "moved")
        else:
            pending.append((path, identity))
        if len(pending) >= batch or len(settled) >= batch:
            flush()
    while pending or settled:
        flush()
    found = set(paths)
    top = os.path.join(os.path.abspath(root), "")
    gone = [r["path"] for r in store.rows() if r["path"].startswith(top) and r["path"] not in found
            and not os.path.exists(r["path"])]
    store.delete(gone)
    summary.removed = len(gone)
    return summary


# -- export ----------------------------------------------------------------------------------------


def export(store: ResultStore, out: PathLike | BinaryIO) -> int:
    """Write every row to ``out``: CSV, or Parquet for a ``.parquet`` name (needs pyarrow).  Returns the rows.

    ``out`` may be an open binary stream (standard output): CSV is written to it.
    """
    from .files import atomic_file

    rows = list(store.rows())
    if not isinstance(out, (str, bytes, os.PathLike)):
        out.write(_csv(rows))
        out.flush()
        return len(rows)
    if str(out).lower().endswith(".parquet"):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            from .errors import GenreIdError

            raise GenreIdError(f"{out}: Parquet export needs pyarrow (pip install pyarrow)") from None
        types = {"size": pa.int64(), "mtime_ns": pa.int64(), "confidence": pa.float64(), "duration": pa.float64(),
                 "tags_written": pa.int64(), "quick": pa.int64()}
        schema = pa.schema([(k, types.get(k, pa.string())) for k in ROW_FIELDS])
        table = pa.Table.from_pylist([{k: _text(r[k]) if k not in types else r[k] for k in ROW_FIELDS} for r in rows],
                                     schema=schema)
        with atomic_file(out, suffix=".parquet") as fh:
            pq.write_table(table, fh)
        return len(rows)
    with atomic_file(out, suffix=".csv") as fh:
        fh.write(_csv(rows))
    return len(rows)


def _text(value: Any) -> str | None:
    """A text column's value as valid UTF-8 (a path that is not is shown with replacement characters)."""
    return None if value is None else str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _csv(rows: list[dict[str, Any]]) -> bytes:
    import csv
    import io

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=ROW_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode("utf-8", "surrogateescape")


# -- tags ------------------------------------------------------------------------------------------

_DISPLAY = {"hiphop": "Hip-Hop", "hip-hop": "Hip-Hop", "hip_hop": "Hip-Hop"}


def display_genre(label: str) -> str:
    """How a genre label is written into a tag: ``Hip-Hop`` for hiphop, else title case (``Rock``)."""
    return _DISPLAY.get(label.lower(), label.replace("_", " ").title())


@dataclass(frozen=True)
class TagChange:
    """One file's tag, as :func:`write_tags` or :func:`undo_tags` saw it."""

    path: str
    old: str | None  #: the genre tag before (None: none)
    new: str | None  #: the genre tag after (None: removed)
    written: bool  #: the file was changed
    error: str | None = None  #: why it could not be (one line)


def _check_regular(path: str) -> os.stat_result:
    """Refuse (ValueError, one line) anything but a regular file of bounded size, before mutagen opens it.

    A device would be read without end, a FIFO would hang the reader.
    Returns the file's status (links followed: a link to a device is a device).
    """
    import stat

    from .audio import MAX_STREAM_BYTES

    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("not a regular file")
    if st.st_size > MAX_STREAM_BYTES:
        raise ValueError(f"{st.st_size} bytes, more than the {MAX_STREAM_BYTES} an audio file may have")
    return st


def _read_genre(path: str) -> str | None:
    import mutagen

    _check_regular(path)
    f = mutagen.File(path, easy=True)
    if f is None:
        raise ValueError("not a file whose tags mutagen knows")
    values = (f.tags or {}).get("genre") if f.tags is not None else None
    return "; ".join(values) if values else None


def _check_writable(path: str) -> os.stat_result:
    """Refuse (ValueError) a file :func:`_set_genre` must not replace: read-only, or hard-linked elsewhere."""
    st = _check_regular(path)
    if not st.st_mode & 0o200:
        raise ValueError("the file is read-only")
    if st.st_nlink > 1:
        raise ValueError(f"the file has {st.st_nlink - 1} other hard link(s); writing a copy would part them")
    return st


def _set_genre(path: str, genre: str | None) -> None:
    """Set (or, with None, delete) the genre tag, on a copy in the same folder that then replaces the file.

    A link is followed: the file it points to is the one changed, and the
    link stays.  A read-only file (no write permission for its owner, whoever
    runs this) and a file with other hard links (a copy would part them) are
    refused with ValueError.  The copy keeps the file's mode and owner.
    """
    import shutil

    import mutagen

    real = os.path.realpath(path)
    st = _check_writable(real)
    folder, name = os.path.split(real)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=os.path.splitext(name)[1], dir=folder)
    os.close(fd)
    try:
        shutil.copy2(real, tmp)  # the content, mode, times and extended attributes
        if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except PermissionError:
                pass  # not ours to give away: the copy stays the writer's, as any editor's save would
        f = mutagen.File(tmp, easy=True)
        if f is None:
            raise ValueError("not a file whose tags mutagen knows")
        if f.tags is None:
            f.add_tags()
        if genre is None:
            if "genre" in f.tags:
                del f.tags["genre"]
        else:
            f.tags["genre"] = [genre]
        f.save()  # a new modification time: backup tools see the change
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _after_write(store: ResultStore, row: dict[str, Any], **changes: Any) -> None:
    """Store the file's new identity (so the next scan skips it) and ``changes``."""
    from .cache import file_digest

    size, mtime_ns = _stat_key(row["path"])
    store.put_many([{**row, "size": size, "mtime_ns": mtime_ns, "sha256": file_digest(row["path"]), **changes}])


def _problem(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def write_tags(store: ResultStore, *, min_confidence: float = 0.6, overwrite: bool = False,
               apply: bool = False) -> Iterator[TagChange]:
    """The genre tag each stored, confident result would get; written with ``apply``.

    Only rows with a confidence of at least ``min_confidence``; a file that
    has a genre is left alone unless ``overwrite``.  The tag the file had
    before the first write is recorded, for :func:`undo_tags`.
    """
    for row in list(store.rows()):
        if row["error"] or row["genre"] is None or row["confidence"] < min_confidence:
            continue
        path, new = row["path"], display_genre(row["genre"])
        try:
            old = _read_genre(path)
        except Exception as exc:  # noqa: BLE001 — one file's problem, reported
            yield TagChange(path, None, new, False, _problem(exc))
            continue
        if old == new or (old is not None and not overwrite):
            continue
        if not apply:
            try:
                _check_writable(os.path.realpath(path))
            except (OSError, ValueError) as exc:
                yield TagChange(path, old, new, False, _problem(exc))
                continue
            yield TagChange(path, old, new, False)
            continue
        try:
            _set_genre(path, new)
        except Exception as exc:  # noqa: BLE001
            yield TagChange(path, old, new, False, _problem(exc))
            continue
        previous = row["previous_genre"] if row["tags_written"] else old
        _after_write(store, row, previous_genre=previous, tags_written=1)
        yield TagChange(path, old, new, True)


def undo_tags(store: ResultStore) -> Iterator[TagChange]:
    """Put back the genre tags :func:`write_tags` replaced (removing the tag where there was none)."""
    for row in list(store.rows()):
        if not row["tags_written"]:
            continue
        path, previous = row["path"], row["previous_genre"]
        try:
            current = _read_genre(path)
            _set_genre(path, previous)
        except Exception as exc:  # noqa: BLE001
            yield TagChange(path, None, previous, False, _problem(exc))
            continue
        _after_write(store, row, previous_genre=None, tags_written=0)
        yield TagChange(path, current, previous, True)
