"""Training: a validation split that keeps every label, and small user folders that work."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CONFIG
from genre_id.errors import DatasetError
from genre_id.training import default_config, track_split


def _windows(tracks: list[str], per_track: int = 2) -> tuple[np.ndarray, np.ndarray]:
    groups = np.repeat(tracks, per_track)
    return np.asarray([g.split("/")[0] for g in groups]), groups


@pytest.mark.parametrize("per_label", [2, 3, 6, 10, 11])
def test_every_label_keeps_training_and_validation_tracks(per_label):
    tracks = [f"g{k % 4}/t{k:03d}" for k in range(4 * per_label)]
    y, groups = _windows(tracks)
    tr, va = track_split(y, groups, val_fraction=0.25, seed=0, block=10)
    assert set(y[tr]) == set(y[va]) == {"g0", "g1", "g2", "g3"}
    assert not set(groups[tr]) & set(groups[va])  # a track's windows stay on one side


def test_a_label_with_a_single_track_is_refused_saying_how_many_it_needs():
    y, groups = _windows(["a/1", "a/2", "a/3", "b/1", "c/1", "c/2"])
    with pytest.raises(DatasetError, match=r"'b' has 1; every label needs at least 2 tracks"):
        track_split(y, groups, val_fraction=0.25, seed=0)


def test_large_labels_hold_out_runs_of_consecutive_tracks():
    tracks = [f"g{k % 2}/t{k:03d}" for k in range(200)]
    y, groups = _windows(tracks, 3)
    tr, va = track_split(y, groups, val_fraction=0.25, seed=0, block=10)
    assert 0.15 < len(va) / len(groups) < 0.35
    held = set(groups[va])
    assert not held & set(groups[tr])
    for genre in ("g0", "g1"):
        ranked = sorted(t for t in tracks if t.startswith(genre))
        for b in {i // 10 for i, t in enumerate(ranked) if t in held}:
            assert all(t in held for t in ranked[b * 10:(b + 1) * 10])


def test_an_artist_named_by_the_folder_stays_on_one_side():
    tracks = [f"{g}/artist{a}/song{s}" for g in ("rock", "jazz") for a in range(4) for s in range(3)]
    y, groups = _windows(tracks)
    tr, va = track_split(y, groups, val_fraction=0.25, seed=1)
    artists = lambda idx: {g.rsplit("/", 1)[0] for g in groups[idx]}  # noqa: E731
    assert not artists(tr) & artists(va) and set(y[va]) == {"rock", "jazz"}


def test_the_musicnn_head_is_a_regularised_logistic_regression():
    cfg = default_config("musicnn-msd", seed=3)
    assert cfg.hidden == () and cfg.seed == 3 and default_config("levelfree").hidden == (256, 128)


@pytest.mark.train
@pytest.mark.slow
def test_a_small_folder_of_own_labels_trains_a_model_that_names_each_label(mini_dir, tmp_path):
    """4 labels x 6 real clips: musicnn-msd learns every label; unseen clips of each are named too."""
    from genre_id import Recognizer
    from genre_id.cli import main

    labels = {"calm": "classical", "heavy": "metal", "rap": "hiphop", "island": "reggae"}
    data = tmp_path / "mine"
    held_out = {}
    for label, genre in labels.items():
        clips = sorted((mini_dir / genre).glob("*.flac"))
        (data / label).mkdir(parents=True)
        for clip in clips[:6]:
            (data / label / clip.name).symlink_to(clip)
        held_out[label] = clips[6:]
    out = tmp_path / "model"
    assert main(["train", str(data), "--feature-set", "musicnn-msd", "--out", str(out), "--no-cache", "-q"]) == 0
    rec = Recognizer.load(out)
    assert sorted(rec.labels) == sorted(labels)
    for label in labels:
        named = [rec.identify(p).genre for p in sorted((data / label).iterdir())]
        assert named.count(label) >= 5, (label, named)
    unseen = [(label, rec.identify(p).genre) for label, clips in held_out.items() for p in clips]
    right = sum(a == b for a, b in unseen)
    assert right >= 0.75 * len(unseen), unseen


def test_balanced_row_weights_give_every_label_the_same_total_and_a_track_one_share():
    from genre_id.dataset import Dataset
    from genre_id.features import get_feature_set
    from genre_id.training import row_weights

    # label a: 3 tracks (one with 4 windows, one weighted 2), label b: 1 track
    groups = np.asarray(["a/1"] * 4 + ["a/2", "a/3", "b/1"])
    y = np.asarray([g.split("/")[0] for g in groups])
    weights = np.asarray([1.0] * 4 + [2.0, 1.0, 1.0])
    data = Dataset(np.zeros((7, 51)), y, groups, get_feature_set("levelfree"), "toy", CONFIG, weights=weights)
    w = row_weights(data, ["a", "b"], class_weight="balanced")
    assert w.mean() == pytest.approx(1.0)
    assert w[y == "a"].sum() == pytest.approx(w[y == "b"].sum())  # 3 tracks weigh what 1 does
    assert w[:4].sum() == pytest.approx(w[5])  # four windows of one track weigh one track
    assert w[4] == pytest.approx(2 * w[5])  # the labels file's weight
    plain = row_weights(data, ["a", "b"], class_weight="none")
    assert plain[4] == pytest.approx(2 * plain[5]) and plain[6] == pytest.approx(plain[5])
