"""Command-line conventions: --version, options among files, folders and stdin, --format/--out/--plot, -q/-v,
progress bars on terminals only, platform locations and the cache command, escaped output, failures at save time."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import signal
import stat
import subprocess
from pathlib import Path
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, tone

CLI = [sys.executable, "-m", "genre_id.cli"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run(args, **kw):
    kw.setdefault("env", ENV)
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture()
def clips(tmp_path):
    """Two short synthetic clips (CLI mechanics only)."""
    paths = [tmp_path / "a.wav", tmp_path / "b.wav"]
    for i, p in enumerate(paths):
        sf.write(p, tone(4.0, freq=220.0 * (i + 1), seed=i), 22050)
    return paths


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory, mini_dir):
    """Two real clips of different genres back to back (60 s): a timeline of two windows."""
    metal = sorted((mini_dir / "metal").glob("*.flac"))[0]
    classical = sorted((mini_dir / "classical").glob("*.flac"))[0]
    y = np.concatenate([sf.read(metal, dtype="float32")[0], sf.read(classical, dtype="float32")[0]])
    path = tmp_path_factory.mktemp("long") / "metal then classical.flac"
    sf.write(path, y, 22050)
    return path


# --- conventions -----------------------------------------------------------------------------------

def test_version():
    out = run(["--version"])
    assert out.returncode == 0 and out.stdout.strip() == "genre-id 0.1.0"


def test_options_anywhere_among_the_file_names(clips):
    out = run(["identify", clips[0], "--no-timeline", "--top", "2", clips[1]])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines] == [str(c) for c in clips]
    assert all(line.count(",") == 0 and line.count("(") == 1 for line in lines), "--top 2: one runner-up each"


@pytest.mark.parametrize("top", ["0", "11", "-3"])
def test_top_out_of_range_is_one_line(clips, top):
    out = run(["identify", clips[0], "--top", top])
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == f"error: --top must be from 1 to 10 (the model's genres), not {int(top)}\n"


def test_every_command_takes_quiet_and_verbose():
    from genre_id.cli import build_parser

    for argv in (["identify", "a.wav"], ["train", "d", "--out", "m"], ["evaluate", "d"], ["index", "add", "d"],
                 ["index", "list"], ["index", "remove", "1"], ["cache", "info"], ["cache", "clear"]):
        for flag, attr in (("-q", "quiet"), ("--quiet", "quiet"), ("-v", "verbose"), ("--verbose", "verbose")):
            args = build_parser().parse_args([*argv, flag])
            assert getattr(args, attr) is True, (argv, flag)


def test_identify_walks_folders_and_counts_what_it_skipped(tmp_path, clips):
    music = tmp_path / "music"
    (music / "sub" / "deeper").mkdir(parents=True)
    (music / "sub" / "deeper" / "z.wav").write_bytes(clips[0].read_bytes())
    (music / "first.WAV").write_bytes(clips[1].read_bytes())
    (music / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    (music / "sub" / "notes.txt").write_text("liner notes")
    (music / ".hidden.wav").write_bytes(b"not looked at")
    out = run(["identify", music])
    assert out.returncode == 0, out.stderr
    assert [line.split("  ")[0] for line in out.stdout.splitlines()] == [
        str(music / "first.WAV"), str(music / "sub" / "deeper" / "z.wav")]
    assert out.stderr == "skipped 2 non-audio files\n"
    assert run(["identify", "-q", music]).stderr == ""
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run(["identify", empty, clips[0]])
    assert res.returncode == 2 and res.stderr == f"error: {empty}: is a directory with no audio files\n"
    assert res.stdout.startswith(f"{clips[0]}  "), "the other inputs are still identified"


def test_identify_reads_standard_input(mini_dir):
    clip = mini_dir / "jazz" / "jazz.00001.flac"
    by_path = run(["identify", "--json", clip])
    piped = run(["identify", "--json", "-"], input=None, stdin=open(clip, "rb"))
    assert piped.returncode == 0, piped.stderr
    a, b = json.loads(by_path.stdout), json.loads(piped.stdout)
    assert b["file"] == "<stdin>" and b["probabilities"] == a["probabilities"]
    bad = subprocess.run([*CLI, "identify", "-"], input=b"", capture_output=True, env=ENV, timeout=120)
    assert bad.returncode == 2 and bad.stderr == b"error: <stdin>: input is empty\n"
    twice = run(["identify", "-", "-"], stdin=subprocess.DEVNULL)
    assert twice.returncode == 2 and "only once" in twice.stderr
    # started with its standard input closed (`genre-id identify - <&-`): one line, not an internal error
    closed = subprocess.run(["/bin/sh", "-c", 'exec "$@" <&-', "sh", *CLI, "identify", "-"], capture_output=True,
                            env=ENV, timeout=120)
    assert closed.returncode == 2 and closed.stderr == b"error: <stdin>: standard input is closed\n"


@pytest.mark.parametrize("fmt", ["json", "csv", "text"])
def test_out_file_in_every_format(tmp_path, clips, fmt):
    target = tmp_path / "reports" / f"genres.{fmt}"
    out = run(["identify", *clips, "--format", fmt, "--out", target])
    assert out.returncode == 0 and out.stdout == "", out.stderr
    text = target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644, "ordinary permissions under the usual umask"
    assert [p.name for p in target.parent.iterdir()] == [target.name], "no temporary file left"
    if fmt == "json":
        rows = [json.loads(line) for line in text.splitlines()]
        assert [r["file"] for r in rows] == [str(c) for c in clips]
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [r["file"] for r in rows] == [str(c) for c in clips]
        for r in rows:
            assert abs(sum(float(r[g]) for g in ("blues", "classical", "country", "disco", "hiphop", "jazz",
                                                  "metal", "pop", "reggae", "rock")) - 1) < 2e-3
            assert float(r[r["genre"]]) == float(r["confidence"])
    else:
        assert [line.split("  ")[0] for line in text.splitlines()] == [str(c) for c in clips]
    # --json is --format json
    assert run(["identify", clips[0], "--json"]).stdout == run(["identify", clips[0], "--format", "json"]).stdout


def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, clips):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for target, problem in [(a_file / "genres.txt", f"cannot write ({a_file} is not a folder)"),
                            (tmp_path, "is a folder; name a file to write")]:
        for option in ("--out", "--plot"):
            out = run(["identify", clips[0], option, target, "--workers", "1"])
            assert (out.returncode, out.stdout) == (2, ""), out.stderr
            assert out.stderr == f"error: {target}: {problem}\n"
    assert a_file.read_text() == "mine"


def test_a_ctrl_c_once_the_work_is_done_keeps_the_exit_code():
    # The interpreter takes a moment to shut down after the last line; a Ctrl-C then must not turn
    # a finished run into exit 130 (here the Ctrl-C comes from an exit hook, at that very moment).
    code = ("import atexit, os, signal, time\n"
            "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(2)))\n"
            "from genre_id.cli import run\n"
            "run(['--version'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV)
    assert (out.returncode, out.stdout.strip(), out.stderr) == (0, "genre-id 0.1.0", "")


def test_a_ctrl_c_while_the_arguments_are_read_is_one_line_and_exit_130():
    # Building the parser imports every command family: a Ctrl-C lands there now and then.
    code = ("import genre_id.cli as cli\n"
            "def interrupted():\n"
            "    raise KeyboardInterrupt\n"
            "cli.build_parser = interrupted\n"
            "cli.run(['identify', 'song.flac'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV)
    assert (out.returncode, out.stdout, out.stderr) == (130, "", "error: interrupted\n")


def test_the_entry_point_imports_nothing_heavy_before_the_command_runs():
    # Everything heavy is imported inside run(), where a Ctrl-C is one line; before it, a
    # Ctrl-C is Python's own traceback.  numpy alone takes a few hundred milliseconds.
    code = "import sys; import genre_id.cli; print(sorted(m for m in ('numpy', 'genre_id.recognizer') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV)
    assert (out.returncode, out.stdout, out.stderr) == (0, "[]\n", "")


@pytest.mark.slow
def test_json_segments_have_each_windows_top_and_probabilities(long_clip):
    out = run(["identify", "--json", "--top", "2", long_clip])
    assert out.returncode == 0, out.stderr
    segs = json.loads(out.stdout)["segments"]
    assert [s["genre"] for s in segs] == ["metal", "classical"], "real clips, each window named right"
    for s in segs:
        assert len(s["top"]) == 2 and s["top"][0] == {"genre": s["genre"], "probability": s["confidence"]}
        assert s["top"][0]["probability"] >= s["top"][1]["probability"]
        assert abs(sum(s["probabilities"].values()) - 1) < 2e-3 and len(s["probabilities"]) == 10
        assert s["probabilities"][s["genre"]] == max(s["probabilities"].values())


@pytest.mark.slow
def test_plot_draws_the_timeline(tmp_path, long_clip, clips):
    from genre_id import Recognizer
    from genre_id.cli.plot import timeline_steps

    png = tmp_path / "plots" / "timeline.png"
    out = run(["identify", long_clip, "--plot", png])
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and stat.S_IMODE(png.stat().st_mode) == 0o644
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[:2] == (400, 1000) and img[..., :3].std() > 0.1, "a drawn chart, not a blank image"
    assert [p.name for p in png.parent.iterdir()] == ["timeline.png"]
    times, values = timeline_steps(Recognizer.load().identify(long_clip))
    np.testing.assert_allclose(times, [0.0, 30.0, 30.0, 60.0], atol=0.05)
    assert values.shape == (10, 4)
    np.testing.assert_allclose(values.sum(axis=0), 1.0, atol=1e-5)
    refused = run(["identify", *clips, "--plot", tmp_path / "two.png"])
    assert refused.returncode == 2 and refused.stdout == "" and refused.stderr.count("\n") == 1
    assert "one input; 2 given" in refused.stderr and not (tmp_path / "two.png").exists()


def _tty_run(args) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal; its exit code and what the terminal showed."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    proc = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.DEVNULL, stderr=slave, env=ENV)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.wait(timeout=300), shown.decode(errors="replace")


def test_progress_bar_on_a_terminal_only(tmp_path):
    files = []
    for i in range(5):
        files.append(tmp_path / f"c{i}.wav")
        sf.write(files[-1], tone(4.0, freq=200.0 + 50 * i, seed=i), 22050)
    code, shown = _tty_run(["identify", "--workers", "1", *files])
    assert code == 0 and "identifying" in shown and "5/5" in shown
    code, shown = _tty_run(["identify", "--workers", "1", "-q", *files])
    assert code == 0 and shown == ""
    code, shown = _tty_run(["identify", "--workers", "1", *files[:3]])
    assert code == 0 and shown == "", "a few files: no bar"
    piped = run(["identify", "--workers", "1", *files])
    assert piped.returncode == 0 and piped.stderr == ""


# --- the library takes bytes, file objects, arrays -------------------------------------------------------

def test_recognizer_identifies_paths_bytes_file_objects_and_arrays(mini_dir, default_recognizer, tmp_path):
    from genre_id import AudioError
    from genre_id.extraction import extract_file

    clip = mini_dir / "reggae" / "reggae.00002.flac"
    data = clip.read_bytes()
    y, sr = sf.read(clip, dtype="float32")
    by_path = default_recognizer.identify(clip)
    with open(clip, "rb") as fh:
        answers = [default_recognizer.identify(data), default_recognizer.identify(io.BytesIO(data)),
                   default_recognizer.identify(fh), default_recognizer.identify(y, sample_rate=sr)]
    for p in answers:
        assert p.genre == by_path.genre
        assert p.probabilities == pytest.approx(by_path.probabilities, abs=1e-6)
    secret = b"SECRET-PAYLOAD-" * 400
    with pytest.raises(AudioError) as caught:
        default_recognizer.identify(secret)
    assert "SECRET" not in str(caught.value) and str(caught.value).startswith("<bytes>: ")
    with pytest.raises(AudioError) as caught:
        default_recognizer.identify(io.BytesIO(secret))
    assert "SECRET" not in str(caught.value)
    # a stream with a cache folder: analysed, never cached (there is no file to key it by)
    from genre_id.audio import open_stream

    with open_stream(data) as stream:
        from genre_id.config import AnalysisConfig

        got = extract_file(stream, cache_dir=tmp_path / "cache",
                           config=AnalysisConfig.for_window(sample_rate=22050, window_seconds=30.0))
    assert got.values.shape[0] == 1 and not (tmp_path / "cache").exists()


# --- where files live ------------------------------------------------------------------------------------

def test_locations_follow_the_platform_unless_overridden(monkeypatch, tmp_path):
    import platformdirs

    from genre_id.locations import default_cache_dir, default_db_path

    monkeypatch.delenv("GENRE_ID_CACHE_DIR", raising=False)
    monkeypatch.delenv("GENRE_ID_DB", raising=False)
    assert default_cache_dir() == platformdirs.user_cache_path("genre-id", appauthor=False) / "features"
    assert default_db_path() == platformdirs.user_data_path("genre-id", appauthor=False) / "fingerprints.sqlite"
    monkeypatch.setenv("GENRE_ID_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("GENRE_ID_DB", str(tmp_path / "f.sqlite"))
    assert default_cache_dir() == tmp_path / "c" and default_db_path() == tmp_path / "f.sqlite"


def test_index_uses_the_default_database_from_the_environment(tmp_path, clips):
    db = tmp_path / "mine" / "fp.sqlite"
    env = {**ENV, "GENRE_ID_DB": str(db)}
    out = run(["index", "add", clips[0]], env=env)
    assert out.returncode == 0 and db.is_file(), out.stderr
    assert f"{db} holds 1 recordings" in out.stdout
    assert run(["index", "list", "--json"], env=env).stdout.count('"id"') == 1
    info = run(["cache", "info"], env=env)
    assert f"fingerprint database: {db} (" in info.stdout
    folder = {**ENV, "GENRE_ID_DB": str(tmp_path)}
    assert f"fingerprint database: {tmp_path} (not a database file: it is a folder)" in run(["cache", "info"],
                                                                                          env=folder).stdout


def test_cache_clear_removes_only_cache_files(tmp_path):
    root = tmp_path / "cache"
    digest = "ab" + "0" * 62
    ours = [root / "levelfree-v1-w30-m3" / "ab" / f"{digest}.npz",
            root / "levelfree-v1-perturbed-2" / "ab" / f"{digest}.npz",
            root / "levelfree-v1-w30-m3" / "ab" / f".{digest}.npz.k2j3h4.npz"]  # left by a killed write
    theirs = [root / "thesis.txt", root / "levelfree-v1-w30-m3" / "ab" / "notes.npz",
              root / "levelfree-v1-w30-m3" / "cd" / f"{digest}.npz",  # not where an entry of that digest goes
              root / "photos" / "holiday.jpg"]
    for p in ours + theirs:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * 100)
    env = {**ENV, "GENRE_ID_CACHE_DIR": str(root)}
    info = run(["cache", "info"], env=env)
    assert info.stdout.splitlines()[0] == f"feature cache: {root} (2 entries, 300 bytes)"
    out = run(["cache", "clear"], env=env)
    assert out.returncode == 0 and out.stdout == f"removed 2 cache entries (300 bytes) from {root}\n"
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)
    assert not (root / "levelfree-v1-perturbed-2").exists(), "folders it emptied are removed"
    assert run(["cache", "clear", "--cache-dir", tmp_path / "nowhere"]).returncode == 0


def test_cache_entries_and_reports_have_ordinary_permissions(tmp_path):
    from genre_id.files import atomic_write

    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.json", b"{}")
    finally:
        os.umask(old)
    atomic_write(tmp_path / "b.json", b"{}")
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o666 & ~old


# --- outside text cannot forge output ---------------------------------------------------------------------

FORGED = "x\nerror: fake.wav: injected"


def test_a_file_name_cannot_forge_output_lines(tmp_path, clips):
    broken = tmp_path / f"{FORGED}.wav"
    broken.write_bytes(b"RIFF not really")
    good = tmp_path / f"good\n{FORGED}\x1b[2J.wav"
    good.write_bytes(clips[0].read_bytes())
    out = run(["identify", broken, good])
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: ") and "\x1b" not in out.stderr
    assert "x\\nerror: fake.wav: injected.wav" in out.stderr
    assert out.stdout.count("\n") == 1 and out.stdout.startswith(f"{tmp_path}/good\\nx\\nerror: fake.wav: ")
    assert "\\x1b[2J.wav  " in out.stdout
    js = run(["identify", "--json", good])
    (obj,) = [json.loads(line) for line in js.stdout.splitlines()]
    assert obj["file"] == str(good) and "\x1b" not in js.stdout
    rows = list(csv.reader(io.StringIO(run(["identify", "--format", "csv", good]).stdout)))
    assert len(rows) == 2 and "\n" not in rows[1][0]


def test_index_output_is_escaped(tmp_path, clips):
    song = tmp_path / f"song{FORGED}.wav"
    sf.write(song, tone(6.0, freq=330.0), 22050)
    db = tmp_path / "fp.sqlite"
    added = run(["index", "add", "-v", song, "--db", db])
    assert added.returncode == 0, added.stderr
    assert added.stdout.count("\n") == 2 and "\\nerror: fake.wav" in added.stdout.splitlines()[0]
    import sqlite3

    with sqlite3.connect(db) as conn:  # a tag with a terminal escape and a newline
        conn.execute("UPDATE recordings SET title = ?", ("Evil\x1b[31m\nerror: title",))
    conn.close()
    table = run(["index", "list", "--db", db])
    lines = table.stdout.splitlines()
    assert len(lines) == 2 and "\x1b" not in table.stdout
    header, row = lines
    assert header.index("artist") == row.index("unknown artist"), "widths measured on the escaped text"
    assert "\\n" in row


# --- failures when saving: one line, exit 2, nothing left behind ---------------------------------------------

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _eacces(*args, **kwargs):
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))


@pytest.mark.parametrize("failure, words", [(_enospc, "No space left on device"), (_eacces, "Permission denied")])
def test_out_and_plot_that_cannot_be_written(tmp_path, clips, capsys, monkeypatch, failure, words):
    from genre_id import files
    from genre_id.cli import main

    target = tmp_path / "out"
    target.mkdir()
    (target / "genres.json").write_text("previous\n")
    monkeypatch.setattr(files.os, "fsync", failure)
    for argv, name in (([str(clips[0]), "--json", "--out", str(target / "genres.json")], "genres.json"),
                       ([str(clips[0]), "--plot", str(target / "t.png")], "t.png")):
        assert main(["identify", "--workers", "1", *argv]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {target / name}: cannot write ({words})\n"
        assert sorted(p.name for p in target.iterdir()) == ["genres.json"]
        assert (target / "genres.json").read_text() == "previous\n"


@pytest.fixture()
def quick_training(monkeypatch):
    """``train`` without the data and the training: the shipped model stands for the trained one."""
    from genre_id.cli import train as train_cli
    from genre_id.model import load_bundle

    class Data:
        failures = ()

    monkeypatch.setattr(train_cli, "_load_data", lambda args: Data())
    from genre_id.model import DEFAULT_MODEL_DIR

    monkeypatch.setattr("genre_id.training.fit", lambda data, **kw: load_bundle(DEFAULT_MODEL_DIR / "levelfree"))


@pytest.mark.train
@pytest.mark.parametrize("failure, words", [(_enospc, "No space left on device"), (_eacces, "Permission denied")])
def test_a_model_that_cannot_be_saved(tmp_path, capsys, monkeypatch, quick_training, failure, words):
    from genre_id import model
    from genre_id.cli import main

    target = tmp_path / "models" / "mine"
    monkeypatch.setattr(model.np, "savez", failure)
    assert main(["train", "--table", "t.csv", "--out", str(target)]) == 2
    assert capsys.readouterr().err == f"error: {target}: cannot write ({words})\n"
    assert list((tmp_path / "models").iterdir()) == [], "no temporary folder left"


@pytest.mark.train
def test_a_model_out_path_that_is_a_symlink_is_followed(tmp_path, capsys, quick_training):
    from genre_id.cli import main

    real = tmp_path / "store" / "model-v2"
    real.parent.mkdir()
    link = tmp_path / "current"
    link.symlink_to(real, target_is_directory=True)
    assert main(["train", "--table", "t.csv", "--out", str(link)]) == 0, capsys.readouterr().err
    assert link.is_symlink() and os.readlink(link) == str(real), "the link itself is kept"
    assert (real / "model.json").is_file() and stat.S_IMODE((real / "model.json").stat().st_mode) == 0o644
    assert main(["train", "--table", "t.csv", "--out", str(link)]) == 0, "and replaced through the link again"
    assert link.is_symlink() and (real / "weights.npz").is_file()
    leftovers = [p.name for d in (tmp_path, real.parent) for p in d.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


# --- the train extra ---------------------------------------------------------------------------------------

_NO_TRAINING = textwrap.dedent("""
    import sys

    class _Absent:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "sklearn", "librosa"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _Absent())
