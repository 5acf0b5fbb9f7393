"""Ensembles: members on different feature sets, fused by one fixed rule; the musicnn-msd view."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from conftest import CONFIG
from genre_id import Recognizer
from genre_id.dataset import Dataset, read_table
from genre_id.errors import DatasetError, ModelError
from genre_id.features import combine, get_feature_set
from genre_id.model import Ensemble, fuse, load_bundle, save_bundle, save_ensemble
from genre_id.training import TrainConfig, fit

LABELS = ("a", "b", "c")


def _toy(feature_set: str, *, seed: int, labels=LABELS, n: int = 30) -> Dataset:
    fs = get_feature_set(feature_set)
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(len(labels), fs.n_features))
    x = np.vstack([c + rng.normal(0, 1, size=(n, fs.n_features)) for c in centers])
    y = np.repeat(labels, n)
    return Dataset(x, y, np.asarray([f"{g}/t{i}" for i, g in enumerate(y)]), fs, source="toy", config=CONFIG)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    cfg = TrainConfig(max_epochs=40, patience=5)
    lf = save_bundle(fit(_toy("levelfree", seed=1), config=cfg, name="lf"), root / "lf")
    msd = save_bundle(fit(_toy("musicnn-msd", seed=2), config=cfg, name="msd"), root / "msd")
    return root, lf, msd


def test_fusion_rules():
    p = np.array([[0.7, 0.2, 0.1]])
    q = np.array([[0.1, 0.2, 0.7]])
    assert fuse([p, q], rule="mean") == pytest.approx(np.array([[0.4, 0.2, 0.4]]))
    geo = fuse([p, q], rule="geometric-mean")
    assert geo.sum() == pytest.approx(1.0) and geo[0, 0] == pytest.approx(geo[0, 2])
    veto = fuse([np.array([[0.5, 0.5, 0.0]]), np.array([[0.9, 0.05, 0.05]])], rule="geometric-mean")
    assert veto[0, 2] < 1e-3  # a member sure that a genre is wrong vetoes it
    with pytest.raises(ModelError, match="unknown fusion rule"):
        fuse([p, q], rule="max")


@pytest.mark.train
def test_an_ensemble_folder_loads_and_fuses_its_members(members, tmp_path):
    root, lf, msd = members
    out = save_ensemble([lf, msd], tmp_path / "ens", fusion="geometric-mean", metadata={"name": "ens"})
    model = load_bundle(out)
    assert isinstance(model, Ensemble)
    assert model.member_names == ["levelfree", "musicnn-msd"] and model.labels == list(LABELS)
    meta = json.loads((out / "model.json").read_text())
    assert meta["fusion"] == "geometric-mean" and [m["folder"] for m in meta["members"]] == model.member_names
    x = np.hstack([_toy("levelfree", seed=1).x[:5], _toy("musicnn-msd", seed=2).x[:5]])
    parts = model.member_proba(x)
    assert np.allclose(parts[0], load_bundle(lf).predict_proba(x[:, :51]))
    assert np.allclose(model.predict_proba(x), fuse(parts, rule="geometric-mean"))
    rec = Recognizer(model)
    assert rec.feature_set.name == "levelfree+musicnn-msd" and rec.feature_set.n_features == 251


@pytest.mark.train
def test_members_must_agree(members, tmp_path):
    root, lf, msd = members
    other = save_bundle(fit(_toy("musicnn-msd", seed=3, labels=("a", "b", "d")),
                            config=TrainConfig(max_epochs=5, patience=2)), tmp_path / "other")
    with pytest.raises(ModelError, match="labels differ"):
        save_ensemble([lf, other], tmp_path / "bad", fusion="mean")
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.*"))
    with pytest.raises(ModelError, match="different feature sets"):
        save_ensemble([msd, other], tmp_path / "bad", fusion="mean")
    out = save_ensemble([lf, msd], tmp_path / "ens", fusion="mean")
    meta = json.loads((out / "model.json").read_text())
    for damage, problem in (({"fusion": "max"}, "unknown fusion rule"),
                            ({"members": [{"folder": "../lf"}]}, "sub-folder"),
                            ({"members": []}, "1 to 8 members")):
        (out / "model.json").write_text(json.dumps({**meta, **damage}))
        with pytest.raises(ModelError, match=problem):
            load_bundle(out)
    (out / "model.json").write_text(json.dumps(meta))
    shutil.copytree(out, out / "nested")
    (out / "model.json").write_text(json.dumps({**meta, "members": [{"folder": "nested"}]}))
    with pytest.raises(ModelError, match="cannot be a member"):
        load_bundle(out)


def test_combined_feature_sets_concatenate_and_round_trip_by_name():
    both = combine([get_feature_set("levelfree"), get_feature_set("musicnn-msd")])
    assert get_feature_set("levelfree+musicnn-msd") == both and both.n_features == 251
    assert both.columns[0].startswith("levelfree:") and both.columns[-1].startswith("musicnn-msd:")


def test_a_table_cannot_train_the_audio_only_set(table_path):
    with pytest.raises(DatasetError, match="from audio only"):
        read_table(table_path, feature_set="musicnn-msd")


@pytest.mark.slow
def test_musicnn_view_ignores_playback_level(mini_dir):
    y, sr = sf.read(mini_dir / "rock" / "rock.00003.flac", dtype="float32")
    fs = get_feature_set("musicnn-msd")
    a = fs.extract(y[: 10 * sr]).values
    b = fs.extract(y[: 10 * sr] * np.float32(10 ** (-12 / 20))).values
    other = fs.extract(sf.read(mini_dir / "classical" / "classical.00003.flac", dtype="float32")[0][: 10 * sr]).values
    assert np.abs(a - b).max() < 1e-3 * np.abs(a).max()
    assert np.abs(a - other).max() > 0.1 * np.abs(a).max()


@pytest.mark.slow
def test_the_shipped_model_shows_each_members_view(default_recognizer, mini_dir):
    p = default_recognizer.identify(mini_dir / "metal" / "metal.00002.flac")
    assert p.genre == "metal"
    assert set(p.members) == {"levelfree", "musicnn-msd"}
    for probs in p.members.values():
        assert set(probs) == set(default_recognizer.labels) and sum(probs.values()) == pytest.approx(1, abs=1e-3)
    assert [m["name"] for m in p.to_dict()["members"]] == ["levelfree", "musicnn-msd"]


def test_weights_and_temperature_of_the_fusion():
    p = np.array([[0.7, 0.2, 0.1]])
    q = np.array([[0.1, 0.2, 0.7]])
    only_p = fuse([p, q], rule="geometric-mean", weights=[1.0, 0.0])
    assert only_p == pytest.approx(p, abs=1e-6)  # a member of weight 0 has no say
    leaning = fuse([p, q], rule="geometric-mean", weights=[3.0, 1.0])
    assert leaning[0, 0] > leaning[0, 2]
    assert fuse([p, q], rule="mean", weights=[1, 3]) == pytest.approx(0.25 * p + 0.75 * q, abs=1e-6)
    soft = fuse([p], rule="geometric-mean", temperature=2.0)
    expected = np.sqrt(p) / np.sqrt(p).sum()
    assert soft == pytest.approx(expected, abs=1e-6) and soft.argmax() == p.argmax()
    with pytest.raises(ModelError, match="fusion weights"):
        fuse([p, q], rule="geometric-mean", weights=[1.0])
    with pytest.raises(ModelError, match="temperature"):
        fuse([p, q], rule="geometric-mean", temperature=0.0)


@pytest.mark.train
def test_an_ensemble_keeps_its_weights_and_temperature_and_refuses_bad_ones(members, tmp_path):
    root, lf, msd = members
    out = save_ensemble([lf, msd], tmp_path / "ens", fusion="geometric-mean", weights=[0.25, 0.75], temperature=0.8)
    model = load_bundle(out)
    assert model.fusion_weights == [0.25, 0.75] and model.temperature == 0.8
    x = np.hstack([_toy("levelfree", seed=1).x[:5], _toy("musicnn-msd", seed=2).x[:5]])
    lf_p, msd_p = model.member_proba(x)
    assert model.predict_proba(x) == pytest.approx(
        fuse([lf_p, msd_p], rule="geometric-mean", weights=[0.25, 0.75], temperature=0.8), abs=1e-6)
    good = json.loads((out / "model.json").read_text())
    for key, value in (("fusion_weights", [1.0]), ("fusion_weights", [-1, 2]), ("temperature", 0),
                       ("temperature", "hot")):
        meta = {**good, key: value}
        (out / "model.json").write_text(json.dumps(meta))
        with pytest.raises(ModelError, match=key):
            load_bundle(out)


@pytest.mark.train
def test_an_ensemble_written_inside_one_of_its_members_is_refused_and_nothing_changes(members):
    root, lf, msd = members
    before = sorted(p.name for p in lf.iterdir())
    for out in (lf / "sub", lf):
        with pytest.raises(ModelError, match="cannot be written inside its member"):
            save_ensemble([lf, msd], out, fusion="geometric-mean")
    assert sorted(p.name for p in lf.iterdir()) == before and load_bundle(lf).name == "lf"
    with pytest.raises(ModelError, match="holds the member"):  # the folder around a member
        save_ensemble([lf, msd], lf.parent, fusion="geometric-mean")
    (root / "loop1").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop1")
    with pytest.raises(ModelError, match="a loop of links"):
        save_ensemble([lf, msd], root / "loop1", fusion="geometric-mean")
    assert load_bundle(lf).name == "lf" and (root / "loop1").is_symlink()


@pytest.mark.train
def test_an_ensemble_that_cannot_load_is_named_as_the_user_named_it(members, tmp_path):
    root, lf, msd = members
    odd = tmp_path / "odd"
    shutil.copytree(msd, odd)
    meta = json.loads((odd / "model.json").read_text())
    meta["labels"] = meta["labels"][::-1]
    (odd / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError) as err:
        save_ensemble([lf, odd], tmp_path / "both", fusion="geometric-mean")
    assert str(err.value).startswith(f"{tmp_path / 'both'}/musicnn-msd: its labels differ") and ".tmp-" not in str(err.value)
    assert not (tmp_path / "both").exists() and not list(tmp_path.glob(".both*"))


def test_identify_fuses_with_the_ensembles_fitted_weights_and_temperature(default_recognizer, mini_dir):
    """What identify answers is the ensemble's own fusion (the one the evaluation measured), not a plain mean."""
    ensemble = default_recognizer.bundle
    assert isinstance(ensemble, Ensemble) and ensemble.fusion_weights is not None and ensemble.temperature != 1.0
    clip = mini_dir / "country" / sorted(p.name for p in (mini_dir / "country").glob("*.flac"))[0]
    windows = default_recognizer.features(str(clip))
    pred = default_recognizer.classify(windows)
    want = ensemble.predict_proba(windows.values[~windows.silent]).mean(axis=0)
    got = np.asarray([pred.probabilities[g] for g in ensemble.labels])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    plain = fuse(ensemble.member_proba(windows.values[~windows.silent]), rule=ensemble.fusion).mean(axis=0)
    assert np.abs(plain - want).max() > 1e-3  # the weights and temperature change the answer's probabilities
