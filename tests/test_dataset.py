"""Datasets from a folder of labelled audio: broken files are skipped and listed, never fatal."""

from __future__ import annotations

import os

import numpy as np

from conftest import ROOT, tone
from genre_id.features import get_feature_set
from test_audio import _truncated, _write

_CRASH_HOOK = """
import os, signal
if os.environ.get("GENRE_ID_TEST_CRASH"):
    import soundfile

    _init = soundfile.SoundFile.__init__

    def _crashing_init(self, file, *args, **kwargs):
        if isinstance(file, (str, bytes)) and os.environ["GENRE_ID_TEST_CRASH"] in os.fsdecode(file):
            os.kill(os.getpid(), signal.SIGKILL)  # as a decoder crash or the OOM killer would
        _init(self, file, *args, **kwargs)

    soundfile.SoundFile.__init__ = _crashing_init
"""


def test_training_folder_with_broken_files_skips_and_lists_them(tmp_path, monkeypatch):
    from genre_id.dataset import load_folder

    root = tmp_path / "data"
    for genre, freq in (("low", 220.0), ("high", 1760.0)):
        (root / genre).mkdir(parents=True)
        for i in range(2):
            _write(root / genre / f"{genre}.{i:05d}.wav", tone(3.5, freq=freq, seed=i), 22050)
    broken = {
        root / "low" / "empty.wav": "file is empty",
        root / "low" / "notes.mp3": "not a readable audio file",
        root / "high" / "cut.flac": "corrupt or truncated",
        root / "high" / "short.au": "at least 3 s",
        root / "high" / "quiet.wav": "silent",
        root / "low" / "crash-me.wav": "the process decoding this file died",
    }
    (root / "low" / "empty.wav").write_bytes(b"")
    (root / "low" / "notes.mp3").write_text("hello\n" * 100)
    _truncated(root / "high" / "cut.flac", tone(10.0), 22050)
    _write(root / "high" / "short.au", tone(1.0), 22050)
    _write(root / "high" / "quiet.wav", np.zeros(5 * 22050, np.float32), 22050)
    _write(root / "low" / "crash-me.wav", tone(4.0), 22050)
    # The worker processes kill themselves when they open crash-me.wav (the parent does not).
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_CRASH_HOOK)
    paths = [str(hook), str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("GENRE_ID_TEST_CRASH", "crash-me")

    data = load_folder(root, workers=2, progress=False)

    assert sorted(set(data.groups.tolist())) == ["high/high.00000", "high/high.00001", "low/low.00000", "low/low.00001"]
    assert data.x.shape == (4, get_feature_set().n_features) and np.isfinite(data.x).all()
    failed = {f.path: f.message for f in data.failures}
    assert sorted(failed) == sorted(str(p) for p in broken)
    for path, words in broken.items():
        message = failed[str(path)]
        assert message.startswith(str(path)) and words in message and "\n" not in message, message
    assert sorted(data.summary()["skipped_files"]) == sorted(failed.values())
