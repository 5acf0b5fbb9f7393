"""Teaching a table-trained model what real-world changes do to its features.

A feature table has no audio, so its rows cannot be re-encoded as mp3 or
band-limited.  But the *effect* of such a change on the features can be
measured on a few real clips: the difference between a clip's features after
the change and before (a "delta").  Adding deltas drawn at random to the
training rows shows the network how far each change moves a recording, so it
learns decisions that survive them (feature-space augmentation).

Deltas are genre-agnostic (a codec does not know the genre) and carry the
track they came from, so evaluation can leave out those of test tracks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np

from .cache import FeatureCache, file_digest
from .errors import GenreIdError
from .features import get_feature_set
from .parallel import FileFailure, map_files

__all__ = ["Deltas", "perturbed_features", "perturbation_deltas", "folder_deltas", "augment_rows"]


@dataclass(frozen=True)
class Deltas:
    """Feature changes caused by perturbations: one row per (clip, perturbation)."""

    values: np.ndarray
    tracks: np.ndarray  #: the track id each row was measured on
    perturbations: np.ndarray  #: the perturbation of each row
    feature_set: str
    skipped: tuple[str, ...] = ()  #: one line for each clip that could not be used, naming it and why

    def without(self, tracks: Sequence[str]) -> "Deltas":
        """The deltas not measured on ``tracks``."""
        keep = ~np.isin(self.tracks, list(tracks))
        return Deltas(self.values[keep], self.tracks[keep], self.perturbations[keep], self.feature_set, self.skipped)

    def summary(self) -> dict:
        return {"rows": int(len(self.values)), "clips": int(len(set(self.tracks.tolist()))),
                "perturbations": sorted(set(self.perturbations.tolist())), "feature_set": self.feature_set,
                "skipped_clips": list(self.skipped)}


def _clip_features(path: str, *, feature_set: str, names: list[str], cache_dir: str | None) -> dict[str, np.ndarray] | str:
    """Features of the clip at ``path``, unchanged and under each perturbation (first window each).

    Returns one line naming the clip and the problem instead when it cannot
    be decoded or a version of it is silent (it then has no delta to give).
    """
    from .audio import load
    from .config import GTZAN_WINDOW_SECONDS, AnalysisConfig
    from .extraction import extract_samples
    from .perturb import PERTURBATIONS

    fs = get_feature_set(feature_set)
    # "-2": the mp3 perturbation used 64 kbps at 22.05 kHz before (a wrong bit-rate mapping)
    cache = FeatureCache(cache_dir, namespace=f"{fs.name}-v{fs.version}-perturbed-2") if cache_dir else None
    try:
        digest = file_digest(path) if cache else ""
        if cache is not None:
            entry = cache.get(digest)
            if entry is not None and list(entry["names"]) == ["original", *names]:
                return dict(zip(["original", *names], entry["values"]))
        y, sr = load(path, sample_rate=fs.sample_rate)  # the project's decoder: truncation, NaN, rate checks
        versions = {"original": (y, sr)}
        versions.update((n, PERTURBATIONS[n](y, sr)) for n in names)
        config = AnalysisConfig.for_window(sample_rate=fs.sample_rate, window_seconds=GTZAN_WINDOW_SECONDS)
        out = {}
        for n, (z, zsr) in versions.items():  # each clip's first GTZAN-length window
            windows = extract_samples(z, sample_rate=zsr, feature_set=fs, config=config, name=path)
            if windows.silent[0]:
                return f"{path}: its first window is silent ({n}); no perturbation deltas from it"
            out[n] = windows.values[0]
    except GenreIdError as exc:
        return str(exc)
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror or exc})"
    if cache is not None:
        try:
            cache.put(digest, values=np.vstack(list(out.values())), names=np.asarray(list(out)))
        except OSError:
            pass  # a cache that cannot be written (full disk, read-only) only costs time
    return out


def perturbed_features(
    paths: Sequence[str | os.PathLike[str]],
    *,
    feature_set: str,
    perturbations: Sequence[str],
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
) -> list[dict[str, np.ndarray] | str]:
    """For each clip, its features unchanged (``"original"``) and under each perturbation (all cores, cached).

    A clip that cannot be used gives one line naming it and the problem instead.
    A combined feature set (:func:`genre_id.features.combine`) is measured
    part by part, so each part's cache serves it too.
    """
    parts = get_feature_set(feature_set).members
    if parts:
        measured = [perturbed_features(paths, feature_set=part.name, perturbations=perturbations,
                                       cache_dir=cache_dir, workers=workers) for part in parts]
        return [next((m for m in clip if isinstance(m, str)), None)
                or {k: np.concatenate([m[k] for m in clip]) for k in clip[0]} for clip in zip(*measured)]
    measure = partial(_clip_features, feature_set=feature_set, names=list(perturbations),
                      cache_dir=None if cache_dir is None else str(Path(cache_dir)))
    results = map_files(measure, [str(p) for p in paths], workers=workers)
    return [r.message if isinstance(r, FileFailure) else r for r in results]


def perturbation_deltas(
    paths: Sequence[str | os.PathLike[str]],
    *,
    tracks: Sequence[str],
    feature_set: str,
    perturbations: Sequence[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
) -> Deltas:
    """Measure every perturbation's feature delta on each clip in ``paths`` (all cores, cached).

    Clips that cannot be used are skipped and listed in :attr:`Deltas.skipped`.
    """
    from .perturb import PERTURBATIONS

    names = list(perturbations or PERTURBATIONS)
    feats = perturbed_features(paths, feature_set=feature_set, perturbations=names, cache_dir=cache_dir,
                               workers=workers)
    values, track_col, pert_col, skipped = [], [], [], []
    for f, t in zip(feats, tracks):
        if isinstance(f, str):  # a clip that could not be used: reported, not fatal
            skipped.append(f)
            continue
        for n in names:
            values.append(f[n] - f["original"])
            track_col.append(t)
            pert_col.append(n)
    n_features = get_feature_set(feature_set).n_features
    return Deltas(np.asarray(values).reshape(-1, n_features), np.asarray(track_col), np.asarray(pert_col), feature_set,
                  tuple(skipped))


def folder_deltas(
    root: str | os.PathLike[str],
    *,
    feature_set: str,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
) -> Deltas:
    """:func:`perturbation_deltas` of every clip of a GTZAN-style folder (tracks named as in the dataset)."""
    from .dataset import scan_folder, track_id

    items = scan_folder(root)
    return perturbation_deltas(
        [p for p, _ in items], tracks=[track_id(p.relative_to(root).as_posix()) for p, _ in items],
        feature_set=feature_set, cache_dir=cache_dir, workers=workers,
    )


def augment_rows(
    x: np.ndarray, y: np.ndarray, deltas: np.ndarray, *, copies: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` followed by ``copies`` copies of ``x``, each row plus a random delta."""
    if copies <= 0 or not len(deltas):
        return x, y
    rng = np.random.default_rng(seed)
    extra = [x + deltas[rng.integers(len(deltas), size=len(x))] for _ in range(copies)]
    return np.vstack([x, *extra]), np.concatenate([y] * (copies + 1))
