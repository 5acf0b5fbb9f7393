"""``genre-id identify FILE...``: the genre of each file, and with ``--db`` the recording."""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack

from ..errors import GenreIdError
from .common import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, add_scheduler_argument, fail, positive_int

__all__ = ["add_parser", "format_prediction", "cmd_identify"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("identify", help="name the genre of audio files")
    p.add_argument("files", nargs="+", metavar="FILE", help="wav, flac, ogg, mp3 or au files")
    p.add_argument("--top", type=int, default=3, metavar="K", help="how many genres to list (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.add_argument("--model", default=None, metavar="PATH", help="model folder (default: the shipped model)")
    p.add_argument("--backend", choices=("numpy", "keras"), default="numpy",
                   help="evaluate the network with numpy (default, fast start) or Keras")
    p.add_argument("--no-timeline", action="store_true", help="omit the per-window timeline of long audio")
    p.add_argument("--db", default=None, metavar="PATH", help="fingerprint database: also name the recording")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="processes extracting features of many files (default: one per core; "
                        "a single file is analysed in this process)")
    add_scheduler_argument(p)
    p.set_defaults(func=cmd_identify)


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


def cmd_identify(args: argparse.Namespace) -> int:
    # The database is opened once, before any file is analysed: a missing or
    # unusable one is one line naming it, and no work is started (or lost).
    with ExitStack() as stack:
        index = None
        if args.db:
            from ..fingerprint.index import FingerprintIndex

            try:
                index = stack.enter_context(FingerprintIndex.open(args.db, create=False))
            except GenreIdError as exc:  # already "DB_PATH: problem"
                fail(str(exc))
                return EXIT_BAD_INPUT
        return _identify_files(args, index)


def _identify_files(args: argparse.Namespace, index) -> int:
    """Identify ``args.files``; with a fingerprint ``index`` (open), also name each recording."""
    from ..parallel import FileFailure
    from ..recognizer import Recognizer

    try:
        rec = Recognizer.load(args.model, backend=args.backend, top=args.top)
    except GenreIdError as exc:
        fail(str(exc))
        return EXIT_BAD_INPUT
    db_error: tuple | type = ()
    if index is not None:
        from ..fingerprint.store import FingerprintDBError
        from .index import format_match, match_for_identify

        db_error = FingerprintDBError
    bad = internal = False
    for path, pred in rec.identify_files(args.files, workers=args.workers,
                                          executor=getattr(args, "executor", None)):
        if isinstance(pred, FileFailure):  # already one line naming the file
            fail(pred.message)
            internal |= pred.internal
            bad |= not pred.internal
            continue
        try:
            match = match_for_identify(path, index) if index is not None else None
        except GenreIdError as exc:
            # A database that fails while reading says only its own path: add the file's.
            fail(f"{path}: {exc}" if isinstance(exc, db_error) else str(exc))
            bad = True
            continue
        except Exception as exc:  # a bug: say so in one line, keep going with the other files
            fail(f"{path}: internal error ({type(exc).__name__}: {exc})")
            internal = True
            continue
        if args.json:
            out = {"file": path, **pred.to_dict(), "model": rec.model_info}
            if index is not None:
                out["match"] = match
            print(json.dumps(out), flush=True)
        else:
            print(format_prediction(path, pred, timeline=not args.no_timeline), flush=True)
            if index is not None:
                print("  " + format_match(match), flush=True)
    return EXIT_INTERNAL if internal else EXIT_BAD_INPUT if bad else EXIT_OK
