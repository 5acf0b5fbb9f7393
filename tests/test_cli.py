"""The command line, run as a user runs it."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, tone
from genre_id.model import DEFAULT_MODEL_DIR
from test_audio import BAD_INPUTS, GOOD_INPUTS, PY, _run, _write

SCRIPT = str(ROOT / "scripts" / "identify.py")
IDENTIFY = [sys.executable, SCRIPT]


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)


@pytest.mark.slow
def test_identify_prints_genre_confidence_and_runners_up(mini_dir):
    clip = mini_dir / "metal" / "metal.00003.flac"
    out = run([*IDENTIFY, str(clip)])
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith(f"{clip}  metal ")
    assert line.count("(") == 1 and line.count(",") == 1, "two runners-up by default"


@pytest.mark.slow
def test_identify_json_on_every_format(tmp_path, mini_dir):
    y, sr = sf.read(mini_dir / "classical" / "classical.00002.flac", dtype="float32")
    files = []
    for ext, subtype in [("wav", "PCM_16"), ("flac", "PCM_24"), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III"),
                         ("au", "PCM_16")]:
        files.append(tmp_path / f"clássica {ext}.{ext}")
        sf.write(files[-1], y, sr, subtype=subtype)
    out = run([*IDENTIFY, "--json", "--top", "4", *map(str, files)])
    assert out.returncode == 0, out.stderr
    objs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [o["file"] for o in objs] == [str(f) for f in files]
    for o in objs:
        assert {"file", "genre", "confidence", "top", "probabilities", "segments", "model"} <= set(o)
        assert o["genre"] == "classical" and len(o["top"]) == 4 and len(o["probabilities"]) == 10
        (seg,) = o["segments"]
        assert {k: seg[k] for k in ("start", "end", "genre")} == {"start": 0.0, "end": round(len(y) / sr, 3),
                                                                   "genre": "classical"}
        assert seg["top"][0] == {"genre": "classical", "probability": seg["confidence"]} and len(seg["top"]) == 4
        assert seg["probabilities"] == o["probabilities"], "one window: the clip's probabilities are the window's"
        assert o["model"]["name"] == "default"


def test_a_bad_model_path_is_one_line(tmp_path):
    clip = tmp_path / "a.wav"
    sf.write(clip, tone(4.0), 22050)
    out = run([*IDENTIFY, "--model", str(tmp_path / "nope"), str(clip)])
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "no such model folder" in out.stderr


@pytest.mark.train
@pytest.mark.slow
def test_train_from_a_folder_then_identify_with_the_new_model(tmp_path):
    """Two synthetic 'genres' (low tones vs noise bursts); one broken file is skipped, not fatal."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for i in range(12):
        (data / "low").mkdir(parents=True, exist_ok=True)
        (data / "noisy").mkdir(parents=True, exist_ok=True)
        sf.write(data / "low" / f"l{i}.wav", tone(4.0, freq=110 + 5 * i, seed=i), 22050)
        burst = (rng.standard_normal(4 * 22050) * (rng.random(4 * 22050) > 0.7)).astype(np.float32) * 0.2
        sf.write(data / "noisy" / f"n{i}.flac", burst, 22050)
    (data / "noisy" / "broken.wav").write_bytes(b"RIFF\x00\x00")
    out_dir = tmp_path / "models" / "mine"
    cmd = [sys.executable, "-m", "genre_id.cli", "train", str(data), "--out", str(out_dir), "--window-seconds", "4",
           "--cache-dir", str(tmp_path / "cache"), "--quiet", "--max-epochs", "80", "--patience", "15"]
    out = run(cmd, cwd=ROOT)
    assert out.returncode == 2, out.stderr  # a file was skipped
    assert "broken.wav" in out.stderr and "validation accuracy" in out.stdout
    meta = json.loads((out_dir / "model.json").read_text())
    assert meta["labels"] == ["low", "noisy"] and meta["window_seconds"] == 4.0
    assert "genre-id train" in meta["training"]["command"]
    assert any("broken.wav" in s for s in meta["training"]["data"]["skipped_files"])
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 24, "features were cached"
    probe = tmp_path / "probe.wav"
    sf.write(probe, tone(4.0, freq=130, seed=99), 22050)
    res = run([*IDENTIFY, "--json", "--model", str(out_dir), str(probe)])
    assert json.loads(res.stdout)["genre"] == "low", res.stderr


