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
from typing import Callable, Sequence

from .errors import GenreIdError

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


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
    from .recognizer import Recognizer

    try:
        rec = Recognizer.load(args.model, backend=args.backend, top=args.top)
    except GenreIdError as exc:
        _fail(str(exc))
        return EXIT_BAD_INPUT
    matcher = None
    if args.db:
        from .fingerprint.commands import format_match, match_for_identify

        matcher = (match_for_identify, format_match)
    bad = internal = False
    for path in args.files:
        try:
            pred = rec.identify(path)
            match = matcher[0](path, args.db) if matcher else None
        except GenreIdError as exc:
            _fail(str(exc))
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


def _cmd_train(args: argparse.Namespace) -> int:
    from .dataset import load_folder, read_table
    from .model import save_bundle
    from .training import TrainConfig, fit

    if bool(args.data_dir) == bool(args.table):
        _fail("train needs either DATA_DIR or --table FEATURES.csv (not both)")
        return EXIT_BAD_INPUT
    command = "genre-id " + " ".join(shlex.quote(a) for a in args.argv)
    try:
        if args.table:
            data = read_table(args.table, feature_set=args.feature_set)
        else:
            data = load_folder(
                args.data_dir, feature_set=args.feature_set, window_seconds=args.window_seconds,
                cache_dir=None if args.no_cache else args.cache_dir, workers=args.workers,
                progress=not args.quiet,
            )
    except GenreIdError as exc:
        _fail(str(exc))
        return EXIT_BAD_INPUT
    for failure in data.failures:
        _fail(f"skipped {failure.message}")
    config = TrainConfig(seed=args.seed, patience=args.patience, max_epochs=args.max_epochs)
    name = args.name or Path(args.out).name
    bundle = fit(data, config=config, name=name, version=args.model_version, window_seconds=args.window_seconds,
                 command=command)
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
    p.set_defaults(func=_cmd_identify)

    t = sub.add_parser("train", help="train a model from a GTZAN-style folder or a feature table")
    t.add_argument("data_dir", nargs="?", metavar="DATA_DIR", help="folder with one sub-folder of audio per genre")
    t.add_argument("--table", metavar="FEATURES.csv", help="train from a feature table instead")
    t.add_argument("--out", required=True, metavar="DIR", help="model folder to write, e.g. models/mine")
    t.add_argument("--name", help="model name (default: the folder's name)")
    t.add_argument("--model-version", default="1", help="version string stored in the model")
    t.add_argument("--feature-set", default="gtzan57", help="feature set (default gtzan57)")
    t.add_argument("--window-seconds", type=float, default=30.0, help="analysis window, seconds (default 30)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--patience", type=int, default=30, help="epochs without better validation loss before stopping")
    t.add_argument("--max-epochs", type=int, default=400)
    t.add_argument("--workers", type=int, default=None, help="extraction processes (default: all cores)")
    t.add_argument("--cache-dir", default="data/cache", help="feature cache folder (default data/cache)")
    t.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub: argparse._SubParsersAction) -> None:
    """Sub-commands that live in their own modules."""
    adders: list[Callable] = []
    try:
        from .fingerprint.commands import add_index_parser

        adders.append(add_index_parser)
    except ImportError:
        pass
    try:
        from .evaluation_cli import add_evaluate_parser

        adders.append(add_evaluate_parser)
    except ImportError:
        pass
    for add in adders:
        add(sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
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
        return 130
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
