"""Where fingerprints live: the :class:`FingerprintStore` interface and its SQLite implementation.

:class:`FingerprintStore` is what :class:`~genre_id.fingerprint.index.FingerprintIndex`
needs from a database: recordings keyed by content hash, their landmark
hashes, and a lookup of many hashes at once.  :class:`SQLiteStore` implements
it in one embedded SQLite file; a server database can replace it by
implementing the same methods.

The SQLite file holds three tables:

``meta``
    key/value text: the schema version and the fingerprint parameters (JSON).
    A database refuses to be used with other parameters.
``recordings``
    one row per recording: id, sha256 of the file's bytes (unique), title,
    artist, path, duration, number of hashes, time added, and the sorted
    distinct hashes (delta-coded, zlib-compressed uint32 bytes; no pickle) so
    that removing a recording deletes its rows by primary key instead of
    scanning the whole table.
``hashes``
    ``(hash, recording_id, t)``, a ``WITHOUT ROWID`` table whose primary key
    is the lookup index, so each landmark is stored once.

Concurrency and atomicity: the file is in WAL mode, so readers never block
the writer; every write is one ``BEGIN IMMEDIATE`` transaction (a whole
recording or nothing), and a busy database is waited for (``busy_timeout``).
Two processes may add to the same file at once; a process interrupted in the
middle of an addition leaves the database as it was before that addition.
"""

from __future__ import annotations

import abc
import json
import os
import sqlite3
import stat
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import repeat
from pathlib import Path

import numpy as np

from ..errors import GenreIdError
from ..files import PathLike
from ..textsafe import MAX_TAG_CHARS, clip, one_line, path_fields, valid_unicode
from .landmarks import DEFAULT_PARAMS, FingerprintParams, Landmarks

__all__ = [
    "SCHEMA_VERSION",
    "FingerprintDBError",
    "FingerprintStore",
    "NewRecording",
    "Recording",
    "SQLiteStore",
    "StoreStats",
]


#: Version of the SQLite layout; bumped when the tables change.
SCHEMA_VERSION = 1

#: Seconds a write waits for another process's transaction before giving up.
BUSY_TIMEOUT_SECONDS = 60.0

#: Size the write-ahead log is cut back to after a checkpoint, bytes.
_WAL_LIMIT_BYTES = 16 << 20

#: Hashes looked up per SQL statement (SQLite limits bound parameters).
_LOOKUP_CHUNK = 900

#: Largest decoded hash set of one recording, bytes (a damaged blob cannot inflate beyond it).
_MAX_HASH_SET_BYTES = 1 << 28

_SQLITE_MAGIC = b"SQLite format 3\x00"


class FingerprintDBError(GenreIdError):
    """A fingerprint database is missing, corrupt, locked or made with other parameters."""


@dataclass(frozen=True)
class NewRecording:
    """What is known about a file before it is stored."""

    title: str
    artist: str | None  #: ``None`` when neither tags nor the file name tell
    path: str  #: absolute path of the file when it was added
    sha256: str  #: hex digest of the file's bytes
    duration: float  #: seconds of audio


@dataclass(frozen=True)
class Recording:
    """A recording in the database."""

    id: int
    title: str
    artist: str | None
    path: str
    sha256: str
    duration: float  #: seconds of audio
    n_hashes: int  #: landmark hashes stored for it
    added_at: str  #: ISO 8601 time (UTC) it was added

    def to_dict(self) -> dict[str, object]:
        """The recording as a JSON-ready dict.

        ``file`` is always valid Unicode; a path that is not valid UTF-8 adds
        ``file_bytes``, the base64 of its exact bytes
        (:func:`genre_id.textsafe.path_fields`).
        """
        return {
            "id": self.id,
            "title": self.title,
            "artist": self.artist,
            **path_fields(self.path),
            "sha256": self.sha256,
            "duration": round(self.duration, 3),
            "n_hashes": self.n_hashes,
            "added_at": self.added_at,
        }


@dataclass(frozen=True)
class StoreStats:
    """Sizes of a store."""

    recordings: int
    hashes: int
    seconds: float  #: total duration of the stored recordings
    bytes: int  #: size on disk (database plus write-ahead log), 0 if unknown


