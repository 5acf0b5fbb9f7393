"""Evaluation: metrics that mean what they say, protocols that never leak, reports a person reads."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from genre_id.dataset import Dataset, read_split_list, track_id
from genre_id.evaluation import (
    evaluate_folds,
    evaluate_split,
    expected_calibration_error,
    group_permutation_importance,
)
from genre_id.features import get_feature_set
from genre_id.training import TrainConfig

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


def test_folds_give_no_credit_for_memorising_tracks():
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
