"""A trained model on disk, and its network evaluated with plain numpy.

A model is a folder::

    models/NAME/
        model.keras   the Keras network (loaded only with ``backend="keras"``, in safe mode)
        weights.npz   the same network's arrays, for the numpy backend (loaded with allow_pickle=False)
        model.json    labels, feature set, window length, training summary, metrics, versions

The network is an input normalization (mean and variance learned from the
training data), dense layers, and a softmax.  The numpy backend evaluates it
without importing TensorFlow; both backends agree to float32 precision.

Folders are written to a temporary sibling and renamed into place, so an
interrupted save never leaves a half-written model, and the previous model
at that path stays usable until the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ModelError

__all__ = [
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "DEFAULT_MODEL_DIR",
    "DenseNetwork",
    "ModelBundle",
    "load_bundle",
    "save_bundle",
]

MODEL_FORMAT = "genre-id-model"
MODEL_FORMAT_VERSION = 1
#: The model that ships with the project.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"

_KERAS_FILE = "model.keras"
_WEIGHTS_FILE = "weights.npz"
_META_FILE = "model.json"
_EPSILON = 1e-7  # keras.backend.epsilon(), used by keras.layers.Normalization
_ACTIVATIONS = ("linear", "relu", "softmax")


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class DenseNetwork:
    """Normalization, dense layers and softmax, evaluated with numpy (float32).

    ``layers`` is a list of ``{"type": ..., ...}`` dicts; ``arrays`` holds
    each layer's arrays under ``"<index>.<name>"``.
    """

    layers: list[dict]
    arrays: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        width = None  # the size of the vectors flowing into the current layer, once known
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, dict):
                raise ModelError(f"layer {i}: not a layer description ({type(layer).__name__})")
            kind = layer.get("type")
            needed = {"normalization": ("mean", "variance"), "dense": ("kernel", "bias")}.get(kind)
            if needed is None:
                raise ModelError(f"layer {i}: unknown layer type {kind!r}")
            for name in needed:
                if f"{i}.{name}" not in self.arrays:
                    raise ModelError(f"layer {i}: array '{name}' is missing")
                if not np.isfinite(self.arrays[f"{i}.{name}"]).all():
                    raise ModelError(f"layer {i}: array '{name}' holds NaN or infinite values")
            if kind == "dense" and layer.get("activation", "linear") not in _ACTIVATIONS:
                raise ModelError(f"layer {i}: unsupported activation {layer.get('activation')!r}")
            if kind == "normalization":
                mean, var = self.arrays[f"{i}.mean"], self.arrays[f"{i}.variance"]
                if mean.size != var.size or (width is not None and mean.size != width) or (var < 0).any():
                    raise ModelError(f"layer {i}: normalization arrays do not fit the network")
                width = mean.size
            else:
                kernel, bias = self.arrays[f"{i}.kernel"], self.arrays[f"{i}.bias"]
                if kernel.ndim != 2 or bias.size != kernel.shape[1] or width not in (None, kernel.shape[0]):
                    raise ModelError(f"layer {i}: dense arrays of shapes {kernel.shape} and {bias.shape} "
                                     f"do not fit the network")
                width = kernel.shape[1]

    @property
    def n_inputs(self) -> int:
        """Length of the feature vectors the network takes."""
        if self.layers[0]["type"] == "normalization":
            return int(self.arrays["0.mean"].size)
        return int(self.arrays["0.kernel"].shape[0])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for ``x`` of shape ``(n, n_inputs)``."""
        return self._forward(x, softmax=True)

    def _forward(self, x: np.ndarray, *, softmax: bool) -> np.ndarray:
        h = np.asarray(x, dtype=np.float32)
        if h.ndim == 1:
            h = h[None, :]
        for i, layer in enumerate(self.layers):
            if layer["type"] == "normalization":
                mean = self.arrays[f"{i}.mean"].reshape(1, -1)
                std = np.maximum(np.sqrt(self.arrays[f"{i}.variance"].reshape(1, -1)), np.float32(_EPSILON))
                h = (h - mean) / std
            else:
                h = h @ self.arrays[f"{i}.kernel"] + self.arrays[f"{i}.bias"]
                act = layer.get("activation", "linear")
                if act == "relu":
                    h = np.maximum(h, 0)
                elif act == "softmax" and (softmax or i < len(self.layers) - 1):
                    h = _softmax(h)
        return h.astype(np.float32)