@pytest.mark.train
@pytest.mark.slow
def test_train_from_the_table_rebuilds_an_equivalent_table_member(tmp_path, table_path):
    """The shipped ensemble's levelfree member, rebuilt from the table (without augmentation: faster)."""
    out_dir = tmp_path / "levelfree"
    res = run([sys.executable, "-m", "genre_id.cli", "train", "--table", str(table_path), "--out", str(out_dir)],
              cwd=ROOT)
    assert res.returncode == 0, res.stderr
    meta = json.loads((out_dir / "model.json").read_text())
    shipped = json.loads((ROOT / "genre_id" / "models" / "default" / "levelfree" / "model.json").read_text())
    assert meta["labels"] == shipped["labels"] and meta["feature_set"] == shipped["feature_set"]
    assert meta["training"]["data"]["tracks"] == 1000
    assert abs(meta["metrics"]["validation_accuracy"] - shipped["metrics"]["validation_accuracy"]) < 0.1


# --- argument validation, fingerprint database, a broken process pool ----------------------------

@pytest.mark.parametrize("argv, option", [
    (["evaluate", "data", "--seeds", "0"], "--seeds"),
    (["evaluate", "data", "--seeds", "two"], "--seeds"),
    (["evaluate", "data", "--folds", "1"], "--folds"),
    (["evaluate", "data", "--folds", "0"], "--folds"),
    (["evaluate", "data", "--workers", "0"], "--workers"),
    (["evaluate", "data", "--workers", "-1"], "--workers"),
    (["train", "data", "--out", "m", "--workers", "0"], "--workers"),
    (["train", "data", "--out", "m", "--workers", "-1"], "--workers"),
    (["identify", "a.wav", "--workers", "-1"], "--workers"),
])
def test_counts_out_of_range_are_usage_errors(argv, option, tmp_path):
    """Before any data is read: argparse's usage line and exit code 2, never an internal error."""
    out = run([sys.executable, "-m", "genre_id.cli", *argv], cwd=ROOT)
    assert out.returncode == 2, out.stderr
    assert "usage: genre-id" in out.stderr and f"argument {option}:" in out.stderr, out.stderr
    assert "internal error" not in out.stderr and "Traceback" not in out.stderr


def test_counts_in_range_are_accepted():
    from genre_id.cli import build_parser

    args = build_parser().parse_args(["evaluate", "data", "--seeds", "1", "--folds", "2", "--workers", "1"])
    assert (args.seeds, args.folds, args.workers) == (1, 2, 1)
    assert build_parser().parse_args(["train", "data", "--out", "m", "--workers", "3"]).workers == 3


@pytest.mark.parametrize("kind", ["missing", "corrupt"])
def test_identify_with_an_unusable_db_is_one_line_naming_it(tmp_path, kind):
    """The database is opened once, before any file is analysed: one line, exit 2, no genre answers thrown away."""
    files = []
    for i in range(3):
        files.append(tmp_path / f"clip{i}.wav")
        sf.write(files[-1], tone(4.0, freq=220.0 * (i + 1)), 22050)
    db = tmp_path / "fp.sqlite"
    if kind == "corrupt":
        db.write_bytes(b"this is not an SQLite database\n" * 200)
    out = run([*IDENTIFY, "--db", str(db), "--workers", "1", *map(str, files)])
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {db}: "), out.stderr
    assert ("no such fingerprint database" if kind == "missing" else "not a usable fingerprint database") in lines[0]


#: sitecustomize for the identify process and its workers: a file named crash-me kills the process
#: decoding it (as a decoder crash would); one named bug-me raises an unexpected exception (a bug).
_POOL_HOOK = """
import os, signal
import soundfile

_init = soundfile.SoundFile.__init__

def _hooked_init(self, file, *args, **kwargs):
    name = os.fsdecode(file) if isinstance(file, (str, bytes)) else ""
    if "crash-me" in name:
        os.kill(os.getpid(), signal.SIGKILL)
    if "bug-me" in name:
        raise ZeroDivisionError("planted bug")
    _init(self, file, *args, **kwargs)

soundfile.SoundFile.__init__ = _hooked_init
"""


def test_identify_after_a_broken_pool_keeps_internal_errors_internal(tmp_path):
    """Files after a worker crash go through extract_files; a bug there is still exit code 1, not 2."""
    good = [tmp_path / "good0.wav", tmp_path / "good1.wav"]
    for i, path in enumerate(good):
        sf.write(path, tone(4.0, freq=330.0 * (i + 1), seed=i), 22050)
    crash, bug = tmp_path / "crash-me.wav", tmp_path / "bug-me.wav"
    sf.write(crash, tone(4.0), 22050)
    sf.write(bug, tone(4.0), 22050)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_POOL_HOOK)
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), str(ROOT),
                                                                      os.environ.get("PYTHONPATH")]))}
    # the crash comes before bug-me, so bug-me is always analysed after the pool broke
    out = run([*IDENTIFY, "--workers", "2", str(good[0]), str(crash), str(bug), str(good[1])], env=env)
    assert [line.split("  ")[0] for line in out.stdout.splitlines()] == [str(good[0]), str(good[1])], out.stderr
    errors = out.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in out.stderr, out.stderr
    assert errors[0].startswith(f"error: {crash}: ") and "died" in errors[0]
    assert errors[1].startswith(f"error: {bug}: ") and "ZeroDivisionError" in errors[1]
    assert out.returncode == 1, "a bug is an internal error, whichever path found it"


