"""The feature cache: keyed by content and feature set version, never trusting a bad entry, safe to share."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIG, ROOT, tone
from genre_id import audio
from genre_id.cache import file_digest
from genre_id.extraction import extract_file
from genre_id.features import get_feature_set
from test_audio import PY, _fifo, _run, _write

def _entry(cache: Path) -> Path:
    (entry,) = [p for p in cache.rglob("*.npz")]
    return entry


def _savez_entry(path: Path, key: str, **arrays) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, key=np.asarray(key), **arrays)


def test_cache_is_keyed_by_content_and_feature_version(tmp_path, monkeypatch):
    import dataclasses

    fs = get_feature_set()
    clip = _write(tmp_path / "clip.wav", tone(3.5), 22050)
    cache = tmp_path / "cache"
    first = extract_file(clip, cache_dir=cache, config=CONFIG)
    entry = _entry(cache)
    assert entry.stem == file_digest(clip) and f"{fs.name}-v{fs.version}-" in str(entry)
    assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp-")]

    decoded = []
    real = audio.iter_windows
    monkeypatch.setattr(audio, "iter_windows", lambda *a, **k: decoded.append(1) or real(*a, **k))
    copy = tmp_path / "another name.wav"
    shutil.copy(clip, copy)
    np.testing.assert_array_equal(extract_file(copy, cache_dir=cache, config=CONFIG).values, first.values)
    assert decoded == []  # a renamed copy is a hit
    _write(copy, tone(3.5, seed=1), 22050)
    extract_file(copy, cache_dir=cache, config=CONFIG)
    assert decoded == [1]  # changed content is a miss
    v2 = dataclasses.replace(fs, version=fs.version + 1)
    extract_file(clip, feature_set=v2, cache_dir=cache, config=CONFIG)
    assert decoded == [1, 1]  # another feature set version is a miss


@pytest.mark.parametrize("damage", [
    "truncated", "garbage", "empty", "bit flip", "another file's entry", "NaN values", "wrong width",
    "rows disagree", "no silent array", "strings",
])
def test_a_corrupt_cache_entry_is_recomputed_never_trusted(tmp_path, damage):
    clip = _write(tmp_path / "clip.wav", tone(3.5), 22050)
    cache = tmp_path / "cache"
    fresh = extract_file(clip, config=CONFIG)
    extract_file(clip, cache_dir=cache, config=CONFIG)
    entry = _entry(cache)
    data = entry.read_bytes()
    with np.load(entry) as npz:
        good = {k: npz[k] for k in npz.files}
    key = str(good.pop("key"))
    if damage == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        entry.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "bit flip":  # inside the stored values: the zip's CRC catches it
        b = bytearray(data)
        at = data.index(good["values"].tobytes()[:16]) + 8
        b[at] ^= 0x10
        entry.write_bytes(bytes(b))
    elif damage == "another file's entry":
        _savez_entry(entry, key.replace(entry.stem, "0" * 64), **{**good, "values": good["values"] + 1})
    elif damage == "NaN values":
        _savez_entry(entry, key, **{**good, "values": good["values"] * np.nan})
    elif damage == "wrong width":
        _savez_entry(entry, key, **{**good, "values": good["values"][:, :40]})
    elif damage == "rows disagree":
        _savez_entry(entry, key, **{**good, "starts": np.zeros(3), "ends": np.ones(3), "silent": np.zeros(3, bool)})
    elif damage == "no silent array":
        _savez_entry(entry, key, **{k: v for k, v in good.items() if k != "silent"})
    elif damage == "strings":
        _savez_entry(entry, key, **{**good, "starts": np.asarray(["a"] * len(good["starts"]))})
    got = extract_file(clip, cache_dir=cache, config=CONFIG)
    np.testing.assert_allclose(got.values, fresh.values)
    np.testing.assert_array_equal(got.silent, fresh.silent)
    with np.load(_entry(cache)) as npz:  # and the entry was written again, sound
        np.testing.assert_allclose(npz["values"], fresh.values)


def test_an_unusable_cache_only_costs_time(tmp_path, monkeypatch):
    clip = _write(tmp_path / "clip.wav", tone(3.5), 22050)
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    assert extract_file(clip, cache_dir=blocker, config=CONFIG).values.shape == (1, get_feature_set().n_features)

    def interrupted(fh, **arrays):  # a kill in the middle of writing an entry
        fh.write(b"PK\x03\x04half")
        raise KeyboardInterrupt

    cache = tmp_path / "real cache"
    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_file(clip, cache_dir=cache, config=CONFIG)
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # no entry, no temporary file


def test_a_pipe_is_refused_not_waited_on_even_with_a_cache(tmp_path):
    pipe = _fifo(tmp_path / "pipe.wav")
    code = ("import sys\nfrom genre_id.extraction import extract_file\nfrom genre_id.errors import AudioError\n"
            "from genre_id.config import AnalysisConfig\n"
            "CONFIG = AnalysisConfig.for_window(sample_rate=22050, window_seconds=30.0)\n"
            "try:\n    extract_file(sys.argv[1], cache_dir=sys.argv[2], config=CONFIG)\nexcept AudioError as exc:\n    print(exc)\n")
    r = _run(["-c", code, str(pipe), str(tmp_path / "cache")], timeout=60)
    assert r.stdout == f"{pipe}: not a regular file\n", r.stderr


def test_a_fifo_or_device_in_place_of_a_cache_entry_is_a_miss_never_a_wait(tmp_path):
    import stat

    code = ("import sys, numpy as np\nfrom genre_id.cache import FeatureCache\n"
            "c = FeatureCache(sys.argv[1], namespace='n')\nd = '%064x' % 7\n"
            "c.put(d, values=np.ones((2, 3)))\nassert c.get(d) is not None\n"
            "p = c._path(d)\np.unlink()\n"
            "import os\nos.mkfifo(p) if sys.argv[2] == 'fifo' else os.mknod(p, 0o666 | 0o20000, os.makedev(1, 5))\n"
            "print(c.get(d))\n")
    for kind in ("fifo", "zero"):
        r = _run(["-c", code, str(tmp_path / kind), kind], timeout=30)
        assert r.stdout == "None\n", r.stderr
    assert stat.S_IFCHR == 0o20000


_CACHE_STRESS = """
import sys
import numpy as np
from genre_id.cache import FeatureCache

