"""Everything that needs Keras: building, training, exporting and safely loading the network.

This is the only module that imports Keras (and so TensorFlow); prediction
with the default numpy backend never imports it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ModelError

__all__ = ["import_keras", "build_network", "fit_network", "fit_epochs", "export_layers", "check_keras_file",
           "load_keras_model"]


def import_keras() -> Any:
    """Import Keras quietly (TensorFlow's start-up chatter is silenced)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # quiet, and the same numbers on every CPU
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import absl.logging  # noqa: F401  (a dependency of tensorflow)

    absl.logging.set_verbosity(absl.logging.ERROR)
    import keras

    return keras


def build_network(
    x_train: np.ndarray,
    *,
    n_classes: int,
    hidden: Sequence[int] = (256, 128),
    dropout: float = 0.3,
    l2: float = 1e-4,
    learning_rate: float = 1e-3,
    noise: float = 0.0,
    label_smoothing: float = 0.0,
    seed: int = 0,
) -> Any:
    """A compiled Keras model: Normalization (adapted on ``x_train``), dense + dropout layers, softmax.

    ``l2`` penalises the kernels of every dense layer, the softmax layer's
    included (without hidden layers the model is an L2-regularised
    multinomial logistic regression).

    ``noise`` adds Gaussian noise of that standard deviation to the
    normalized inputs while training (a regularizer; inactive at prediction).
    The model takes one-hot targets.
    """
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    norm = keras.layers.Normalization(name="normalization")
    norm.adapt(np.asarray(x_train, dtype=np.float32))
    layers: list[Any] = [keras.Input(shape=(x_train.shape[1],), name="features"), norm]
    if noise > 0:
        layers.append(keras.layers.GaussianNoise(noise, seed=seed, name="input_noise"))
    for i, units in enumerate(hidden):
        layers.append(
            keras.layers.Dense(
                units, activation="relu", kernel_regularizer=keras.regularizers.L2(l2), name=f"dense_{i}"
            )
        )
        layers.append(keras.layers.Dropout(dropout, seed=seed + i, name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=keras.regularizers.L2(l2),
                                     name="genre"))
    model = keras.Sequential(layers, name="genre_id")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return model


#: Batches run per call into TensorFlow's compiled step (the same updates as one at a time, fewer calls).
STEPS_PER_EXECUTION = 16


def _dataset(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None, *, batch_size: int,
             shuffle: bool, seed: int) -> Any:
    """``(x, y[, weights])`` as a cached ``tf.data`` pipeline of batches, reshuffled every epoch with ``seed``.

    Keras re-slices numpy arrays every epoch; with the small tables genre-id
    trains on, that overhead was most of the time.  Measured side by side
    (2 cores, one hidden layer of 64): 134 ms an epoch on 18 rows with numpy
    arrays, 36 ms this way; on 400 rows 234 ms, and 69 ms this way with
    :data:`STEPS_PER_EXECUTION`.
    """
    import tensorflow as tf

    parts = (x, y) if weights is None else (x, y, weights)
    ds = tf.data.Dataset.from_tensor_slices(parts).cache()
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(2)


def fit_network(
    model: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    max_epochs: int = 400,
    patience: int = 30,
    batch_size: int = 32,
    verbose: int = 0,
    sample_weight: np.ndarray | None = None,
    val_sample_weight: np.ndarray | None = None,
    seed: int = 0,
) -> dict:
    """Train until validation loss stops improving for ``patience`` epochs; keep the best weights.

    ``sample_weight`` (one per training row) weighs each row's loss, e.g. to
    balance the labels; ``val_sample_weight`` weighs the validation loss the
    same way.  ``seed`` orders the rows of each epoch.  Returns the history
    (per-epoch metrics) and the best epoch.
    """
    keras = import_keras()
    n_classes = int(model.outputs[0].shape[-1])
    onehot = np.eye(n_classes, dtype=np.float32)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True, start_from_epoch=5
    )
    history = model.fit(
        _dataset(np.asarray(x_train, dtype=np.float32), onehot[np.asarray(y_train)],
                 None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32),
                 batch_size=batch_size, shuffle=True, seed=seed),
        validation_data=_dataset(np.asarray(x_val, dtype=np.float32), onehot[np.asarray(y_val)],
                                 None if val_sample_weight is None else np.asarray(val_sample_weight, dtype=np.float32),
                                 batch_size=batch_size, shuffle=False, seed=seed),
        epochs=max_epochs,
        callbacks=[stop],
        verbose=verbose,
        shuffle=False,  # the pipeline reshuffles each epoch itself
    )
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    best = int(np.argmin(hist["val_loss"]))
    return {"history": hist, "best_epoch": best + 1, "epochs_run": len(hist["val_loss"])}


