"""Teach a trained model your music: keep what it learnt, add your recordings and labels.

A model folder keeps the feature vectors it was trained on (``pool.npz``,
never audio; see :func:`genre_id.model.load_pool`).  Extending retrains each
member on those vectors plus the user's recordings, measured with the
member's own feature set, with the member's own training settings; labels
the model never had ("k-pop", "bossa nova") become new outputs.  An
ensemble keeps its fusion rule, member weights and temperature.  The new
model is, like every model, evaluated by numpy alone.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .augment import Deltas
from .dataset import Dataset, concat
from .errors import DatasetError
from .features import get_feature_set
from .files import PathLike
from .model import Ensemble, ModelBundle, load_bundle, load_pool, save_bundle, save_ensemble
from .parallel import FileFailure
from .training import TrainConfig, fit

__all__ = ["ExtendResult", "pool_dataset", "extend_bundle", "extend_model"]

#: Track ids of the stored pool are prefixed with this, so they never collide with the user's.
POOL_PREFIX = "pool"


@dataclass(frozen=True)
class ExtendResult:
    """What :func:`extend_model` made: the model folder, its labels, and what was added."""

    path: Path
    labels: list[str]
    new_labels: list[str]
    added: dict[str, int]  #: recordings added per label
    failures: list[FileFailure]


def pool_dataset(bundle: ModelBundle) -> tuple[Dataset, Deltas | None]:
    """The training features a model folder stores, as a dataset (and its augmentation deltas, if any)."""
    if bundle.path is None:
        raise DatasetError(f"model '{bundle.name}' has no folder to read its training features from")
    pool = load_pool(bundle.path)
    fs = get_feature_set(bundle.feature_set)
    if pool["x"].shape[1] != fs.n_features:
        raise DatasetError(f"{bundle.path}: its stored training features have {pool['x'].shape[1]} columns, "
                           f"feature set '{fs.name}' has {fs.n_features}")
    data = Dataset(pool["x"], pool["y"], np.char.add(f"{POOL_PREFIX}/", pool["groups"]), fs,
                   source=f"{bundle.name} training features", config=bundle.analysis, units=pool["units"],
                   weights=pool["weights"].astype(np.float64))
    deltas = None
    if "deltas" in pool:
        deltas = Deltas(pool["deltas"], np.char.add(f"{POOL_PREFIX}/", pool["delta_tracks"]),
                        pool["delta_perturbations"], fs.name)
    return data, deltas


def _config_of(bundle: ModelBundle, seed: int) -> TrainConfig:
    """The training settings ``bundle`` was made with (those this genre-id knows), with ``seed``."""
    stored = dict(bundle.metadata.get("network", {}).get("config", {}))
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    settings = {k: v for k, v in stored.items() if k in known}
    if "hidden" in settings:
        settings["hidden"] = tuple(int(u) for u in settings["hidden"])
    return TrainConfig(**{**settings, "seed": seed})


def extend_bundle(bundle: ModelBundle, added: Dataset, *, name: str, version: str, command: str = "",
                  seed: int = 0) -> ModelBundle:
    """``bundle`` retrained on its stored training features plus ``added`` (measured with its feature set)."""
    pool, deltas = pool_dataset(bundle)
    data = concat([pool, added])
    return fit(data, config=_config_of(bundle, seed), deltas=deltas, name=name, version=version, command=command,
               extra_metadata={"extended_from": {"name": bundle.name, "version": bundle.version}})


def extend_model(
    base: PathLike,
    load: Callable[[str], Dataset],
    target: PathLike,
    *,
    name: str,
    version: str = "1",
    command: str = "",
    seed: int = 0,
) -> ExtendResult:
    """Extend the model folder ``base`` with the recordings ``load(feature_set_name)`` returns; save it at ``target``.

    ``load`` is called once, with the model's feature set (an ensemble's
    combined one, ``"levelfree+musicnn-msd"``, so each recording is decoded
    once for all members), and returns the user's labelled recordings
    measured with it.  The
    model at ``target`` is written atomically; ``base`` is never changed.
    """
    model = load_bundle(base)
    members = model.members if isinstance(model, Ensemble) else [model]
    data = load("+".join(str(m.feature_set["name"]) for m in members))
    failures: list[FileFailure] = list(data.failures)
    added: Counter[str] = Counter(dict(zip(data.groups.tolist(), data.y.tolist())).values())
    trained = [extend_bundle(member, view, name=f"{name}-{member.feature_set['name']}" if len(members) > 1 else name,
                             version=version, command=command, seed=seed)
               for member, view in zip(members, data.views())]
    labels = trained[0].labels
    if isinstance(model, Ensemble):
        with tempfile.TemporaryDirectory(prefix="genre-id-extend-") as tmp:
            folders = [save_bundle(b, Path(tmp) / f"m{i}") for i, b in enumerate(trained)]
            path = save_ensemble(folders, target, fusion=model.fusion, weights=model.fusion_weights,
                                 temperature=model.temperature,
                                 metadata={"name": name, "version": version, "training": {"command": command},
                                           "extended_from": {"name": model.name, "version": model.version}})
    else:
        path = save_bundle(trained[0], target)
    return ExtendResult(path=Path(path), labels=labels, new_labels=sorted(set(labels) - set(model.labels)),
                        added=dict(added), failures=failures)
