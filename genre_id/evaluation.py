"""Honest evaluation: train on some tracks, test on others, and say how good that is.

Two protocols, both split by track (all windows of a track stay on one side):

* a fixed split (:func:`evaluate_split`), such as the fault-filtered,
  artist-disjoint GTZAN lists: the headline figure;
* stratified k-fold cross-validation grouped by track (:func:`evaluate_folds`).

Each is repeated over seeds; the result carries the mean and standard
deviation of accuracy, per-genre precision, recall and F1, the confusion
matrix, the expected calibration error, and the permutation importance of
each feature group on the test data.  Nothing here ever looks at test data
while training: early stopping uses a validation share of the training
tracks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from .augment import Deltas, perturbed_features
from .dataset import Dataset
from .errors import DatasetError
from .training import TrainConfig, default_config, fit

__all__ = [
    "EvaluationResult",
    "expected_calibration_error",
    "group_permutation_importance",
    "evaluate_split",
    "evaluate_folds",
    "score_predictions",
]


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, *, bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence, with equal-width bins.

    The mean over bins of ``|accuracy - confidence|``, weighted by the share of
    predictions in each bin (Guo et al., 2017).
    """
    conf = proba.max(axis=1)
    right = proba.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(right[inside].mean() - conf[inside].mean())
    return float(ece)


