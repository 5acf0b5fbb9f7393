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
from .model import fuse
from .training import TrainConfig, default_config, fit

__all__ = [
    "EvaluationResult",
    "expected_calibration_error",
    "group_permutation_importance",
    "evaluate_split",
    "evaluate_folds",
    "evaluate_grouped",
    "fit_fusion",
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
    #: Per prediction, the labelled set it comes from (grouped cross-validation), else None.
    origin: np.ndarray | None = None

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

    def intervals(self, *, n: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
        """Bootstrap intervals of the balanced and lenient balanced accuracy.

        The predictions are resampled with replacement within each true
        genre (so every genre keeps its number of examples), ``n`` times;
        the interval holds the middle ``level`` of the resampled figures.
        """
        rng = np.random.default_rng(seed)
        pred = self.proba.argmax(axis=1)
        right = pred == self.y_true
        lenient = right if self.accept is None else np.array(
            [p in ok for p, ok in zip(pred.tolist(), self.accept)], dtype=bool)
        present = [np.flatnonzero(self.y_true == k) for k in np.unique(self.y_true)]
        strict_b, lenient_b = np.empty(n), np.empty(n)
        for i in range(n):
            picks = [rng.choice(rows, size=len(rows)) for rows in present]
            strict_b[i] = np.mean([right[p].mean() for p in picks])
            lenient_b[i] = np.mean([lenient[p].mean() for p in picks])
        lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
        return {"balanced_accuracy": (float(np.percentile(strict_b, lo)), float(np.percentile(strict_b, hi))),
                "lenient_balanced_accuracy": (float(np.percentile(lenient_b, lo)),
                                              float(np.percentile(lenient_b, hi)))}

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
        ci = self.intervals() if len(self.y_true) else {}
        return {
            "protocol": self.protocol,
            "intervals_95": {k: [round(a, 4), round(b, 4)] for k, (a, b) in ci.items()},
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


def _track_proba(proba: np.ndarray, groups: np.ndarray, tracks: Sequence[str]) -> np.ndarray:
    """The mean window probabilities of each track of ``tracks`` (rows of ``proba`` belong to ``groups``)."""
    pos = {t: i for i, t in enumerate(tracks)}
    out = np.zeros((len(tracks), proba.shape[1]))
    n = np.zeros(len(tracks))
    for row, g in enumerate(groups.tolist()):
        i = pos.get(g)
        if i is not None:
            out[i] += proba[row]
            n[i] += 1
    return out / np.maximum(n, 1)[:, None]


def fit_fusion(member_proba: Sequence[np.ndarray], y: np.ndarray, *, rule: str = "geometric-mean",
               weights: bool = True) -> tuple[list[float], float]:
    """Member weights (summing to one) and a temperature that minimise the log-loss of the fused probabilities.

    ``member_proba`` holds each member's held-out probabilities of the same
    examples (true labels ``y``); with ``weights=False`` the members keep
    equal weights and only the temperature is fitted.  The figures come
    from held-out predictions only, so fitting them never sees a model's
    own training data.
    """
    from scipy.optimize import minimize

    m = len(member_proba)

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, float]:
        w = np.exp(theta[:m] - theta[:m].max()) if weights else np.ones(m)
        return w / w.sum(), float(np.exp(theta[m]))

    def loss(theta: np.ndarray) -> float:
        w, t = unpack(theta)
        p = fuse(member_proba, rule=rule, weights=w, temperature=t).astype(np.float64)
        return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))))

    best = min((minimize(loss, np.r_[start, 0.0], method="Nelder-Mead",
                         options={"xatol": 1e-3, "fatol": 1e-6, "maxiter": 400})
                for start in ([0.0] * m, *([[2.0 if i == j else 0.0 for i in range(m)] for j in range(m)]
                                            if weights and m > 1 else []))), key=lambda r: r.fun)
    w, t = unpack(best.x)
    return [round(float(v), 4) for v in w], round(float(min(max(t, 0.05), 20.0)), 4)