""")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_train_and_evaluate_without_the_train_extra(tmp_path, command):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_NO_TRAINING)
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(hook), ENV["PYTHONPATH"]])}
    argv = ["train", "--table", "t.csv", "--out", tmp_path / "m"] if command == "train" else ["evaluate", "d"]
    out = run(argv, env=env)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == f"error: genre-id {command} needs the training extra: pip install 'genre-id[train]'\n"
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_or_sighup_to_the_main_process_stops_its_workers_in_one_line(mini_files, sig, code):
    """`kill PID` (Popen.terminate, systemd, container runtimes) ends a batch like Ctrl-C: workers gone, one line."""
    proc = subprocess.Popen([*CLI, "identify", "--workers", "2", *mini_files[:40]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 60
    kids: list[str] = []
    while time.monotonic() < deadline and len(kids) < 2:  # the worker processes have started
        time.sleep(0.2)
        kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(kids) >= 2, "no worker process started"
    time.sleep(1.0)
    proc.send_signal(sig)  # to the main process only, as `kill PID` does
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code and err == "error: terminated\n"
    assert all(line.count("  ") >= 1 for line in out.splitlines())  # whole result lines only
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{k}") for k in kids):
        time.sleep(0.2)
    assert not [k for k in kids if os.path.exists(f"/proc/{k}")], "a worker outlived the command"


def test_an_output_never_replaces_an_input_a_link_target_or_a_special_file(tmp_path, mini_dir):
    """Run as root (CI is): the rule, not the permissions, must protect inputs, devices and FIFOs."""
    clip = tmp_path / "a.flac"
    clip.write_bytes((mini_dir / "blues" / "blues.00000.flac").read_bytes())
    original = clip.read_bytes()
    (tmp_path / "link.flac").symlink_to(clip)
    os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of our own
    os.mkfifo(tmp_path / "fifo")
    cases = {
        ("--out", "a.flac"): "is one of the inputs",
        ("--out", "link.flac"): "is one of the inputs",
        ("--plot", "a.flac"): "is one of the inputs",
        ("--out", "null"): "is not a regular file",
        ("--plot", "fifo"): "is not a regular file",
        ("--out", "same.txt", "--plot", "same.txt"): "--out and --plot name the same file",
    }
    for options, problem in cases.items():
        res = run(["identify", "a.flac", *options], cwd=tmp_path)
        assert res.returncode == 2 and res.stdout == "", (options, res.stderr)
        assert res.stderr.count("\n") == 1 and problem in res.stderr, (options, res.stderr)
    assert clip.read_bytes() == original
    assert stat.S_ISCHR(os.lstat(tmp_path / "null").st_mode) and stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)
    assert not (tmp_path / "same.txt").exists()


def test_the_atomic_writer_itself_refuses_to_replace_a_special_file(tmp_path):
    from genre_id.files import atomic_write

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(FileExistsError):
        atomic_write(tmp_path / "fifo", b"data")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode) and sorted(os.listdir(tmp_path)) == ["fifo"]


def test_out_dash_is_standard_output_and_help_never_names_an_option_a_command_lacks(tmp_path, mini_dir):
    clip = mini_dir / "rock" / "rock.00003.flac"
    res = run(["identify", clip, "--out", "-", "--no-timeline"], cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.startswith(f"{clip}  ") and not (tmp_path / "-").exists()
    index_help = run(["index", "add", "--help"]).stdout
    assert "--workers" not in index_help and "--scheduler" in index_help


def test_times_read_h_mm_ss_from_an_hour_on_in_text_and_on_plots():
    from genre_id.formats import clock

    assert [clock(s) for s in (0, 59.6, 600, 3599, 3600, 7000)] == [
        "00:00", "01:00", "10:00", "59:59", "1:00:00", "1:56:40"]


def test_identify_match_uses_the_database_index_add_fills_by_default(tmp_path, clips):
    env = {**ENV, "GENRE_ID_DB": str(tmp_path / "fp.sqlite")}
    assert run(["index", "add", clips[0]], env=env).returncode == 0
    res = run(["identify", "--match", clips[0], "--no-timeline"], env=env)
    assert res.returncode == 0, res.stderr
    assert "match: " in res.stdout and "no match" not in res.stdout
    missing = run(["identify", "--match", clips[0]], env={**ENV, "GENRE_ID_DB": str(tmp_path / "none.sqlite")})
    assert missing.returncode == 2 and "no such fingerprint database" in missing.stderr


def test_identify_never_writes_over_its_database_or_into_its_model_folder(tmp_path, clips):
    """The fingerprint database (named, by --match, through a link) and the model folder are inputs too."""
    from genre_id.model import DEFAULT_MODEL_DIR

    import shutil

    model = tmp_path / "mdl"
    shutil.copytree(DEFAULT_MODEL_DIR, model)
    db = tmp_path / "fp.sqlite"
    env = {**ENV, "GENRE_ID_DB": str(db)}
    assert run(["index", "add", "--db", db, clips[0]], env=env).returncode == 0
    (tmp_path / "link.sqlite").symlink_to(db)
    before = {p: p.read_bytes() for p in [db, *model.rglob("*")] if p.is_file()}
    cases = [
        ["--db", db, "--out", db],
        ["--match", "--out", db],
        ["--db", db, "--out", tmp_path / "link.sqlite"],
        ["--db", db, "--plot", db],
        ["--db", db, "--out", f"{db}-journal"],
        ["--model", model, "--out", model / "model.json"],
        ["--model", model, "--plot", model / "levelfree" / "weights.npz"],
        ["--model", model, "--out", model / "new.txt"],
    ]
    for options in cases:
        res = run(["identify", clips[0], *options], env=env)
        assert res.returncode == 2 and res.stdout == "", (options, res.stderr)
        assert res.stderr.count("\n") == 1, (options, res.stderr)
        assert "is one of the inputs" in res.stderr or "one of the inputs; refusing" in res.stderr, res.stderr
    assert {p: p.read_bytes() for p in [db, *model.rglob("*")] if p.is_file()} == before
    assert not (model / "new.txt").exists() and not (tmp_path / "fp.sqlite-journal").exists()
    default = run(["identify", clips[0], "--out", DEFAULT_MODEL_DIR / "model.json"])
    assert default.returncode == 2 and "one of the inputs" in default.stderr


def test_evaluate_out_is_checked_against_the_inputs_before_any_work(tmp_path, capsys, mini_dir, monkeypatch):
    """evaluate --out: not a file or a device, never over the labels file it reads, never in the model folder."""
    pytest.importorskip("keras")
    import shutil

    from genre_id import analysis
    from genre_id.cli import main
    from genre_id.model import DEFAULT_MODEL_DIR

    d = tmp_path / "d"
    d.mkdir()
    for genre in ("blues", "metal"):
        shutil.copy(mini_dir / genre / f"{genre}.00000.flac", d / f"{genre}.flac")
    (d / "report.json").write_text("path,genre\nblues.flac,blues\nmetal.flac,metal\n")
    model = tmp_path / "mdl"
    shutil.copytree(DEFAULT_MODEL_DIR, model)
    os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    monkeypatch.setattr(analysis.Analyzer, "analyze_many", lambda *a, **k: pytest.fail("work started"))
    before = {p: p.read_bytes() for p in [*d.iterdir(), *model.rglob("*")] if p.is_file()}
    cases = {
        ("--out", str(d / "blues.flac")): "is not a folder",
        ("--out", str(tmp_path / "null")): "is not a folder",
        ("--labels", str(d / "report.json"), "--out", str(d)): "is one of the inputs",
        ("--model", str(model), "--out", str(model)): "one of the inputs",
        ("--model", str(model), "--out", str(model / "reports")): "one of the inputs",
    }
    for options, problem in cases.items():
        labels = () if "--labels" in options else ("--labels", str(d / "report.json"))
        assert main(["evaluate", "-q", "--on", str(d), *labels, *options]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and problem in err, (options, err)
    assert {p: p.read_bytes() for p in [*d.iterdir(), *model.rglob("*")] if p.is_file()} == before
    assert stat.S_ISCHR(os.lstat(tmp_path / "null").st_mode) and not (model / "reports").exists()


def _closing(*fds):
    return lambda: [os.close(fd) for fd in fds]


def test_a_closed_or_full_standard_output_is_one_line_and_exit_2(tmp_path, clips):
    """>&- and a full disk behind stdout: said in one line naming <stdout>, never an internal error or a silent 0."""
    for argv in (["identify", clips[0]], ["index", "list", "--db", tmp_path / "none.sqlite"], ["cache", "info"]):
        res = run(argv, preexec_fn=_closing(1))
        assert res.returncode == 2 and res.stderr == "error: <stdout>: standard output is closed\n", (argv, res)
    written = run(["identify", clips[0], "--out", tmp_path / "o.txt"], preexec_fn=_closing(1))
    assert written.returncode == 0 and (tmp_path / "o.txt").read_text().startswith(str(clips[0]))
    os.mknod(tmp_path / "full", 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # a /dev/full of our own
    with open(tmp_path / "full", "w") as full:
        res = subprocess.run([*CLI, "identify", str(clips[0])], env=ENV, stdout=full, stderr=subprocess.PIPE,
                             text=True, timeout=600)
    assert res.returncode == 2 and res.stderr == "error: <stdout>: No space left on device\n", res
    quiet = subprocess.run([*CLI, "identify", str(tmp_path / "nonexist.flac")], env=ENV, preexec_fn=_closing(2),
                           stdout=subprocess.PIPE, timeout=600)
    assert quiet.returncode == 2 and quiet.stdout == b"", quiet


def test_an_output_through_a_link_keeps_the_files_owner_and_mode_and_a_broken_link_is_refused(tmp_path, clips):
    """A link to a private file of another user: the answer replaces its content, never widens it; a link to
    nothing or a loop of links is refused (no folders made where it points)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("old\n")
    os.chmod(secret, 0o600)
    os.chown(secret, 65534, 65534)  # nobody
    (tmp_path / "to-secret.txt").symlink_to(secret)
    res = run(["identify", str(clips[0]), "--out", "to-secret.txt", "--no-timeline"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    st = os.stat(secret)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 65534, 65534)
    assert secret.read_text().startswith(str(clips[0])) and (tmp_path / "to-secret.txt").is_symlink()
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "new" / "deep" / "made.txt")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    for name, words in (("dangling.txt", "a link to nothing"), ("loop1", "a loop of links")):
        res = run(["identify", str(clips[0]), "--out", name], cwd=tmp_path)
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and words in res.stderr, res.stderr
    assert not (tmp_path / "new").exists() and (tmp_path / "loop1").is_symlink()


