"""Fitting a genre model: track-level validation split, early stopping, metadata.

``fit`` follows scikit-learn's separation of concerns: it takes a
:class:`~genre_id.dataset.Dataset` and returns a
:class:`~genre_id.model.ModelBundle`; saving is :func:`genre_id.model.save_bundle`.
"""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import asdict, dataclass
from importlib import metadata as _md

import numpy as np

from .augment import Deltas, augment_rows
from .dataset import Dataset
from .features import FeatureSet
from .errors import DatasetError
from .model import MODEL_FORMAT, MODEL_FORMAT_VERSION, ModelBundle, network_from_layers

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
    seed: int = 0


#: Per feature set, how its network differs from :class:`TrainConfig`'s defaults.  The
#: ``musicnn-msd`` head is a regularised logistic regression (no hidden layer): with
#: 10 clips per genre, wider heads fit GTZAN's artists and not music (decided on the
#: real-world dev set; README, "The default model").
_CONFIG_FOR = {
    "musicnn-msd": {"hidden": (), "dropout": 0.0, "noise": 0.2, "l2": 1e-2, "label_smoothing": 0.2, "val_block": 0},
}


def default_config(feature_set: str | FeatureSet, **overrides) -> TrainConfig:
    """The training settings for a network on ``feature_set``, with ``overrides``."""
    name = feature_set if isinstance(feature_set, str) else feature_set.name
    return TrainConfig(**{**_CONFIG_FOR.get(name, {}), **overrides})


def track_split(
    y: np.ndarray, groups: np.ndarray, *, val_fraction: float, seed: int, block: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a training and a validation part, stratified by label, grouped by track.

    Each label holds out about ``val_fraction`` of its own tracks, at least
    one, and keeps at least one for training, so no label is lost however
    few tracks it has; a label with fewer than two tracks is refused with a
    :class:`DatasetError` that says so.

    Tracks are held out in units: the artist where the folder says who it is
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
        if all(artists) and len(set(artists)) >= 2:
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


def _accuracy(bundle_proba: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(bundle_proba.argmax(axis=1) == y)) if len(y) else float("nan")


def fit(
    data: Dataset,
    *,
    config: TrainConfig | None = None,
    name: str = "model",
    version: str = "1",
    window_seconds: float = 30.0,
    min_seconds: float = 3.0,
    command: str = "",
    verbose: int = 0,
    deltas: Deltas | None = None,
    extra_metadata: dict | None = None,
) -> ModelBundle:
    """Train a genre network on ``data`` and return it with complete metadata.

    A stratified, track-level share of the data (``config.val_fraction``) is
    held out; training stops when its loss has not improved for
    ``config.patience`` epochs and the best weights are kept.  The reported
    validation accuracy is on those held-out tracks.  With ``deltas``
    (:func:`genre_id.augment.perturbation_deltas`), the training rows (never
    the validation rows) are augmented with ``config.augment_copies`` shifted
    copies.  ``config`` defaults to :func:`default_config` of the data's
    feature set.
    """
    from .keras_backend import build_network, export_layers, fit_network

    config = default_config(data.feature_set) if config is None else config
    labels = data.labels
    if len(labels) < 2:
        raise DatasetError(f"{data.source}: needs at least two genres, found {len(labels)}")
    y = data.encoded(labels)
    train_idx, val_idx = track_split(data.y, data.groups, val_fraction=config.val_fraction, seed=config.seed,
                                     block=config.val_block)
    x_train, x_val = data.x[train_idx], data.x[val_idx]
    x_fit, y_fit = x_train, y[train_idx]
    if deltas is not None:
        if deltas.feature_set != data.feature_set.name or deltas.values.shape[1] != data.x.shape[1]:
            raise DatasetError(f"the perturbation deltas were measured with feature set '{deltas.feature_set}', "
                               f"the data with '{data.feature_set.name}'")
        x_fit, y_fit = augment_rows(x_train, y[train_idx], deltas.values, copies=config.augment_copies,
                                    seed=config.seed)
    model = build_network(
        x_train, n_classes=len(labels), hidden=config.hidden, dropout=config.dropout, l2=config.l2,
        learning_rate=config.learning_rate, noise=config.noise, label_smoothing=config.label_smoothing,
        seed=config.seed,
    )
    result = fit_network(
        model, x_fit, y_fit, x_val, y[val_idx], max_epochs=config.max_epochs,
        patience=config.patience, batch_size=config.batch_size, verbose=verbose,
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
    meta = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "name": name,
        "version": version,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "labels": labels,
        "feature_set": data.feature_set.to_dict(),
        "window_seconds": float(window_seconds),
        "min_seconds": float(min_seconds),
        "network": {"layers": layers, "config": {**asdict(config), "hidden": list(config.hidden)}},
        "training": {
            "command": command,
            "data": data.summary(),
            "augmentation": None if deltas is None else {**deltas.summary(), "copies": config.augment_copies},
            "best_epoch": result["best_epoch"],
            "epochs_run": result["epochs_run"],
        },
        "metrics": metrics,
        "library_versions": library_versions(),
    }
    if extra_metadata:
        meta.update(extra_metadata)
    return ModelBundle(metadata=meta, network=network, keras_model=model)