cache = FeatureCache(sys.argv[1], namespace="stress")
rng = np.random.default_rng(int(sys.argv[2]))
bad = 0
for _ in range(400):
    digest = "%064x" % int(rng.integers(4))
    n = int(rng.integers(1, 40))
    cache.put(digest, values=np.full((n, 57), float(n)), starts=np.arange(n) * 30.0)
    entry = cache.get("%064x" % int(rng.integers(4)))
    if entry is not None:
        v = entry["values"]
        bad += not (v.shape == (len(entry["starts"]), 57) and (v == v.shape[0]).all())
print(bad)
"""

_EXTRACT = """
import sys
from genre_id.extraction import extract_files, FileFailure
from genre_id.config import AnalysisConfig

CONFIG = AnalysisConfig.for_window(sample_rate=22050, window_seconds=30.0)
results = extract_files(sys.argv[2:], cache_dir=sys.argv[1], config=CONFIG, workers=1, progress=False)
print(sum(isinstance(r, FileFailure) for r in results))
"""


def test_concurrent_processes_sharing_a_cache_corrupt_nothing(tmp_path):
    cache = tmp_path / "cache"
    stress = [subprocess.Popen([PY, "-c", _CACHE_STRESS, str(cache), str(seed)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}) for seed in (1, 2)]
    outs = [p.communicate(timeout=120)[0] for p in stress]
    assert [p.returncode for p in stress] == [0, 0] and [o.strip() for o in outs] == ["0", "0"]

    clips = [_write(tmp_path / f"clip{i}.wav", tone(3.0 + 0.25 * i, freq=300.0 * (i + 1)), 22050) for i in range(4)]
    procs = [subprocess.Popen([PY, "-c", _EXTRACT, str(cache), *map(str, order)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for order in (clips, clips[::-1])]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and [o.strip() for o in outs] == ["0", "0"]
    assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp-")]
    for clip in clips:
        cached = extract_file(clip, cache_dir=cache, config=CONFIG)
        np.testing.assert_allclose(cached.values, extract_file(clip, config=CONFIG).values)


def test_a_cache_write_that_fails_leaves_no_empty_folders(tmp_path, monkeypatch):
    import errno
    import os

    from genre_id import files
    from genre_id.cache import FeatureCache

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    cache = FeatureCache(tmp_path / "cache", namespace="levelfree-v1-w30-m3")
    (tmp_path / "cache").mkdir()
    with pytest.raises(OSError):
        cache.put("ab" + "0" * 62, values=np.zeros((1, 3)))
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.train
def test_a_cache_folder_that_cannot_be_written_is_said_once_and_not_used(tmp_path):
    import sys

    from test_audio import _write

    data = tmp_path / "data"
    for label, freq in (("low", 220.0), ("high", 1760.0)):
        (data / label).mkdir(parents=True)
        for i in range(3):
            _write(data / label / f"{i}.wav", tone(3.5, freq=freq * (1 + i / 20), seed=i), 22050)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be\n")
    res = subprocess.run([sys.executable, "-m", "genre_id.cli", "train", str(data), "--cache-dir", str(blocker),
                          "--out", str(tmp_path / "model"), "--max-epochs", "2", "-q"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stderr == f"note: feature cache {blocker}: it is not a folder; features are not cached\n"
    assert blocker.read_text().startswith("a file")


@pytest.mark.parametrize("command", ["info", "clear"])
def test_a_cache_dir_that_is_a_file_or_a_device_is_one_line_not_an_empty_cache(tmp_path, capsys, command):
    import stat

    from genre_id.cli import main

    (tmp_path / "x.flac").write_bytes(b"not a folder")
    os.mknod(tmp_path / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    for name in ("x.flac", "zero"):
        assert main(["cache", command, "--cache-dir", str(tmp_path / name)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err == f"error: {tmp_path / name}: is not a folder; the feature cache is a folder\n"
    assert (tmp_path / "x.flac").read_bytes() == b"not a folder"