def test_the_file_behind_standard_input_and_a_linked_databases_side_files_are_inputs(tmp_path, clips):
    """`identify - --out x.flac < x.flac` and `--db link --out TARGET-journal` would destroy what they read."""
    from genre_id.fingerprint import FingerprintIndex

    clip = tmp_path / "x.wav"
    clip.write_bytes(Path(clips[0]).read_bytes())
    with open(clip, "rb") as stdin:
        res = subprocess.run([*CLI, "identify", "-", "--out", "x.wav"], stdin=stdin, capture_output=True, text=True,
                             cwd=tmp_path, env=ENV, timeout=300)
    assert res.returncode == 2 and "is one of the inputs" in res.stderr, res.stderr
    assert clip.read_bytes() == Path(clips[0]).read_bytes()
    with FingerprintIndex.open(tmp_path / "fp.sqlite") as ix:
        ix.add(clip)
    (tmp_path / "fplink.sqlite").symlink_to(tmp_path / "fp.sqlite")
    for side in ("-journal", "-wal", "-shm"):
        res = run(["identify", "x.wav", "--db", "fplink.sqlite", "--out", f"fp.sqlite{side}"], cwd=tmp_path)
        assert res.returncode == 2 and "is one of the inputs" in res.stderr, res.stderr
        assert not (tmp_path / f"fp.sqlite{side}").exists()


@pytest.mark.train  # on a base install evaluate refuses first, for another reason
def test_evaluate_out_through_a_broken_link_is_refused_before_any_work(tmp_path, mini_dir):
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "report")
    res = run(["evaluate", "--on", str(mini_dir), "--out", "dangling"], cwd=tmp_path)
    assert res.returncode == 2 and "a link to nothing" in res.stderr and res.stdout == "", res.stderr
    assert not (tmp_path / "nowhere").exists()
