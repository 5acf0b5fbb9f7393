"""Trained models on disk: a single model (:class:`ModelBundle`) or an ensemble of them (:class:`Ensemble`).

A model is a folder::

    models/NAME/
        model.keras   the Keras network (loaded only with ``backend="keras"``, in safe mode)
        weights.npz   the same network's arrays, for the numpy backend (:mod:`genre_id.network`)
        model.json    labels, feature set, window length, training summary, metrics (:mod:`genre_id.metadata`)
        pool.npz      the training features, so the model can be extended (optional)

An *ensemble* is a folder whose ``model.json`` lists ``members``: each a
sub-folder holding a model as above, all with the same labels and window.
Its probabilities fuse the members' by one fixed rule (:data:`FUSION_RULES`).
Both kinds answer the same questions (``members``, ``member_proba``,
``fusion``...), so their users need not tell them apart.

Everything read from a folder is bounded and checked before it is trusted
(:mod:`genre_id.archive` reads the weights); folders are written atomically
(:func:`genre_id.files.atomic_folder`), so an interrupted save never leaves a
half-written model, and the previous model stays usable until the new one is
complete.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Sequence

import numpy as np

from .archive import ArchiveLimits, read_float_arrays
from .config import AnalysisConfig
from .errors import ModelError
from .files import atomic_folder, open_regular
from .metadata import (
    FUSION_RULES,
    META_FILE,
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    check_ensemble,
    check_model,
    ensemble_metadata,
    is_ensemble,
    read_metadata,
    write_metadata,
)
from .network import DenseNetwork, array_keys, check_network_shapes, network_from_layers
from .textsafe import one_line

__all__ = [
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "DEFAULT_MODEL_DIR",
    "DenseNetwork",
    "ModelBundle",
    "Ensemble",
    "FUSION_RULES",
    "check_model_target",
    "fuse",
    "load_bundle",
    "load_pool",
    "network_from_layers",
    "record_metadata",
    "save_bundle",
    "save_ensemble",
]

#: The model that ships with the project.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "default"

_KERAS_FILE = "model.keras"
_WEIGHTS_FILE = "weights.npz"
_POOL_FILE = "pool.npz"
#: The arrays of a model's stored training pool (``pool.npz``), and their kinds.
POOL_ARRAYS = {"x": "f", "y": "U", "groups": "U", "units": "U", "weights": "f"}
#: The optional augmentation deltas stored beside the pool.
POOL_OPTIONAL = {"deltas": "f", "delta_tracks": "U", "delta_perturbations": "U"}
MAX_POOL_BYTES = 64 << 20


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

    # The interface of an ensemble, for a model that is its own one member (fusing it changes nothing).

    @property
    def members(self) -> list[ModelBundle]:
        """``[self]``: a single model is an ensemble of itself."""
        return [self]

    @property
    def member_names(self) -> list[str]:
        """The name of the one member: the model's feature set."""
        return [str(self.feature_set["name"])]

    def member_proba(self, x: np.ndarray) -> list[np.ndarray]:
        """``[predict_proba(x)]``."""
        return [self.predict_proba(x)]

    fusion = "mean"  #: :func:`fuse` of the one member's probabilities is those probabilities
    fusion_weights = None
    temperature = 1.0


#: How an ensemble turns its members' probabilities into one distribution:
#: ``"mean"``, their arithmetic mean; ``"geometric-mean"``, the normalised
#: geometric mean (the mean of log-probabilities), which lets a member that
#: is sure a genre is wrong veto it.
_PROBABILITY_FLOOR = 1e-6  # keeps the logarithm finite in the geometric mean


def fuse(probabilities: Sequence[np.ndarray], *, rule: str, weights: Sequence[float] | None = None,
         temperature: float = 1.0) -> np.ndarray:
    """Fuse class probabilities (each of shape ``(n, labels)``) by ``rule``.

    ``weights`` (one per member, default equal) weigh the members: the
    geometric mean becomes ``prod_m p_m ** w_m`` with the weights summing to
    one, the mean a weighted mean.  ``temperature`` then calibrates the
    result: ``p ** (1 / T)``, renormalised (``T > 1`` softens, ``T < 1``
    sharpens; the ranking of the genres never changes).  One part with
    temperature 1 is returned as it is (float32), whatever the rule.
    """
    if len(probabilities) == 1 and temperature == 1.0 and weights is None:
        return np.asarray(probabilities[0], dtype=np.float32)
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
MAX_WEIGHTS_BYTES = 64 << 20
MAX_KERAS_BYTES = 512 << 20
#: Bound on what all members of ``weights.npz`` declare they unpack to (read from the archive's directory).
MAX_WEIGHTS_UNCOMPRESSED_BYTES = 128 << 20
#: Bounds on the network (values of all arrays together).
MAX_NETWORK_VALUES = 16 << 20
_WEIGHTS_LIMITS = ArchiveLimits(max_bytes=MAX_WEIGHTS_BYTES, max_unpacked_bytes=MAX_WEIGHTS_UNCOMPRESSED_BYTES,
                                max_values=MAX_NETWORK_VALUES)


