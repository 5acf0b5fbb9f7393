"""Hostile fingerprint databases and hostile text: other applications' databases, read-only media,
corruption, huge tags, and names that would forge output lines."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genre_id.cli import main
from genre_id.fingerprint import FingerprintIndex
from genre_id.fingerprint.metadata import title_and_artist
from genre_id.fingerprint.store import FingerprintDBError, SQLiteStore
from genre_id.textsafe import (
    MAX_TAG_CHARS,
    json_line,
    one_line,
    path_fields,
    text_table,
)

ROOT = Path(__file__).resolve().parents[1]
SR = 22050


def _song(seed: int, seconds: float = 8.0) -> np.ndarray:
    """Random notes with harmonics and noise bursts: plenty of spectral peaks."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int(seconds * SR))
    t = np.arange(int(0.25 * SR)) / SR
    for start in range(0, y.size - t.size, t.size):
        f = rng.uniform(110, 1760)
        note = sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3)) * np.exp(-4 * t)
        y[start:start + t.size] += note + 0.3 * rng.standard_normal(t.size) * np.exp(-30 * t)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture()
def song(tmp_path: Path) -> Path:
    path = tmp_path / "music" / "Band - Song.wav"
    path.parent.mkdir()
    sf.write(path, _song(1), SR)
    return path


@pytest.fixture()
def ours(tmp_path: Path, song: Path) -> Path:
    """A fingerprint database holding one song."""
    db = tmp_path / "db" / "fp.sqlite"
    with FingerprintIndex.open(db) as index:
        assert index.add(song)
    return db


def _run(*argv: str, capsys) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- item 3: another application's database is never written ----------------------------------------------


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_another_applications_database_is_refused_without_a_write(tmp_path: Path, song: Path, capsys,
                                                                  journal: str) -> None:
    folder = tmp_path / "other"
    folder.mkdir()
    db = folder / "other_app.sqlite"
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA journal_mode = {journal}")
    con.execute("CREATE TABLE users (name TEXT)")
    con.execute("INSERT INTO users VALUES ('bob')")
    con.commit()
    con.close()
    before = _digest(folder)
    for argv in (["identify", "--db", str(db), str(song)], ["index", "list", "--db", str(db)],
                 ["index", "add", "--db", str(db), str(song)], ["index", "remove", "--db", str(db), "1"]):
        code, out, err = _run(*argv, capsys=capsys)
        assert code == 2 and err == f"error: {db}: not a genre-id fingerprint database (it holds other tables); " \
                                    f"refusing to use it\n", (argv, err)
    for create in (True, False):
        with pytest.raises(FingerprintDBError, match="not a genre-id fingerprint database"):
            SQLiteStore.open(db, create=create)
    assert _digest(folder) == before  # same bytes, and no -wal, -shm or journal left beside it
    assert db.read_bytes()[18:20] == (b"\x02\x02" if journal == "wal" else b"\x01\x01")


