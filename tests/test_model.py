"""Model folders: save and load, numpy vs Keras, safe loading, atomic writes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from genre_id.dataset import Dataset
from genre_id.errors import ModelError
from genre_id.model import DEFAULT_MODEL_DIR, load_bundle, save_bundle
from genre_id.training import TrainConfig, fit


def _toy_dataset(n_per_class: int = 40, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(3, 57))
    x = np.vstack([c + rng.normal(0, 1, size=(n_per_class, 57)) for c in centers]) * 100 + 1000
    y = np.repeat(["a", "b", "c"], n_per_class)
    groups = np.asarray([f"{g}/t{i}" for i, g in enumerate(y)])
    from genre_id.features import get_feature_set

    return Dataset(x, y, groups, get_feature_set("gtzan57"), source="toy")


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    data = _toy_dataset()
    bundle = fit(data, config=TrainConfig(max_epochs=60, patience=10), name="toy")
    out = save_bundle(bundle, tmp_path_factory.mktemp("models") / "toy")
    return data, bundle, out


def test_training_learns_and_stops_on_validation_loss(toy_model):
    data, bundle, _ = toy_model
    meta = bundle.metadata
    assert meta["metrics"]["validation_accuracy"] > 0.9
    assert meta["training"]["best_epoch"] <= meta["training"]["epochs_run"] <= 60
    # The normalization inside the network was adapted on the training data.
    mean = bundle.network.arrays["0.mean"]
    assert np.allclose(mean, data.x.mean(axis=0), rtol=0.05, atol=30)


def test_saved_folder_round_trips_and_records_what_made_it(toy_model):
    data, bundle, out = toy_model
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.keras", "weights.npz"]
    meta = json.loads((out / "model.json").read_text())
    for key in ("labels", "feature_set", "window_seconds", "training", "metrics", "library_versions"):
        assert key in meta
    assert meta["feature_set"]["name"] == "gtzan57" and meta["feature_set"]["version"] == 1
    loaded = load_bundle(out)
    np.testing.assert_allclose(loaded.predict_proba(data.x[:20]), bundle.network.predict_proba(data.x[:20]), atol=1e-6)


def test_numpy_and_keras_backends_agree(toy_model):
    data, _, out = toy_model
    fast, slow = load_bundle(out), load_bundle(out, backend="keras")
    np.testing.assert_allclose(fast.predict_proba(data.x), slow.predict_proba(data.x), atol=1e-5)


@pytest.mark.slow
def test_backends_agree_on_real_clips(mini_features):
    x = np.vstack([r.values for r in mini_features.values()])
    fast, slow = load_bundle(DEFAULT_MODEL_DIR), load_bundle(DEFAULT_MODEL_DIR, backend="keras")
    np.testing.assert_allclose(fast.predict_proba(x), slow.predict_proba(x), atol=1e-5)


def test_a_keras_file_carrying_code_is_refused(toy_model, tmp_path):
    from genre_id.keras_backend import import_keras

    keras = import_keras()
    evil = keras.Sequential([keras.Input(shape=(57,)), keras.layers.Lambda(lambda t: t * 2)])
    folder = tmp_path / "evil"
    shutil.copytree(toy_model[2], folder)
    evil.save(folder / "model.keras")
    with pytest.raises(ModelError, match="refused"):
        load_bundle(folder, backend="keras")


@pytest.mark.parametrize("damage,problem", [
    (lambda d: (d / "model.json").unlink(), "model.json is missing"),
    (lambda d: (d / "weights.npz").unlink(), "weights.npz is missing"),
    (lambda d: (d / "model.json").write_text("{not json"), "unreadable model metadata"),
    (lambda d: (d / "weights.npz").write_bytes(b"garbage"), "corrupt weights file"),
    (lambda d: (d / "model.json").write_text(json.dumps({**json.loads((d / "model.json").read_text()),
                                                          "format_version": 99})), "format version 99"),
])
def test_damaged_model_folders_are_refused_clearly(toy_model, tmp_path, damage, problem):
    folder = tmp_path / "m"
    shutil.copytree(toy_model[2], folder)
    damage(folder)
    with pytest.raises(ModelError, match=problem):
        load_bundle(folder)


def test_a_failed_save_keeps_the_previous_model(toy_model, tmp_path, monkeypatch):
    data, bundle, out = toy_model
    target = tmp_path / "m"
    shutil.copytree(out, target)
    before = (target / "weights.npz").read_bytes()

    def explode(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("genre_id.model._write_json", explode)
    with pytest.raises(KeyboardInterrupt):
        save_bundle(bundle, target)
    assert (target / "weights.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"], "no temporary folder is left behind"
    load_bundle(target)


def test_saving_never_replaces_something_that_is_not_a_model(tmp_path):
    bundle = load_bundle()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me too")
    for target in (notes, a_file):
        with pytest.raises(ModelError, match="refusing to replace it"):
            save_bundle(bundle, target)
    assert (notes / "todo.txt").read_text() == "keep me" and a_file.read_text() == "keep me too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "notes"], "no temporary folder left"
    empty = tmp_path / "empty"
    empty.mkdir()
    save_bundle(bundle, empty)  # an empty folder, or an existing model, may be written
    save_bundle(bundle, empty)
    assert load_bundle(empty).labels == bundle.labels