def _open_regular(path: Path, *, max_bytes: int, missing: str) -> BinaryIO:
    """:func:`genre_id.files.open_regular` with :class:`ModelError`."""
    return open_regular(path, max_bytes=max_bytes, missing=missing, error=ModelError)


def _describe_array(key: str) -> str:
    layer, name = key.split(".")
    return f"layer {layer}: array '{name}'"


def _load_arrays(path: Path, layers: list[dict], *, n_inputs: int | None, n_outputs: int) -> dict[str, np.ndarray]:
    """The arrays ``layers`` need, from ``weights.npz``; their shapes checked against the network before reading."""
    return read_float_arrays(
        path, array_keys(layers), limits=_WEIGHTS_LIMITS, describe=_describe_array,
        missing=f"{path.parent}: model folder is incomplete ({path.name} is missing)",
        check_shapes=lambda shapes: check_network_shapes(layers, shapes, n_inputs=n_inputs, n_outputs=n_outputs))


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
    meta = read_metadata(folder / META_FILE)
    if is_ensemble(meta):
        return _load_ensemble(folder, meta, backend=backend)
    check_model(meta, folder)
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


def _load_ensemble(folder: Path, meta: dict, *, backend: str) -> Ensemble:
    """The ensemble described by ``meta`` (its ``model.json``); its members are plain model folders inside it."""
    members = []
    for name in check_ensemble(meta, folder):
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
    try:
        target = Path(path).resolve()
    except (RuntimeError, OSError):  # Python reports a loop of links as a RuntimeError
        raise ModelError(f"{path}: is a loop of links; refusing to write there") from None
    for bundle in bundles:
        folder = Path(bundle.path).resolve()
        if target == folder or folder in target.parents:
            raise ModelError(f"{path}: an ensemble cannot be written inside its member {bundle.path}")
        if target in folder.parents:  # replacing it would rewrite the member while copying it
            raise ModelError(f"{path}: holds the member {bundle.path}; write the ensemble to another folder")

    def write(tmp: Path) -> None:
        for bundle, name in zip(bundles, names):
            shutil.copytree(bundle.path, tmp / name)
        meta = ensemble_metadata(
            members=[{"folder": n, "name": b.name, "version": b.version} for n, b in zip(names, bundles)],
            labels=bundles[0].labels, fusion=fusion, weights=weights, temperature=temperature, records=metadata)
        write_metadata(tmp / META_FILE, meta)
        try:
            load_bundle(tmp)  # the whole ensemble must load before it replaces anything
        except ModelError as exc:  # named as the user named it, not by our temporary folder
            raise ModelError(str(exc).replace(str(tmp), os.fspath(path))) from None

    return _write_model_folder(path, write)


def record_metadata(path: str | os.PathLike[str], entries: Mapping) -> Path:
    """Add ``entries`` (e.g. ``{"evaluation": figures}``) to a model folder's ``model.json``, atomically."""
    folder = Path(path)
    meta = read_metadata(folder / META_FILE)
    load_bundle(folder)  # only a sound model gets figures

    def write(tmp: Path) -> None:
        for child in folder.iterdir():
            if child.name != META_FILE:
                (shutil.copytree if child.is_dir() else shutil.copy2)(child, tmp / child.name)
        write_metadata(tmp / META_FILE, {**meta, **entries})

    return _write_model_folder(folder, write)


def check_model_target(path: str | os.PathLike[str]) -> Path:
    """``path`` as a place a model may be written: absent, an empty folder, or a model folder.

    Anything else (a file, or a folder holding other things) is refused with
    :class:`ModelError` rather than replaced.
    """
    target = Path(path)
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise ModelError(f"{target}: exists and is not a model folder; refusing to replace it")
        if not (target / META_FILE).exists() and any(target.iterdir()):
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
        write_metadata(tmp / META_FILE, meta)

    bundle.path = _write_model_folder(path, write)
    return bundle.path


def _write_model_folder(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Write a model folder at ``path`` with ``write(tmp)``, atomically (:func:`genre_id.files.atomic_folder`)."""
    return atomic_folder(check_model_target(path), write)


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