def test_a_meta_table_of_other_columns_is_another_applications(tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE meta (id INTEGER, blob BLOB)")
    con.commit()
    con.close()
    with pytest.raises(FingerprintDBError, match="not a genre-id fingerprint database"):
        FingerprintIndex.open(db)


def test_tables_are_made_only_in_a_new_or_empty_file(tmp_path: Path, song: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(FingerprintDBError, match="an empty database"):
        FingerprintIndex.open(empty, create=False)
    assert empty.stat().st_size == 0
    with FingerprintIndex.open(empty) as index:
        assert index.add(song) and len(index.list()) == 1
    fifo = tmp_path / "fifo.sqlite"
    if hasattr(os, "mkfifo"):
        os.mkfifo(fifo)
        with pytest.raises(FingerprintDBError, match="not a regular file"):
            FingerprintIndex.open(fifo)


def test_queries_open_the_database_read_only(ours: Path, song: Path) -> None:
    before = ours.read_bytes()
    with FingerprintIndex.open(ours, create=False) as index:
        assert index.match_file(song) is not None and len(index.list()) == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            index.store._conn.execute("DELETE FROM recordings")  # type: ignore[attr-defined]
    # The database is unchanged; a reader of a WAL database may leave only its (empty) -wal and -shm.
    assert ours.read_bytes() == before and Path(f"{ours}-wal").stat().st_size == 0
    with FingerprintIndex.open(ours, create=False) as index:  # ... and reopened for writing to remove
        assert index.remove(1).title == "Song" and index.list() == []


# -- item 5: a database on read-only media ------------------------------------------------------------------

_ON_READ_ONLY_MEDIA = r"""
set -e
mount --bind "$SRC" "$MNT"
mount -o remount,ro,bind "$MNT"
"$PY" -c 'import sys; from genre_id.cli import main; sys.exit(main(sys.argv[1:]))' index list --db "$MNT/fp.sqlite"
"$PY" -c 'import sys; from genre_id.cli import main; sys.exit(main(sys.argv[1:]))' identify --db "$MNT/fp.sqlite" "$SONG"
"""


def test_a_database_on_read_only_media_can_be_queried(tmp_path: Path, ours: Path, song: Path) -> None:
    # WAL mode on read-only media: the -shm file cannot be made; this is the hard case.
    assert ours.read_bytes()[18:20] == b"\x02\x02" and not Path(f"{ours}-shm").exists()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {**os.environ, "SRC": str(ours.parent), "MNT": str(mnt), "PY": sys.executable, "SONG": str(song),
           "PYTHONPATH": str(ROOT)}
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only file system here (no user namespaces)")
    out = subprocess.run(["unshare", "-rm", "sh", "-c", _ON_READ_ONLY_MEDIA], capture_output=True, text=True,
                         env=env, timeout=300)
    if "mount" in out.stderr and out.returncode:
        pytest.skip(f"cannot mount a read-only file system here ({out.stderr.strip()})")
    assert out.returncode == 0, out.stderr
    assert "Band" in out.stdout and 'match: "Song" by Band' in out.stdout


# -- item 4: corruption is a one-line error naming the database ------------------------------------------------


def _scribble(db: Path) -> None:
    """Overwrite every page after the first (the schema) with bytes SQLite cannot read."""
    con = sqlite3.connect(db)
    page = con.execute("PRAGMA page_size").fetchone()[0]
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(db.read_bytes())
    data[page:] = bytes(np.random.default_rng(0).integers(0, 256, len(data) - page, dtype=np.uint8))
    db.write_bytes(bytes(data))


def test_a_corrupt_database_is_a_one_line_error(ours: Path, song: Path, capsys) -> None:
    _scribble(ours)
    for argv in (["index", "list", "--db", str(ours)], ["index", "remove", "--db", str(ours), "1"],
                 ["identify", "--db", str(ours), str(song)], ["index", "add", "--db", str(ours), str(song)]):
        code, out, err = _run(*argv, capsys=capsys)
        lines = err.splitlines()
        assert code == 2 and len(lines) == 1 and str(ours) in lines[0] and "damaged" in lines[0], (argv, err)
        assert "internal error" not in err


def test_damaged_rows_are_one_line_errors_and_removal_survives_a_damaged_hash_set(ours: Path) -> None:
    con = sqlite3.connect(ours)
    con.execute("UPDATE recordings SET hash_set = x'78da00ff00ff'")
    con.commit()
    with FingerprintIndex.open(ours, create=False) as index:
        assert index.remove(1).id == 1
        assert index.store.stats().hashes == 0 and con.execute("SELECT COUNT(*) FROM hashes").fetchone()[0] == 0
    con.execute("INSERT INTO recordings VALUES (7, 'ab', 'T', NULL, '/x', 'long', 'n', 'now', x'00')")
    con.commit()
    con.close()
    with FingerprintIndex.open(ours, create=False) as index, \
            pytest.raises(FingerprintDBError, match=r"fp.sqlite: cannot read: the database is damaged \(ValueError"):
        index.list()


# -- item 6: tag values are bounded --------------------------------------------------------------------------------


def test_a_huge_title_tag_is_cut_when_indexed(tmp_path: Path, song: Path, capsys) -> None:
    import mutagen

    flac = tmp_path / "music" / "tagged.flac"
    sf.write(flac, _song(2), SR)
    tagged = mutagen.File(flac)
    tagged["title"] = "T" * (2 << 20)
    tagged["artist"] = "A" * 5000
    tagged.save()
    title, artist = title_and_artist(flac)
    assert len(title) == MAX_TAG_CHARS and title.endswith("\u2026") and len(artist) == MAX_TAG_CHARS
    db = tmp_path / "fp.sqlite"
    code, _, _ = _run("index", "add", "--db", str(db), str(flac), str(song), capsys=capsys)
    assert code == 0
    code, out, _ = _run("index", "list", "--db", str(db), capsys=capsys)
    assert code == 0 and max(len(line) for line in out.splitlines()) < 2 * MAX_TAG_CHARS + 200
    with FingerprintIndex.open(db, create=False) as index:
        assert max(len(r.title) for r in index.list()) == MAX_TAG_CHARS


# -- item 7: output that cannot be forged -------------------------------------------------------------------------


def test_one_line_escapes_everything_a_terminal_acts_on() -> None:
    assert one_line("Blue in Green – Miles Davis") == "Blue in Green – Miles Davis"
    assert one_line("a\nerror: forged\r\t") == "a\\nerror: forged\\r\\t"
    assert one_line("\x1b[31mred\x1b[0m\x7f\x9b") == "\\x1b[31mred\\x1b[0m\\x7f\\x9b"
    assert one_line("evil\u202egnp.exe\u2028x\u200b") == "evil\\u202egnp.exe\\u2028x\\u200b"
    assert one_line(os.fsdecode(b"caf\xe9.mp3")) == "caf\\xe9.mp3"
    assert one_line(b"caf\xe9\n.mp3") == "caf\\xe9\\n.mp3"
    assert one_line("a\\nb") == "a\\\\nb"  # a literal backslash-n is not confused with a newline
    for ch in map(chr, range(0x110000)):
        line = one_line(ch)
        assert line.isprintable() and "\n" not in line


def test_a_table_lines_up_escaped_cells_one_row_per_line() -> None:
    table = text_table(("id", "title", "file"), [(7, "a\nerror: forged", "x.wav"), (12, "Blue", "y.wav")],
                       right={0}, rule=True)
    assert table.splitlines() == [
        "id  title             file",
        "--  ----------------  -----",
        " 7  a\\nerror: forged  x.wav",
        "12  Blue              y.wav",
    ]
    with pytest.raises(ValueError):
        text_table(("a", "b"), [("only one",)])


def test_json_forms_are_lossless_and_inert() -> None:
    name = os.fsdecode(b"/music/caf\xe9\n.mp3")
    fields = path_fields(name)
    assert fields["file"] == "/music/caf\ufffd\n.mp3"
    assert base64.b64decode(fields["file_bytes"]) == b"/music/caf\xe9\n.mp3"
    assert path_fields("/music/café.mp3") == {"file": "/music/café.mp3"}
    text = json_line({"title": "a\u202eb\x1b\x9b", "file": name, "ok": "é"})
    assert text.isascii() is False and "é" in text and all(ch.isprintable() for ch in text)
    text.encode("utf-8")
    assert json.loads(text)["title"] == "a\u202eb\x1b\x9b"


def test_a_file_name_that_is_not_utf8_is_indexed_and_listed_losslessly(tmp_path: Path, song: Path, capsys) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9 - \x1b[2Jsong\n.wav"
    try:
        shutil.copy(song, os.fsdecode(raw))
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    db = tmp_path / "fp.sqlite"
    with FingerprintIndex.open(db) as index:
        assert index.add(os.fsdecode(raw)) is True
    with FingerprintIndex.open(db) as index:
        rec = index.list()[0]
        assert os.fsencode(rec.path) == raw
        d = rec.to_dict()
        assert base64.b64decode(d["file_bytes"]) == raw and "\udce9" not in d["file"]
        assert index.find(os.fsdecode(raw)).id == rec.id
        assert "\n" not in one_line(rec.path) and "\x1b" not in one_line(rec.title)
        assert index.remove(os.fsdecode(raw)).id == rec.id


def test_a_new_database_that_cannot_be_made_leaves_no_empty_file(tmp_path, monkeypatch):
    """A full disk while a new database is set up: one line, and no 0-byte database left to confuse the next run."""
    import sqlite3

    from genre_id.fingerprint import store as store_module
    from genre_id.fingerprint.store import FingerprintDBError, SQLiteStore

    def disk_full(conn):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store_module, "_switch_to_wal", disk_full)
    db = tmp_path / "fp.sqlite"
    with pytest.raises(FingerprintDBError, match="disk is full"):
        SQLiteStore.open(db)
    assert list(tmp_path.iterdir()) == []


def test_a_database_path_that_is_a_broken_link_is_refused_and_nothing_is_made(tmp_path):
    (tmp_path / "dangling.sqlite").symlink_to(tmp_path / "elsewhere" / "made.sqlite")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    for name in ("dangling.sqlite", "loop1"):
        with pytest.raises(FingerprintDBError, match="link to nothing"):
            FingerprintIndex.open(tmp_path / name)
    assert not (tmp_path / "elsewhere").exists() and (tmp_path / "loop1").is_symlink()