def group_permutation_importance(
    predict_proba: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    groups: Mapping[str, Sequence[int]],
    *,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Drop in accuracy when the columns of each group are shuffled together across rows.

    Shuffling a group's columns with one permutation keeps the group's own
    structure and breaks only its link to the genre.  Returns the mean drop
    over ``repeats`` shuffles, per group, largest first.
    """
    rng = np.random.default_rng(seed)
    base = float(np.mean(predict_proba(x).argmax(axis=1) == y))
    out = {}
    for name, cols in groups.items():
        drops = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, list(cols)] = x[rng.permutation(len(x))][:, list(cols)]
            drops.append(base - float(np.mean(predict_proba(shuffled).argmax(axis=1) == y)))
        out[name] = float(np.mean(drops))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


@dataclass
class EvaluationResult:
    """What one protocol measured, over all its seeds.

    ``accuracies`` has one entry per seed (the accuracy of that seed over all
    its test predictions); the per-genre figures, confusion matrix and ECE
    pool every seed's predictions.
    """

    protocol: str
    labels: list[str]
    accuracies: list[float]
    y_true: np.ndarray
    proba: np.ndarray
    importance: dict[str, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    #: Per prediction, the label indices also counted right (the true one and any
    #: neighbouring genre where the label is debatable); None: only the true one.
    accept: list[frozenset[int]] | None = None

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.accuracies))

    def _recall_mean(self, right: np.ndarray) -> float:
        present = np.unique(self.y_true)
        return float(np.mean([right[self.y_true == k].mean() for k in present])) if len(present) else float("nan")

    @property
    def balanced_accuracy(self) -> float:
        """The mean over genres (those in the test data) of their recall."""
        return self._recall_mean(self.proba.argmax(axis=1) == self.y_true)

    @property
    def lenient_balanced_accuracy(self) -> float:
        """:attr:`balanced_accuracy` where an accepted neighbouring genre also counts as right."""
        if self.accept is None:
            return self.balanced_accuracy
        pred = self.proba.argmax(axis=1)
        return self._recall_mean(np.array([p in ok for p, ok in zip(pred.tolist(), self.accept)], dtype=bool))

    @property
    def mean_confidence_wrong(self) -> float:
        """The mean top probability of the wrong answers (NaN when none is wrong)."""
        wrong = self.proba.argmax(axis=1) != self.y_true
        return float(self.proba.max(axis=1)[wrong].mean()) if wrong.any() else float("nan")

    @property
    def accuracy_std(self) -> float:
        return float(np.std(self.accuracies))

    @property
    def ece(self) -> float:
        return expected_calibration_error(self.proba, self.y_true)

    def confusion(self) -> np.ndarray:
        """Counts: rows are true genres, columns predicted, in :attr:`labels` order."""
        from sklearn.metrics import confusion_matrix

        return confusion_matrix(self.y_true, self.proba.argmax(axis=1), labels=range(len(self.labels)))

    def per_genre(self) -> dict[str, dict[str, float]]:
        from sklearn.metrics import precision_recall_fscore_support

        p, r, f, n = precision_recall_fscore_support(
            self.y_true, self.proba.argmax(axis=1), labels=range(len(self.labels)), zero_division=0
        )
        return {g: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(n[i])}
                for i, g in enumerate(self.labels)}

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "accuracy": round(self.accuracy, 4),
            "accuracy_std": round(self.accuracy_std, 4),
            "accuracies": [round(a, 4) for a in self.accuracies],
            "ece": round(self.ece, 4),
            "balanced_accuracy": round(self.balanced_accuracy, 4),
            "lenient_balanced_accuracy": round(self.lenient_balanced_accuracy, 4),
            "mean_confidence_wrong": round(self.mean_confidence_wrong, 4),
            "per_genre": {g: {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}
                          for g, m in self.per_genre().items()},
            "labels": self.labels,
            "confusion": self.confusion().tolist(),
            "importance": {k: round(v, 4) for k, v in self.importance.items()},
            **self.details,
        }


def _column_groups(data: Dataset) -> dict[str, list[int]]:
    fs = data.feature_set
    index = {c: i for i, c in enumerate(fs.columns)}
    if fs.groups:
        return {g: [index[c] for c in cols] for g, cols in fs.groups.items()}
    return {c: [i] for c, i in index.items()}


def _run(
    data: Dataset,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    config: TrainConfig | None,
    seed: int,
    importance: bool,
    deltas: Deltas | None,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Train on each split's first part, predict its second; return pooled (y, proba, importance)."""
    labels = data.labels
    y_all = data.encoded(labels)
    config = default_config(data.feature_set) if config is None else config
    ys, probas, imps = [], [], []
    for train_idx, test_idx in splits:
        train = data.subset(train_idx)
        if train.labels != labels:
            raise DatasetError("every genre must have training tracks in every split")
        fold_deltas = None if deltas is None else deltas.without(data.groups[test_idx].tolist())
        bundle = fit(train, config=TrainConfig(**{**config.__dict__, "seed": seed}), deltas=fold_deltas)
        proba = bundle.network.predict_proba(data.x[test_idx])
        ys.append(y_all[test_idx])
        probas.append(proba)
        if importance:
            imps.append(group_permutation_importance(
                bundle.network.predict_proba, data.x[test_idx], y_all[test_idx], _column_groups(data), seed=seed
            ))
    mean_imp = {k: float(np.mean([d[k] for d in imps])) for k in imps[0]} if imps else {}
    return np.concatenate(ys), np.vstack(probas), mean_imp


def _collect(protocol: str, data: Dataset, runs: list, details: dict) -> EvaluationResult:
    accs = [float(np.mean(p.argmax(axis=1) == y)) for y, p, _ in runs]
    imp_keys = runs[0][2].keys()
    importance = {k: float(np.mean([r[2][k] for r in runs])) for k in imp_keys}
    return EvaluationResult(
        protocol=protocol, labels=data.labels, accuracies=accs,
        y_true=np.concatenate([r[0] for r in runs]), proba=np.vstack([r[1] for r in runs]),
        importance=dict(sorted(importance.items(), key=lambda kv: -kv[1])), details=details,
    )


def evaluate_split(
    data: Dataset,
    train_tracks: Sequence[str],
    test_tracks: Sequence[str],
    *,
    config: TrainConfig | None = None,
    seeds: Sequence[int] = (0,),
    importance: bool = True,
    protocol: str = "split",
    deltas: Deltas | None = None,
) -> EvaluationResult:
    """Train on ``train_tracks``, test on ``test_tracks`` (track ids as in :func:`~genre_id.dataset.track_id`)."""
    train_idx = np.flatnonzero(np.isin(data.groups, list(train_tracks)))
    test_idx = np.flatnonzero(np.isin(data.groups, list(test_tracks)))
    if not len(train_idx) or not len(test_idx):
        raise DatasetError(
            f"the split lists match {len(set(data.groups[train_idx]))} training and "
            f"{len(set(data.groups[test_idx]))} test tracks of {data.source}; both must be non-empty"
        )
    overlap = set(data.groups[train_idx]) & set(data.groups[test_idx])
    if overlap:
        raise DatasetError(f"{len(overlap)} tracks are in both the training and the test list, e.g. {min(overlap)}")
    runs = [_run(data, [(train_idx, test_idx)], config=config, seed=s, importance=importance, deltas=deltas)
            for s in seeds]
    details = {
        "train_tracks": len(set(data.groups[train_idx])),
        "test_tracks": len(set(data.groups[test_idx])),
        "unmatched": {"train": len(set(train_tracks) - set(data.groups)), "test": len(set(test_tracks) - set(data.groups))},
        "seeds": list(seeds),
    }
    return _collect(protocol, data, runs, details)


def evaluate_folds(
    data: Dataset,
    *,
    folds: int = 10,
    config: TrainConfig | None = None,
    seeds: Sequence[int] = (0,),
    importance: bool = True,
    deltas: Deltas | None = None,
) -> EvaluationResult:
    """Stratified ``folds``-fold cross-validation, grouped by track, repeated for each seed."""
    from sklearn.model_selection import StratifiedGroupKFold

    runs = []
    for s in seeds:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=s)
        splits = list(splitter.split(data.x, data.y, data.groups))
        runs.append(_run(data, splits, config=config, seed=s, importance=importance, deltas=deltas))
    details = {"folds": folds, "tracks": len(set(data.groups.tolist())), "seeds": list(seeds)}
    return _collect(f"{folds}-fold grouped CV", data, runs, details)