@pytest.mark.train
def test_train_refuses_an_out_folder_that_is_not_a_model_before_training(tmp_path, table_path):
    out_dir = tmp_path / "my documents"
    out_dir.mkdir()
    (out_dir / "thesis.txt").write_text("precious")
    res = run([sys.executable, "-m", "genre_id.cli", "train", "--table", str(table_path), "--out", str(out_dir)],
              cwd=ROOT)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == f"error: {out_dir}: a folder of other files, not a model folder; refusing to replace it\n"
    assert [p.name for p in out_dir.iterdir()] == ["thesis.txt"] and (out_dir / "thesis.txt").read_text() == "precious"


def _drop_file_permission_override() -> None:
    """In a child process run as root: give up the capabilities that let root read any file."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, from the bounding set (lost at exec)
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_file_without_read_permission_really(tmp_path):
    """chmod 000 for real, through the command line: the unreadable file is named, the good one identified."""
    locked = _write(tmp_path / "locked.wav", tone(4.0), 22050)
    hidden_dir = tmp_path / "no entry"
    hidden_dir.mkdir()
    inside = _write(hidden_dir / "inside.wav", tone(4.0), 22050)
    good = _write(tmp_path / "good.wav", tone(4.0), 22050)
    locked.chmod(0)
    hidden_dir.chmod(0)
    try:
        preexec = None
        if os.geteuid() == 0:  # root reads anything: run the child as root without that privilege
            try:
                subprocess.run([PY, "-c", "pass"], preexec_fn=_drop_file_permission_override, check=True)
            except (OSError, subprocess.SubprocessError) as exc:
                pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE in a child ({exc})")
            preexec = _drop_file_permission_override
        r = _run([SCRIPT, str(locked), str(inside), str(good)], preexec_fn=preexec)
    finally:
        locked.chmod(0o644)
        hidden_dir.chmod(0o755)
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert lines == [f"error: {locked}: permission denied",
                     f"error: {inside}: cannot access the file (Permission denied)"], r.stderr
    assert r.stdout.startswith(f"{good}  ")


# --- bad input files, odd names, JSON and exit codes, a broken model folder -----------------------------------------------------------------------------

def test_cli_reports_each_bad_file_on_one_line_and_still_identifies_the_good_ones(tmp_path):
    bad = {case: make(tmp_path) for case, (make, _, _) in BAD_INPUTS.items()}
    good = [_write(tmp_path / "first good.wav", tone(4.0), 22050),
            GOOD_INPUTS["spaces and non-ASCII in the name"](tmp_path)]
    args = [str(good[0]), *map(str, bad.values()), str(good[1])]
    r = _run([SCRIPT, *args])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == len(bad), r.stderr
    for case, path in bad.items():
        words = BAD_INPUTS[case][2]
        assert [line for line in lines if line.startswith(f"error: {path}: ") and words in line], (case, r.stderr)
    out = r.stdout.splitlines()
    assert [line.split("  ")[0] for line in out] == [str(g) for g in good], r.stdout


def test_cli_prints_a_name_that_is_not_utf8(tmp_path):
    odd = GOOD_INPUTS["a name that is not UTF-8"](tmp_path)
    good = _write(tmp_path / "good.wav", tone(4.0), 22050)
    r = _run([SCRIPT, str(odd), str(good)], env={"PYTHONIOENCODING": "utf-8"})  # as in a UTF-8 locale
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2 and r.stdout.splitlines()[1].startswith(f"{good}  ")


def test_cli_json_output_and_exit_codes(tmp_path):
    good = _write(tmp_path / "good.wav", tone(4.0), 22050)
    r = _run([SCRIPT, "--json", str(good)])
    assert r.returncode == 0 and r.stderr == ""
    assert json.loads(r.stdout)["file"] == str(good)
    r = _run([SCRIPT, "--json", str(good), str(tmp_path / "nope.flac")])
    assert r.returncode == 2 and r.stderr == f"error: {tmp_path / 'nope.flac'}: no such file\n"
    assert json.loads(r.stdout)["file"] == str(good)


def test_cli_refuses_a_broken_model_folder_in_one_line(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model)
    (model / "levelfree" / "weights.npz").write_bytes(b"PK\x03\x04 not really a zip")
    r = _run([SCRIPT, "--model", str(model), str(_write(tmp_path / "a.wav", tone(4.0), 22050))])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"error: {model}") and "corrupt weights file" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stdout == ""