def fit_epochs(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 32,
    sample_weight: np.ndarray | None = None,
    verbose: int = 0,
    seed: int = 0,
) -> None:
    """Train ``model`` on every row for exactly ``epochs`` epochs (a number early stopping chose before)."""
    n_classes = int(model.outputs[0].shape[-1])
    model.fit(
        _dataset(np.asarray(x, dtype=np.float32), np.eye(n_classes, dtype=np.float32)[np.asarray(y)],
                 None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32),
                 batch_size=batch_size, shuffle=True, seed=seed),
        epochs=int(epochs), verbose=verbose, shuffle=False,  # the pipeline reshuffles each epoch itself
    )


def export_layers(model: Any) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The numpy form of ``model``: layer descriptions and their arrays (dropout omitted)."""
    keras = import_keras()
    layers: list[dict] = []
    arrays: dict[str, np.ndarray] = {}
    for layer in model.layers:
        i = len(layers)
        if isinstance(layer, keras.layers.Normalization):
            layers.append({"type": "normalization"})
            arrays[f"{i}.mean"] = keras.ops.convert_to_numpy(layer.mean).reshape(-1)
            arrays[f"{i}.variance"] = keras.ops.convert_to_numpy(layer.variance).reshape(-1)
        elif isinstance(layer, keras.layers.Dense):
            act = keras.activations.serialize(layer.activation)
            act = act if isinstance(act, str) else act.get("config", {}).get("name", str(act))
            layers.append({"type": "dense", "units": int(layer.units), "activation": act})
            kernel, bias = layer.get_weights()
            arrays[f"{i}.kernel"], arrays[f"{i}.bias"] = kernel, bias
        elif isinstance(layer, (keras.layers.Dropout, keras.layers.GaussianNoise)):
            continue  # active only while training
        else:
            raise ModelError(f"cannot export layer {layer.name!r} of type {type(layer).__name__}")
    return layers, {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}


#: What a genre-id network's ``model.keras`` may be made of (``module``, ``class_name``).
_KERAS_MODULES = ("keras", "keras.layers", "keras.initializers", "keras.regularizers", "keras.constraints",
                  "keras.optimizers", "keras.losses", "keras.metrics", "keras.models")
_KERAS_CODE_CLASSES = ("Lambda", "TFOpLambda", "__lambda__", "function")


def check_keras_file(path: Path) -> None:
    """Refuse a ``model.keras`` whose configuration names code, before Keras reads it.

    Keras's safe mode refuses Lambda layers too; this check adds that only
    Keras's own layers, initializers and the like may appear, whatever the
    Keras version, and names the offending object.
    """
    import zipfile

    if not path.exists():
        raise ModelError(f"{path.parent}: model folder is incomplete ({path.name} is missing)")
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("config.json")
            if info.file_size > 16 << 20:
                raise ModelError(f"{path}: refused to load the Keras model (its configuration is too large)")
            config = json.loads(zf.read(info).decode("utf-8"))
    except ModelError:
        raise
    except Exception as exc:  # not a zip, no config.json, bad JSON, ...
        raise ModelError(f"{path}: corrupt Keras model file ({exc.__class__.__name__}: {exc})") from None
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            cls, module = node.get("class_name"), node.get("module")
            if cls in _KERAS_CODE_CLASSES or (module is not None and module not in _KERAS_MODULES):
                raise ModelError(f"{path}: refused to load the Keras model (it holds {module}.{cls}, "
                                 f"which may carry code; nothing was executed)")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def load_keras_model(path: Path) -> Any:
    """Load a ``.keras`` file in safe mode, after :func:`check_keras_file`: a file that carries code is refused."""
    check_keras_file(path)
    keras = import_keras()
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: refused to load the Keras model ({first})") from None


# --- MSD_musicnn (pretrained tagger) as a Keras model ----------------------------------------------

__all__ += ["build_musicnn"]

def build_musicnn(*, n_frames: int | None = 187, weights_dir: Path | None = None, trainable: bool = False) -> Any:
    """The pretrained MSD_musicnn network (``genre_id.musicnn``) as a Keras functional model.

    Input: log-mel patches ``(batch, n_frames, 96)`` (``None`` accepts any
    length of at least one frame).  Outputs ``[penultimate (batch, 200),
    tags (batch, 50)]``, the same as :meth:`genre_id.musicnn.Musicnn.forward`.
    The weights come from :func:`genre_id.musicnn.load_weights` (validated);
    the model is frozen unless ``trainable`` (batch norm then still runs in
    inference mode while frozen, as in Keras 3).
    """
    from .musicnn import N_MELS, load_weights

    keras = import_keras()
    layers = keras.layers
    meta, arrays = load_weights(weights_dir)
    eps = float(meta.get("batch_norm_epsilon", 1e-3))

    weights: dict[str, list[np.ndarray]] = {}

    def conv(name: str, make: Any) -> Any:
        weights[name] = [arrays[f"{name}.kernel"], arrays[f"{name}.bias"]]
        return make

    def norm(name: str) -> Any:
        weights[name] = [arrays[f"{name}.{k}"] for k in ("gamma", "beta", "moving_mean", "moving_variance")]
        return layers.BatchNormalization(epsilon=eps, name=name)

    inp = keras.Input(shape=(n_frames, N_MELS), name="log_mel")
    x = layers.Reshape((-1, N_MELS, 1), name="expand")(inp)
    x = norm("input_bn")(x)
    padded = layers.ZeroPadding2D(((3, 3), (0, 0)), name="time_pad")(x)
    front = []
    for name, (kt, kf) in (("timbral_7x38", (7, 38)), ("timbral_7x67", (7, 67))):
        h = conv(name, layers.Conv2D(204, (kt, kf), padding="valid", activation="relu", name=name))(padded)
        h = norm(f"{name}_bn")(h)
        h = layers.MaxPooling2D((1, N_MELS - kf + 1), name=f"{name}_pool")(h)
        front.append(layers.Reshape((-1, 204), name=f"{name}_squeeze")(h))
    for name, size in (("temporal_128", 128), ("temporal_64", 64), ("temporal_32", 32)):
        h = conv(name, layers.Conv2D(51, (size, 1), padding="same", activation="relu", name=name))(x)
        h = norm(f"{name}_bn")(h)
        h = layers.MaxPooling2D((1, N_MELS), name=f"{name}_pool")(h)
        front.append(layers.Reshape((-1, 51), name=f"{name}_squeeze")(h))
    h = layers.Concatenate(axis=-1, name="front_end")(front)  # (batch, frames, 561)
    features = [h]
    for i, name in enumerate(("midend_1", "midend_2", "midend_3")):
        # musicnn's 7 x channels 2-D convolution over zero-padded time is a 'same' 1-D convolution
        weights[name] = [arrays[f"{name}.kernel"][:, :, 0, :], arrays[f"{name}.bias"]]
        c = layers.Conv1D(64, 7, padding="same", activation="relu", name=name)(h)
        c = norm(f"{name}_bn")(c)
        h = c if i == 0 else layers.Add(name=f"{name}_residual")([c, h])
        features.append(h)
    h = layers.Concatenate(axis=-1, name="features")(features)  # (batch, frames, 753)
    pooled_max = layers.Reshape((-1, 1), name="max_column")(layers.GlobalMaxPooling1D(name="max_pool")(h))
    pooled_mean = layers.Reshape((-1, 1), name="mean_column")(layers.GlobalAveragePooling1D(name="mean_pool")(h))
    # musicnn flattens (753, 2) = [max, mean] per channel: the two alternate
    h = layers.Flatten(name="pool")(layers.Concatenate(axis=-1, name="pool_pairs")([pooled_max, pooled_mean]))
    h = norm("pool_bn")(h)
    h = conv("penultimate", layers.Dense(200, activation="relu", name="penultimate"))(h)
    penultimate = norm("penultimate_bn")(h)
    tags = conv("tags", layers.Dense(len(meta["tags"]), activation="sigmoid", name="tags"))(penultimate)
    model = keras.Model(inp, [penultimate, tags], name="msd_musicnn")
    for name, values in weights.items():
        model.get_layer(name).set_weights(values)
    model.trainable = trainable
    return model
