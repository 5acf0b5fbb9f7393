"""Model folders: save and load, numpy vs Keras, safe loading, atomic writes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from genre_id.dataset import Dataset
from genre_id.errors import ModelError
from genre_id.model import DEFAULT_MODEL_DIR, load_bundle, save_bundle

#: A single-network model folder: the shipped ensemble's table member.
LEVELFREE = DEFAULT_MODEL_DIR / "levelfree"
from genre_id.training import TrainConfig, fit


def _toy_dataset(n_per_class: int = 40, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(3, 57))
    x = np.vstack([c + rng.normal(0, 1, size=(n_per_class, 57)) for c in centers]) * 100 + 1000
    y = np.repeat(["a", "b", "c"], n_per_class)
    groups = np.asarray([f"{g}/t{i}" for i, g in enumerate(y)])
    from genre_id.features import get_feature_set

    return Dataset(x, y, groups, get_feature_set("gtzan57"), source="toy", config=CONFIG)


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    data = _toy_dataset()
    bundle = fit(data, config=TrainConfig(max_epochs=60, patience=10), name="toy")
    out = save_bundle(bundle, tmp_path_factory.mktemp("models") / "toy")
    return data, bundle, out


@pytest.mark.train
def test_training_learns_and_stops_on_validation_loss(toy_model):
    data, bundle, _ = toy_model
    meta = bundle.metadata
    assert meta["metrics"]["validation_accuracy"] > 0.9
    assert meta["training"]["best_epoch"] <= meta["training"]["epochs_run"] <= 60
    # The normalization inside the network was adapted on the training data.
    mean = bundle.network.arrays["0.mean"]
    assert np.allclose(mean, data.x.mean(axis=0), rtol=0.05, atol=30)


@pytest.mark.train
def test_saved_folder_round_trips_and_records_what_made_it(toy_model):
    data, bundle, out = toy_model
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.keras", "pool.npz", "weights.npz"]
    meta = json.loads((out / "model.json").read_text())
    for key in ("labels", "feature_set", "window_seconds", "training", "metrics", "library_versions"):
        assert key in meta
    assert meta["feature_set"]["name"] == "gtzan57" and meta["feature_set"]["version"] == 1
    loaded = load_bundle(out)
    np.testing.assert_allclose(loaded.predict_proba(data.x[:20]), bundle.network.predict_proba(data.x[:20]), atol=1e-6)


@pytest.mark.train
def test_numpy_and_keras_backends_agree(toy_model):
    data, _, out = toy_model
    fast, slow = load_bundle(out), load_bundle(out, backend="keras")
    np.testing.assert_allclose(fast.predict_proba(data.x), slow.predict_proba(data.x), atol=1e-5)


@pytest.mark.train
@pytest.mark.slow
def test_backends_agree_on_real_clips(mini_features):
    x = np.vstack([r.values for r in mini_features.values()])
    fast, slow = load_bundle(DEFAULT_MODEL_DIR), load_bundle(DEFAULT_MODEL_DIR, backend="keras")
    np.testing.assert_allclose(fast.predict_proba(x), slow.predict_proba(x), atol=1e-5)


@pytest.mark.train
def test_a_failed_save_keeps_the_previous_model(toy_model, tmp_path, monkeypatch):
    data, bundle, out = toy_model
    target = tmp_path / "m"
    shutil.copytree(out, target)
    before = (target / "weights.npz").read_bytes()

    def explode(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("genre_id.model.write_metadata", explode)
    with pytest.raises(KeyboardInterrupt):
        save_bundle(bundle, target)
    assert (target / "weights.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"], "no temporary folder is left behind"
    load_bundle(target)


def test_saving_never_replaces_something_that_is_not_a_model(tmp_path):
    bundle = load_bundle(LEVELFREE)
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


# --- damaged and unsafe model folders, interrupted saves -----------------------------------------

import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from conftest import CONFIG, ROOT, tone  # noqa: E402
from genre_id import Recognizer  # noqa: E402
from genre_id.errors import FeatureVersionError  # noqa: E402
from test_audio import PY, _write  # noqa: E402


def _meta_edit(**changes):
    def damage(d: Path) -> None:
        meta = json.loads((d / "model.json").read_text())
        meta.update(changes)
        (d / "model.json").write_text(json.dumps(meta))
    return damage


def _weights_edit(fn):
    def damage(d: Path) -> None:
        with np.load(d / "weights.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
        fn(arrays)
        np.savez(d / "weights.npz", **arrays)
    return damage


def _layers_edit(fn):
    def damage(d: Path) -> None:
        meta = json.loads((d / "model.json").read_text())
        fn(meta["network"]["layers"])
        (d / "model.json").write_text(json.dumps(meta))
    return damage


MODEL_DAMAGE = {
    "model.json missing": (lambda d: (d / "model.json").unlink(), ModelError, "model.json is missing"),
    "weights.npz missing": (lambda d: (d / "weights.npz").unlink(), ModelError, "weights.npz is missing"),
    "model.json empty": (lambda d: (d / "model.json").write_bytes(b""), ModelError, "unreadable model metadata"),
    "model.json binary": (lambda d: (d / "model.json").write_bytes(b"\xff\xfe\x00garbage"), ModelError,
                          "unreadable model metadata"),
    "model.json a list": (lambda d: (d / "model.json").write_text("[1, 2]"), ModelError, "not a JSON object"),
    "weights.npz garbage": (lambda d: (d / "weights.npz").write_bytes(b"garbage"), ModelError, "corrupt weights"),
    "weights.npz truncated": (lambda d: (d / "weights.npz").write_bytes((d / "weights.npz").read_bytes()[:5000]),
                              ModelError, "corrupt weights"),
    "another format version": (_meta_edit(format_version=2), ModelError, "format version 2 is not supported"),
    "another program's JSON": (_meta_edit(format="keras-model"), ModelError, "not a genre-id model"),
    "another feature set version": (lambda d: _meta_edit(feature_set={**json.loads((d / "model.json").read_text())
                                                                     ["feature_set"], "version": 7})(d),
                                    FeatureVersionError, "version 7"),
    "window length not a number": (_meta_edit(window_seconds="thirty"), ModelError, "invalid 'window_seconds'"),
    "negative minimum length": (_meta_edit(min_seconds=-1), ModelError, "invalid 'min_seconds'"),
    "labels missing": (_meta_edit(labels=None), ModelError, "no valid list of labels"),
    "a layer that is not a dict": (_layers_edit(lambda layers: layers.__setitem__(1, "dense")), ModelError,
                                   "not a layer description"),
    "an unknown layer type": (_layers_edit(lambda layers: layers[1].update(type="lambda")), ModelError,
                              "unknown layer type 'lambda'"),
    "weights of the wrong shape": (_weights_edit(lambda a: a.__setitem__("1.kernel", a["1.kernel"][:-3])),
                                   ModelError, "do not fit the network"),
    "NaN weights": (_weights_edit(lambda a: a["2.bias"].__setitem__(0, np.nan)), ModelError, "NaN or infinite"),
    "a pickled object array": (_weights_edit(lambda a: a.__setitem__("2.bias", np.array([object()] * 10))),
                               ModelError, "not floating point"),
}


@pytest.mark.parametrize("case", list(MODEL_DAMAGE))
def test_a_damaged_model_folder_is_refused_clearly(tmp_path, case):
    folder = tmp_path / "model"
    shutil.copytree(LEVELFREE, folder)
    damage, error, words = MODEL_DAMAGE[case]
    damage(folder)
    with pytest.raises(error) as info:
        Recognizer.load(folder)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(folder)) and words in message, message


def test_a_model_path_that_is_no_model_folder(tmp_path):
    for path, words in [(tmp_path / "nowhere", "no such model folder"),
                        (_write(tmp_path / "a.wav", tone(1.0), 22050), "a model is a folder"),
                        (tmp_path, "model.json is missing")]:
        with pytest.raises(ModelError, match=words):
            Recognizer.load(path)


@pytest.mark.train
def test_a_keras_file_carrying_code_is_refused_and_never_run(tmp_path):
    from genre_id.keras_backend import import_keras, load_keras_model

    keras = import_keras()
    marker = tmp_path / "payload ran"
    payload = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t)[1]")  # noqa: S307
    evil = keras.Sequential([keras.Input(shape=(57,)), keras.layers.Lambda(payload)])
    folder = tmp_path / "evil"
    shutil.copytree(LEVELFREE, folder)
    evil.save(folder / "model.keras")
    # The payload is live: loading without safe mode runs it.
    marker.unlink(missing_ok=True)
    keras.models.load_model(folder / "model.keras", safe_mode=False)
    assert marker.exists(), "the test's payload should run when code is allowed"
    marker.unlink()

    with pytest.raises(ModelError, match=r"refused to load the Keras model \(it holds keras.layers.Lambda"):
        load_bundle(folder, backend="keras")
    assert not marker.exists()
    with pytest.raises(ModelError, match="refused"):  # Keras's own safe mode, the second line of defence
        load_keras_model(folder / "model.keras")
    assert not marker.exists()
    # The default numpy backend never opens model.keras at all.
    assert load_bundle(folder).labels == load_bundle(LEVELFREE).labels and not marker.exists()


@pytest.mark.parametrize("damage,words", [
    (lambda p: p.unlink(), "model.keras is missing"),
    (lambda p: p.write_bytes(b"not a zip"), "corrupt Keras model file"),
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "corrupt Keras model file"),
])
def test_a_missing_or_corrupt_keras_file_is_refused(tmp_path, damage, words):
    folder = tmp_path / "model"
    shutil.copytree(LEVELFREE, folder)
    damage(folder / "model.keras")
    with pytest.raises(ModelError, match=words):
        load_bundle(folder, backend="keras")


_SAVE_LOOP = """
import sys
import numpy as np
from genre_id.model import DEFAULT_MODEL_DIR, load_bundle, save_bundle