class FingerprintStore(abc.ABC):
    """What a fingerprint database must do; see :class:`SQLiteStore`.

    Implementations must make :meth:`add` and :meth:`remove` atomic and safe
    against concurrent writers.
    """

    @property
    @abc.abstractmethod
    def params(self) -> FingerprintParams:
        """The fingerprint parameters every stored hash was made with."""

    @abc.abstractmethod
    def get(self, recording_id: int) -> Recording | None:
        """The recording with this id, or ``None``."""

    @abc.abstractmethod
    def get_by_sha256(self, sha256: str) -> Recording | None:
        """The recording whose file bytes have this sha256, or ``None``."""

    @abc.abstractmethod
    def get_by_path(self, path: str) -> Recording | None:
        """The recording added from this absolute path, or ``None``."""

    @abc.abstractmethod
    def recordings(self) -> list[Recording]:
        """All recordings, by id."""

    @abc.abstractmethod
    def add(self, recording: NewRecording, landmarks: Landmarks) -> Recording | None:
        """Store a recording and its hashes in one transaction.

        Returns ``None`` (and changes nothing) when a recording with the same
        sha256 is already stored.  A recording stored earlier from the same
        path (a file that has since changed) is replaced.
        """

    @abc.abstractmethod
    def remove(self, recording_id: int) -> bool:
        """Delete a recording and its hashes in one transaction; ``False`` if absent."""

    @abc.abstractmethod
    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored landmark whose hash is in ``hashes``.

        Returns int64 arrays ``(hash, recording_id, t)``, one entry per stored
        landmark (not per query hash), in no particular order.
        """

    @abc.abstractmethod
    def stats(self) -> StoreStats:
        """Counts and size of the store."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the database."""

    def checkpoint(self) -> None:
        """Fold pending writes into the main database file where that applies (no-op by default)."""

    def __enter__(self) -> FingerprintStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _encode_hash_set(hashes: np.ndarray) -> bytes:
    """Sorted distinct hashes as zlib-compressed little-endian uint32 deltas."""
    uniq = np.unique(hashes.astype(np.int64))
    deltas = np.diff(uniq, prepend=0).astype("<u4")
    return zlib.compress(deltas.tobytes(), 6)


