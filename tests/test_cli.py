"""The command line, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, tone

IDENTIFY = [sys.executable, str(ROOT / "scripts" / "identify.py")]


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
        assert o["segments"] == [{"start": 0.0, "end": round(len(y) / sr, 3), "genre": "classical",
                                  "confidence": o["segments"][0]["confidence"]}]
        assert o["model"]["name"] == "default"


def test_bad_files_are_reported_and_the_others_still_identified(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, tone(5.0), 22050)
    broken = tmp_path / "broken.mp3"
    broken.write_text("not audio")
    out = run([*IDENTIFY, str(tmp_path / "missing.wav"), str(broken), str(good)])
    assert out.returncode == 2
    assert out.stdout.startswith(f"{good}  ")
    errors = out.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in out.stderr
    assert "missing.wav: no such file" in errors[0] and "broken.mp3" in errors[1]


def test_a_bad_model_path_is_one_line(tmp_path):
    clip = tmp_path / "a.wav"
    sf.write(clip, tone(4.0), 22050)
    out = run([*IDENTIFY, "--model", str(tmp_path / "nope"), str(clip)])
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "no such model folder" in out.stderr


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


@pytest.mark.slow
def test_train_from_the_table_rebuilds_an_equivalent_default_model(tmp_path, table_path):
    out_dir = tmp_path / "default"
    res = run([sys.executable, "-m", "genre_id.cli", "train", "--table", str(table_path), "--out", str(out_dir)],
              cwd=ROOT)
    assert res.returncode == 0, res.stderr
    meta = json.loads((out_dir / "model.json").read_text())
    shipped = json.loads((ROOT / "models" / "default" / "model.json").read_text())
    assert meta["labels"] == shipped["labels"] and meta["feature_set"] == shipped["feature_set"]
    assert meta["training"]["data"]["tracks"] == 1000
    assert abs(meta["metrics"]["validation_accuracy"] - shipped["metrics"]["validation_accuracy"]) < 0.1
