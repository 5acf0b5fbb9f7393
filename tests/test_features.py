"""The default feature set reproduces the GTZAN table's columns on real clips."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from genre_id.errors import FeatureVersionError
from genre_id.extraction import FileFailure
from genre_id.features import FEATURE_SETS, gtzan57_columns, get_feature_set

# harmony_mean and perceptr_mean are means of waveforms: near zero, pure noise.
NEAR_ZERO = {"harmony_mean", "perceptr_mean"}


def _table_rows(table_path):
    with open(table_path, newline="") as fh:
        return {row["filename"].rsplit(".", 1)[0]: row for row in csv.DictReader(fh)}


def test_gtzan57_columns_match_the_table_header(table_path):
    with open(table_path, newline="") as fh:
        header = next(csv.reader(fh))
    assert list(FEATURE_SETS["gtzan57"].columns) == [c for c in header if c not in ("filename", "length", "label")]
    assert len(gtzan57_columns()) == 57


@pytest.mark.slow
def test_features_agree_with_the_table_on_the_100_real_clips(mini_features, table_path):
    rows = _table_rows(table_path)
    cols = gtzan57_columns()
    ours, ref = [], []
    for path, res in mini_features.items():
        assert not isinstance(res, FileFailure), res
        assert res.values.shape == (1, 57), "a 30 s GTZAN clip is one window"
        ours.append(res.values[0])
        ref.append([float(rows[path.stem][c]) for c in cols])
    ours, ref = np.asarray(ours), np.asarray(ref)
    rel = np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-12)
    medians = dict(zip(cols, np.median(rel, axis=0)))
    checked = {c: m for c, m in medians.items() if c not in NEAR_ZERO}
    worst = max(checked, key=checked.get)
    assert checked[worst] < 0.01, f"{worst}: median relative error {checked[worst]:.4f}"
    # Most columns agree far better than the 1% bound: to about 0.1%.
    assert np.median(list(checked.values())) < 0.002


def test_a_stored_feature_set_of_another_version_is_refused():
    stored = get_feature_set("gtzan57").to_dict()
    stored["version"] += 1
    with pytest.raises(FeatureVersionError, match="version"):
        get_feature_set(stored)
    with pytest.raises(FeatureVersionError, match="unknown feature set"):
        get_feature_set("no-such-set")
