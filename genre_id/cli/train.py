"""``genre-id train`` and ``genre-id evaluate``: a model or a report from a folder of audio or a feature table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import GenreIdError
from ..features import DEFAULT_FEATURE_SET
from ..textsafe import json_line, one_line
from .common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    add_scheduler_argument,
    command_line,
    fail,
    int_at_least,
    missing_extra,
    output_path,
    positive_int,
    saving,
)

__all__ = ["add_parsers", "cmd_train", "cmd_ensemble", "cmd_evaluate"]


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", nargs="?", metavar="DATA_DIR", help="folder with one sub-folder of audio per genre")
    p.add_argument("--table", metavar="FEATURES.csv", help="use a feature table instead of audio")
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=30, help="epochs without better validation loss before stopping")
    p.add_argument("--max-epochs", type=int, default=400)


def add_parsers(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("train", parents=parents, help="train a model from a GTZAN-style folder or a feature table")
    _add_data_arguments(t)
    t.add_argument("--out", required=True, metavar="DIR",
                   help="model folder to write, e.g. models/mine (a symbolic link is followed: its target is written)")
    t.add_argument("--name", help="model name (default: the folder's name)")
    t.add_argument("--model-version", default="1", help="version string stored in the model")
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("ensemble", parents=parents, help="combine trained models (of different feature sets) into one")
    m.add_argument("members", nargs="+", metavar="MODEL_DIR", help="model folders with the same labels and window")
    m.add_argument("--out", required=True, metavar="DIR", help="ensemble folder to write, e.g. models/mine")
    m.add_argument("--fusion", default="geometric-mean", choices=("mean", "geometric-mean"),
                   help="how the members' probabilities are combined (default geometric-mean)")
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
    e.add_argument("--seeds", type=positive_int, default=1, metavar="N", help="repeat with N seeds; report mean and std")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.add_argument("--out", metavar="DIR", help="write report.md, report.json and a confusion-matrix PNG here")
    e.add_argument("--no-importance", action="store_true", help="skip permutation importance")
    e.set_defaults(func=cmd_evaluate)


def _cache_dir(args: argparse.Namespace) -> str | None:
    """The feature cache folder: none with ``--no-cache``, else ``--cache-dir``, else the default location."""
    if args.no_cache:
        return None
    if args.cache_dir:
        return args.cache_dir
    from ..locations import default_cache_dir

    return str(default_cache_dir())


def _load_data(args: argparse.Namespace):
    """The dataset named by ``DATA_DIR`` or ``--table``; each skipped file is reported."""
    from ..dataset import load_folder, read_table

    if bool(args.data_dir) == bool(args.table):
        raise GenreIdError(f"{args.command} needs either DATA_DIR or --table FEATURES.csv (not both)")
    if args.table:
        data = read_table(args.table, feature_set=args.feature_set)
    else:
        data = load_folder(
            args.data_dir, feature_set=args.feature_set, window_seconds=args.window_seconds,
            cache_dir=_cache_dir(args), workers=args.workers, progress=not args.quiet,
        )
    for failure in data.failures:
        fail(f"skipped {failure.message}")
    if args.verbose:
        print(f"{data.summary()}; feature cache: {one_line(_cache_dir(args) or 'off')}", file=sys.stderr, flush=True)
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

    return default_config(args.feature_set, seed=args.seed, patience=args.patience, max_epochs=args.max_epochs)


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
    data = _load_data(args)
    name = args.name or Path(args.out).name
    bundle = fit(data, config=_config(args), deltas=_deltas(args), name=name, version=args.model_version,
                 window_seconds=args.window_seconds, command=command_line(args.argv))
    with saving(args.out):
        save_bundle(bundle, target)
    m = bundle.metadata["metrics"]
    s = bundle.metadata["training"]["data"]
    print(
        f"trained '{name}' on {s['tracks']} tracks ({s['rows']} windows, {len(bundle.labels)} genres); "
        f"stopped at epoch {bundle.metadata['training']['best_epoch']}; "
        f"train accuracy {m['train_accuracy']:.3f}, validation accuracy {m['validation_accuracy']:.3f} "
        f"on {m['validation_tracks']} held-out tracks"
    )
    print(f"saved {one_line(args.out)}")
    return EXIT_BAD_INPUT if data.failures else EXIT_OK


def cmd_ensemble(args: argparse.Namespace) -> int:
    from ..model import load_bundle, save_ensemble

    name = args.name or Path(args.out).name
    path = save_ensemble(args.members, args.out, fusion=args.fusion,
                         metadata={"name": name, "version": args.model_version,
                                   "training": {"command": command_line(args.argv)}})
    model = load_bundle(path)
    print(f"saved {path}: an ensemble of {', '.join(model.member_names)} ({model.fusion}), "
          f"{len(model.labels)} genres")
    return EXIT_OK


def _score_model(args: argparse.Namespace) -> int:
    """``evaluate --on DIR``: how an existing model does on labelled clips."""
    from ..dataset import read_labels
    from ..evaluation import score_predictions
    from ..parallel import FileFailure
    from ..recognizer import Recognizer
    from ..report import summary_text, write_report

    rec = Recognizer.load(args.model)
    clips = read_labels(args.on, args.labels)
    rows, kept, failed = [], [], 0
    for clip, (_, pred) in zip(clips, rec.identify_files([c.path for c in clips], workers=args.workers)):
        if isinstance(pred, FileFailure):
            fail(pred.message)
            failed += 1
            continue
        rows.append([pred.probabilities[g] for g in rec.labels])
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    if _need_training_extra("evaluate"):
        return EXIT_BAD_INPUT
    from ..dataset import read_split_list
    from ..evaluation import evaluate_folds, evaluate_split
    from ..report import summary_text, write_report

    if args.on:
        return _score_model(args)
    if args.model or args.labels:
        raise GenreIdError("--model and --labels go with --on DIR")
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