@dataclass
class ModelBundle:
    """A trained genre model: metadata plus the network that evaluates it.

    ``metadata`` is the content of ``model.json``; ``network`` the numpy
    form.  ``keras_model`` is set only when the bundle was trained in this
    process or loaded with ``backend="keras"``.
    """

    metadata: dict
    network: DenseNetwork
    path: Path | None = None
    keras_model: Any = field(default=None, repr=False)

    @property
    def labels(self) -> list[str]:
        return list(self.metadata["labels"])

    @property
    def feature_set(self) -> dict:
        return dict(self.metadata["feature_set"])

    @property
    def window_seconds(self) -> float:
        return float(self.metadata["window_seconds"])

    @property
    def min_seconds(self) -> float:
        return float(self.metadata.get("min_seconds", 3.0))

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", "unnamed"))

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "0"))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, one row per feature row, columns in :attr:`labels` order."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if self.keras_model is not None:
            return np.asarray(self.keras_model.predict(x, verbose=0), dtype=np.float32)
        return self.network.predict_proba(x)


def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path.parent}: not a model folder ({path.name} is missing)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable model metadata ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: model metadata is not a JSON object")
    return meta


def _check_metadata(meta: Mapping, where: Path) -> None:
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{where}: not a genre-id model (format {meta.get('format')!r})")
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelError(
            f"{where}: model format version {meta.get('format_version')!r} is not supported "
            f"(this genre-id reads version {MODEL_FORMAT_VERSION})"
        )
    for key in ("labels", "feature_set", "window_seconds", "network"):
        if key not in meta:
            raise ModelError(f"{where}: model metadata lacks '{key}'")
    labels = meta["labels"]
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
        raise ModelError(f"{where}: model metadata has no valid list of labels")
    if not isinstance(meta["feature_set"], dict):
        raise ModelError(f"{where}: model metadata has no valid feature set")
    for key in ("window_seconds", "min_seconds"):
        value = meta.get(key, 3.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
            raise ModelError(f"{where}: model metadata has an invalid '{key}' ({value!r})")


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
    except FileNotFoundError:
        raise ModelError(f"{path.parent}: model folder is incomplete ({path.name} is missing)") from None
    except Exception as exc:  # zipfile, ValueError on object arrays, ...
        raise ModelError(f"{path}: corrupt weights file ({exc.__class__.__name__}: {exc})") from None


def load_bundle(path: str | os.PathLike[str] | None = None, *, backend: str = "numpy") -> ModelBundle:
    """Load a model folder (default: the shipped model).

    ``backend="numpy"`` (default) evaluates the network with numpy and never
    imports TensorFlow; ``backend="keras"`` loads ``model.keras`` with Keras
    in safe mode, which refuses files that carry code.
    """
    folder = Path(path) if path is not None else DEFAULT_MODEL_DIR
    if not folder.exists():
        raise ModelError(f"{folder}: no such model folder")
    if not folder.is_dir():
        raise ModelError(f"{folder}: a model is a folder, not a file")
    meta = _read_json(folder / _META_FILE)
    _check_metadata(meta, folder)
    layers = meta["network"].get("layers") if isinstance(meta["network"], dict) else None
    if not isinstance(layers, list) or not layers:
        raise ModelError(f"{folder}: model metadata describes no network layers")
    try:
        network = DenseNetwork(layers=layers, arrays=_load_arrays(folder / _WEIGHTS_FILE))
    except ModelError as exc:
        if str(exc).startswith(str(folder)):
            raise
        raise ModelError(f"{folder}: {exc}") from None
    n_labels = network.arrays[f"{len(layers) - 1}.bias"].shape[-1] if layers[-1]["type"] == "dense" else -1
    if n_labels != len(meta["labels"]):
        raise ModelError(f"{folder}: the network has {n_labels} outputs but the metadata lists {len(meta['labels'])} labels")
    if len(meta["feature_set"].get("columns", [])) not in (0, network.n_inputs):
        raise ModelError(f"{folder}: the network's input size does not match its feature set")
    bundle = ModelBundle(metadata=meta, network=network, path=folder)
    if backend == "keras":
        from .keras_backend import load_keras_model

        bundle.keras_model = load_keras_model(folder / _KERAS_FILE)
    elif backend != "numpy":
        raise ModelError(f"unknown backend {backend!r} (choose 'numpy' or 'keras')")
    return bundle


def _write_json(path: Path, data: Mapping) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def check_model_target(path: str | os.PathLike[str]) -> Path:
    """``path`` as a place a model may be written: absent, an empty folder, or a model folder.

    Anything else (a file, or a folder holding other things) is refused with
    :class:`ModelError` rather than replaced.
    """
    target = Path(path)
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise ModelError(f"{target}: exists and is not a model folder; refusing to replace it")
        if not (target / _META_FILE).exists() and any(target.iterdir()):
            raise ModelError(f"{target}: a folder of other files, not a model folder; refusing to replace it")
    return target


def save_bundle(bundle: ModelBundle, path: str | os.PathLike[str], *, keras_model: Any = None) -> Path:
    """Write ``bundle`` as a model folder at ``path``, atomically.

    Everything is written into a temporary folder beside ``path`` and fsynced;
    only then is it renamed into place (on Linux, atomically exchanged with the
    existing folder).  An existing model at ``path`` is replaced only once the
    new one is complete.  Temporary folders left by saves that were killed
    outright are removed by a later save, once an hour old.
    """
    target = check_model_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The name is chosen before the folder exists, so that an interrupt at any
    # point after the folder is made lands inside the ``try`` that removes it.
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir()  # an ordinary folder (the umask applies), unlike mkdtemp's private one
        keras_model = keras_model if keras_model is not None else bundle.keras_model
        if keras_model is not None:
            keras_model.save(tmp / _KERAS_FILE)
        elif bundle.path is not None and (bundle.path / _KERAS_FILE).exists():
            shutil.copy2(bundle.path / _KERAS_FILE, tmp / _KERAS_FILE)
        with open(tmp / _WEIGHTS_FILE, "wb") as fh:
            np.savez(fh, **bundle.network.arrays)
        meta = dict(bundle.metadata)
        meta["network"] = {**meta.get("network", {}), "layers": bundle.network.layers}
        _write_json(tmp / _META_FILE, meta)
        for child in tmp.iterdir():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle.path = target
    _remove_stale_leftovers(target)
    return target


#: Temporary folders of a save older than this were left by a killed process.
_STALE_SECONDS = 3600


def _remove_stale_leftovers(target: Path) -> None:
    """Remove the hidden temporary folders that saves killed outright (SIGKILL, power loss) left beside ``target``."""
    import time

    for leftover in target.parent.glob(f".{target.name}.*-*"):
        if not (leftover.name.startswith((f".{target.name}.tmp-", f".{target.name}.old-")) and leftover.is_dir()):
            continue
        try:
            if time.time() - leftover.stat().st_mtime > _STALE_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Put the complete folder ``tmp`` at ``target``; at every instant ``target`` is the old or the new model."""
    if not target.exists():
        os.replace(tmp, target)
    elif _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous model
    else:  # no atomic exchange here: two renames, with a moment when ``target`` is absent
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def network_from_layers(layers: Sequence[dict], arrays: Mapping[str, np.ndarray]) -> DenseNetwork:
    """Build a :class:`DenseNetwork`, converting arrays to float32."""
    return DenseNetwork(layers=list(layers), arrays={k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})
