"""Teach a model new music: it keeps what it learnt and adds the user's recordings and labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tone
from genre_id.errors import ModelError
from test_audio import _write


def _own_labels(root, mini_dir, labels, count):
    """A folder-per-label set of ``count`` real clips for each ``{label: gtzan genre}``; the rest of each are returned."""
    rest = {}
    for label, genre in labels.items():
        clips = sorted((mini_dir / genre).glob("*.flac"))
        (root / label).mkdir(parents=True)
        for clip in clips[:count]:
            (root / label / clip.name).symlink_to(clip)
        rest[label] = clips[count:]
    return rest


@pytest.mark.train
@pytest.mark.slow
def test_extending_a_model_adds_a_new_label_and_keeps_the_old_ones(mini_dir, tmp_path):
    from genre_id import Recognizer
    from genre_id.cli import main
    from genre_id.model import load_pool

    base_data = tmp_path / "base"
    unseen = _own_labels(base_data, mini_dir, {"heavy": "metal", "rap": "hiphop", "island": "reggae"}, 6)
    base = tmp_path / "base-model"
    assert main(["train", str(base_data), "--feature-set", "musicnn-msd", "--out", str(base), "-q"]) == 0
    pool = load_pool(base)
    assert pool["x"].shape == (18, 200) and sorted(set(pool["y"].tolist())) == ["heavy", "island", "rap"]

    new_data = tmp_path / "new"
    unseen.update(_own_labels(new_data, mini_dir, {"calm": "classical"}, 6))
    out = tmp_path / "extended"
    assert main(["train", "--extend", str(base), str(new_data), "--out", str(out), "-q"]) == 0
    rec = Recognizer.load(out)
    assert sorted(rec.labels) == ["calm", "heavy", "island", "rap"]
    meta = json.loads((out / "model.json").read_text())
    assert meta["extended_from"]["name"] == "base-model" and meta["training"]["data"]["tracks"] == 24
    named = [(label, rec.identify(p).genre) for label, clips in unseen.items() for p in clips]
    assert sum(a == b for a, b in named) >= 0.75 * len(named), named
    assert [g for label, g in named if label == "calm"].count("calm") >= 3  # the new label, from 6 recordings
    assert Recognizer.load(base).labels == ["heavy", "island", "rap"]  # the base model is never changed


def test_a_model_without_its_training_features_says_it_cannot_be_extended(tmp_path):
    from genre_id.model import load_pool

    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(ModelError, match="cannot be extended"):
        load_pool(tmp_path)
    np.savez(tmp_path / "pool.npz", x=np.zeros((2, 3), np.float16), y=np.asarray(["a", "b"]))
    with pytest.raises(ModelError, match="'groups' is missing"):
        load_pool(tmp_path)


@pytest.mark.train
@pytest.mark.slow
def test_the_shipped_model_learns_a_new_label_from_a_few_recordings(tmp_path):
    """``--extend default``: both members retrained with their stored features; fusion kept; old genres kept."""
    from genre_id import Recognizer
    from genre_id.cli import main

    data = tmp_path / "mine"
    for label, freq in (("test-tones", 880.0),):
        (data / label).mkdir(parents=True)
        for i in range(6):
            _write(data / label / f"t{i}.wav", tone(10.0, freq=freq * (1 + i / 10), seed=i), 22050)
    (data / "classical").mkdir()
    out = tmp_path / "extended"
    default = Recognizer.load()
    assert main(["train", "--extend", "default", str(data), "--out", str(out), "-q", "--no-cache"]) == 0
    rec = Recognizer.load(out)
    assert rec.labels == sorted([*default.labels, "test-tones"])
    assert rec.bundle.fusion_weights == default.bundle.fusion_weights
    assert rec.bundle.temperature == default.bundle.temperature
    probe = tmp_path / "probe.wav"
    _write(probe, tone(12.0, freq=930.0, seed=9), 22050)
    assert rec.identify(probe).genre == "test-tones"


@pytest.mark.parametrize("make, problem", [
    (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "unreadable training features"),
    (lambda p: __import__("os").mkfifo(p), "not a regular file|regular file"),
    (lambda p: np.savez(p, x=np.zeros((2, 3), np.float16), y=np.asarray([object(), 1], dtype=object),
                        groups=np.asarray(["a", "b"]), units=np.asarray(["a", "b"]), weights=np.ones(2)),
     "unreadable training features|wrong type"),
    (lambda p: np.savez(p, x=np.full((2, 3), np.inf, np.float16), y=np.asarray(["a", "b"]),
                        groups=np.asarray(["a", "b"]), units=np.asarray(["a", "b"]), weights=np.ones(2)),
     "not finite"),
])
def test_a_hostile_pool_file_is_one_line_never_unpickled_or_waited_on(tmp_path, make, problem):
    from genre_id.model import load_pool

    make(tmp_path / "pool.npz")
    with pytest.raises(ModelError, match=problem):
        load_pool(tmp_path)


@pytest.mark.train
def test_the_extended_model_never_replaces_the_model_it_extends(tmp_path):
    import shutil

    from genre_id.cli import main
    from genre_id.model import DEFAULT_MODEL_DIR

    base = tmp_path / "base"
    shutil.copytree(DEFAULT_MODEL_DIR, base)
    (tmp_path / "link").symlink_to(base)
    data = tmp_path / "mine" / "test-tones"
    data.mkdir(parents=True)
    for i in range(3):
        _write(data / f"t{i}.wav", tone(4.0, freq=880.0 + 40 * i, seed=i), 22050)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in base.rglob("*"))
    for out in (base, tmp_path / "link"):
        assert main(["train", "--extend", str(base), str(data.parent), "--out", str(out), "-q", "--no-cache"]) == 2
    assert sorted((p.name, p.stat().st_mtime_ns) for p in base.rglob("*")) == before


@pytest.mark.train  # on a base install train refuses first, for another reason
@pytest.mark.parametrize("extend, out", [("base", "base/levelfree"), ("link", "base/new"), ("link", "link/levelfree"),
                                         ("base/levelfree", "base")])
def test_the_extended_model_is_never_written_inside_or_around_its_base(tmp_path, capsys, extend, out):
    import shutil

    from genre_id.cli import main
    from genre_id.model import DEFAULT_MODEL_DIR

    base = tmp_path / "base"
    shutil.copytree(DEFAULT_MODEL_DIR, base)
    (tmp_path / "link").symlink_to(base)
    before = sorted((str(p), p.stat().st_mtime_ns) for p in base.rglob("*"))
    data = tmp_path / "mine" / "test-tones"
    data.mkdir(parents=True)
    assert main(["train", "--extend", str(tmp_path / extend), str(data.parent), "--out", str(tmp_path / out),
                 "-q", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the model being extended" in err, err
    assert sorted((str(p), p.stat().st_mtime_ns) for p in base.rglob("*")) == before
