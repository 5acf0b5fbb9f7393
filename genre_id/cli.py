"""The ``genre-id`` command line: a thin layer over the library.

Exit codes: 0 when everything asked for was done, 2 when some input could
not be used (the others are still reported), 1 for an internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

from .errors import GenreIdError
from .features import DEFAULT_FEATURE_SET

#: Exit codes of every command (``genre_id.fingerprint.commands`` imports them from here).
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130


def _fail(message: str) -> None:
    """One ``error: ...`` line on stderr (the message names the file and the problem)."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def format_prediction(name: str, pred, *, timeline: bool = True) -> str:
    """The human-readable lines for one file: genre, confidence, runners-up, and a timeline."""
    runners = ", ".join(f"{g} {p:.2f}" for g, p in pred.top[1:])
    line = f"{name}  {pred.genre} {pred.confidence:.2f}" + (f"   ({runners})" if runners else "")
    lines = [line]
    if timeline and len(pred.segments) > 1:
        for seg in pred.segments:
            what = f"{seg.genre} {seg.confidence:.2f}" if seg.genre else "(silence)"
            lines.append(f"  {_clock(seg.start)}-{_clock(seg.end)}  {what}")
    return "\n".join(lines)


def _cmd_identify(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    # The database is opened once, before any file is analysed: a missing or
    # unusable one is one line naming it, and no work is started (or lost).
    with ExitStack() as stack:
        index = None
        if args.db:
            from .fingerprint.index import FingerprintIndex

            try:
                index = stack.enter_context(FingerprintIndex.open(args.db, create=False))
            except GenreIdError as exc:  # already "DB_PATH: problem"
                _fail(str(exc))
                return EXIT_BAD_INPUT
        return _identify_files(args, index)


def _identify_files(args: argparse.Namespace, index) -> int:
    """Identify ``args.files``; with a fingerprint ``index`` (open), also name each recording."""
    from .recognizer import Recognizer

    try:
        rec = Recognizer.load(args.model, backend=args.backend, top=args.top)
    except GenreIdError as exc:
        _fail(str(exc))
        return EXIT_BAD_INPUT
    matcher, db_error = None, ()
    if index is not None:
        from .fingerprint.commands import format_match, match_for_identify
        from .fingerprint.store import FingerprintDBError

        matcher, db_error = (match_for_identify, format_match), FingerprintDBError
    bad = internal = False
    for path, pred in _predictions(rec, args.files, _identify_workers(args.workers, len(args.files))):
        if isinstance(pred, _WorkerFailure):  # already one line naming the file
            _fail(str(pred))
            internal = True
            continue
        try:
            if isinstance(pred, BaseException):
                raise pred
            match = matcher[0](path, index) if matcher else None
        except GenreIdError as exc:
            # A database that fails while reading says only its own path: add the file's.
            _fail(f"{path}: {exc}" if isinstance(exc, db_error) else str(exc))
            bad = True
            continue
        except Exception as exc:  # a bug: say so in one line, keep going with the other files
            _fail(f"{path}: internal error ({type(exc).__name__}: {exc})")
            internal = True
            continue
        if args.json:
            out = {"file": path, **pred.to_dict(), "model": rec.model_info}
            if matcher:
                out["match"] = match
            print(json.dumps(out), flush=True)
        else:
            print(format_prediction(path, pred, timeline=not args.no_timeline), flush=True)
            if matcher:
                print("  " + matcher[1](match), flush=True)
    return EXIT_INTERNAL if internal else EXIT_BAD_INPUT if bad else EXIT_OK


def _identify_workers(requested: int | None, n_files: int) -> int:
    """Processes for ``identify``: as asked, else one per core; never more than files, and none extra for one file."""
    if requested is None:
        requested = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(requested, n_files))


def _predictions(rec, paths: Sequence[str], workers: int):
    """Yield ``(path, Prediction or the exception it raised)`` in the order of ``paths``.

    With one worker everything runs in this process (the fastest start for
    a few files).  With more, features are extracted in a pool of worker
    processes and classified here as they arrive, in order; this process
    never imports the feature code's heavy libraries.
    """
    if workers <= 1:
        for path in paths:
            try:
                yield path, rec.identify(path)
            except Exception as exc:
                yield path, exc
        return
    for path, windows in _pooled_features(rec, paths, workers):
        if isinstance(windows, BaseException):
            yield path, windows
            continue
        try:
            yield path, rec.classify(windows, name=path)
        except Exception as exc:
            yield path, exc


class _WorkerFailure(Exception):
    """A file's failure in a worker process, raised again here to be reported like any other."""