def _decode_hash_set(blob: bytes) -> np.ndarray:
    """The hashes of :func:`_encode_hash_set`; ``ValueError`` or ``zlib.error`` when the blob is damaged."""
    inflater = zlib.decompressobj()
    raw = inflater.decompress(bytes(blob), _MAX_HASH_SET_BYTES)
    if not inflater.eof or inflater.unconsumed_tail or len(raw) % 4:
        raise ValueError("damaged hash set")
    deltas = np.frombuffer(raw, dtype="<u4").astype(np.int64)
    return np.cumsum(deltas)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS recordings (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    artist TEXT,
    path TEXT NOT NULL,
    duration REAL NOT NULL,
    n_hashes INTEGER NOT NULL,
    added_at TEXT NOT NULL,
    hash_set BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_path ON recordings (path);
CREATE TABLE IF NOT EXISTS hashes (
    hash INTEGER NOT NULL,
    recording_id INTEGER NOT NULL,
    t INTEGER NOT NULL,
    PRIMARY KEY (hash, recording_id, t)
) WITHOUT ROWID;
"""

_RECORDING_COLUMNS = "id, title, artist, path, sha256, duration, n_hashes, added_at"


def _db_path(path: str) -> str | bytes:
    """A path as stored: text when it is valid UTF-8, else its exact bytes (a BLOB)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def _text(value: object) -> str:
    """A stored title or artist as bounded, valid Unicode."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return clip(valid_unicode(str(value)), MAX_TAG_CHARS)


def _row_to_recording(row: tuple) -> Recording:
    path = row[3]
    return Recording(
        id=int(row[0]),
        title=_text(row[1]),
        artist=None if row[2] is None else _text(row[2]),
        path=os.fsdecode(path) if isinstance(path, bytes) else str(path),
        sha256=str(row[4]),
        duration=float(row[5]),
        n_hashes=int(row[6]),
        added_at=str(row[7]),
    )


class SQLiteStore(FingerprintStore):
    """A :class:`FingerprintStore` in one SQLite file (WAL mode).

    Open with :meth:`open`.  One instance serves one thread; any number of
    processes may open the same file.
    """

    def __init__(self, connection: sqlite3.Connection | None, path: Path, params: FingerprintParams) -> None:
        self._conn = connection
        self._path = path
        self._params = params
        self._writer = False  #: whether ``_conn`` may write

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: PathLike,
        *,
        create: bool = True,
        params: FingerprintParams = DEFAULT_PARAMS,
    ) -> SQLiteStore:
        """Open the fingerprint database at ``path``; with ``create``, make it if it is new.

        The tables are made only in a new file, an empty (0-byte) file, or an
        SQLite file without any table; any other database that is not a
        genre-id fingerprint database is refused before anything is written
        to it.  With ``create`` the database is opened for writing at once;
        without, it is opened read-only (so it can be queried on read-only
        media) and reopened for writing only when :meth:`add` or
        :meth:`remove` is called.

        Raises :class:`FingerprintDBError` when the file is absent and
        ``create`` is false, is not a regular file, is not an SQLite database
        or is another application's, is corrupt, or was made with other
        fingerprint parameters or another schema version.
        """
        p = Path(path)
        if p.is_dir():
            raise FingerprintDBError(f"{p}: is a directory, not a fingerprint database")
        meta = None
        new = not p.exists()
        if new and p.is_symlink():  # a link to nothing, or a loop: never followed to create a file where it points
            raise FingerprintDBError(f"{p}: is a link to nothing (or a loop of links), not a fingerprint database")
        if new:
            if not create:
                raise FingerprintDBError(f"{p}: no such fingerprint database (build one with 'genre-id index add')")
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise FingerprintDBError(f"{p}: cannot create the database folder ({exc.strerror or exc})") from None
        else:
            meta = _probe(p)
            if meta is None and not create:
                raise FingerprintDBError(f"{p}: an empty database, not a fingerprint database "
                                         f"(build one with 'genre-id index add')")
        store = cls(None, p, params)  # type: ignore[arg-type]
        try:
            if meta is not None:
                store._check_meta(meta, json.dumps(params.to_dict(), sort_keys=True))
            if create:
                store._open_writer()
            else:
                store._open_reader()
        except BaseException:
            store.close()
            if new:
                _remove_if_empty(p)  # a database we began to make (a full disk): leave no 0-byte file behind
            raise
        return store

    def _open_reader(self) -> None:
        """Open the database read-only; on read-only media (no -shm possible for WAL), as an immutable file."""
        for mode in ("ro", "immutable"):
            try:
                self._conn = _connect(self._path, mode)
                self._conn.execute("SELECT COUNT(*) FROM meta").fetchone()
                return
            except sqlite3.DatabaseError as exc:
                self.close()
                if mode == "immutable" or _writable_folder(self._path):
                    raise FingerprintDBError(f"{self._path}: cannot read the database ({exc})") from None

    def _open_writer(self) -> None:
        """Open the database for writing, making the tables if it is new; a no-op once done."""
        if self._writer:
            return
        self.close()
        try:
            self._conn = conn = _connect(self._path, "rwc")
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            mode = _switch_to_wal(conn)
            if str(mode).lower() != "wal":
                raise sqlite3.DatabaseError(f"cannot switch to WAL mode (mode is {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT_BYTES}")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise FingerprintDBError(f"{self._path}: cannot open the database for writing ({exc})") from None
        self._writer = True
        wanted = json.dumps(self._params.to_dict(), sort_keys=True)
        with self._guard("cannot write"), self._transaction():
            tables = _table_names(conn)
            if not tables:  # a new file: make the tables (a reader never needs to write)
                # executescript() would commit on its own; run the statements one by one inside the transaction.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                conn.execute("INSERT INTO meta (key, value) VALUES ('params', ?)", (wanted,))
                return
            meta = _our_meta(conn, tables)
        if meta is None:
            raise FingerprintDBError(_foreign_message(self._path))
        self._check_meta(meta, wanted)

    def _check_meta(self, meta: dict[str, str], wanted: str) -> None:
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise FingerprintDBError(
                f"{self._path}: database schema version {meta.get('schema_version')!r}; "
                f"this genre-id reads version {SCHEMA_VERSION}"
            )
        if meta.get("params") != wanted:
            try:
                theirs = json.loads(meta.get("params", "{}"))
                label = f"{theirs.get('scheme')} v{theirs.get('version')}"
            except (ValueError, AttributeError):
                label = "unreadable parameters"
            raise FingerprintDBError(
                f"{self._path}: made with fingerprint {label}, other than this genre-id's "
                f"{self._params.scheme} v{self._params.version}; rebuild it with 'genre-id index add'"
            )

    class _Txn:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> None:
            self.conn.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            if exc_type is None:
                self.conn.execute("COMMIT")
            elif self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    def _transaction(self) -> SQLiteStore._Txn:
        """A write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error)."""
        return SQLiteStore._Txn(self._conn)

    # -- reading -----------------------------------------------------------------

    @property
    def params(self) -> FingerprintParams:
        return self._params

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @contextmanager
    def _guard(self, what: str = "cannot read") -> Iterator[None]:
        """Turn any failure caused by the database's content into one-line :class:`FingerprintDBError`."""
        try:
            yield
        except FingerprintDBError:
            raise
        except (sqlite3.DatabaseError, zlib.error, ValueError, TypeError, OverflowError) as exc:
            raise FingerprintDBError(f"{self._path}: {what}: {_problem(exc)}") from None

    def _one(self, where: str, value: object) -> Recording | None:
        with self._guard():
            row = self._conn.execute(f"SELECT {_RECORDING_COLUMNS} FROM recordings WHERE {where} = ?", (value,)).fetchone()
            return None if row is None else _row_to_recording(row)

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._guard():
            return self._conn.execute(sql, args).fetchall()

    def get(self, recording_id: int) -> Recording | None:
        return self._one("id", int(recording_id))

    def get_by_sha256(self, sha256: str) -> Recording | None:
        return self._one("sha256", sha256)

    def get_by_path(self, path: str) -> Recording | None:
        return self._one("path", _db_path(path))

    def recordings(self) -> list[Recording]:
        with self._guard():
            rows = self._conn.execute(f"SELECT {_RECORDING_COLUMNS} FROM recordings ORDER BY id").fetchall()
            return [_row_to_recording(r) for r in rows]

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        wanted = np.unique(np.asarray(hashes, dtype=np.int64)).tolist()
        rows: list[tuple[int, int, int]] = []
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows += self._query(f"SELECT hash, recording_id, t FROM hashes WHERE hash IN ({marks})", tuple(chunk))
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        with self._guard():
            table = np.array(rows, dtype=np.int64).reshape(len(rows), 3)
        return table[:, 0], table[:, 1], table[:, 2]

    def stats(self) -> StoreStats:
        with self._guard():
            n_rec, seconds, n_hashes = self._query(
                "SELECT COUNT(*), COALESCE(SUM(duration), 0), COALESCE(SUM(n_hashes), 0) FROM recordings"
            )[0]
            n_rec, seconds, n_hashes = int(n_rec), float(seconds), int(n_hashes)
        size = 0
        for suffix in ("", "-wal"):
            f = Path(str(self._path) + suffix)
            if f.exists():
                size += f.stat().st_size
        return StoreStats(recordings=n_rec, hashes=n_hashes, seconds=seconds, bytes=size)

    # -- writing -----------------------------------------------------------------

    def add(self, recording: NewRecording, landmarks: Landmarks) -> Recording | None:
        added_at = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        blob = _encode_hash_set(landmarks.hashes)
        title = _text(recording.title)
        artist = None if recording.artist is None else _text(recording.artist)
        self._open_writer()
        with self._guard("cannot write"):
            with self._transaction():
                if self.get_by_sha256(recording.sha256) is not None:
                    return None
                stale = self.get_by_path(recording.path)
                if stale is not None:
                    self._delete(stale.id)
                cur = self._conn.execute(
                    "INSERT INTO recordings (sha256, title, artist, path, duration, n_hashes, added_at, hash_set)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        recording.sha256,
                        title,
                        artist,
                        _db_path(recording.path),
                        float(recording.duration),
                        len(landmarks),
                        added_at,
                        blob,
                    ),
                )
                if cur.lastrowid is None:
                    raise sqlite3.DatabaseError("no id was given to the new recording")
                rec_id = int(cur.lastrowid)
                self._conn.executemany(
                    "INSERT OR IGNORE INTO hashes (hash, recording_id, t) VALUES (?, ?, ?)",
                    zip(landmarks.hashes.tolist(), repeat(rec_id), landmarks.times.tolist()),
                )
        return Recording(
            id=rec_id,
            title=title,
            artist=artist,
            path=recording.path,
            sha256=recording.sha256,
            duration=float(recording.duration),
            n_hashes=len(landmarks),
            added_at=added_at,
        )

    def _delete(self, recording_id: int) -> bool:
        row = self._conn.execute("SELECT hash_set FROM recordings WHERE id = ?", (recording_id,)).fetchone()
        if row is None:
            return False
        try:
            hash_set = _decode_hash_set(row[0]).tolist()
        except (zlib.error, ValueError, TypeError):  # a damaged hash set: find the rows the slow way
            self._conn.execute("DELETE FROM hashes WHERE recording_id = ?", (recording_id,))
        else:
            self._conn.executemany(
                "DELETE FROM hashes WHERE hash = ? AND recording_id = ?", zip(hash_set, repeat(recording_id))
            )
        self._conn.execute("DELETE FROM recordings WHERE id = ?", (recording_id,))
        return True

    def remove(self, recording_id: int) -> bool:
        self._open_writer()
        with self._guard("cannot write"), self._transaction():
            return self._delete(int(recording_id))

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file and truncate it.

        Skipped silently while another process is reading (it is retried by
        SQLite's own automatic checkpoints).
        """
        if not self._writer:
            return
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.DatabaseError:
            pass

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
        self._conn, self._writer = None, False  # type: ignore[assignment]


def _remove_if_empty(path: Path) -> None:
    """Remove the database file ``path`` (and its WAL files) when it holds nothing: 0 bytes."""
    try:
        if path.is_file() and path.stat().st_size == 0:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    except OSError:
        pass


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    """An SQLite connection to ``path``: ``"ro"`` read-only, ``"immutable"`` read-only without locks or
    side files (for read-only media, or to look at a file that may not be ours), ``"rwc"`` read-write."""
    query = {"ro": "mode=ro", "immutable": "mode=ro&immutable=1", "rwc": "mode=rwc"}[mode]
    return sqlite3.connect(f"{path.absolute().as_uri()}?{query}", uri=True, timeout=BUSY_TIMEOUT_SECONDS,
                           isolation_level=None, check_same_thread=True)


def _switch_to_wal(conn: sqlite3.Connection) -> str:
    """Set WAL journaling; the mode it reports.  Another process creating the same new file holds a lock
    that SQLite's busy handler does not wait for here ("database is locked" at once): retry for a while."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _writable_folder(path: Path) -> bool:
    return os.access(path.parent if str(path.parent) else Path("."), os.W_OK)


def _table_names(conn: sqlite3.Connection) -> set[str]:
    """Names of every table, index, view and trigger of the database."""
    return {str(name) for (name,) in conn.execute("SELECT name FROM sqlite_master").fetchall()}


def _our_meta(conn: sqlite3.Connection, tables: set[str]) -> dict[str, str] | None:
    """The ``meta`` table of a genre-id fingerprint database, or ``None`` when the database is another's."""
    if "meta" not in tables:
        return None
    try:
        rows = conn.execute("SELECT key, value FROM meta LIMIT 100").fetchall()
    except sqlite3.OperationalError:  # a "meta" table of other columns
        return None
    meta = {str(k): str(v) for k, v in rows}
    if "schema_version" not in meta or "params" not in meta:
        return None
    if meta["schema_version"] == str(SCHEMA_VERSION) and not {"recordings", "hashes"} <= tables:
        raise sqlite3.DatabaseError("its recordings or hashes table is missing")
    return meta


def _problem(exc: Exception) -> str:
    """One line saying what an exception raised while reading the database means."""
    detail = one_line(exc)[:200]
    if isinstance(exc, sqlite3.OperationalError):  # locked, interrupted, cannot open, ...
        return detail
    if isinstance(exc, sqlite3.DatabaseError):  # malformed, not a database
        return f"the database is damaged ({detail})"
    return f"the database is damaged ({type(exc).__name__}: {detail})"


def _foreign_message(path: Path) -> str:
    return f"{path}: not a genre-id fingerprint database (it holds other tables); refusing to use it"


def _probe(path: Path) -> dict[str, str] | None:
    """The ``meta`` of an existing file, ``None`` when it is empty; raises unless it is a fingerprint database.

    Nothing is written: the file is first read as immutable (no lock, no
    side files); only when it looks empty while a write-ahead log exists (a
    database another process is making) is it read again with a normal
    read-only connection.
    """
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise FingerprintDBError(f"{path}: not a usable fingerprint database (not a regular file)")
        if st.st_size == 0:
            return None
        with open(path, "rb") as fh:
            header = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise FingerprintDBError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if header != _SQLITE_MAGIC:
        raise FingerprintDBError(f"{path}: not a usable fingerprint database (not an SQLite database)")
    wal = Path(f"{path}-wal")
    for mode in ("immutable", "ro"):
        conn = None
        try:
            conn = _connect(path, mode)
            tables = _table_names(conn)
            if tables or mode == "ro" or not (wal.exists() and wal.stat().st_size > 0):
                meta = _our_meta(conn, tables) if tables else None
                if tables and meta is None:
                    raise FingerprintDBError(_foreign_message(path))
                return meta
        except sqlite3.DatabaseError as exc:
            if mode == "ro":
                raise FingerprintDBError(f"{path}: not a usable fingerprint database: {_problem(exc)}") from None
        finally:
            if conn is not None:
                conn.close()
    return None  # not reached