def prediction_stability(
    recognizer,
    paths: Sequence[str],
    *,
    perturbations: Sequence[str] | None = None,
    cache_dir: str | None = None,
    workers: int | None = None,
) -> dict:
    """How often the recognizer's answer survives each perturbation of :data:`genre_id.perturb.PERTURBATIONS`.

    Returns, per perturbation, the share of clips whose genre is unchanged,
    the accuracy of the unperturbed answers (the folder names the genre),
    and the genre of every clip under every change.
    """
    import os

    from .perturb import PERTURBATIONS

    names = list(perturbations or PERTURBATIONS)
    feats = perturbed_features(paths, feature_set=recognizer.feature_set.name, perturbations=names,
                               cache_dir=cache_dir, workers=workers)
    labels = recognizer.labels
    genres, skipped = {}, []
    for p, f in zip(paths, feats):
        if isinstance(f, str):  # a clip that could not be used: reported, not fatal
            skipped.append(f)
            continue
        rows = np.vstack([f[n] for n in ["original", *names]])
        genres[str(p)] = dict(zip(["original", *names], (labels[i] for i in recognizer.bundle.predict_proba(rows).argmax(1))))
    truth = {p: os.path.basename(os.path.dirname(p)) for p in genres}
    return {
        "clips": len(genres),
        "skipped": skipped,
        "accuracy_unperturbed": float(np.mean([genres[p]["original"] == truth[p] for p in truth])),
        "unchanged": {n: float(np.mean([genres[p][n] == genres[p]["original"] for p in truth])) for n in names},
        "genres": genres,
    }


def score_predictions(
    labels: Sequence[str],
    proba: np.ndarray,
    truth: Sequence[str],
    *,
    accept: Sequence[Sequence[str]] | None = None,
    protocol: str = "labelled folder",
    details: dict | None = None,
) -> EvaluationResult:
    """Score an existing model's clip probabilities ``proba`` (rows in ``truth`` order) against the true labels.

    ``accept`` lists, per clip, the labels also counted right by
    :attr:`EvaluationResult.lenient_balanced_accuracy`.  A true label the
    model does not know is a :class:`~genre_id.errors.DatasetError`.
    """
    index = {g: i for i, g in enumerate(labels)}
    unknown = sorted({t for t in truth} - set(index))
    if unknown:
        raise DatasetError(f"the model does not know the label(s) {', '.join(unknown)} "
                           f"(it names: {', '.join(labels)})")
    y = np.asarray([index[t] for t in truth], dtype=int)
    ok = None
    if accept is not None:
        ok = [frozenset([index[t]] + [index[a] for a in extra if a in index]) for t, extra in zip(truth, accept)]
    proba = np.asarray(proba, dtype=np.float64).reshape(len(y), len(labels))
    accuracy = float(np.mean(proba.argmax(axis=1) == y)) if len(y) else float("nan")
    return EvaluationResult(protocol=protocol, labels=list(labels), accuracies=[accuracy], y_true=y, proba=proba,
                            details=dict(details or {}), accept=ok)
