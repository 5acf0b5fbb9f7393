"""The wheel: built from the sources, installed with its base dependencies only (no TensorFlow, librosa or
scikit-learn) into a fresh virtual environment, and used from another folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import ROOT


def _run(args, **kw):
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=900, **kw)
    assert out.returncode == 0, f"{args}\n{out.stdout}\n{out.stderr}"
    return out


@pytest.mark.slow
def test_the_wheel_installs_and_identifies_without_the_training_extra(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    # Build from a copy of the package's own files, so the source tree gets no build folders.
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "genre_id", src / "genre_id",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*.tmp-*", ".*.old-*"))
    dist = work / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, src])
    (wheel,) = dist.glob("genre_id-*.whl")

    # Nothing of this process's environment may leak in (a PYTHONPATH would show pip the source tree).
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    clean_env["GENRE_ID_CACHE_DIR"] = str(work / "cache")
    clean_env["GENRE_ID_DB"] = str(work / "fp.sqlite")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", wheel], env=clean_env, cwd=work)  # the base dependencies only

    elsewhere = work / "elsewhere"  # not the source tree: the package must find its model inside itself
    elsewhere.mkdir()
    clip = elsewhere / "clip.flac"
    shutil.copy2(ROOT / "examples" / "synth_groove.flac", clip)

    for module in ("tensorflow", "keras", "sklearn", "librosa"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, cwd=elsewhere, env=clean_env)
        assert probe.returncode != 0, f"{module} came with the base install"

    genre_id = env_dir / "bin" / "genre-id"
    out = _run([genre_id, "identify", "--json", clip.name], cwd=elsewhere, env=clean_env)
    assert '"genre": "' in out.stdout and '"name": "default"' in out.stdout
    loaded = _run([python, "-c", "from genre_id import Recognizer; r = Recognizer.load(); "
                                 "import genre_id, sys; print(genre_id.__file__); print(len(r.labels))"],
                  cwd=elsewhere, env=clean_env)
    location, n_labels = loaded.stdout.split()
    assert Path(location).is_relative_to(env_dir) and n_labels == "10"
    assert (Path(location).parent / "py.typed").is_file()
    # index and identify --db work in the base install
    _run([genre_id, "index", "add", clip.name], cwd=elsewhere, env=clean_env)
    matched = _run([genre_id, "identify", clip.name, "--db", work / "fp.sqlite"], cwd=elsewhere, env=clean_env)
    assert 'match: "clip" by unknown artist' in matched.stdout, matched.stdout
    # train says which extra it needs, in one line
    train = subprocess.run([genre_id, "train", "--table", "x.csv", "--out", "m"], capture_output=True, text=True,
                           cwd=elsewhere, env=clean_env, timeout=120)
    assert train.returncode == 2 and train.stdout == ""
    assert train.stderr == "error: genre-id train needs the training extra: pip install 'genre-id[train]'\n"
