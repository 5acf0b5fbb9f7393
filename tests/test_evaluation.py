"""Evaluation: metrics that mean what they say, protocols that never leak, reports a person reads."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, tone
from genre_id.augment import Deltas, augment_rows
from genre_id.dataset import Dataset, read_split_list, track_id
from genre_id.evaluation import (
    evaluate_folds,
    evaluate_split,
    expected_calibration_error,
    group_permutation_importance,
)
from genre_id.features import get_feature_set
from genre_id.training import TrainConfig, track_split

FAST = TrainConfig(max_epochs=40, patience=8)


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1])
    honest = np.tile([0.8, 0.2], (10, 1))  # says 80%, right 8 of 10 times when predicting class 0 ...
    honest_y = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(honest, honest_y) == pytest.approx(0.0, abs=1e-9)
    overconfident = np.tile([0.99, 0.01], (10, 1))
    assert expected_calibration_error(overconfident, y) == pytest.approx(0.99 - 0.5)


def test_permutation_importance_finds_the_informative_group():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    y = (x[:, 0] > 0).astype(int)

    def predict(z):
        p = 1 / (1 + np.exp(-5 * z[:, 0]))
        return np.stack([1 - p, p], axis=1)

    imp = group_permutation_importance(predict, x, y, {"signal": [0], "noise": [1, 2, 3]})
    assert list(imp) == ["signal", "noise"] and imp["signal"] > 0.3 and abs(imp["noise"]) < 1e-9


def test_track_split_keeps_tracks_whole_and_holds_out_runs_of_tracks():
    tracks = [f"g{k % 2}/t{k:03d}" for k in range(200)]
    groups = np.repeat(tracks, 3)  # 3 windows per track
    y = np.asarray([g.split("/")[0] for g in groups])
    tr, va = track_split(y, groups, val_fraction=0.25, seed=0, block=10)
    assert not set(groups[tr]) & set(groups[va])
    assert 0.15 < len(va) / len(groups) < 0.35
    for genre in ("g0", "g1"):
        ranked = sorted(t for t in tracks if t.startswith(genre))
        held = {i // 10 for i, t in enumerate(ranked) if t in set(groups[va])}
        for block in held:  # every held-out block of 10 consecutive tracks is held out whole
            assert all(t in set(groups[va]) for t in ranked[block * 10:(block + 1) * 10])


def test_augment_rows_adds_shifted_copies():
    x, y = np.zeros((5, 3)), np.arange(5)
    deltas = np.array([[1.0, 1.0, 1.0]])
    xa, ya = augment_rows(x, y, deltas, copies=2, seed=0)
    assert xa.shape == (15, 3) and (xa[5:] == 1).all() and list(ya) == list(y) * 3


def test_deltas_without_drops_the_rows_of_the_named_tracks():
    d = Deltas(np.ones((4, 2)), np.array(["a/1", "a/1", "b/2", "c/3"]), np.array(["x"] * 4), "levelfree")
    assert d.without(["a/1"]).tracks.tolist() == ["b/2", "c/3"]


@pytest.mark.slow
def test_split_protocol_on_the_real_table(table_path, split_dir):
    from genre_id.dataset import read_table

    data = read_table(table_path)
    train = read_split_list(split_dir / "train_filtered.txt") + read_split_list(split_dir / "valid_filtered.txt")
    test = read_split_list(split_dir / "test_filtered.txt")
    assert len(test) == 290 and not set(train) & set(test)
    r = evaluate_split(data, train, test, config=FAST, seeds=(0,))
    assert r.details["train_tracks"] == 640 and r.details["test_tracks"] == 290
    assert len(r.y_true) == 290 and 0.3 < r.accuracy < 0.8, "far above chance (0.1), far below a leak"
    assert set(r.importance) == set(get_feature_set().groups)
    assert r.confusion().sum() == 290


def test_folds_are_grouped_by_track():
    rng = np.random.default_rng(1)
    n_tracks, per = 60, 3
    y = np.repeat(np.array(["a", "b"] * (n_tracks // 2)), per)
    groups = np.repeat([f"t{i}" for i in range(n_tracks)], per)
    # Windows of a track share a track-specific offset: a leak across folds would be rewarded.
    offsets = np.repeat(rng.normal(0, 3, size=(n_tracks, 51)), per, axis=0)
    x = offsets + (y == "a")[:, None] * 0.5
    data = Dataset(x, y, groups, get_feature_set(), source="toy")
    r = evaluate_folds(data, folds=5, config=FAST, seeds=(0,), importance=False)
    assert len(r.y_true) == n_tracks * per
    assert r.accuracy < 0.8, "windows of one track never sit on both sides"


@pytest.mark.slow
def test_evaluate_command_writes_a_report(tmp_path, table_path, split_dir):
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "genre_id.cli", "evaluate", "--table", str(table_path),
           "--split", f"{split_dir / 'train_filtered.txt'},{split_dir / 'valid_filtered.txt'}",
           str(split_dir / "test_filtered.txt"), "--max-epochs", "30", "--patience", "5", "--out", str(out), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    for key in ("accuracy", "accuracy_std", "ece", "per_genre", "confusion", "importance"):
        assert key in doc
    assert {p.name for p in out.iterdir()} == {"report.md", "report.json", "confusion-split-test-filtered-txt.png"}
    assert "| genre | precision | recall | F1 |" in (out / "report.md").read_text()
    assert track_id("blues/blues.00012.wav") == "blues/blues.00012"


def test_the_mp3_perturbation_really_is_128_kbps_at_gtzan_rate():
    """libsndfile's compression level maps onto another bit-rate range at 22.05 kHz (MPEG-2) than at 44.1 kHz."""
    from genre_id.perturb import encode_mp3

    y = tone(10.0) + 0.05 * np.random.default_rng(0).standard_normal(10 * 22050).astype(np.float32)
    for sr, samples in ((22050, y), (44100, np.repeat(y, 2))):
        kbps = len(encode_mp3(samples, sr, kbps=128)) * 8 / 1000 / 10.0
        assert 120 < kbps < 136, (sr, kbps)


def test_perturbation_deltas_skip_clips_that_cannot_be_used(tmp_path):
    """A broken clip and a silent one are named and skipped; the good clip gives one delta per perturbation."""
    import soundfile as sf

    from genre_id.augment import perturbation_deltas
    from genre_id.perturb import PERTURBATIONS

    good, silent, broken = tmp_path / "good.wav", tmp_path / "silent.wav", tmp_path / "broken.flac"
    sf.write(good, tone(5.0) + 0.3 * tone(5.0, freq=1250.0, seed=2), 22050)
    sf.write(silent, np.zeros(5 * 22050, np.float32), 22050)
    broken.write_bytes(b"fLaC" + bytes(300))
    d = perturbation_deltas([good, silent, broken], tracks=["a/good", "a/silent", "a/broken"],
                            feature_set="levelfree", workers=1)
    assert d.tracks.tolist() == ["a/good"] * len(PERTURBATIONS)
    assert d.values.shape == (len(PERTURBATIONS), get_feature_set("levelfree").n_features)
    assert np.isfinite(d.values).all()
    assert len(d.skipped) == 2 and d.skipped[0].startswith(f"{silent}: ") and d.skipped[1].startswith(f"{broken}: ")
    assert d.summary()["skipped_clips"] == list(d.skipped)
