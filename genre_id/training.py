"""Fitting a genre model: track-level validation split, early stopping, metadata.

``fit`` follows scikit-learn's separation of concerns: it takes a
:class:`~genre_id.dataset.Dataset` and returns a
:class:`~genre_id.model.ModelBundle` whose ``model.json`` is built by
:func:`genre_id.metadata.model_metadata`; saving is :func:`genre_id.model.save_bundle`.
"""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import asdict, dataclass
from typing import Sequence
from importlib import metadata as _md

import numpy as np

from .augment import Deltas, augment_rows
from .dataset import Dataset
from .features import FeatureSet
from .errors import DatasetError
from .metadata import model_metadata
from .model import ModelBundle
from .network import network_from_layers

__all__ = ["TrainConfig", "default_config", "track_split", "fit", "library_versions"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the network and its training."""

    hidden: tuple[int, ...] = (256, 128)
    dropout: float = 0.3
    l2: float = 1e-4
    learning_rate: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 400
    patience: int = 30  #: epochs without a better validation loss before stopping
    val_fraction: float = 0.25  #: share of tracks held out for early stopping
    val_block: int = 10  #: hold out runs of this many consecutive tracks (0: single tracks)
    noise: float = 0.2  #: std of Gaussian noise added to normalized inputs while training
    label_smoothing: float = 0.2  #: keeps confidence honest on unfamiliar music
    augment_copies: int = 4  #: copies of the training rows shifted by perturbation deltas (when given)
    #: After early stopping has chosen the number of epochs on the held-out tracks, train a fresh
    #: network on every track for that many epochs (with little data, the held-out quarter matters).
    refit: bool = True
    #: ``"balanced"``: every label weighs the same in the loss whatever its number of tracks
    #: (a label with 4 recordings counts as much as one with 85); ``"none"``: every track counts once.
    class_weight: str = "balanced"
    seed: int = 0


#: Per feature set, how its network differs from :class:`TrainConfig`'s defaults.  The
#: ``musicnn-msd`` head is a multinomial logistic regression (no hidden layer; early stopping,
#: input noise and a light L2 penalty regularise it), because wider heads and nonlinear
#: classifiers did worse on its pretrained embeddings under cross-validation; it has no label
#: smoothing, which cost accuracy, since the fused model is calibrated by its fusion temperature.
_CONFIG_FOR = {
    "musicnn-msd": {"hidden": (), "dropout": 0.0, "noise": 0.2, "l2": 1e-3, "label_smoothing": 0.0, "val_block": 0},
}


def default_config(feature_set: str | FeatureSet, **overrides) -> TrainConfig:
    """The training settings for a network on ``feature_set``, with ``overrides``."""
    name = feature_set if isinstance(feature_set, str) else feature_set.name
    return TrainConfig(**{**_CONFIG_FOR.get(name, {}), **overrides})


def track_split(
    y: np.ndarray, groups: np.ndarray, *, val_fraction: float, seed: int, block: int = 0,
    units: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a training and a validation part, stratified by label, grouped by track.

    Each label holds out about ``val_fraction`` of its own tracks, at least
    one, and keeps at least one for training, so no label is lost however
    few tracks it has; a label with fewer than two tracks is refused with a
    :class:`DatasetError` that says so.

    Tracks are held out in units: the track's unit where ``units`` (one per
    row) names one shared by several tracks (a labels file's group: an
    artist, a source), else the artist where the folder says who it is
    (tracks named ``label/artist/title``, i.e. in a sub-folder of the label's
    folder), otherwise runs of ``block`` consecutive tracks (in name order)
    when a label has at least ``2 * block / val_fraction`` tracks, and single
    tracks otherwise.  Collections are usually ordered by artist or album, so
    such units look like new artists to the model, as the test data will:
    early stopping then judges the model on unfamiliar music rather than on
    near-copies of its training tracks.
    """
    rng = np.random.default_rng(seed)
    labels_of: dict[str, str] = dict(zip(groups.tolist(), y.tolist()))
    unit_of_track: dict[str, str] = dict(zip(groups.tolist(), (groups if units is None else units).tolist()))
    by_label: dict[str, list[str]] = {}
    for track in sorted(labels_of):
        by_label.setdefault(labels_of[track], []).append(track)
    short = {label: len(tracks) for label, tracks in by_label.items() if len(tracks) < 2}
    if short:
        listed = ", ".join(f"'{label}' has {n}" for label, n in sorted(short.items()))
        raise DatasetError(f"too few tracks to train and validate on: {listed}; every label needs at least 2 tracks")
    held: set[str] = set()
    for label, tracks in sorted(by_label.items()):
        n = len(tracks)
        want = min(n - 1, max(1, int(round(n * val_fraction))))
        artists = [t.split("/")[1] if t.count("/") >= 2 else None for t in tracks]
        named = [unit_of_track[t] for t in tracks]
        if len(set(named)) < len(tracks) and len(set(named)) >= 2:
            unit_of = named
        elif all(artists) and len(set(artists)) >= 2:
            unit_of = artists
        elif block > 0 and n * val_fraction >= 2 * block:
            unit_of = [i // block for i in range(n)]
        else:
            unit_of = list(range(n))
        units: dict[object, list[str]] = {}
        for track, unit in zip(tracks, unit_of):
            units.setdefault(unit, []).append(track)
        chosen: list[str] = []
        for key in rng.permutation(len(units)):
            members = list(units.values())[key]
            if len(chosen) + len(members) > n - 1:
                continue  # would leave the label nothing to train on
            chosen += members
            if len(chosen) >= want:
                break
        if not chosen:  # one unit holds (almost) every track: fall back to single tracks
            chosen = [tracks[i] for i in rng.permutation(n)[:want]]
        held.update(chosen)
    in_val = np.fromiter((g in held for g in groups.tolist()), dtype=bool, count=len(groups))
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that decide a model's numbers."""
    out = {"python": platform.python_version()}
    for pkg in ("genre-id", "numpy", "librosa", "soundfile", "soxr", "scikit-learn", "keras", "tensorflow-cpu", "tensorflow"):
        try:
            out[pkg] = _md.version(pkg)
        except _md.PackageNotFoundError:
            pass
    return out


def row_weights(data: Dataset, labels: Sequence[str], *, class_weight: str = "balanced") -> np.ndarray:
    """Per row of ``data``, its weight in the training loss (mean 1 over the rows).

    A track's weight (:attr:`Dataset.weights`, 1 unless a labels file says
    otherwise) is shared by its windows, so a long recording counts as much
    as a short one; with ``class_weight="balanced"`` each label's tracks
    together weigh the same, as scikit-learn's ``class_weight="balanced"``.
    """
    if class_weight not in ("balanced", "none"):
        raise DatasetError(f"unknown class weighting {class_weight!r} (balanced or none)")
    _, first, per_row = np.unique(data.groups, return_index=True, return_inverse=True)
    windows = np.bincount(per_row)
    w = data.weights / windows[per_row]
    if class_weight == "balanced":
        track_w = data.weights[first] / 1.0
        track_y = data.y[first]
        totals = {g: float(track_w[track_y == g].sum()) for g in labels}
        w = w * np.asarray([1.0 / totals[g] for g in data.y.tolist()])
    return w * (len(w) / w.sum())


def _accuracy(bundle_proba: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(bundle_proba.argmax(axis=1) == y)) if len(y) else float("nan")


def fit(
    data: Dataset,
    *,
    config: TrainConfig | None = None,
    name: str = "model",
    version: str = "1",
    command: str = "",
    verbose: int = 0,
    deltas: Deltas | None = None,
    extra_metadata: dict | None = None,
) -> ModelBundle:
    """Train a genre network on ``data`` and return it with complete metadata.

    A stratified, track-level share of the data (``config.val_fraction``) is
    held out; training stops when its loss has not improved for
    ``config.patience`` epochs and the best weights are kept.  The reported
    validation accuracy is on those held-out tracks.  With ``config.refit``
    a fresh network (its normalisation adapted on every track) is then
    trained on all the tracks for the number of epochs early stopping chose:
    the held-out tracks decide when to stop, and the final model still
    learns from them.  With ``deltas``
    (:func:`genre_id.augment.perturbation_deltas`), the training rows (never
    the validation rows) are augmented with ``config.augment_copies`` shifted
    copies.  ``config`` defaults to :func:`default_config` of the data's
    feature set.
    """
    from .keras_backend import build_network, export_layers, fit_epochs, fit_network

    config = default_config(data.feature_set) if config is None else config
    labels = data.labels
    if len(labels) < 2:
        raise DatasetError(f"{data.source}: needs at least two genres, found {len(labels)}")
    y = data.encoded(labels)
    train_idx, val_idx = track_split(data.y, data.groups, val_fraction=config.val_fraction, seed=config.seed,
                                     block=config.val_block, units=data.units)
    x_train, x_val = data.x[train_idx], data.x[val_idx]
    x_fit, y_fit = x_train, y[train_idx]
    if deltas is not None:
        if deltas.feature_set != data.feature_set.name or deltas.values.shape[1] != data.x.shape[1]:
            raise DatasetError(f"the perturbation deltas were measured with feature set '{deltas.feature_set}', "
                               f"the data with '{data.feature_set.name}'")
        x_fit, y_fit = augment_rows(x_train, y[train_idx], deltas.values, copies=config.augment_copies,
                                    seed=config.seed)
    weights = row_weights(data.subset(train_idx), labels, class_weight=config.class_weight)
    w_fit = np.tile(weights, len(y_fit) // len(weights))

    def network_for(x_norm: np.ndarray):
        return build_network(
            x_norm, n_classes=len(labels), hidden=config.hidden, dropout=config.dropout, l2=config.l2,
            learning_rate=config.learning_rate, noise=config.noise, label_smoothing=config.label_smoothing,
            seed=config.seed,
        )

    model = network_for(x_train)
    result = fit_network(
        model, x_fit, y_fit, x_val, y[val_idx], max_epochs=config.max_epochs,
        patience=config.patience, batch_size=config.batch_size, verbose=verbose, sample_weight=w_fit,
        val_sample_weight=row_weights(data.subset(val_idx), labels, class_weight=config.class_weight)
        if set(data.y[val_idx].tolist()) == set(labels) else None, seed=config.seed,
    )
    layers, arrays = export_layers(model)
    network = network_from_layers(layers, arrays)
    metrics = {
        "train_accuracy": _accuracy(network.predict_proba(x_train), y[train_idx]),
        "validation_accuracy": _accuracy(network.predict_proba(x_val), y[val_idx]),
        "validation_loss": float(min(result["history"]["val_loss"])),
        "validation_tracks": int(len(set(data.groups[val_idx].tolist()))),
        "note": "validation tracks also decided when training stopped; see `genre-id evaluate` for held-out test figures",
    }
    if config.refit:
        x_all, y_all = data.x, y
        if deltas is not None:
            x_all, y_all = augment_rows(data.x, y, deltas.values, copies=config.augment_copies, seed=config.seed)
        w_all = row_weights(data, labels, class_weight=config.class_weight)
        model = network_for(data.x)
        fit_epochs(model, x_all, y_all, epochs=result["best_epoch"], batch_size=config.batch_size,
                   sample_weight=np.tile(w_all, len(y_all) // len(w_all)), verbose=verbose, seed=config.seed)
        layers, arrays = export_layers(model)
        network = network_from_layers(layers, arrays)
        metrics["train_accuracy_refit"] = _accuracy(network.predict_proba(data.x), y)
        metrics["note"] = ("validation figures are those of the network that chose the number of epochs; the model "
                           "was then refit on every track; see `genre-id evaluate` for held-out test figures")
    meta = model_metadata(
        name=name, version=version, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        labels=labels, feature_set=data.feature_set.to_dict(), window_seconds=data.config.window_seconds,
        min_seconds=data.config.min_seconds, layers=layers,
        network_config={**asdict(config), "hidden": list(config.hidden)},
        training={
            "command": command,
            "data": data.summary(),
            "augmentation": None if deltas is None else {**deltas.summary(), "copies": config.augment_copies},
            "best_epoch": result["best_epoch"],
            "epochs_run": result["epochs_run"],
        },
        metrics=metrics,
        library_versions=library_versions(),
    )
    if extra_metadata:
        meta.update(extra_metadata)
    return ModelBundle(metadata=meta, network=network, keras_model=model, pool=training_pool(data, deltas))


def _half(x: np.ndarray) -> np.ndarray:
    """``x`` as float16 where that keeps it finite (a tenth of the size of the audio features), else float32."""
    small = np.asarray(x, dtype=np.float16)
    return small if np.isfinite(small).all() else np.asarray(x, dtype=np.float32)


def training_pool(data: Dataset, deltas: Deltas | None = None) -> dict[str, np.ndarray]:
    """What a model keeps of its training data so it can be extended later: feature vectors, never audio.

    See :func:`genre_id.model.load_pool` for the arrays.
    """
    pool = {"x": _half(data.x), "y": data.y.astype(str), "groups": data.groups.astype(str),
            "units": data.units.astype(str), "weights": data.weights.astype(np.float32)}
    if deltas is not None and len(deltas.values):
        pool.update(deltas=_half(deltas.values), delta_tracks=deltas.tracks.astype(str),
                    delta_perturbations=deltas.perturbations.astype(str))
    return pool