LEVELFREE = DEFAULT_MODEL_DIR / "levelfree"
target = sys.argv[1]
a, b = load_bundle(LEVELFREE), load_bundle(LEVELFREE)
b.network.arrays = {k: v + 1 for k, v in b.network.arrays.items()}
a.metadata = {**a.metadata, "version": "A"}
b.metadata = {**b.metadata, "version": "B"}
print("ready", flush=True)
i = 0
while True:
    bundle = (a, b)[i % 2]
    save_bundle(bundle, target)
    bundle.path = load_bundle(LEVELFREE).path  # copy model.keras from the shipped model each time
    i += 1
"""


def _default_sigint() -> None:
    """In the child: Ctrl-C as a terminal gives it, even when the tests run as a background job (which ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _check_complete_model(target: Path) -> str:
    bundle = load_bundle(target)
    version = bundle.version
    assert version in ("A", "B")
    expected = load_bundle(LEVELFREE).network.arrays
    for k, v in bundle.network.arrays.items():
        np.testing.assert_array_equal(v, expected[k] + (1 if version == "B" else 0))
    # the shipped member's training features (pool.npz) travel with every save of it
    assert sorted(p.name for p in target.iterdir()) == ["model.json", "model.keras", "pool.npz", "weights.npz"]
    return version


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killing_a_save_leaves_the_old_or_the_new_model(tmp_path, sig):
    target = tmp_path / "models" / "mine"
    script = tmp_path / "save_loop.py"
    script.write_text(_SAVE_LOOP)
    rng = random.Random(6)
    first = load_bundle(LEVELFREE)
    first.metadata = {**first.metadata, "version": "A"}
    from genre_id.model import save_bundle

    save_bundle(first, target)  # the previous model
    seen = set()
    forced = False  # a Ctrl-C that a very busy machine did not deliver in time was followed by a kill
    for _ in range(5):
        proc = subprocess.Popen([PY, str(script), str(target)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True, preexec_fn=_default_sigint)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            forced = True
        seen.add(_check_complete_model(target))
    assert seen  # a complete model every time
    leftovers = [p.name for p in target.parent.iterdir() if p.name != "mine"]
    assert all(name.startswith(".mine.") for name in leftovers), leftovers
    if sig == signal.SIGINT and not forced:  # Ctrl-C: the temporary folder is cleaned up
        assert leftovers == []
    else:  # a kill leaves a hidden temporary folder; a later save removes it once it is stale
        for name in leftovers:
            os.utime(target.parent / name, (time.time() - 7200,) * 2)
        save_bundle(first, target)
        assert [p.name for p in target.parent.iterdir()] == ["mine"]
