"""A trained model on disk, and its network evaluated with plain numpy.

A model is a folder::

    models/NAME/
        model.keras   the Keras network (loaded only with ``backend="keras"``, in safe mode)
        weights.npz   the same network's arrays, for the numpy backend (loaded with allow_pickle=False)
        model.json    labels, feature set, window length, training summary, metrics, versions

An *ensemble* is a folder whose ``model.json`` lists ``members``: each a
sub-folder holding a model as above, all with the same labels and window.
Its probabilities fuse the members' by one fixed rule (:data:`FUSION_RULES`).

The network is an input normalization (mean and variance learned from the
training data), dense layers, and a softmax.  The numpy backend evaluates it
without importing TensorFlow; both backends agree to float32 precision.

Folders are written to a temporary sibling and renamed into place, so an
interrupted save never leaves a half-written model, and the previous model
at that path stays usable until the new one is complete.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import sys
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Mapping, Sequence

import numpy as np

from .config import AnalysisConfig
from .errors import ModelError
from .files import open_regular
from .textsafe import one_line

__all__ = [
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "DEFAULT_MODEL_DIR",
    "DenseNetwork",
    "ModelBundle",
    "Ensemble",
    "FUSION_RULES",
    "fuse",
    "load_bundle",
    "save_bundle",
    "save_ensemble",
    "record_metadata",
]

MODEL_FORMAT = "genre-id-model"
MODEL_FORMAT_VERSION = 1
#: The model that ships with the project.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "default"

_KERAS_FILE = "model.keras"
_WEIGHTS_FILE = "weights.npz"
_META_FILE = "model.json"
_POOL_FILE = "pool.npz"
#: The arrays of a model's stored training pool (``pool.npz``), and their kinds.
POOL_ARRAYS = {"x": "f", "y": "U", "groups": "U", "units": "U", "weights": "f"}
#: The optional augmentation deltas stored beside the pool.
POOL_OPTIONAL = {"deltas": "f", "delta_tracks": "U", "delta_perturbations": "U"}
MAX_POOL_BYTES = 64 << 20
_EPSILON = 1e-7  # keras.backend.epsilon(), used by keras.layers.Normalization
_ACTIVATIONS = ("linear", "relu", "softmax")


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


#: The arrays each kind of layer has.
_LAYER_ARRAYS = {"normalization": ("mean", "variance"), "dense": ("kernel", "bias")}


def _check_network_shapes(layers: Sequence[dict], shapes: Mapping[str, tuple[int, ...]], *,
                          n_inputs: int | None = None, n_outputs: int | None = None) -> None:
    """Check that arrays of these ``shapes`` make a network of ``layers`` (``n_inputs`` to ``n_outputs`` when given).

    Works on shapes alone, so that an archive's arrays can be checked from
    their headers before their data is read.  Raises :class:`ModelError`.
    """
    width = n_inputs  # the size of the vectors flowing into the current layer, once known
    for i, layer in enumerate(layers):
        if layer["type"] == "normalization":
            mean, var = shapes[f"{i}.mean"], shapes[f"{i}.variance"]
            size = math.prod(mean)
            if len(mean) > 2 or len(var) > 2 or size != math.prod(var) or width not in (None, size):
                raise ModelError(f"layer {i}: normalization arrays of shapes {mean} and {var} do not fit the network")
            width = size
        else:
            kernel, bias = shapes[f"{i}.kernel"], shapes[f"{i}.bias"]
            if (len(kernel) != 2 or len(bias) > 2 or math.prod(bias) != kernel[1] or width not in (None, kernel[0])
                    or layer.get("units", kernel[1]) != kernel[1]):
                raise ModelError(f"layer {i}: dense arrays of shapes {kernel} and {bias} do not fit the network")
            width = kernel[1]
    if n_outputs is not None and width != n_outputs:
        raise ModelError(f"the network has {width} outputs but the metadata lists {n_outputs} labels")


@dataclass
class DenseNetwork:
    """Normalization, dense layers and softmax, evaluated with numpy (float32).

    ``layers`` is a list of ``{"type": ..., ...}`` dicts; ``arrays`` holds
    each layer's arrays under ``"<index>.<name>"``.
    """

    layers: list[dict]
    arrays: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, dict):
                raise ModelError(f"layer {i}: not a layer description ({type(layer).__name__})")
            kind = layer.get("type")
            if not isinstance(kind, str) or kind not in _LAYER_ARRAYS:
                raise ModelError(f"layer {i}: unknown layer type {one_line(kind)[:40]!r}")
            if kind == "dense" and layer.get("activation", "linear") not in _ACTIVATIONS:
                raise ModelError(f"layer {i}: unsupported activation {one_line(layer.get('activation'))[:40]!r}")
            for name in _LAYER_ARRAYS[kind]:
                if f"{i}.{name}" not in self.arrays:
                    raise ModelError(f"layer {i}: array '{name}' is missing")
        _check_network_shapes(self.layers, {k: np.shape(v) for k, v in self.arrays.items()})
        for i, layer in enumerate(self.layers):
            for name in _LAYER_ARRAYS[layer["type"]]:
                if not np.isfinite(self.arrays[f"{i}.{name}"]).all():
                    raise ModelError(f"layer {i}: array '{name}' holds NaN or infinite values")
            if layer["type"] == "normalization" and (self.arrays[f"{i}.variance"] < 0).any():
                raise ModelError(f"layer {i}: normalization variance is negative")

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
        with np.errstate(all="ignore"):  # an overflow shows as a non-finite output; the caller refuses it
            return self._layers(x, softmax=softmax)

    def _layers(self, x: np.ndarray, *, softmax: bool) -> np.ndarray:
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
    #: The training features (see :func:`load_pool`), written as ``pool.npz`` so the model can be extended.
    pool: dict[str, np.ndarray] | None = field(default=None, repr=False)

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
    def analysis(self) -> AnalysisConfig:
        """How audio must be cut and judged for this model (what it was trained with)."""
        return AnalysisConfig(sample_rate=int(self.feature_set["sample_rate"]), window_seconds=self.window_seconds,
                              min_seconds=self.min_seconds)

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
            proba = np.asarray(self.keras_model.predict(x, verbose=0), dtype=np.float32)
        else:
            proba = self.network.predict_proba(x)
        if not np.isfinite(proba).all():
            where = os.fspath(self.path) if self.path is not None else self.name
            raise ModelError(f"{one_line(where)}: the network's output is not finite for this audio "
                             "(its weights overflow float32)")
        return proba


#: How an ensemble turns its members' probabilities into one distribution:
#: ``"mean"``, their arithmetic mean; ``"geometric-mean"``, the normalised
#: geometric mean (the mean of log-probabilities), which lets a member that
#: is sure a genre is wrong veto it.
FUSION_RULES = ("mean", "geometric-mean")
_PROBABILITY_FLOOR = 1e-6  # keeps the logarithm finite in the geometric mean


def fuse(probabilities: Sequence[np.ndarray], *, rule: str, weights: Sequence[float] | None = None,
         temperature: float = 1.0) -> np.ndarray:
    """Fuse class probabilities (each of shape ``(n, labels)``) by ``rule``.

    ``weights`` (one per member, default equal) weigh the members: the
    geometric mean becomes ``prod_m p_m ** w_m`` with the weights summing to
    one, the mean a weighted mean.  ``temperature`` then calibrates the
    result: ``p ** (1 / T)``, renormalised (``T > 1`` softens, ``T < 1``
    sharpens; the ranking of the genres never changes).
    """
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in probabilities])
    w = np.full(len(stack), 1.0) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(stack),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ModelError(f"fusion weights must be {len(stack)} non-negative numbers, not all zero")
    w = w / w.sum()
    if not (np.isfinite(temperature) and temperature > 0):
        raise ModelError("the fusion temperature must be a positive number")
    if rule == "mean":
        out = np.log(np.maximum(np.tensordot(w, stack, axes=1), _PROBABILITY_FLOOR))
    elif rule == "geometric-mean":
        out = np.tensordot(w, np.log(np.maximum(stack, _PROBABILITY_FLOOR)), axes=1)
    else:
        raise ModelError(f"unknown fusion rule {one_line(rule)[:40]!r} (known: {', '.join(FUSION_RULES)})")
    out = out / temperature
    out = np.exp(out - out.max(axis=-1, keepdims=True))
    out /= out.sum(axis=-1, keepdims=True)
    return out.astype(np.float32)


@dataclass
class Ensemble:
    """Models that judge the same windows from different features, fused by one fixed rule.

    A feature row of the ensemble is its members' rows side by side, in
    member order (:func:`genre_id.features.combine`).
    """

    metadata: dict
    members: list[ModelBundle]
    path: Path | None = None

    labels = ModelBundle.labels
    window_seconds = ModelBundle.window_seconds
    min_seconds = ModelBundle.min_seconds
    name = ModelBundle.name

    @property
    def analysis(self) -> AnalysisConfig:
        """How audio must be cut and judged (its members share it)."""
        return self.members[0].analysis
    version = ModelBundle.version

    @property
    def fusion(self) -> str:
        return str(self.metadata["fusion"])

    @property
    def fusion_weights(self) -> list[float] | None:
        """Each member's weight in the fusion (None: equal), from ``model.json``'s ``fusion_weights``."""
        w = self.metadata.get("fusion_weights")
        return None if w is None else [float(v) for v in w]

    @property
    def temperature(self) -> float:
        """The calibration temperature applied after fusing (``model.json``'s ``temperature``, default 1)."""
        return float(self.metadata.get("temperature", 1.0))

    @property
    def member_names(self) -> list[str]:
        """Each member's name: its sub-folder's."""
        return [str(m["folder"]) for m in self.metadata["members"]]

    def member_proba(self, x: np.ndarray) -> list[np.ndarray]:
        """Each member's probabilities for the ensemble's feature rows ``x``."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float32))
        widths = [m.network.n_inputs for m in self.members]
        if x.shape[1] != sum(widths):
            raise ModelError(f"the ensemble takes {sum(widths)} features per row, not {x.shape[1]}")
        bounds = np.cumsum([0] + widths)
        return [m.predict_proba(x[:, a:b]) for m, a, b in zip(self.members, bounds[:-1], bounds[1:])]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """The fused probabilities, one row per feature row, columns in :attr:`labels` order."""
        return fuse(self.member_proba(x), rule=self.fusion, weights=self.fusion_weights,
                    temperature=self.temperature)


#: Bounds on what a model folder may make us read (bytes), checked before reading.
MAX_METADATA_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 64 << 20
MAX_KERAS_BYTES = 512 << 20
#: Bound on what all members of ``weights.npz`` declare they unpack to (read from the archive's directory).
MAX_WEIGHTS_UNCOMPRESSED_BYTES = 128 << 20
#: Bounds on the network (values of all arrays together; members of the weights archive).
MAX_NETWORK_VALUES = 16 << 20
_MAX_ZIP_MEMBERS = 1024
_MAX_ZIP_DIRECTORY_BYTES = 1 << 20
_MAX_NPY_HEADER_BYTES = 10_000
#: Bounds on model.json's content.
MAX_LABELS = 1000
MAX_LABEL_CHARS = 64
MAX_LAYERS = 64
MAX_UNITS = 1 << 16
MAX_COLUMNS = 10_000
MAX_JSON_DEPTH = 32
#: Window lengths a model may declare, seconds.
WINDOW_SECONDS_RANGE = (1.0, 120.0)
MIN_SECONDS_FLOOR = 0.5


def _open_regular(path: Path, *, max_bytes: int, missing: str) -> BinaryIO:
    """:func:`genre_id.files.open_regular` with :class:`ModelError`."""
    return open_regular(path, max_bytes=max_bytes, missing=missing, error=ModelError)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _read_json(path: Path) -> dict:
    with _open_regular(path, max_bytes=MAX_METADATA_BYTES,
                       missing=f"{path.parent}: not a model folder ({path.name} is missing)") as fh:
        try:
            raw = fh.read(MAX_METADATA_BYTES + 1)
        except OSError as exc:
            raise ModelError(f"{path}: unreadable model metadata ({exc.strerror or exc})") from None
    if len(raw) > MAX_METADATA_BYTES:
        raise ModelError(f"{path}: more than {MAX_METADATA_BYTES} bytes of model metadata")
    try:
        meta = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        raise ModelError(f"{path}: unreadable model metadata (nested too deeply)") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable model metadata ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: model metadata is not a JSON object")
    return meta


def _json_depth_ok(value: object, limit: int) -> bool:
    """Whether ``value`` (parsed JSON) nests at most ``limit`` levels deep (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_name(value: object, max_chars: int) -> bool:
    """A non-empty printable string of at most ``max_chars`` characters, without outer spaces."""
    return (isinstance(value, str) and 0 < len(value) <= max_chars and value.isprintable()
            and value.strip() == value)


def _check_layers(layers: object, where: Path) -> list[dict]:
    if not isinstance(layers, list) or not 0 < len(layers) <= MAX_LAYERS:
        raise ModelError(f"{where}: model metadata describes no valid list of network layers (1 to {MAX_LAYERS})")
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise ModelError(f"{where}: layer {i}: not a layer description ({type(layer).__name__})")
        kind = layer.get("type")
        if not isinstance(kind, str) or kind not in _LAYER_ARRAYS:
            raise ModelError(f"{where}: layer {i}: unknown layer type {one_line(kind)[:40]!r}")
        if kind == "dense":
            act = layer.get("activation", "linear")
            if not isinstance(act, str) or act not in _ACTIVATIONS:
                raise ModelError(f"{where}: layer {i}: unsupported activation {one_line(act)[:40]!r}")
            units = layer.get("units")
            if units is not None and not (_is_int(units) and 0 < units <= MAX_UNITS):
                raise ModelError(f"{where}: layer {i}: invalid number of units")
    if layers[-1]["type"] != "dense":
        raise ModelError(f"{where}: the network's last layer is not a dense layer")
    return layers


def _check_metadata(meta: Mapping, where: Path) -> None:
    """Check ``model.json`` against the model schema; :class:`ModelError` (one line) on the first problem."""
    if not _json_depth_ok(meta, MAX_JSON_DEPTH):
        raise ModelError(f"{where}: model metadata is nested more than {MAX_JSON_DEPTH} levels deep")
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{where}: not a genre-id model (format {one_line(meta.get('format'))[:40]!r})")
    version = meta.get("format_version")
    if not _is_int(version) or version != MODEL_FORMAT_VERSION:
        raise ModelError(
            f"{where}: model format version {version if _is_int(version) else '(invalid)'} is not supported "
            f"(this genre-id reads version {MODEL_FORMAT_VERSION})"
        )
    for key in ("labels", "feature_set", "window_seconds", "network"):
        if key not in meta:
            raise ModelError(f"{where}: model metadata lacks '{key}'")
    labels = meta["labels"]
    if not isinstance(labels, list) or not 2 <= len(labels) <= MAX_LABELS:
        raise ModelError(f"{where}: model metadata has no valid list of labels (2 to {MAX_LABELS})")
    for label in labels:
        if not _is_name(label, MAX_LABEL_CHARS):
            raise ModelError(f"{where}: model label {one_line(str(label)[:80])} is not a printable text "
                             f"of 1 to {MAX_LABEL_CHARS} characters")
    if len(set(labels)) != len(labels):
        raise ModelError(f"{where}: model labels are not unique")
    fs = meta["feature_set"]
    if not isinstance(fs, dict) or not _is_name(fs.get("name"), 64) or not _is_int(fs.get("version")):
        raise ModelError(f"{where}: model metadata has no valid feature set (name and version)")
    columns = fs.get("columns", [])
    if not isinstance(columns, list) or len(columns) > MAX_COLUMNS or not all(_is_name(c, 128) for c in columns):
        raise ModelError(f"{where}: model metadata has an invalid list of feature columns")
    lo, hi = WINDOW_SECONDS_RANGE
    window = meta["window_seconds"]
    if not _is_number(window) or not lo <= window <= hi:
        raise ModelError(f"{where}: model metadata has an invalid 'window_seconds' "
                         f"({window if _is_number(window) else type(window).__name__}; {lo:g} to {hi:g} s)")
    least = meta.get("min_seconds", min(3.0, window))
    if not _is_number(least) or not MIN_SECONDS_FLOOR <= least <= window:
        raise ModelError(f"{where}: model metadata has an invalid 'min_seconds' "
                         f"({least if _is_number(least) else type(least).__name__}; "
                         f"{MIN_SECONDS_FLOOR:g} s to the window length)")
    if "name" in meta and not _is_name(meta["name"], 100):
        raise ModelError(f"{where}: model metadata has an invalid 'name'")
    if "version" in meta and not (_is_name(meta["version"], 100) or _is_int(meta["version"])):
        raise ModelError(f"{where}: model metadata has an invalid 'version'")
    if not isinstance(meta["network"], dict):
        raise ModelError(f"{where}: model metadata describes no network")
    _check_layers(meta["network"].get("layers"), where)


def _check_zip_directory(fh: BinaryIO, path: Path) -> None:
    """Refuse an archive whose central directory is too large to parse (many members), before parsing it."""
    size = fh.seek(0, os.SEEK_END)
    tail_size = min(size, 22 + 0xFFFF)
    fh.seek(size - tail_size)
    tail = fh.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise ModelError(f"{path}: corrupt weights file (not a zip archive)")
    n_members, directory_bytes = struct.unpack("<10xHI6x", tail[at:at + 22])
    if n_members > _MAX_ZIP_MEMBERS or directory_bytes > _MAX_ZIP_DIRECTORY_BYTES:
        raise ModelError(f"{path}: weights archive has too many members (at most {_MAX_ZIP_MEMBERS})")
    fh.seek(0)


def _read_npy_header(fh: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of an ``.npy`` stream, reading only its header."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh, max_header_size=_MAX_NPY_HEADER_BYTES)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh, max_header_size=_MAX_NPY_HEADER_BYTES)
    raise ValueError(f"npy format version {version} is not supported")


def _array_keys(layers: Sequence[dict]) -> list[str]:
    return [f"{i}.{name}" for i, layer in enumerate(layers) for name in _LAYER_ARRAYS[layer["type"]]]


def _load_arrays(path: Path, layers: list[dict], *, n_inputs: int | None, n_outputs: int) -> dict[str, np.ndarray]:
    """The arrays ``layers`` need, from ``weights.npz``; checked from their headers before any data is read.

    Each array's dtype (floating point) and shape (fitting the network, the
    feature columns and the labels) are checked from its ``.npy`` header, and
    the archive member's size against the header; only then is its data
    decompressed, exactly that many bytes (the CRC is verified).  Other
    members are never read.
    """
    missing = f"{path.parent}: model folder is incomplete ({path.name} is missing)"
    with _open_regular(path, max_bytes=MAX_WEIGHTS_BYTES, missing=missing) as fh:
        try:
            _check_zip_directory(fh, path)
            with zipfile.ZipFile(fh) as archive:
                members = {info.filename: info for info in archive.infolist()}
                if sum(info.file_size for info in members.values()) > MAX_WEIGHTS_UNCOMPRESSED_BYTES:
                    raise ModelError(f"{path}: the weights archive unpacks to more than "
                                     f"{MAX_WEIGHTS_UNCOMPRESSED_BYTES} bytes")
                headers: dict[str, tuple[zipfile.ZipInfo, tuple[int, ...], bool, np.dtype, int]] = {}
                total = 0
                for key in _array_keys(layers):
                    layer, name = key.split(".")
                    info = members.get(f"{key}.npy")
                    if info is None:
                        raise ModelError(f"layer {layer}: array '{name}' is missing")
                    with archive.open(info) as member:
                        shape, fortran, dtype = _read_npy_header(member)
                        offset = member.tell()
                    if dtype.kind != "f" or dtype.hasobject or dtype.itemsize > 8:
                        raise ModelError(f"layer {layer}: array '{name}' is not floating point ({dtype})")
                    if len(shape) > 2 or min(shape, default=1) < 1:
                        raise ModelError(f"layer {layer}: array '{name}' has an invalid shape {shape}")
                    total += math.prod(shape)
                    if total > MAX_NETWORK_VALUES:
                        raise ModelError(f"the network has more than {MAX_NETWORK_VALUES} values")
                    if info.file_size != offset + math.prod(shape) * dtype.itemsize:
                        raise ModelError(f"layer {layer}: array '{name}' does not match its declared size")
                    headers[key] = (info, shape, fortran, dtype, offset)
                _check_network_shapes(layers, {k: h[1] for k, h in headers.items()},
                                      n_inputs=n_inputs, n_outputs=n_outputs)
                arrays = {}
                for key, (info, shape, fortran, dtype, offset) in headers.items():
                    arrays[key] = _read_npy_data(archive, info, offset, shape, fortran, dtype)
                return arrays
        except ModelError:
            raise
        except Exception as exc:  # zipfile, zlib, ValueError of a bad header, ...
            raise ModelError(f"{path}: corrupt weights file ({exc.__class__.__name__}: {one_line(exc)[:200]})") from None


def _read_npy_data(archive: zipfile.ZipFile, info: zipfile.ZipInfo, offset: int, shape: tuple[int, ...],
                   fortran: bool, dtype: np.dtype) -> np.ndarray:
    nbytes = math.prod(shape) * dtype.itemsize
    with archive.open(info) as member:
        member.read(offset)
        data = member.read(nbytes)
        if len(data) != nbytes or member.read(1):  # the last read checks the CRC
            raise ValueError(f"member {info.filename} is truncated or too long")
    values = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return values.astype(np.float32)


def load_bundle(path: str | os.PathLike[str] | None = None, *, backend: str = "numpy") -> ModelBundle | Ensemble:
    """Load a model folder (default: the shipped model).

    ``backend="numpy"`` (default) evaluates the network with numpy and never
    imports TensorFlow; ``backend="keras"`` loads ``model.keras`` with Keras
    in safe mode, which refuses files that carry code.  An ensemble folder
    gives an :class:`Ensemble` of its members, each loaded the same way.

    Every problem with the folder is a one-line :class:`ModelError`: files
    are read only when regular and within size bounds, ``model.json`` is
    checked against the schema, and the weights' shapes against
    ``model.json`` before their data is read.
    """
    folder = Path(path) if path is not None else DEFAULT_MODEL_DIR
    if not folder.exists():
        raise ModelError(f"{folder}: no such model folder")
    if not folder.is_dir():
        raise ModelError(f"{folder}: a model is a folder, not a file")
    meta = _read_json(folder / _META_FILE)
    if isinstance(meta, dict) and "members" in meta:
        return _load_ensemble(folder, meta, backend=backend)
    _check_metadata(meta, folder)
    layers = meta["network"]["layers"]
    columns = meta["feature_set"].get("columns") or None
    try:
        arrays = _load_arrays(folder / _WEIGHTS_FILE, layers, n_inputs=len(columns) if columns else None,
                              n_outputs=len(meta["labels"]))
        network = DenseNetwork(layers=layers, arrays=arrays)
    except ModelError as exc:
        if str(exc).startswith(str(folder)):
            raise
        raise ModelError(f"{folder}: {exc}") from None
    bundle = ModelBundle(metadata=meta, network=network, path=folder)
    if backend == "keras":
        from .keras_backend import load_keras_model

        keras_file = folder / _KERAS_FILE
        _open_regular(keras_file, max_bytes=MAX_KERAS_BYTES,
                      missing=f"{folder}: model folder is incomplete ({_KERAS_FILE} is missing)").close()
        bundle.keras_model = load_keras_model(keras_file)
    elif backend != "numpy":
        raise ModelError(f"unknown backend {backend!r} (choose 'numpy' or 'keras')")
    return bundle


MAX_MEMBERS = 8


def _load_ensemble(folder: Path, meta: dict, *, backend: str) -> Ensemble:
    """The ensemble described by ``meta`` (its ``model.json``); its members are plain model folders inside it."""
    if not _json_depth_ok(meta, MAX_JSON_DEPTH):
        raise ModelError(f"{folder}: model metadata is nested more than {MAX_JSON_DEPTH} levels deep")
    if meta.get("format") != MODEL_FORMAT or meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelError(f"{folder}: not a genre-id model of format version {MODEL_FORMAT_VERSION}")
    listed = meta["members"]
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_MEMBERS:
        raise ModelError(f"{folder}: an ensemble lists 1 to {MAX_MEMBERS} members")
    if meta.get("fusion") not in FUSION_RULES:
        raise ModelError(f"{folder}: unknown fusion rule (known: {', '.join(FUSION_RULES)})")
    weights = meta.get("fusion_weights")
    if weights is not None and not (isinstance(weights, list) and len(weights) == len(listed)
                                    and all(_is_number(w) and 0 <= w <= 1e6 for w in weights) and sum(weights) > 0):
        raise ModelError(f"{folder}: 'fusion_weights' must list one non-negative number per member, not all zero")
    temperature = meta.get("temperature", 1.0)
    if not (_is_number(temperature) and 0.01 <= temperature <= 100):
        raise ModelError(f"{folder}: 'temperature' must be a number from 0.01 to 100")
    members = []
    for entry in listed:
        name = entry.get("folder") if isinstance(entry, dict) else None
        if not _is_name(name, 64) or name in (".", "..") or "/" in name or "\\" in name:
            raise ModelError(f"{folder}: an ensemble member must name a sub-folder of the ensemble")
        member = load_bundle(folder / name, backend=backend)
        if isinstance(member, Ensemble):
            raise ModelError(f"{folder / name}: an ensemble cannot be a member of another")
        members.append(member)
    first = members[0]
    for member in members[1:]:
        if member.labels != first.labels:
            raise ModelError(f"{member.path}: its labels differ from {first.path.name}'s; members must share them")
        if (member.window_seconds, member.min_seconds) != (first.window_seconds, first.min_seconds):
            raise ModelError(f"{member.path}: its window differs from {first.path.name}'s; members must share it")
    shared = {"labels": first.labels, "window_seconds": first.window_seconds, "min_seconds": first.min_seconds}
    return Ensemble(metadata={**meta, **shared}, members=members, path=folder)


def save_ensemble(members: Sequence[str | os.PathLike[str]], path: str | os.PathLike[str], *,
                  fusion: str, metadata: Mapping | None = None, weights: Sequence[float] | None = None,
                  temperature: float = 1.0) -> Path:
    """Write an ensemble of the model folders ``members`` at ``path``, atomically.

    Each member is copied into a sub-folder named after its feature set; the
    members must share labels and window (checked by loading the result
    before it replaces anything).  ``weights`` and ``temperature`` are the
    fusion's (see :func:`fuse`).  ``metadata`` adds entries to ``model.json``.
    """
    if fusion not in FUSION_RULES:
        raise ModelError(f"unknown fusion rule {one_line(fusion)[:40]!r} (known: {', '.join(FUSION_RULES)})")
    bundles = []
    for m in members:
        bundle = load_bundle(m)
        if isinstance(bundle, Ensemble):
            raise ModelError(f"{m}: an ensemble cannot be a member of another")
        bundles.append(bundle)
    names = [str(b.feature_set["name"]) for b in bundles]
    if len(set(names)) != len(names):
        raise ModelError("ensemble members must use different feature sets")
    target = Path(path).resolve()
    for bundle in bundles:
        folder = Path(bundle.path).resolve()
        if target == folder or folder in target.parents:
            raise ModelError(f"{path}: an ensemble cannot be written inside its member {bundle.path}")

    def write(tmp: Path) -> None:
        for bundle, name in zip(bundles, names):
            shutil.copytree(bundle.path, tmp / name)
        meta = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, **(metadata or {}),
                "members": [{"folder": n, "name": b.name, "version": b.version} for n, b in zip(names, bundles)],
                "fusion": fusion, "labels": bundles[0].labels}
        if weights is not None:
            meta["fusion_weights"] = [round(float(w), 6) for w in weights]
        if temperature != 1.0:
            meta["temperature"] = round(float(temperature), 6)
        _write_json(tmp / _META_FILE, meta)
        try:
            load_bundle(tmp)  # the whole ensemble must load before it replaces anything
        except ModelError as exc:  # named as the user named it, not by our temporary folder
            raise ModelError(str(exc).replace(str(tmp), os.fspath(path))) from None

    return _write_model_folder(path, write)


def record_metadata(path: str | os.PathLike[str], entries: Mapping) -> Path:
    """Add ``entries`` (e.g. ``{"evaluation": figures}``) to a model folder's ``model.json``, atomically."""
    folder = Path(path)
    meta = _read_json(folder / _META_FILE)
    load_bundle(folder)  # only a sound model gets figures

    def write(tmp: Path) -> None:
        for child in folder.iterdir():
            if child.name != _META_FILE:
                (shutil.copytree if child.is_dir() else shutil.copy2)(child, tmp / child.name)
        _write_json(tmp / _META_FILE, {**meta, **entries})

    return _write_model_folder(folder, write)


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
    keras_model = keras_model if keras_model is not None else bundle.keras_model

    def write(tmp: Path) -> None:
        if keras_model is not None:
            keras_model.save(tmp / _KERAS_FILE)
        elif bundle.path is not None and (bundle.path / _KERAS_FILE).exists():
            shutil.copy2(bundle.path / _KERAS_FILE, tmp / _KERAS_FILE)
        with open(tmp / _WEIGHTS_FILE, "wb") as fh:
            np.savez(fh, **bundle.network.arrays)
        if bundle.pool is not None:
            with open(tmp / _POOL_FILE, "wb") as fh:
                np.savez_compressed(fh, **bundle.pool)
        elif bundle.path is not None and (bundle.path / _POOL_FILE).is_file():
            shutil.copy2(bundle.path / _POOL_FILE, tmp / _POOL_FILE)
        meta = dict(bundle.metadata)
        meta["network"] = {**meta.get("network", {}), "layers": bundle.network.layers}
        _write_json(tmp / _META_FILE, meta)

    bundle.path = _write_model_folder(path, write)
    return bundle.path


def _write_model_folder(path: str | os.PathLike[str], write: Any) -> Path:
    """Fill a temporary folder beside ``path`` with ``write(tmp)``, fsync it, and swap it into place."""
    target = check_model_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The name is chosen before the folder exists, so that an interrupt at any
    # point after the folder is made lands inside the ``try`` that removes it.
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir()  # an ordinary folder (the umask applies), unlike mkdtemp's private one
        write(tmp)
        for child in tmp.rglob("*"):
            if child.is_file():
                with open(child, "rb") as fh:
                    os.fsync(fh.fileno())
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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


def load_pool(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The training features stored in the model folder ``path`` (``pool.npz``), for extending the model.

    Arrays: ``x`` ``(rows, features)`` (stored as float16, returned as
    float32), ``y`` each row's label, ``groups`` its track, ``units`` what
    stays on one side of a split, ``weights`` its track's weight; and, when
    the model was trained with augmentation, ``deltas`` with the track and
    perturbation of each.  Read without pickle; a missing, oversized or
    malformed file is a one-line :class:`ModelError`.
    """
    folder = Path(path)
    fh = _open_regular(folder / _POOL_FILE, max_bytes=MAX_POOL_BYTES,
                       missing=f"{folder}: the model was saved without its training features ({_POOL_FILE}), "
                               "so it cannot be extended; retrain it with this genre-id")
    try:
        with fh, np.load(fh, allow_pickle=False) as z:
            if sum(info.file_size for info in z.zip.infolist()) > 4 * MAX_POOL_BYTES:
                raise ModelError(f"{folder / _POOL_FILE}: unpacks to too many bytes")
            arrays = {k: z[k] for k in z.files if k in POOL_ARRAYS or k in POOL_OPTIONAL}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelError(f"{folder / _POOL_FILE}: unreadable training features ({type(exc).__name__})") from None
    for key, kind in {**POOL_ARRAYS, **(POOL_OPTIONAL if "deltas" in arrays else {})}.items():
        if key not in arrays or arrays[key].dtype.kind != kind:
            raise ModelError(f"{folder / _POOL_FILE}: '{key}' is missing or of the wrong type")
    n = len(arrays["x"])
    if arrays["x"].ndim != 2 or any(len(arrays[k]) != n for k in POOL_ARRAYS):
        raise ModelError(f"{folder / _POOL_FILE}: its arrays do not have one row each per example")
    arrays["x"] = arrays["x"].astype(np.float32)
    if "deltas" in arrays:
        arrays["deltas"] = arrays["deltas"].astype(np.float32)
    if not (np.isfinite(arrays["x"]).all() and np.isfinite(arrays["weights"]).all()):
        raise ModelError(f"{folder / _POOL_FILE}: holds values that are not finite")
    return arrays


def network_from_layers(layers: Sequence[dict], arrays: Mapping[str, np.ndarray]) -> DenseNetwork:
    """Build a :class:`DenseNetwork`, converting arrays to float32."""
    return DenseNetwork(layers=list(layers), arrays={k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})
