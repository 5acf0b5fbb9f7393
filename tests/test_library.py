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
from genre_id.library import ResultStore, display_genre, scan

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

    def counting(self, sources):
        sources = list(sources)
        seen.extend(os.fsdecode(s) for s in sources)
        return real(self, sources)

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


def test_parquet_export_without_pyarrow_is_one_line(tmp_path, capsys):
    if __import__("importlib").util.find_spec("pyarrow") is not None:
        pytest.skip("pyarrow is installed")
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


@pytest.mark.slow
def test_quick_judges_long_files_from_three_windows(tmp_path, monkeypatch, analysed):
    lib = tmp_path / "lib"
    lib.mkdir()
    parts = [audio.load(c, sample_rate=22050)[0] for c in CLIPS[:5]]
    sf.write(lib / "long.flac", np.concatenate(parts), 22050)  # 2.5 minutes
    shutil.copyfile(CONFIDENT, lib / "short.flac")
    windows = []
    real = Analyzer.analyze

    def counting(self, source, **kw):
        if isinstance(source, np.ndarray):
            windows.append(len(source) / kw["sample_rate"])
        return real(self, source, **kw)

    monkeypatch.setattr(Analyzer, "analyze", counting)
    with Analyzer.load(workers=1) as analyzer, ResultStore(tmp_path / "r.sqlite") as store:
        summary = scan(lib, analyzer, store, quick=True)
        long = store.get(str(lib / "long.flac"))
    assert summary.analysed == 2 and analysed == [str(lib / "short.flac")]
    assert windows == pytest.approx([30.0] * 3, abs=0.1)
    assert long["genre"] and long["duration"] == pytest.approx(150, abs=1)


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


@pytest.mark.slow
def test_a_file_that_cannot_be_written_is_reported(tmp_path, capsys):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copyfile(CONFIDENT, lib / "a.flac")
    db = str(tmp_path / "r.sqlite")
    assert main(["scan", str(lib), "--results", db, "--workers", "1", "-q"]) == 0
    os.chmod(lib, 0o555)
    try:
        if os.access(lib, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable")
        capsys.readouterr()
        assert main(["scan", "--results", db, "--write-tags", "--min-confidence", "0", "--apply", "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "a.flac" in err[0]
    finally:
        os.chmod(lib, 0o755)
    assert "genre" not in _tags(lib / "a.flac")


@pytest.mark.slow
def test_beets_plugin_names_genres(tmp_path):
    if shutil.which("beet") is None:
        pytest.skip("beets is not installed (pip install beets)")
    lib = library(tmp_path / "music", 3)
    config = tmp_path / "beets"
    config.mkdir()
    (config / "config.yaml").write_text(
        f"directory: {tmp_path / 'lib'}\nlibrary: {tmp_path / 'library.db'}\nplugins: genreid\n"
        "import: {autotag: no, copy: no, write: no}\ngenreid: {workers: 1}\n")
    env = {**os.environ, "BEETSDIR": str(config),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def beet(*args: str) -> str:
        done = subprocess.run(["beet", *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    beet("import", "-A", "-q", str(lib))
    assert len(beet("ls", "-f", "$title").splitlines()) == 3
    beet("genreid")
    genres = beet("ls", "-f", "$genre $genreid_confidence").splitlines()
    assert len(genres) == 3
    labels = {display_genre(g) for g in Analyzer.load().labels}
    assert all(line.split()[0] in labels and 0 < float(line.split()[1]) <= 1 for line in genres), genres


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
