"""``genre-id scan`` (genre_id.library): the resumable results store, tags and undo, and the beets plugin."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import MINI, ROOT
from genre_id import audio
from genre_id.analysis import Analyzer
from genre_id.cli import main
from genre_id.library import ROW_FIELDS, ResultStore, display_genre, scan

pytestmark = pytest.mark.skipif(not MINI.is_dir(), reason=f"the shared clips are not at {MINI}")

CLIPS = sorted(MINI.glob("*/*.00000.flac")) + sorted(MINI.glob("*/*.00001.flac"))
CONFIDENT = MINI / "hiphop" / "hiphop.00001.flac"  # the shipped model is sure of this one (0.99)


def library(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for clip in CLIPS[:n]:
        shutil.copyfile(clip, folder / clip.name)
    return folder


@pytest.fixture
def analysed(monkeypatch):
    """Every path handed to Analyzer.analyze_many, in order."""
    seen: list[str] = []
    real = Analyzer.analyze_many

    def counting(self, sources, **kw):
        sources = list(sources)
        seen.extend(os.fsdecode(s) for s in sources)
        return real(self, sources, **kw)

    monkeypatch.setattr(Analyzer, "analyze_many", counting)
    return seen


def rows(db: Path) -> dict[str, sqlite3.Row]:
    with sqlite3.connect(db) as c:
        c.row_factory = sqlite3.Row
        return {r["path"]: r for r in c.execute("SELECT * FROM results")}


@pytest.mark.slow
def test_a_second_scan_decodes_nothing_and_moves_and_changes_are_noticed(tmp_path, analysed):
    lib = library(tmp_path / "lib", 6)
    db = tmp_path / "r.sqlite"
    with Analyzer.load(workers=1) as analyzer, ResultStore(db) as store:
        first = scan(lib, analyzer, store, batch=4)
        assert (first.files, first.analysed, len(store)) == (6, 6, 6)
        assert len(analysed) == 6
        analysed.clear()

        started = time.perf_counter()
        again = scan(lib, analyzer, store, batch=4)
        resumed = time.perf_counter() - started
        assert (again.unchanged, again.analysed, analysed) == (6, 0, [])
        assert resumed < 1.0

        moved_from = lib / CLIPS[0].name
        (lib / "sub").mkdir()
        moved_to = lib / "sub" / "renamed.flac"
        os.rename(moved_from, moved_to)
        before = store.get(str(moved_from))
        moved = scan(lib, analyzer, store, batch=4)
        assert (moved.moved, moved.analysed, moved.removed, analysed) == (1, 0, 1, [])
        assert store.get(str(moved_from)) is None
        assert store.get(str(moved_to))["genre"] == before["genre"]

        changed = lib / CLIPS[1].name
        y, sr = sf.read(changed)
        sf.write(changed, y[::-1] * 0.5, sr)  # different audio in the same file
        redone = scan(lib, analyzer, store, batch=4)
        assert (redone.analysed, redone.unchanged, analysed) == (1, 5, [str(changed)])
    export = tmp_path / "out.csv"
    assert main(["scan", "--results", str(db), "--export", str(export), "-q"]) == 0
    assert len(export.read_text().splitlines()) == 7


def test_parquet_export_has_every_row_and_column(tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed (pip install 'genre-id[parquet]')")
    db = tmp_path / "r.sqlite"
    _stored(db, tmp_path / "a.flac", tmp_path / "b\udcff.mp3")  # a name that is not UTF-8
    assert main(["scan", "--results", str(db), "--export", str(tmp_path / "o.parquet"), "-q"]) == 0
    table = pq.read_table(tmp_path / "o.parquet")
    with ResultStore(db) as store:
        stored = list(store.rows())
    assert table.column_names == list(ROW_FIELDS) and table.num_rows == 2
    got = table.to_pylist()
    assert [r["genre"] for r in got] == ["rock", "rock"] and got[0]["confidence"] == stored[0]["confidence"]
    assert got[1]["path"].endswith("b\ufffd.mp3") and got[0]["quick"] == 0
    assert str(table.schema.field("size").type) == "int64"


def test_parquet_export_without_pyarrow_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    ResultStore(tmp_path / "r.sqlite").close()
    assert main(["scan", "--results", str(tmp_path / "r.sqlite"), "--export", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pyarrow" in err[0]


@pytest.mark.slow
def test_kill_9_loses_at_most_the_batch_in_flight(tmp_path, analysed):
    lib = library(tmp_path / "lib", 12)
    db = tmp_path / "r.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "genre_id.cli", "scan", str(lib), "--results", str(db),
                             "--batch", "2", "--workers", "1", "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if db.exists() and len(rows(db)) >= 2:
                    break
            except sqlite3.OperationalError:  # the table is not made yet
                pass
            time.sleep(0.05)
        assert proc.poll() is None, "the scan ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    stored = rows(db)  # the database opens after kill -9
    assert 2 <= len(stored) < 12 and len(stored) % 2 == 0  # whole batches only
    assert all(r["genre"] for r in stored.values())
    with Analyzer.load(workers=1) as analyzer, ResultStore(db) as store:
        summary = scan(lib, analyzer, store, batch=2)
    assert summary.unchanged == len(stored)
    assert sorted(analysed) == sorted(str(p) for p in lib.glob("*.flac") if str(p) not in stored)


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory) -> Path:
    """2.5 minutes: five clips of different genres, one after another."""
    path = tmp_path_factory.mktemp("long") / "long.flac"
    sf.write(path, np.concatenate([audio.load(c, sample_rate=22050)[0] for c in CLIPS[:5]]), 22050)
    return path


@pytest.mark.slow
def test_quick_reads_three_windows_of_a_long_file_by_seeking(tmp_path, monkeypatch, long_recording):
    from genre_id import extraction

    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copyfile(long_recording, lib / "long.flac")
    shutil.copyfile(CONFIDENT, lib / "short.flac")
    reads, whole = [], []
    load, iter_windows = audio.load, audio.iter_windows
    monkeypatch.setattr(audio, "load", lambda path, **kw: reads.append((Path(path).name, kw)) or load(path, **kw))
    monkeypatch.setattr(audio, "iter_windows",
                        lambda path, **kw: whole.append(Path(path).name) or iter_windows(path, **kw))
    with Analyzer.load(workers=1) as analyzer, ResultStore(tmp_path / "r.sqlite") as store:
        summary = scan(lib, analyzer, store, quick=True)
        long, short = store.get(str(lib / "long.flac")), store.get(str(lib / "short.flac"))
    assert summary.analysed == 2 and whole == ["short.flac"]  # the long file is never decoded whole
    assert [(name, round(kw["offset"]), kw["duration"]) for name, kw in reads] == [
        ("long.flac", 15, 30.0), ("long.flac", 60, 30.0), ("long.flac", 105, 30.0)]
    assert long["quick"] == 1 and long["genre"] and long["duration"] == pytest.approx(150, abs=1)
    assert short["quick"] == 0 and short["genre"] == "hiphop"
    assert extraction.EXCERPT_POSITIONS == (0.2, 0.5, 0.8)


@pytest.mark.slow
def test_quick_judges_its_three_windows_as_one_recording_also_in_worker_processes(tmp_path, long_recording):
    y, sr = audio.load(long_recording, sample_rate=22050)
    with Analyzer.load(workers=2) as analyzer:
        reports = list(analyzer.analyze_many([long_recording, CONFIDENT], quick=True))
        quick = reports[0].prediction
        starts = [round(segment.start * sr) for segment in quick.segments]
        excerpts = np.concatenate([y[s: s + 30 * sr] for s in starts])
        expected = analyzer.analyze(excerpts, sample_rate=sr).prediction.probabilities
    assert [s / sr for s in starts] == pytest.approx([15, 60, 105], abs=0.5)
    assert quick.probabilities == pytest.approx(expected, abs=1e-4)
    assert quick.duration == pytest.approx(len(y) / sr) and len(quick.segments) == 3
    assert reports[1].prediction.genre == "hiphop"


@pytest.mark.slow
def test_a_full_scan_replaces_quick_answers_and_a_quick_scan_keeps_full_ones(tmp_path, long_recording, analysed):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copyfile(long_recording, lib / "long.flac")
    with Analyzer.load(workers=1) as analyzer, ResultStore(tmp_path / "r.sqlite") as store:
        scan(lib, analyzer, store, quick=True)
        assert store.get(str(lib / "long.flac"))["quick"] == 1
        assert scan(lib, analyzer, store, quick=True).unchanged == 1
        assert scan(lib, analyzer, store).analysed == 1  # the whole file now
        assert store.get(str(lib / "long.flac"))["quick"] == 0
        assert scan(lib, analyzer, store, quick=True).unchanged == 1  # a whole answer serves a quick scan
        shutil.copyfile(lib / "long.flac", lib / "copy.flac")
        assert scan(lib, analyzer, store, quick=True).moved == 1
    assert len(analysed) == 2


def test_a_store_from_before_the_quick_column_is_upgraded_in_place(tmp_path):
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE results (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, "
                  "sha256 TEXT, genre TEXT, confidence REAL, top TEXT, probabilities TEXT, model_name TEXT, "
                  "model_version TEXT, duration REAL, error TEXT, previous_genre TEXT, "
                  "tags_written INTEGER NOT NULL DEFAULT 0)")
        c.execute("INSERT INTO results (path, size, mtime_ns, genre) VALUES ('/x.flac', 1, 2, 'rock')")
    c.close()
    with ResultStore(db) as store:
        assert store.get("/x.flac")["quick"] == 0 and store.get("/x.flac")["genre"] == "rock"


def _encoded(folder: Path) -> dict[str, Path]:
    from test_audio_formats import encode

    y, sr = sf.read(CONFIDENT, dtype="float32")
    stereo = np.stack([y, y]) if y.ndim == 1 else y.T
    files = {"flac": folder / "a.flac"}
    shutil.copyfile(CONFIDENT, files["flac"])
    files["ogg"] = folder / "a.ogg"
    sf.write(files["ogg"], y, sr, format="OGG", subtype="VORBIS")
    for ext, fmt, codec in (("mp3", "mp3", "libmp3lame"), ("m4a", "ipod", "aac")):
        files[ext] = encode(folder / f"a.{ext}", stereo, sr, fmt=fmt, codec=codec)
    return files


def _tags(path: Path) -> dict[str, list[str]]:
    import mutagen

    f = mutagen.File(path, easy=True)
    return {k: list(v) for k, v in (f.tags or {}).items()}


def _set(path: Path, **tags: str) -> None:
    import mutagen

    f = mutagen.File(path, easy=True)
    if f.tags is None:
        f.add_tags()
    for k, v in tags.items():
        f.tags[k] = [v]
    f.save()


@pytest.mark.slow
def test_write_tags_and_undo_in_four_formats(tmp_path, capsys):
    lib = tmp_path / "lib"
    lib.mkdir()
    files = _encoded(lib)
    for f in files.values():
        _set(f, artist="Somebody", title="Something")
    _set(files["ogg"], genre="Polka")
    os.chmod(files["mp3"], 0o640)
    samples = {k: audio.load(f)[0] for k, f in files.items()}
    db = str(tmp_path / "r.sqlite")
    assert main(["scan", str(lib), "--results", db, "--workers", "1", "-q"]) == 0
    genres = {k: display_genre(rows(Path(db))[str(f)]["genre"]) for k, f in files.items()}
    capsys.readouterr()

    assert main(["scan", "--results", db, "--write-tags", "--min-confidence", "1.01", "--apply", "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["scan", "--results", db, "--write-tags", "--min-confidence", "0", "-q"]) == 0  # a dry run
    out = capsys.readouterr().out
    assert f"{files['flac']}: (none) -> {genres['flac']}" in out and str(files["ogg"]) not in out
    assert all("genre" not in _tags(f) for k, f in files.items() if k != "ogg")

    assert main(["scan", "--results", db, "--write-tags", "--min-confidence", "0", "--apply", "-q"]) == 0
    for k, f in files.items():
        tags = _tags(f)
        assert tags["genre"] == (["Polka"] if k == "ogg" else [genres[k]]), k
        assert (tags["artist"], tags["title"]) == (["Somebody"], ["Something"]), k
        assert np.array_equal(audio.load(f)[0], samples[k]), k
    assert os.stat(files["mp3"]).st_mode & 0o777 == 0o640
    assert not [p for p in lib.iterdir() if p.name.startswith(".")]  # no copy left behind

    assert main(["scan", "--results", db, "--write-tags", "--min-confidence", "0", "--overwrite", "--apply",
                 "-q"]) == 0
    assert _tags(files["ogg"])["genre"] == [genres["ogg"]]
    assert main(["scan", str(lib), "--results", db, "--workers", "1", "-q"]) == 0  # the tags changed the files
    assert all(r["tags_written"] for r in rows(Path(db)).values())  # ... but they are not analysed again

    assert main(["scan", "--results", db, "--undo", "-q"]) == 0
    for k, f in files.items():
        tags = _tags(f)
        assert tags.get("genre") == (["Polka"] if k == "ogg" else None), k
        assert tags["artist"] == ["Somebody"]
        assert np.array_equal(audio.load(f)[0], samples[k]), k


def test_files_that_must_not_be_replaced_are_reported_and_the_rest_written(tmp_path, capsys):
    """Also as root: a read-only file, a hard-linked one and a vanished one are reported; a link keeps pointing."""
    lib, elsewhere = tmp_path / "lib", tmp_path / "elsewhere"
    lib.mkdir()
    elsewhere.mkdir()
    names = ("plain", "readonly", "hardlinked", "vanished", "target")
    for name in names:
        shutil.copyfile(CONFIDENT, (elsewhere if name == "target" else lib) / f"{name}.flac")
    os.chmod(lib / "readonly.flac", 0o444)
    os.link(lib / "hardlinked.flac", elsewhere / "other-name.flac")
    os.symlink(elsewhere / "target.flac", lib / "link.flac")
    os.chown(lib / "plain.flac", 1234, 1234)
    before = {n: (lib / f"{n}.flac").read_bytes() for n in ("readonly", "hardlinked")}
    db = tmp_path / "r.sqlite"
    _stored(db, *(lib / f"{n}.flac" for n in ("plain", "readonly", "hardlinked", "vanished", "link")))
    (lib / "vanished.flac").unlink()
    capsys.readouterr()
    assert main(["scan", "--results", str(db), "--write-tags", "--min-confidence", "0", "-q"]) == 2  # dry run
    dry = capsys.readouterr()
    assert "plain.flac: (none) -> Rock" in dry.out and "link.flac: (none) -> Rock" in dry.out
    assert len(dry.err.strip().splitlines()) == 3
    assert main(["scan", "--results", str(db), "--write-tags", "--min-confidence", "0", "--apply", "-q"]) == 2
    out, err = capsys.readouterr()
    problems = sorted(err.strip().splitlines())
    assert len(problems) == 3 and all(line.count("\n") == 0 for line in problems)
    assert "hardlinked.flac: the file has 1 other hard link(s)" in problems[0]
    assert "readonly.flac: the file is read-only" in problems[1]
    assert "vanished.flac" in problems[2] and "No such file" in problems[2]
    assert _tags(lib / "plain.flac")["genre"] == ["Rock"] and os.stat(lib / "plain.flac").st_uid == 1234
    assert (lib / "link.flac").is_symlink() and _tags(elsewhere / "target.flac")["genre"] == ["Rock"]
    assert {n: (lib / f"{n}.flac").read_bytes() for n in before} == before
    assert os.stat(elsewhere / "other-name.flac").st_nlink == 2
    assert sorted(p.name for p in lib.iterdir()) == ["hardlinked.flac", "link.flac", "plain.flac", "readonly.flac"]


@pytest.mark.slow
def test_a_file_that_vanishes_during_a_scan_is_reported_and_the_rest_stored(tmp_path):
    lib = library(tmp_path / "lib", 3)
    first, second, third = sorted(lib.iterdir())
    settled = []

    def remove_the_second(path: str, what: str) -> None:
        settled.append((Path(path).name, what))
        if len(settled) == 1:
            second.unlink()

    with Analyzer.load(workers=1) as analyzer, ResultStore(tmp_path / "r.sqlite") as store:
        summary = scan(lib, analyzer, store, batch=1, on_file=remove_the_second)
        stored = {Path(r["path"]).name for r in store.rows()}
    assert settled == [(first.name, "analysed"), (second.name, "failed"), (third.name, "analysed")]
    assert summary.failed == 1 and len(summary.errors) == 1 and second.name in summary.errors[0]
    assert stored == {first.name, third.name}


def _beets(tmp_path: Path, options: str):
    """``beet`` with a temporary library and config (the genreid plugin with ``options``, no autotagger)."""
    if shutil.which("beet") is None:
        pytest.skip("beets is not installed (pip install beets)")
    config = tmp_path / "beets"
    config.mkdir()
    (config / "config.yaml").write_text(
        f"directory: {tmp_path / 'lib'}\nlibrary: {tmp_path / 'library.db'}\nplugins: genreid\n"
        f"import: {{autotag: no, copy: no, write: no}}\ngenreid: {{workers: 1, {options}}}\n")
    env = {**os.environ, "BEETSDIR": str(config),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def beet(*args: str) -> str:
        done = subprocess.run(["beet", *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return beet


def _genres_and_confidences(beet) -> list[tuple[str, float]]:
    lines = beet("ls", "-f", "$genre $genreid_confidence").splitlines()
    return [(line.split()[0], float(line.split()[1])) for line in lines]


@pytest.mark.slow
def test_beets_plugin_names_genres(tmp_path):
    beet = _beets(tmp_path, "auto: no")
    lib = library(tmp_path / "music", 3)
    beet("import", "-A", "-q", str(lib))
    assert beet("ls", "-f", "$genreid_confidence").split() == ["$genreid_confidence"] * 3  # auto is off: unset
    assert "genreid" in beet("genreid", "-h")
    beet("genreid")
    labels = {display_genre(g) for g in Analyzer.load().labels}
    genres = _genres_and_confidences(beet)
    assert len(genres) == 3 and all(g in labels and 0 < c <= 1 for g, c in genres), genres


@pytest.mark.slow
def test_beets_plugin_names_genres_on_import_with_auto(tmp_path):
    beet = _beets(tmp_path, "auto: yes")
    music = tmp_path / "music"
    music.mkdir()
    shutil.copyfile(CONFIDENT, music / CONFIDENT.name)
    beet("import", "-A", "-q", str(music))
    [(genre, confidence)] = _genres_and_confidences(beet)
    assert genre == "Hip-Hop" and confidence > 0.9


def _stored(db: Path, *paths: Path, genre: str = "rock", tags_written: int = 0) -> None:
    """Rows for ``paths`` as a scan would have left them (no analysis needed)."""
    with ResultStore(db) as store:
        store.put_many([{"path": str(p), "size": 1, "mtime_ns": 1, "sha256": "x", "genre": genre, "confidence": 0.99,
                         "model_name": "m", "model_version": "1", "previous_genre": None,
                         "tags_written": tags_written} for p in paths])


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(["timeout", "-s", "KILL", str(int(timeout)), sys.executable, "-c", "import sys; from genre_id.cli import main; sys.exit(main())", *args],
                          env=env, capture_output=True, text=True, timeout=timeout + 10)


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("mode", [(), ("--apply",), ("--undo",)])
def test_tags_are_never_read_from_a_fifo_or_a_device(tmp_path, kind, mode):
    lib = tmp_path / "sw"
    lib.mkdir()
    shutil.copyfile(CONFIDENT, lib / "a.flac")
    odd = lib / "b.flac"
    if kind == "fifo":
        os.mkfifo(odd)
    else:
        try:
            os.mknod(odd, 0o600 | __import__("stat").S_IFCHR, os.makedev(1, 5))  # /dev/zero
        except PermissionError:
            pytest.skip("no permission to make a device node")
    db = tmp_path / "W.sqlite"
    _stored(db, lib / "a.flac", odd, tags_written=int(mode == ("--undo",)))
    action = ["--undo"] if mode == ("--undo",) else ["--write-tags", *mode]
    done = _cli("scan", "--results", str(db), *action, timeout=60)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {odd}: not a regular file"], done.stderr
    assert "a.flac" in done.stdout  # the others go on


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_export_never_overwrites_the_results_a_recording_or_the_model(tmp_path, capsys):
    lib = library(tmp_path / "d", 1)
    audio_file = next(lib.iterdir())
    db = tmp_path / "R.sqlite"
    _stored(db, audio_file)
    model = tmp_path / "M"
    shutil.copytree(ROOT / "genre_id" / "models" / "default", model)
    before = {p: p.read_bytes() for p in [db, audio_file, *model.rglob("*")] if p.is_file()}
    for out in [db, Path(f"{db}-journal"), Path(f"{db}-wal"), Path(f"{db}-shm")]:
        assert main(["scan", "--results", str(db), "--export", str(out), "-q"]) == 2, out
        assert str(out) in _one_error(capsys)
    # a recording: named by the scanned folder, or stored in the results
    assert main(["scan", str(lib), "--results", str(db), "--model", str(model), "--export", str(lib / "x.flac")]) == 2
    _one_error(capsys)
    assert main(["scan", "--results", str(db), "--export", str(audio_file)]) == 2
    _one_error(capsys)
    # the model folder: neither the export nor the results go there
    assert main(["scan", str(lib), "--results", str(db), "--model", str(model),
                 "--export", str(model / "model.json")]) == 2
    _one_error(capsys)
    assert main(["scan", str(lib), "--results", str(model / "r.sqlite"), "--model", str(model)]) == 2
    _one_error(capsys)
    assert {p: p.read_bytes() for p in before} == before
    assert not (lib / "x.flac").exists() and not (model / "r.sqlite").exists()


def test_export_follows_a_link_to_a_file_and_writes_to_standard_output(tmp_path, capsys):
    db = tmp_path / "R.sqlite"
    _stored(db, tmp_path / "a.flac")
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    (tmp_path / "link.csv").symlink_to(target)
    assert main(["scan", "--results", str(db), "--export", str(tmp_path / "link.csv"), "-q"]) == 0
    assert (tmp_path / "link.csv").is_symlink() and target.read_text().startswith("path,")
    (tmp_path / "dangling.csv").symlink_to(tmp_path / "nowhere" / "x.csv")
    assert main(["scan", "--results", str(db), "--export", str(tmp_path / "dangling.csv")]) == 2
    assert "link to nothing" in _one_error(capsys)
    assert not (tmp_path / "nowhere").exists()
    assert main(["scan", "--results", str(db), "--export", "-", "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("path,") and len(out) == 2


@pytest.mark.parametrize("kind", ["audio", "fifo", "device", "loop", "folder", "dangling", "other-db"])
def test_results_that_are_not_a_results_database_are_refused(tmp_path, capsys, kind):
    lib = library(tmp_path / "d", 1)
    x = tmp_path / "X"
    if kind == "audio":
        shutil.copyfile(CLIPS[0], x)
    elif kind == "fifo":
        os.mkfifo(x)
    elif kind == "device":
        try:
            os.mknod(x, 0o600 | __import__("stat").S_IFCHR, os.makedev(1, 5))
        except PermissionError:
            pytest.skip("no permission to make a device node")
    elif kind == "loop":
        x.symlink_to(x)
    elif kind == "folder":
        x.mkdir()
    elif kind == "dangling":
        x.symlink_to(tmp_path / "nowhere" / "r.sqlite")
    else:
        with sqlite3.connect(x) as c:
            c.execute("CREATE TABLE fingerprints (hash INTEGER, song INTEGER)")
    before = x.read_bytes() if kind in ("audio", "other-db") else None
    done = _cli("scan", str(lib), "--results", str(x), "--workers", "1", timeout=120)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {x}: "), err
    assert not (tmp_path / "nowhere").exists()
    if before is not None:
        assert x.read_bytes() == before
    if kind == "other-db":
        with sqlite3.connect(x) as c:
            assert [r[0] for r in c.execute("SELECT name FROM sqlite_master")] == ["fingerprints"]


def test_unreadable_files_are_counted_as_failed_and_the_results_are_not_scanned(tmp_path, monkeypatch, capsys):
    from genre_id import library as lib_module

    lib = tmp_path / "d"
    lib.mkdir()
    for name in ("a.flac", "b.flac"):
        (lib / name).write_bytes(b"x")

    def unreadable(path):
        if os.path.basename(path) in ("a.flac", "b.flac"):
            raise OSError(13, "Permission denied", path)
        raise AssertionError(f"hashed {path}")

    monkeypatch.setattr("genre_id.cache.file_digest", unreadable)
    db = lib / "results.flac"  # a results file with an audio name, inside the scanned folder
    ResultStore(db).close()

    class Model:
        name, version = "m", "1"

    class NoAnalyzer:
        model = Model()

    with ResultStore(db) as store:
        summary = lib_module.scan(lib, NoAnalyzer(), store)
    assert summary.failed == len(summary.errors) == 2, summary
    assert summary.files == 2 and "results.flac" not in str(summary.errors)


@pytest.mark.slow
def test_a_file_name_that_is_not_utf8_is_scanned_rescanned_and_tagged(tmp_path, capsys):
    lib = tmp_path / "lib"
    lib.mkdir()
    odd = os.fsdecode(os.fsencode(lib) + b"/caf\xe9.flac")  # Latin-1, as old file systems left it
    shutil.copyfile(CONFIDENT, odd)
    db = str(tmp_path / "r.sqlite")
    assert main(["scan", str(lib), "--results", db, "--workers", "1", "-q"]) == 0
    with ResultStore(db) as store:
        assert [r["path"] for r in store.rows()] == [odd] and store.get(odd)["genre"] == "hiphop"
    with Analyzer.load(workers=1) as analyzer, ResultStore(db) as store:
        assert scan(lib, analyzer, store).unchanged == 1
    assert main(["scan", "--results", db, "--write-tags", "--apply", "-q"]) == 0
    assert _tags(Path(odd))["genre"] == ["Hip-Hop"]
