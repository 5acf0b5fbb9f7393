"""The fast paths: no TensorFlow at prediction time, lazy heavy imports, bounded memory, parallel batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, tone

IDENTIFY = ROOT / "scripts" / "identify.py"
FRAMEWORKS = ("tensorflow", "keras")

#: Runs a snippet in a fresh interpreter, then writes the exit code and the heavy modules it imported.
PROBE = r"""
import json, runpy, sys
out_path, mode, *args = sys.argv[1:]
code = 0
try:
    if mode == "script":
        sys.argv = args
        runpy.run_path(args[0], run_name="__main__")
    else:
        exec(args[0])
except SystemExit as exc:
    code = exc.code
heavy = ("tensorflow", "keras", "librosa", "scipy", "numba", "sklearn", "matplotlib")
with open(out_path, "w") as fh:
    json.dump({"code": code, "modules": sorted(m for m in sys.modules if m.split(".")[0] in heavy),
               # features were measured in this process if the mel filter bank was ever built here
               "measured_here": "genre_id.spectral" in sys.modules
                                and sys.modules["genre_id.spectral"]._mel_filters.cache_info().currsize > 0}, fh)
"""


def probe(tmp_path: Path, mode: str, *args: str) -> tuple[dict, subprocess.CompletedProcess]:
    """Run ``args`` (a script and its arguments, or code) in a fresh interpreter; what it imported."""
    out = tmp_path / f"probe-{len(list(tmp_path.glob('probe-*')))}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", PROBE, str(out), mode, *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=tmp_path)
    assert out.exists(), proc.stderr
    return json.loads(out.read_text()), proc


def top_level(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("speed") / "tone.wav"
    sf.write(path, tone(6.0, freq=220.0), 22050)
    return path


def test_identify_script_never_imports_tensorflow_or_keras(tmp_path, clip):
    result, proc = probe(tmp_path, "script", str(IDENTIFY), str(clip))
    assert result["code"] == 0, proc.stderr
    assert proc.stdout.startswith(f"{clip}  ")
    assert not top_level(result["modules"]) & set(FRAMEWORKS), result["modules"]


def test_recognizer_never_imports_tensorflow_or_keras(tmp_path, clip):
    code = (
        "import soundfile as sf\n"
        "import genre_id\n"
        "rec = genre_id.Recognizer.load()\n"
        f"p = rec.identify({str(clip)!r})\n"
        f"y, sr = sf.read({str(clip)!r}, dtype='float32')\n"
        "q = rec.identify(y, sample_rate=sr)\n"
        "assert p.genre == q.genre and abs(p.confidence - q.confidence) < 1e-6, (p, q)\n"
    )
    result, proc = probe(tmp_path, "code", code)
    assert result["code"] == 0 and proc.returncode == 0, proc.stderr
    assert not top_level(result["modules"]) & set(FRAMEWORKS), result["modules"]


def test_import_genre_id_and_the_cli_parser_are_light(tmp_path):
    """Neither the package nor the CLI's parser (with its fingerprint sub-commands) loads the heavy libraries."""
    result, proc = probe(tmp_path, "code", "import genre_id\nfrom genre_id.cli import build_parser\nbuild_parser()")
    assert result["code"] == 0, proc.stderr
    assert result["modules"] == [], result["modules"]


def test_batch_identify_in_parallel_keeps_order_and_error_lines(tmp_path):
    """--workers 2 gives exactly what one process gives, in argument order; the main process stays lean."""
    files = []
    for i, freq in enumerate((110.0, 440.0, 1760.0)):
        files.append(tmp_path / f"good{i}.wav")
        sf.write(files[-1], tone(5.0, freq=freq, seed=i), 22050)
    broken = tmp_path / "broken.mp3"
    broken.write_text("not audio")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(5 * 22050, dtype=np.float32), 22050)
    args = [str(files[0]), str(tmp_path / "missing.wav"), str(files[1]), str(broken), str(silent), str(files[2])]

    serial, serial_proc = probe(tmp_path, "script", str(IDENTIFY), "--json", "--workers", "1", *args)
    pooled, pooled_proc = probe(tmp_path, "script", str(IDENTIFY), "--json", "--workers", "2", *args)

    assert serial["code"] == pooled["code"] == 2, pooled_proc.stderr
    assert [json.loads(line)["file"] for line in pooled_proc.stdout.splitlines()] == [str(f) for f in files]
    assert pooled_proc.stdout == serial_proc.stdout
    errors = pooled_proc.stderr.strip().splitlines()
    assert errors == serial_proc.stderr.strip().splitlines()
    assert len(errors) == 3 and "Traceback" not in pooled_proc.stderr
    assert "missing.wav: no such file" in errors[0] and "broken.mp3" in errors[1] and "silent" in errors[2]
    # the features were computed in the workers: this process never loaded the feature code; and neither
    # process needed librosa (the default feature set is measured with numpy)
    assert not pooled["measured_here"] and serial["measured_here"]
    assert "librosa" not in top_level(pooled["modules"]) | top_level(serial["modules"])


def test_bad_workers_value_is_a_usage_error(clip):
    out = subprocess.run([sys.executable, str(IDENTIFY), "--workers", "0", str(clip)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "--workers" in out.stderr and "Traceback" not in out.stderr


def _write_wav(path: Path, seconds: float, sr: int = 44100, channels: int = 2) -> None:
    """Tones that change every 30 s, written block by block (never the whole file in memory)."""
    block = 30 * sr
    with sf.SoundFile(path, "w", samplerate=sr, channels=channels, subtype="PCM_16") as fh:
        done, i = 0, 0
        while done < seconds * sr:
            n = int(min(block, seconds * sr - done))
            y = tone(n / sr, sr, freq=110.0 * (1 + i % 5), seed=i)
            fh.write(np.repeat(y[:, None], channels, axis=1))
            done, i = done + n, i + 1


def test_long_audio_is_analysed_in_bounded_memory(tmp_path):
    """Ten minutes of 44.1 kHz stereo (212 MB as float32) need about the memory of 30 seconds."""
    if str(ROOT / "scripts" / "bench") not in sys.path:
        sys.path.append(str(ROOT / "scripts" / "bench"))
    from bench_common import run_measured  # the benchmarks' measuring helper

    short, long_ = tmp_path / "short.wav", tmp_path / "long.wav"
    _write_wav(short, 30.0)
    _write_wav(long_, 600.0)
    m_short = run_measured([sys.executable, str(IDENTIFY), "--json", str(short)])
    m_long = run_measured([sys.executable, str(IDENTIFY), "--json", str(long_)])
    long_.unlink()  # 106 MB
    assert m_short.returncode == 0 and m_long.returncode == 0, m_long.stderr
    out = json.loads(m_long.stdout)
    assert len(out["segments"]) == 20 and out["duration"] == pytest.approx(600.0)
    assert m_long.rss_mb - m_short.rss_mb < 100, (m_short.rss_mb, m_long.rss_mb)
