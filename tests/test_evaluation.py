"""Evaluation: metrics that mean what they say, protocols that never leak, reports a person reads."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import CONFIG, ROOT
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


@pytest.mark.train
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


@pytest.mark.train
def test_folds_give_no_credit_for_memorising_tracks():
    rng = np.random.default_rng(1)
    n_tracks, per = 60, 3
    y = np.repeat(np.array(["a", "b"] * (n_tracks // 2)), per)
    groups = np.repeat([f"t{i}" for i in range(n_tracks)], per)
    # Windows of a track share a track-specific offset: a leak across folds would be rewarded.
    offsets = np.repeat(rng.normal(0, 3, size=(n_tracks, 51)), per, axis=0)
    x = offsets + (y == "a")[:, None] * 0.5
    data = Dataset(x, y, groups, get_feature_set(), source="toy", config=CONFIG)
    r = evaluate_folds(data, folds=5, config=FAST, seeds=(0,), importance=False)
    assert len(r.y_true) == n_tracks * per
    assert r.accuracy < 0.8, "windows of one track never sit on both sides"


@pytest.mark.train
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


def _pool(feature_set: str, *, seed: int) -> Dataset:
    """Toy 'real' recordings (3 labels, 2 sets, 12 artists of 3 tracks; an artist's tracks share an offset)
    plus background rows of a third set that are never scored."""
    fs = get_feature_set(feature_set)
    rng = np.random.default_rng(seed)
    labels = np.array(["a", "b", "c"])
    centers = rng.normal(0, 1.5, size=(3, fs.n_features))
    rows, y, groups, units, origin = [], [], [], [], []
    for artist in range(12):
        label = labels[artist % 3]
        offset = rng.normal(0, 2, size=fs.n_features)
        for song in range(3):
            rows.append(centers[artist % 3] + offset + rng.normal(0, 1, size=fs.n_features))
            y.append(label)
            groups.append(f"{'dev' if artist < 3 else 'train'}/{label}/artist{artist}-{song}")
            units.append(f"group:artist{artist}")
            origin.append("dev" if artist < 3 else "train")
    for i in range(30):
        rows.append(centers[i % 3] + rng.normal(0, 1, size=fs.n_features))
        y.append(labels[i % 3]); groups.append(f"background/{i}"); units.append(f"background/{i}")
        origin.append("background")
    return Dataset(np.asarray(rows), np.asarray(y), np.asarray(groups), fs, "toy", CONFIG, units=np.asarray(units),
                   origin=np.asarray(origin))


@pytest.mark.train
def test_grouped_cv_never_trains_on_a_scored_units_rows_and_fits_the_fusion_on_held_out_predictions(monkeypatch):
    import genre_id.evaluation as ev

    members = [_pool("levelfree", seed=0), _pool("musicnn-msd", seed=0)]
    seen = []
    real_fit = ev.fit

    def recording_fit(train, **kwargs):
        seen.append(set(train.units.tolist()))
        return real_fit(train, **kwargs)

    monkeypatch.setattr(ev, "fit", recording_fit)
    result, extra = ev.evaluate_grouped(members, scored=["train", "dev"], folds=3, configs=[FAST, FAST])
    assert len(result.y_true) == 36 and result.origin.tolist().count("dev") == 9  # background rows never scored
    artists = {f"group:artist{a}" for a in range(12)}
    for unit in artists:  # each artist is missing from exactly one fold's training, for each member
        assert sum(unit not in s for s in seen) == 2, unit
    assert all(f"background/{i}" in s for s in seen for i in range(30))  # in every training fold
    fusion = extra["fusion"]
    assert len(fusion["weights"]) == 2 and sum(fusion["weights"]) == pytest.approx(1, abs=1e-3)
    assert 0.05 <= fusion["temperature"] <= 20
    assert result.balanced_accuracy > 0.6  # far above chance (1/3) on this easy toy
    low, high = result.intervals()["balanced_accuracy"]
    assert low <= result.balanced_accuracy <= high
    dev = ev.rows_of(result, result.origin == "dev", protocol="dev")
    assert len(dev.y_true) == 9


def test_fit_fusion_weighs_the_better_member_up_and_sharpens_an_underconfident_one():
    from genre_id.evaluation import fit_fusion

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=400)
    good = np.full((400, 3), 0.2)
    good[np.arange(400), y] = 0.6  # always right, but only 60 % sure
    noise = rng.dirichlet(np.ones(3), size=400)  # says nothing
    weights, temperature = fit_fusion([good, noise], y)
    assert weights[0] > 0.8 and temperature < 1.0


@pytest.mark.train
@pytest.mark.slow
def test_evaluate_cv_command_scores_each_set_and_keeps_groups_together(tmp_path):
    """`evaluate A B --cv 2 --also-train C`: one report for A and B together and one per set; C never scored."""
    from test_audio import _write

    from conftest import tone

    def make(name, rows):
        root = tmp_path / name
        lines = ["path,genre,group"]
        for i, (genre, group) in enumerate(rows):
            freq = {"low": 200.0, "high": 2400.0}[genre] * (1 + 0.03 * i)
            (root / genre).mkdir(parents=True, exist_ok=True)
            _write(root / genre / f"{i}.wav", tone(4.0, freq=freq, seed=i), 22050)
            lines.append(f"{genre}/{i}.wav,{genre},{group}")
        (root / "labels.csv").write_text("\n".join(lines) + "\n")
        return root

    a = make("a", [(g, f"artist{i % 4}") for i, g in enumerate(["low", "high"] * 6)])
    b = make("b", [(g, f"artist{i % 4}") for i, g in enumerate(["low", "high"] * 2)])
    c = make("c", [(g, "") for g in ["low", "high"] * 3])
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "genre_id.cli", "evaluate", str(a), str(b), "--cv", "2", "--also-train", str(c),
           "--max-epochs", "20", "--patience", "5", "--no-cache", "--json", "-q", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    protocols = [r["protocol"] for r in doc["results"]]
    assert protocols == ["2-fold CV grouped by group", "2-fold CV grouped by group: a rows alone",
                         "2-fold CV grouped by group: b rows alone"]
    whole, only_a, only_b = doc["results"]
    assert sum(sum(row) for row in whole["confusion"]) == 16  # a and b, never c
    assert sum(sum(row) for row in only_a["confusion"]) == 12 and sum(sum(row) for row in only_b["confusion"]) == 4
    low, high = whole["intervals_95"]["balanced_accuracy"]
    assert low <= whole["balanced_accuracy"] <= high
    assert (out / "report.md").is_file() and len(list(out.glob("confusion-*.png"))) == 3


@pytest.mark.train
def test_a_report_that_cannot_be_written_leaves_no_files_or_folders(tmp_path, monkeypatch):
    import errno
    import os

    from genre_id import files
    from genre_id.evaluation import score_predictions
    from genre_id.report import write_report

    result = score_predictions(["a", "b"], [[0.9, 0.1], [0.2, 0.8]], ["a", "b"])
    calls = {"n": 0}

    def full_disk_on_the_second_file(fd):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full_disk_on_the_second_file)
    with pytest.raises(OSError):
        write_report([result], tmp_path / "reports" / "mine", title="t", command="c")
    assert list(tmp_path.iterdir()) == []  # the PNG written first is gone, and the folders made for it


@pytest.mark.train
@pytest.mark.parametrize("failing_call", [1, 2, 3])
def test_a_report_that_cannot_be_written_leaves_the_previous_report_as_it_was(tmp_path, monkeypatch, failing_call):
    import errno
    import os

    from genre_id import files
    from genre_id.evaluation import score_predictions
    from genre_id.report import write_report

    result = score_predictions(["a", "b"], [[0.9, 0.1], [0.2, 0.8]], ["a", "b"])
    paths = write_report([result], tmp_path, title="old", command="c")
    before = {p: p.read_bytes() for p in paths}
    calls = {"n": 0}

    def full_disk(fd):
        calls["n"] += 1
        if calls["n"] == failing_call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full_disk)
    other = score_predictions(["a", "b"], [[0.1, 0.9], [0.2, 0.8]], ["a", "b"])
    with pytest.raises(OSError):
        write_report([other], tmp_path, title="new", command="c")
    assert {p: p.read_bytes() for p in paths} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths), "no temporary file left"


@pytest.mark.train
def test_the_summary_never_calls_a_genre_without_examples_weak():
    from genre_id.evaluation import score_predictions
    from genre_id.report import summary_text

    result = score_predictions(["a", "b", "c"], [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]], ["a", "b", "b"])
    lines = summary_text([result]).splitlines()
    weakest = next(line for line in lines if "weakest genres" in line)
    recall = next(line for line in lines if line.strip().startswith("recall:"))
    assert " c " not in weakest + " " and " c " not in recall + " "  # 'c' has no example in the scored data
    assert "b 0.67" in weakest and "accuracy 0.667;" in lines[0] and "seeds" not in lines[0]
