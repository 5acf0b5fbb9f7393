"""Feature sets: the measured descriptors reproduce the GTZAN table on real clips."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from conftest import tone
from genre_id.errors import FeatureVersionError
from genre_id.features import FEATURE_SETS, get_feature_set, gtzan57_columns, measure

# harmony_mean and perceptr_mean are means of waveforms: near zero, pure noise.
NEAR_ZERO = {"harmony_mean", "perceptr_mean"}


def _table_rows(table_path):
    with open(table_path, newline="") as fh:
        return {row["filename"].rsplit(".", 1)[0]: row for row in csv.DictReader(fh)}


def _relative_errors(files, table_path, columns):
    rows = _table_rows(table_path)
    ours, ref = [], []
    for path in files:
        y, sr = sf.read(path, dtype="float32")
        assert sr == 22050
        ours.append(measure(y, sr=22050, columns=columns))
        ref.append([float(rows[path.stem][c]) for c in columns])
    ours, ref = np.asarray(ours), np.asarray(ref)
    return np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-12)


def test_gtzan57_columns_match_the_table_header(table_path):
    with open(table_path, newline="") as fh:
        header = next(csv.reader(fh))
    assert list(FEATURE_SETS["gtzan57"].columns) == [c for c in header if c not in ("filename", "length", "label")]
    assert len(gtzan57_columns()) == 57


@pytest.mark.slow
def test_measured_columns_agree_with_the_table_on_the_100_real_clips(mini_files, table_path):
    """Every column but the costly HPSS ones on all 100 clips: median relative error under 1%."""
    columns = [c for c in gtzan57_columns() if not c.startswith(("harmony", "perceptr"))]
    rel = _relative_errors(mini_files, table_path, columns)
    medians = dict(zip(columns, np.median(rel, axis=0)))
    worst = max(medians, key=medians.get)
    assert medians[worst] < 0.01, f"{worst}: median relative error {medians[worst]:.4f}"
    assert np.median(list(medians.values())) < 0.002, "most columns agree to about 0.1%"


@pytest.mark.slow
def test_hpss_columns_agree_with_the_table(mini_files, table_path):
    """The harmonic/percussive columns (slow to compute) on one clip per genre."""
    columns = ["harmony_var", "perceptr_var"]
    rel = _relative_errors(mini_files[::10], table_path, columns)
    assert np.median(rel, axis=0).max() < 0.01


def test_levelfree_features_ignore_playback_gain():
    fs = get_feature_set("levelfree")
    y = tone(8.0, freq=220.0) + tone(8.0, freq=1250.0, amp=0.1, seed=3)
    quiet, loud = fs.extract(y * 0.05).values, fs.extract(y * 0.8).values
    np.testing.assert_allclose(quiet, loud, rtol=1e-3, atol=1e-3)
    # ... whereas the raw table columns follow it.
    raw = get_feature_set("gtzan57")
    assert not np.allclose(raw.extract(y * 0.05).values, raw.extract(y * 0.8).values, rtol=1e-2)


def test_levelfree_from_the_table_equals_levelfree_from_audio():
    """Training from the table and predicting from audio derive the features the same way."""
    fs = get_feature_set("levelfree")
    y = tone(6.0, freq=330.0, seed=5)
    measured = measure(y, sr=22050, columns=fs.measured_columns)
    np.testing.assert_allclose(fs.from_table(measured[None, :])[0], fs.extract(y).values)


def test_a_stored_feature_set_of_another_version_is_refused():
    stored = get_feature_set("levelfree").to_dict()
    stored["version"] += 1
    with pytest.raises(FeatureVersionError, match="version"):
        get_feature_set(stored)
    with pytest.raises(FeatureVersionError, match="unknown feature set"):
        get_feature_set("no-such-set")