def _extract_for_identify(path: str, feature_set: str, window_seconds: float, min_seconds: float):
    """In a worker process: ``("ok", WindowFeatures)``, ``("bad", message)`` or ``("internal", message)``."""
    from .extraction import extract_file

    try:
        return "ok", extract_file(path, feature_set=feature_set, window_seconds=window_seconds,
                                  min_seconds=min_seconds)
    except GenreIdError as exc:
        return "bad", str(exc)
    except Exception as exc:
        return "internal", f"{path}: internal error ({type(exc).__name__}: {exc})"


def _fallback_result(result):
    """What :func:`_pooled_features` yields for one result of ``extract_files``.

    A :class:`~genre_id.extraction.FileFailure` made from an unexpected
    exception (a bug, not the file's fault) stays internal (exit code 1), as
    it is when the pool did not break; any other failure is the input's
    (exit code 2).
    """
    from .extraction import FileFailure

    if not isinstance(result, FileFailure):
        return result
    if result.internal:
        return _WorkerFailure(result.message)
    return GenreIdError(result.message)


def _pooled_features(rec, paths: Sequence[str], workers: int):
    """Yield ``(path, WindowFeatures or an exception)`` in order, extracting in ``workers`` processes.

    Results are yielded as soon as they and all before them are done.  If a
    worker process dies (a decoder crash, the system killing it), the files
    not yet reported go through :func:`genre_id.extraction.extract_files`,
    which isolates the file responsible.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from .extraction import _worker_init  # one BLAS/OpenMP thread per worker, so that N workers use N cores

    job = (rec.feature_set.name, rec.bundle.window_seconds, rec.bundle.min_seconds)
    paths = [os.fsdecode(p) for p in paths]
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)
    done, finished = 0, False
    try:
        futures = [pool.submit(_extract_for_identify, p, *job) for p in paths]
        for path, fut in zip(paths, futures):
            try:
                kind, value = fut.result()
            except BrokenProcessPool:
                break
            done += 1
            if kind == "ok":
                yield path, value
            elif kind == "bad":
                yield path, GenreIdError(value)
            else:
                yield path, _WorkerFailure(value)
        finished = True
    finally:
        if not finished:  # interrupted, or the reader went away: do not wait for files under way
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
    if done < len(paths):
        from .extraction import extract_files

        rest = paths[done:]
        results = extract_files(rest, feature_set=job[0], window_seconds=job[1], min_seconds=job[2],
                                workers=workers, progress=False)
        for path, result in zip(rest, results):
            yield path, _fallback_result(result)


def _cmd_train(args: argparse.Namespace) -> int:
    from .model import check_model_target, save_bundle
    from .training import fit

    command = "genre-id " + " ".join(shlex.quote(a) for a in args.argv)
    check_model_target(args.out)  # refuse a bad --out before the work, not after it
    data = _load_data(args)
    for failure in data.failures:
        _fail(f"skipped {failure.message}")
    name = args.name or Path(args.out).name
    bundle = fit(data, config=_config(args), deltas=_deltas(args), name=name, version=args.model_version,
                 window_seconds=args.window_seconds, command=command)
    save_bundle(bundle, args.out)
    m = bundle.metadata["metrics"]
    s = bundle.metadata["training"]["data"]
    print(
        f"trained '{name}' on {s['tracks']} tracks ({s['rows']} windows, {len(bundle.labels)} genres); "
        f"stopped at epoch {bundle.metadata['training']['best_epoch']}; "
        f"train accuracy {m['train_accuracy']:.3f}, validation accuracy {m['validation_accuracy']:.3f} "
        f"on {m['validation_tracks']} held-out tracks"
    )
    print(f"saved {args.out}")
    return EXIT_BAD_INPUT if data.failures else EXIT_OK


def _load_data(args: argparse.Namespace):
    """The dataset named by ``DATA_DIR`` or ``--table``."""
    from .dataset import load_folder, read_table

    if bool(args.data_dir) == bool(args.table):
        raise GenreIdError(f"{args.command} needs either DATA_DIR or --table FEATURES.csv (not both)")
    if args.table:
        return read_table(args.table, feature_set=args.feature_set)
    return load_folder(
        args.data_dir, feature_set=args.feature_set, window_seconds=args.window_seconds,
        cache_dir=None if args.no_cache else args.cache_dir, workers=args.workers, progress=not args.quiet,
    )


def _deltas(args: argparse.Namespace):
    """Perturbation deltas measured on the clips of ``--augment-from`` (None without it)."""
    if not args.augment_from:
        return None
    from .augment import perturbation_deltas
    from .dataset import scan_folder, track_id

    items = scan_folder(args.augment_from)
    root = Path(args.augment_from)
    return perturbation_deltas(
        [p for p, _ in items], tracks=[track_id(p.relative_to(root).as_posix()) for p, _ in items],
        feature_set=args.feature_set, cache_dir=None if args.no_cache else args.cache_dir, workers=args.workers,
    )


def _config(args: argparse.Namespace):
    from .training import TrainConfig

    return TrainConfig(seed=args.seed, patience=args.patience, max_epochs=args.max_epochs)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .dataset import read_split_list
    from .evaluation import evaluate_folds, evaluate_split
    from .report import summary_text, write_report

    data = _load_data(args)
    for failure in data.failures:
        _fail(f"skipped {failure.message}")
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
    command = "genre-id " + " ".join(shlex.quote(a) for a in args.argv)
    if args.json:
        print(json.dumps({"command": command, "data": data.summary(), **result.to_dict()}))
    else:
        print(summary_text([result]))
    if args.out:
        paths = write_report([result], args.out, title=f"genre-id evaluation of {data.source}", command=command)
        if not args.json:
            print("wrote " + ", ".join(str(p) for p in paths))
    return EXIT_BAD_INPUT if data.failures else EXIT_OK


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", nargs="?", metavar="DATA_DIR", help="folder with one sub-folder of audio per genre")
    p.add_argument("--table", metavar="FEATURES.csv", help="use a feature table instead of audio")
    p.add_argument("--feature-set", default=DEFAULT_FEATURE_SET, help=f"feature set (default {DEFAULT_FEATURE_SET})")
    p.add_argument("--window-seconds", type=float, default=30.0, help="analysis window, seconds (default 30)")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="extraction processes (default: all cores)")
    p.add_argument("--cache-dir", default="data/cache", help="feature cache folder (default data/cache)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--augment-from", metavar="CLIPS_DIR",
                   help="GTZAN-style folder of real clips: teach the model what gain, mastering, mp3, resampling "
                        "and band-limiting do to their features (feature-space augmentation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=30, help="epochs without better validation loss before stopping")
    p.add_argument("--max-epochs", type=int, default=400)


def _int_at_least(minimum: int):
    """An argparse ``type``: a whole number of at least ``minimum`` (else a usage error, exit code 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


_positive_int = _int_at_least(1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genre-id", description="Name the genre of music recordings.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("identify", help="name the genre of audio files")
    p.add_argument("files", nargs="+", metavar="FILE", help="wav, flac, ogg, mp3 or au files")
    p.add_argument("--top", type=int, default=3, metavar="K", help="how many genres to list (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.add_argument("--model", default=None, metavar="PATH", help="model folder (default: the shipped model)")
    p.add_argument("--backend", choices=("numpy", "keras"), default="numpy",
                   help="evaluate the network with numpy (default, fast start) or Keras")
    p.add_argument("--no-timeline", action="store_true", help="omit the per-window timeline of long audio")
    p.add_argument("--db", default=None, metavar="PATH", help="fingerprint database: also name the recording")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="processes extracting features of many files (default: one per core; "
                        "a single file is analysed in this process)")
    p.set_defaults(func=_cmd_identify)

    t = sub.add_parser("train", help="train a model from a GTZAN-style folder or a feature table")
    _add_data_arguments(t)
    t.add_argument("--out", required=True, metavar="DIR", help="model folder to write, e.g. models/mine")
    t.add_argument("--name", help="model name (default: the folder's name)")
    t.add_argument("--model-version", default="1", help="version string stored in the model")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="train and test with an honest protocol; write a report")
    _add_data_arguments(e)
    how = e.add_mutually_exclusive_group()
    how.add_argument("--split", nargs=2, metavar=("TRAIN_LIST[,MORE]", "TEST_LIST"),
                     help="train on the tracks of the first list(s), test on the second's")
    how.add_argument("--folds", type=_int_at_least(2), default=10, metavar="K",
                     help="stratified K-fold cross-validation grouped by track (default 10)")
    e.add_argument("--seeds", type=_positive_int, default=1, metavar="N", help="repeat with N seeds; report mean and std")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.add_argument("--out", metavar="DIR", help="write report.md, report.json and a confusion-matrix PNG here")
    e.add_argument("--no-importance", action="store_true", help="skip permutation importance")
    e.set_defaults(func=_cmd_evaluate)

    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub: argparse._SubParsersAction) -> None:
    """Sub-commands that live in their own modules."""
    from .fingerprint.commands import add_index_parser

    add_index_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # File names come from the OS as bytes; one that is not valid UTF-8 must
    # still print (as the OS gave it) rather than stop the whole batch.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args))
    except GenreIdError as exc:
        _fail(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader (head, less) went away: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_INTERNAL
    except Exception as exc:
        _fail(f"internal error ({type(exc).__name__}: {exc})")
        if os.environ.get("GENRE_ID_DEBUG"):
            raise
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