def evaluate_grouped(
    members: Sequence[Dataset],
    *,
    scored: Sequence[str],
    folds: int = 5,
    configs: Sequence[TrainConfig | None] | None = None,
    deltas: Sequence[Deltas | None] | None = None,
    seeds: Sequence[int] = (0,),
    fusion: str = "geometric-mean",
    progress: Callable[[str], None] | None = None,
    train_limit: Mapping[str, int] | None = None,
) -> tuple[EvaluationResult, dict]:
    """Grouped K-fold cross-validation of a model of one or more members (views) over the scored tracks.

    ``members`` hold each view's rows: the tracks of the labelled sets named
    in ``scored`` (:attr:`Dataset.origin`), and any other rows (the GTZAN
    table or clips), which are in every training fold and never scored.  The
    scored tracks are split in ``folds`` folds stratified by label and
    grouped by :attr:`Dataset.units` (an artist or a source is never on both
    sides); each fold is predicted by models that saw nothing of its units.
    Each member's probability for a track is the mean over its windows.

    With several members, their held-out probabilities are fused by
    ``fusion`` with member weights and a temperature (:func:`fit_fusion`)
    fitted, for each fold, on the other folds' held-out predictions only
    (cross-fitting), so the reported figures never judge a choice made on
    the same examples.  Returns the result (all seeds pooled; accuracies per
    seed) and a dict with the fusion fitted on every held-out prediction
    (what a final model should use), each member's own figures and the
    held-out probabilities.

    ``train_limit`` (``{label: n}``) simulates teaching a model a label from
    a few recordings: each training fold keeps only ``n`` of that label's
    scored-set tracks (the same ones for every member) and none of its other
    rows (background data included), while every track of it is still scored.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    members = list(members)
    configs = list(configs) if configs is not None else [None] * len(members)
    deltas = list(deltas) if deltas is not None else [None] * len(members)
    labels = sorted(set().union(*[set(m.labels) for m in members]))
    first = members[0]
    in_scored = np.isin(first.origin, list(scored))
    tracks = sorted(set(first.groups[in_scored].tolist()).intersection(
        *[set(m.groups[np.isin(m.origin, list(scored))].tolist()) for m in members[1:]]))
    if not tracks:
        raise DatasetError(f"no track of {', '.join(scored)} to score")
    row_of = {t: i for i, t in enumerate(first.groups.tolist())}
    idx = {g: i for i, g in enumerate(labels)}
    y = np.asarray([idx[first.y[row_of[t]]] for t in tracks])
    units = np.asarray([first.units[row_of[t]] for t in tracks])
    origin = np.asarray([first.origin[row_of[t]] for t in tracks])
    accept_rows = first.subset(np.asarray([row_of[t] for t in tracks]))
    accept = accept_rows.accepted(labels) if set(accept_rows.labels) <= set(labels) else None
    y_all, p_all, accs, member_all = [], [], [], [[] for _ in members]
    for seed in seeds:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        fold_of = np.zeros(len(tracks), dtype=int)
        for k, (_, test) in enumerate(splitter.split(np.zeros(len(tracks)), y, units)):
            fold_of[test] = k
        oof = [np.zeros((len(tracks), len(labels))) for _ in members]
        for k in range(folds):
            test_tracks = [t for t, f in zip(tracks, fold_of) if f == k]
            test_units = set(units[fold_of == k].tolist())
            for j, data in enumerate(members):
                train_mask = ~np.isin(data.units, list(test_units)) & ~np.isin(data.groups, test_tracks)
                for label, n in (train_limit or {}).items():
                    candidates = sorted({t for t, f, g in zip(tracks, fold_of, y) if f != k and labels[g] == label})
                    keep = set(np.random.default_rng(seed + k).permutation(candidates)[:n].tolist())
                    train_mask &= (data.y != label) | np.isin(data.groups, list(keep))
                train = data.subset(train_mask)
                if train.labels != labels:
                    raise DatasetError(f"every label needs training tracks in every fold; fold {k + 1} has none of "
                                       f"{', '.join(sorted(set(labels) - set(train.labels)))}")
                cfg = configs[j] or default_config(data.feature_set)
                fold_deltas = None if deltas[j] is None else deltas[j].without(test_tracks)
                bundle = fit(train, config=TrainConfig(**{**cfg.__dict__, "seed": seed}), deltas=fold_deltas)
                test_mask = np.isin(data.groups, test_tracks)
                proba = bundle.network.predict_proba(data.x[test_mask])
                rows = _track_proba(proba, data.groups[test_mask], tracks)
                oof[j][fold_of == k] = rows[fold_of == k]
                if progress:
                    progress(f"seed {seed}, fold {k + 1}/{folds}, {data.feature_set.name}")
        if len(members) > 1:
            fused = np.zeros((len(tracks), len(labels)))
            for k in range(folds):
                rest = fold_of != k
                w, t = fit_fusion([o[rest] for o in oof], y[rest], rule=fusion)
                fused[fold_of == k] = fuse([o[fold_of == k] for o in oof], rule=fusion, weights=w, temperature=t)
        else:
            fused = oof[0]
        y_all.append(y)
        p_all.append(fused)
        accs.append(float(np.mean(fused.argmax(axis=1) == y)))
        for j in range(len(members)):
            member_all[j].append(oof[j])
    n_seeds = len(seeds)
    details = {"folds": folds, "seeds": list(seeds), "tracks": len(tracks),
               "units": len(set(units.tolist())), "scored_sets": list(scored)}
    result = EvaluationResult(
        protocol=f"{folds}-fold CV grouped by {'/'.join(sorted({u.split(':')[0] for u in units if ':' in u})) or 'track'}",
        labels=labels, accuracies=accs, y_true=np.concatenate(y_all), proba=np.vstack(p_all),
        details=details, accept=None if accept is None else accept * n_seeds, origin=np.tile(origin, n_seeds),
    )
    extra: dict = {"member_results": [], "origin": origin, "tracks": tracks, "y": y,
                   "member_proba": [np.vstack(m) for m in member_all]}
    if len(members) > 1:
        w, t = fit_fusion([np.vstack(o) for o in member_all], np.concatenate(y_all), rule=fusion)
        extra["fusion"] = {"rule": fusion, "weights": w, "temperature": t,
                           "members": [m.feature_set.name for m in members]}
        result.details["fusion"] = extra["fusion"]
    for j, m in enumerate(members):
        r = EvaluationResult(protocol=f"{result.protocol}, member {m.feature_set.name} alone", labels=labels,
                             accuracies=[float(np.mean(p.argmax(axis=1) == y)) for p in member_all[j]],
                             y_true=np.concatenate(y_all), proba=np.vstack(member_all[j]),
                             accept=result.accept, origin=result.origin)
        extra["member_results"].append(r)
    return result, extra


def rows_of(result: EvaluationResult, mask: np.ndarray, *, protocol: str) -> EvaluationResult:
    """The figures of ``result`` on the predictions where ``mask`` is true (e.g. one labelled set's rows)."""
    mask = np.asarray(mask, dtype=bool)
    return EvaluationResult(protocol=protocol, labels=result.labels,
                            accuracies=[float(np.mean(result.proba[mask].argmax(axis=1) == result.y_true[mask]))],
                            y_true=result.y_true[mask], proba=result.proba[mask],
                            accept=None if result.accept is None else [a for a, k in zip(result.accept, mask) if k],
                            details={"tracks": int(mask.sum())})


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
