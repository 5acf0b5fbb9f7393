"""Augmentation: perturbation deltas from real-world-like damage (augment.py) and the perturbations themselves
(perturb.py)."""

from __future__ import annotations

import numpy as np

from conftest import tone
from genre_id.augment import Deltas, augment_rows
from genre_id.features import get_feature_set


def test_augment_rows_adds_shifted_copies():
    x, y = np.zeros((5, 3)), np.arange(5)
    deltas = np.array([[1.0, 1.0, 1.0]])
    xa, ya = augment_rows(x, y, deltas, copies=2, seed=0)
    assert xa.shape == (15, 3) and (xa[5:] == 1).all() and list(ya) == list(y) * 3


def test_deltas_without_drops_the_rows_of_the_named_tracks():
    d = Deltas(np.ones((4, 2)), np.array(["a/1", "a/1", "b/2", "c/3"]), np.array(["x"] * 4), "levelfree")
    assert d.without(["a/1"]).tracks.tolist() == ["b/2", "c/3"]


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
