"""``genre-id train`` and ``genre-id evaluate``: a model or a report from a folder of audio or a feature table."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import GenreIdError
from ..features import DEFAULT_FEATURE_SET
from ..textsafe import json_line, one_line
from .common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    add_scheduler_argument,
    broken_link_problem,
    command_line,
    fail,
    inside,
    int_at_least,
    missing_extra,
    output_path,
    output_problem,
    positive_int,
    saving,
)

__all__ = ["add_parsers", "cmd_train", "cmd_ensemble", "cmd_evaluate"]


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="*", metavar="DATA",
                   help="labelled recordings: a folder with one sub-folder of audio per label, a folder with a "
                        "labels.csv, or a labels CSV (columns path, genre; optional accept, group, weight); "
                        "several may be given")
    p.add_argument("--table", metavar="FEATURES.csv",
                   help="a feature table with the GTZAN columns (alone, or beside DATA for feature sets it holds)")
    p.add_argument("--group-by", default="group", metavar="COLUMN[,COLUMN]",
                   help="labels-file column(s) naming what stays on one side of a split (an artist, a source); "
                        "each file uses the first it has (default: group); without one, a track is its own group")
    p.add_argument("--feature-set", default=DEFAULT_FEATURE_SET, help=f"feature set (default {DEFAULT_FEATURE_SET})")
    p.add_argument("--window-seconds", type=float, default=30.0, help="analysis window, seconds (default 30)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="extraction processes (default: all cores)")
    add_scheduler_argument(p)
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="feature cache folder (default: $GENRE_ID_CACHE_DIR, else the user cache folder; "
                        "see 'genre-id cache info')")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--augment-from", metavar="CLIPS_DIR",
                   help="GTZAN-style folder of real clips: teach the model what gain, mastering, mp3, resampling "
                        "and band-limiting do to their features (feature-space augmentation)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the split and the network (default 0)")
    p.add_argument("--patience", type=int, default=30, help="epochs without better validation loss before stopping")
    p.add_argument("--max-epochs", type=int, default=400, help="the most epochs to train (default 400)")
    p.add_argument("--class-weight", choices=("balanced", "none"), default="balanced",
                   help="balanced (default): every label weighs the same in training whatever its number of "
                        "recordings; none: every recording counts once")


def add_parsers(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("train", parents=parents, help="train a model from a GTZAN-style folder or a feature table")
    _add_data_arguments(t)
    t.add_argument("--out", required=True, metavar="DIR",
                   help="model folder to write, e.g. models/mine (a symbolic link is followed: its target is written)")
    t.add_argument("--name", help="model name (default: the folder's name)")
    t.add_argument("--model-version", default="1", help="version string stored in the model")
    t.add_argument("--extend", metavar="MODEL",
                   help="keep what MODEL ('default': the shipped one) learnt and add DATA, new labels included: "
                        "each member is retrained on its stored training features plus DATA")
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("ensemble", parents=parents, help="combine trained models (of different feature sets) into one")
    m.add_argument("members", nargs="+", metavar="MODEL_DIR", help="model folders with the same labels and window")
    m.add_argument("--out", required=True, metavar="DIR", help="ensemble folder to write, e.g. models/mine")
    m.add_argument("--fusion", default="geometric-mean", choices=("mean", "geometric-mean"),
                   help="how the members' probabilities are combined (default geometric-mean)")
    m.add_argument("--weights", metavar="W[,W...]",
                   help="one weight per member in the fusion (default: equal), e.g. from 'evaluate --cv'")
    m.add_argument("--temperature", type=float, default=1.0, metavar="T",
                   help="calibration temperature applied after fusing (default 1; above 1 softens, below sharpens)")
    m.add_argument("--name", help="model name (default: the folder's name)")
    m.add_argument("--model-version", default="1", help="version string stored in the model")
    m.set_defaults(func=cmd_ensemble)

    e = sub.add_parser("evaluate", parents=parents,
                       help="train and test with an honest protocol, or score a model; write a report")
    _add_data_arguments(e)
    e.add_argument("--model", metavar="DIR", help="with --on: the model to score (default: the shipped one)")
    e.add_argument("--on", metavar="DIR", help="score an existing model on the labelled clips of DIR "
                                               "(one sub-folder per label, or --labels)")
    e.add_argument("--labels", metavar="CSV", help="with --on: labels file (columns path, genre and optionally "
                                                    "accept: other labels counted right, separated by |)")
    how = e.add_mutually_exclusive_group()
    how.add_argument("--split", nargs=2, metavar=("TRAIN_LIST[,MORE]", "TEST_LIST"),
                     help="train on the tracks of the first list(s), test on the second's")
    how.add_argument("--folds", type=int_at_least(2), default=10, metavar="K",
                     help="stratified K-fold cross-validation grouped by track (default 10)")
    e.add_argument("--augment-members", metavar="FEATURE_SET[,...]",
                   help="with --cv, a combined --feature-set and --augment-from: augment only these members "
                        "(default: every member)")
    how.add_argument("--cv", type=int_at_least(2), metavar="K",
                     help="grouped K-fold cross-validation over the recordings of DATA (grouped by --group-by); "
                          "--also-train and --table data join every training fold; a combined --feature-set "
                          "(levelfree+musicnn-msd) evaluates an ensemble with member weights and a temperature "
                          "fitted on held-out predictions")
    e.add_argument("--also-train", action="append", default=[], metavar="DATA",
                   help="with --cv: labelled recordings in every training fold, never scored (repeatable); "
                        "members whose feature set --table holds use the table instead")
    e.add_argument("--seeds", type=positive_int, default=1, metavar="N", help="repeat with N seeds; report mean and std")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.add_argument("--out", metavar="DIR", help="write report.md, report.json and a confusion-matrix PNG here")
    e.add_argument("--no-importance", action="store_true", help="skip permutation importance")
    e.set_defaults(func=cmd_evaluate)


def _cache_dir(args: argparse.Namespace) -> str | None:
    """The feature cache folder: none with ``--no-cache``, else ``--cache-dir``, else the default location.

    A folder that cannot be written is said once (one note on stderr) and not used.
    """
    if args.no_cache:
        return None
    if getattr(args, "_cache_checked", False):
        return args._cache_dir
    from ..cache import cache_problem
    from ..locations import default_cache_dir

    folder = args.cache_dir or str(default_cache_dir())
    problem = cache_problem(folder)
    if problem:
        print(f"note: feature cache {one_line(folder)}: {problem}; features are not cached", file=sys.stderr,
              flush=True)
        folder = None
    args._cache_checked, args._cache_dir = True, folder
    return folder


def _group_by(args: argparse.Namespace) -> list[str]:
    return [c.strip() for c in args.group_by.split(",") if c.strip()]


def _analysis(args: argparse.Namespace, feature_set: str):
    """How audio is cut for ``feature_set`` (``--window-seconds`` windows at the set's rate)."""
    from ..config import AnalysisConfig
    from ..features import get_feature_set

    return AnalysisConfig.for_window(sample_rate=get_feature_set(feature_set).sample_rate,
                                     window_seconds=args.window_seconds)


def _load_sets(args: argparse.Namespace, specs: list[str], feature_set: str):
    """The features of the labelled sets ``specs`` (several sets become one dataset)."""
    from ..dataset import load_sets

    return load_sets(specs, feature_set=feature_set, group_by=_group_by(args), config=_analysis(args, feature_set),
                     cache_dir=_cache_dir(args), workers=args.workers, progress=not args.quiet)


def _table_reads(args: argparse.Namespace, feature_set: str) -> bool:
    """Whether ``--table`` is given and holds ``feature_set`` (measured from the table's columns)."""
    from ..features import get_feature_set

    return bool(args.table) and not get_feature_set(feature_set).from_audio_only


def _report_failures(args: argparse.Namespace, data) -> None:
    for failure in data.failures:
        fail(f"skipped {failure.message}")
    if args.verbose:
        print(f"{data.summary()}; feature cache: {one_line(_cache_dir(args) or 'off')}", file=sys.stderr, flush=True)


def _load_data(args: argparse.Namespace, feature_set: str | None = None, *, also: list[str] | None = None):
    """The dataset named by ``DATA`` and ``--table`` (and ``also``: more sets); each skipped file is reported."""
    from ..dataset import concat, read_table

    feature_set = feature_set or args.feature_set
    if not args.data and not args.table:
        raise GenreIdError(f"{args.command} needs labelled recordings (DATA) or --table FEATURES.csv")
    parts = []
    table = _table_reads(args, feature_set)
    if args.table and not table and not args.data:
        raise GenreIdError(f"feature set '{feature_set}' is measured from audio only; give DATA, not only --table")
    if table:
        parts.append(read_table(args.table, feature_set=feature_set))
    specs = list(args.data) + ([] if table else list(also or []))
    if specs:
        parts.append(_load_sets(args, specs, feature_set))
    data = concat(parts)
    _report_failures(args, data)
    return data


def _deltas(args: argparse.Namespace):
    """Perturbation deltas measured on the clips of ``--augment-from`` (None without it)."""
    if not args.augment_from:
        return None
    from ..augment import folder_deltas

    return folder_deltas(args.augment_from, feature_set=args.feature_set,
                         cache_dir=_cache_dir(args), workers=args.workers)


def _config(args: argparse.Namespace):
    from ..training import default_config

    return default_config(args.feature_set, seed=args.seed, patience=args.patience, max_epochs=args.max_epochs,
                          class_weight=args.class_weight)


def _need_training_extra(command: str) -> bool:
    """Print the one line saying how to install the ``train`` extra when it is missing; True then."""
    message = missing_extra(command)
    if message:
        fail(message)
    return message is not None


def cmd_train(args: argparse.Namespace) -> int:
    if _need_training_extra("train"):
        return EXIT_BAD_INPUT
    from ..model import check_model_target, save_bundle
    from ..training import fit

    target = output_path(args.out)  # a link is followed, never replaced
    check_model_target(target)  # refuse a bad --out before the work, not after it
    if args.extend:
        return _extend(args, target)
    data = _load_data(args)
    name = args.name or Path(args.out).name
    bundle = fit(data, config=_config(args), deltas=_deltas(args), name=name, version=args.model_version,
                 command=command_line(args.argv))
    with saving(args.out):
        save_bundle(bundle, target)
    _print_trained(bundle, name)
    print(f"saved {one_line(args.out)}")
    return EXIT_BAD_INPUT if data.failures else EXIT_OK


def _print_trained(bundle, name: str) -> None:
    m = bundle.metadata["metrics"]
    s = bundle.metadata["training"]["data"]
    t = bundle.metadata["training"]
    print(
        f"trained '{one_line(name)}' on {s['tracks'] - m['validation_tracks']} tracks and validated on "
        f"{m['validation_tracks']} ({s['rows']} windows, {len(bundle.labels)} labels); "
        f"best epoch {t['best_epoch']} of {t['epochs_run']}; "
        f"train accuracy {m['train_accuracy']:.3f}, validation accuracy {m['validation_accuracy']:.3f}"
    )


def _extend(args: argparse.Namespace, target: Path) -> int:
    """``train --extend MODEL DATA``: every member retrained on its stored training features plus DATA."""
    from ..extend import extend_model
    from ..model import DEFAULT_MODEL_DIR

    if not args.data:
        raise GenreIdError("--extend needs labelled recordings (DATA) to add")
    if args.table:
        raise GenreIdError("--extend adds recordings (DATA), not a feature table")
    base = DEFAULT_MODEL_DIR if args.extend == "default" else Path(args.extend)
    if inside(target, base) or inside(base, target):  # the base is read while the new model is written
        what = "is" if inside(base, target) and inside(target, base) else "is inside" if inside(target, base) \
            else "holds"
        raise GenreIdError(f"{args.out}: {what} the model being extended; write the extended model to another folder")

    def load(feature_set: str):
        return _load_sets(args, list(args.data), feature_set)

    name = args.name or Path(args.out).name
    with saving(args.out):
        result = extend_model(base, load, target, name=name, version=args.model_version,
                              command=command_line(args.argv), seed=args.seed)
    for failure in result.failures:
        fail(f"skipped {failure.message}")
    added = ", ".join(f"{one_line(g)} {n}" for g, n in sorted(result.added.items()))
    print(f"extended {one_line(args.extend)} with {sum(result.added.values())} recordings ({added}); "
          f"{len(result.labels)} labels" + (f", new: {', '.join(one_line(g) for g in result.new_labels)}"
                                            if result.new_labels else ""))
    print(f"saved {one_line(args.out)}")
    return EXIT_BAD_INPUT if result.failures else EXIT_OK


def cmd_ensemble(args: argparse.Namespace) -> int:
    from ..model import load_bundle, save_ensemble

    name = args.name or Path(args.out).name
    weights = None
    if args.weights:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise GenreIdError(f"--weights {one_line(args.weights)}: not a list of numbers") from None
        if len(weights) != len(args.members):
            raise GenreIdError(f"--weights gives {len(weights)} weights for {len(args.members)} members")
    path = save_ensemble(args.members, args.out, fusion=args.fusion, weights=weights, temperature=args.temperature,
                         metadata={"name": name, "version": args.model_version,
                                   "training": {"command": command_line(args.argv)}})
    model = load_bundle(path)
    print(f"saved {path}: an ensemble of {', '.join(model.member_names)} ({model.fusion}), "
          f"{len(model.labels)} genres")
    return EXIT_OK


def _score_model(args: argparse.Namespace) -> int:
    """``evaluate --on DIR``: how an existing model does on labelled clips."""
    from ..dataset import read_labels
    from ..analysis import Analyzer
    from ..evaluation import score_predictions
    from ..report import summary_text, write_report

    analyzer = Analyzer.load(args.model, workers=args.workers)
    rec = analyzer.recognizer
    clips = read_labels(args.on, args.labels)
    rows, kept, failed = [], [], 0
    for clip, report in zip(clips, analyzer.analyze_many([c.path for c in clips])):
        if not report.ok:
            fail(report.error)
            failed += 1
            continue
        rows.append([report.prediction.probabilities[g] for g in rec.labels])
        kept.append(clip)
    if not kept:
        raise GenreIdError(f"{args.on}: no clip could be identified")
    name = Path(args.on).name or str(args.on)
    result = score_predictions(rec.labels, rows, [c.genre for c in kept], accept=[c.accept for c in kept],
                               protocol=f"model on {name}",
                               details={"model": rec.model_info, "clips": len(kept), "failed": failed})
    command = command_line(args.argv)
    if args.json:
        print(json_line({"command": command, **result.to_dict()}))
    else:
        print(summary_text([result]))
    if args.out:
        paths = write_report([result], args.out, title=f"genre-id model scored on {name}", command=command)
        if not args.json:
            print("wrote " + ", ".join(str(p) for p in paths))
    return EXIT_BAD_INPUT if failed else EXIT_OK


def _cross_validate(args: argparse.Namespace) -> int:
    """``evaluate DATA... --cv K``: grouped cross-validation over DATA, the other data in every training fold."""
    from ..dataset import concat, load_sets, read_table, set_names
    from ..evaluation import evaluate_grouped, rows_of
    from ..report import summary_text, write_report

    if not args.data:
        raise GenreIdError("--cv needs the labelled recordings to score (DATA)")
    parts = args.feature_set.split("+")
    augmented = parts if not args.augment_members else [m.strip() for m in args.augment_members.split(",")]
    if set(augmented) - set(parts):
        raise GenreIdError(f"--augment-members names {', '.join(sorted(set(augmented) - set(parts)))}, "
                           f"not a member of --feature-set {args.feature_set}")
    scored = set_names(args.data)
    members, configs, deltas = [], [], []
    for fs in parts:
        one = argparse.Namespace(**{**vars(args), "feature_set": fs,
                                    "augment_from": args.augment_from if fs in augmented else None})
        table = _table_reads(args, fs)  # the table is this view's background data, instead of --also-train
        sets = load_sets(list(args.data) + ([] if table else list(args.also_train)), feature_set=fs,
                         group_by=_group_by(args), config=_analysis(args, fs), cache_dir=_cache_dir(args),
                         workers=args.workers, progress=not args.quiet, prefix=True)
        data = concat([read_table(args.table, feature_set=fs), sets]) if table else sets
        _report_failures(args, data)
        members.append(data)
        configs.append(_config(one))
        deltas.append(_deltas(one))
    seeds = list(range(args.seed, args.seed + args.seeds))

    def note(text: str) -> None:
        if args.verbose:
            print(f"  {text}", file=sys.stderr, flush=True)

    result, extra = evaluate_grouped(members, scored=scored, folds=args.cv, configs=configs, deltas=deltas,
                                     seeds=seeds, progress=note)
    results = [result]
    if len(scored) > 1:
        for name in scored:
            results.append(rows_of(result, result.origin == name, protocol=f"{result.protocol}: {name} rows alone"))
    if len(members) > 1:
        results += extra["member_results"]
    command = command_line(args.argv)
    if args.json:
        print(json_line({"command": command, "results": [r.to_dict() for r in results]}))
    else:
        print(summary_text(results))
        if "fusion" in extra:
            f = extra["fusion"]
            print(f"fusion fitted on every held-out prediction: {f['rule']}, weights "
                  + ", ".join(f"{m} {w:.3f}" for m, w in zip(f["members"], f["weights"]))
                  + f", temperature {f['temperature']:.3f}")
    if args.out:
        with saving(args.out):
            paths = write_report(results, output_path(args.out), title=f"genre-id cross-validation of "
                                 f"{', '.join(scored)}", command=command)
        if not args.json:
            print("wrote " + ", ".join(one_line(p) for p in paths))
    failed = any(m.failures for m in members)
    return EXIT_BAD_INPUT if failed else EXIT_OK


def _report_out_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with ``evaluate --out DIR`` (one line), checked before any work; None when nothing is."""
    from ..dataset import LABELS_FILE
    from ..model import DEFAULT_MODEL_DIR

    problem = broken_link_problem(args.out)
    if problem:
        return problem
    out = output_path(args.out)
    if out.exists() and not out.is_dir():
        return f"{args.out}: is not a folder; --out names the folder to write the report in"
    folders = [args.model or DEFAULT_MODEL_DIR] if args.on else []
    named = [args.on, args.labels, args.table, args.augment_from, *args.data, *args.also_train, *(args.split or ())]
    inputs = [p for p in named if p] + [os.path.join(p, LABELS_FILE) for p in named if p and os.path.isdir(p)]
    if args.split:
        inputs += args.split[0].split(",")
    written = [out / "report.md", out / "report.json", *(out.glob("confusion-*.png") if out.is_dir() else ())]
    return next((p for p in (output_problem(f, inputs=inputs, folders=folders) for f in written) if p), None)


def cmd_evaluate(args: argparse.Namespace) -> int:
    if _need_training_extra("evaluate"):
        return EXIT_BAD_INPUT
    if args.out:
        problem = _report_out_problem(args)
        if problem:
            raise GenreIdError(problem)
    from ..dataset import read_split_list
    from ..evaluation import evaluate_folds, evaluate_split
    from ..report import summary_text, write_report

    if args.on:
        return _score_model(args)
    if args.model or args.labels:
        raise GenreIdError("--model and --labels go with --on DIR")
    if args.cv:
        return _cross_validate(args)
    if args.also_train or args.augment_members:
        raise GenreIdError("--also-train and --augment-members go with --cv K")
    data = _load_data(args)
    seeds = list(range(args.seed, args.seed + args.seeds))
    config = _config(args)
    if args.split:
        train_ids = [t for part in args.split[0].split(",") for t in read_split_list(part)]
        test_ids = read_split_list(args.split[1])
        result = evaluate_split(data, train_ids, test_ids, config=config, seeds=seeds, deltas=_deltas(args),
                                importance=not args.no_importance, protocol=f"split {Path(args.split[1]).name}")
    else:
        result = evaluate_folds(data, folds=args.folds, config=config, seeds=seeds, importance=not args.no_importance,
                                deltas=_deltas(args))
    command = command_line(args.argv)
    if args.json:
        print(json_line({"command": command, "data": data.summary(), **result.to_dict()}))
    else:
        print(summary_text([result]))
    if args.out:
        with saving(args.out):
            paths = write_report([result], output_path(args.out), title=f"genre-id evaluation of {data.source}",
                                 command=command)
        if not args.json:
            print("wrote " + ", ".join(one_line(p) for p in paths))
    return EXIT_BAD_INPUT if data.failures else EXIT_OK
