"""``genre-id identify FILE|DIR|-...``: the genre of each file, and with ``--db`` the recording."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Iterator
from contextlib import ExitStack, closing
from functools import partial

from ..errors import GenreIdError
from ..textsafe import json_line, one_line, path_fields
from .common import (EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, add_scheduler_argument, clock, expand_inputs, fail, output_problem,
                     positive_int, progress, same_output, write_output)

__all__ = ["add_parser", "format_prediction", "cmd_identify", "STDIN_NAME"]

#: What output and messages call audio read from standard input (``-`` on the command line).
STDIN_NAME = "<stdin>"


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "identify", parents=parents, help="name the genre of audio files",
        description="Name the genre of audio files. Options may come anywhere among the file names.",
    )
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="audio files, folders (searched recursively for audio files) or - for standard input")
    p.add_argument("--top", type=int, default=None, metavar="K",
                   help="how many genres to list, 1 to the model's number of genres (default 3, or all if fewer)")
    p.add_argument("--format", choices=("text", "json", "csv"), default="text",
                   help="text (default); json: one JSON object per file; csv: a header, then one row per file")
    p.add_argument("--json", dest="format", action="store_const", const="json", default=argparse.SUPPRESS,
                   help="the same as --format json")
    p.add_argument("--out", metavar="FILE",
                   help="write the results to FILE (atomically) instead of stdout ('-': stdout, as without it)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw the genre timeline (every window's probabilities) as a PNG; one input only")
    p.add_argument("--model", default=None, metavar="PATH", help="model folder (default: the shipped model)")
    p.add_argument("--backend", choices=("numpy", "keras"), default="numpy",
                   help="evaluate the network with numpy (default, fast start) or Keras")
    p.add_argument("--no-timeline", action="store_true", help="omit the per-window timeline of long audio (text)")
    p.add_argument("--db", default=None, metavar="PATH", help="fingerprint database: also name the recording")
    p.add_argument("--match", action="store_true",
                   help="also name the recording, with the database 'genre-id index add' fills by default "
                        "($GENRE_ID_DB, else the user data folder; see 'genre-id cache info')")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="processes extracting features (default: one per core): one file each, or, "
                        "for a single input (a file or -) of 4 minutes or more, its windows")
    add_scheduler_argument(p)
    p.set_defaults(func=cmd_identify)


def format_prediction(name: str, pred, *, timeline: bool = True) -> str:
    """The human-readable lines for one file: genre, confidence, runners-up, and a timeline.

    ``name`` is printed as one line (:func:`genre_id.textsafe.one_line`).
    """
    runners = ", ".join(f"{g} {p:.2f}" for g, p in pred.top[1:])
    line = f"{one_line(name)}  {pred.genre} {pred.confidence:.2f}" + (f"   ({runners})" if runners else "")
    lines = [line]
    if timeline and len(pred.segments) > 1:
        for seg in pred.segments:
            what = f"{seg.genre} {seg.confidence:.2f}" if seg.genre else "(silence)"
            lines.append(f"  {clock(seg.start)}-{clock(seg.end)}  {what}")
    return "\n".join(lines)


def _csv_row(values: list[object]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().rstrip("\n")


_MATCH_COLUMNS = ("match_title", "match_artist", "match_file", "match_offset", "match_score")


def _csv_header(labels: list[str], *, with_match: bool) -> str:
    return _csv_row(["file", "genre", "confidence", "duration", *labels, *(_MATCH_COLUMNS if with_match else ())])


def _csv_line(name: str, pred, labels: list[str], match, *, with_match: bool) -> str:
    row: list[object] = [one_line(name), pred.genre, f"{pred.confidence:.4f}", f"{pred.duration:.3f}",
                         *(f"{pred.probabilities[g]:.4f}" for g in labels)]
    if with_match:
        row += ["", "", "", "", ""] if match is None else [
            one_line(match.get("title") or ""), one_line(match.get("artist") or ""), one_line(match.get("file") or ""),
            match.get("offset"), match.get("score")]
    return _csv_row(row)


def _check_request(args: argparse.Namespace, files: list[str]) -> str | None:
    """What is wrong with the request before any work (one line), or None."""
    if files.count("-") > 1:
        return "- (standard input) can be read only once"
    if args.plot and len(files) != 1:
        return f"--plot draws the timeline of one input; {len(files)} given"
    if args.out and args.plot and same_output(args.out, args.plot):
        return f"{args.plot}: --out and --plot name the same file"
    for path in (args.out, args.plot):
        problem = path and output_problem(path, inputs=files)
        if problem:
            return problem
    return None


def cmd_identify(args: argparse.Namespace) -> int:
    if args.out == "-":  # as most tools read it: standard output, not a file named '-'
        args.out = None
    files, skipped, empty = expand_inputs(args.files)
    if skipped and not args.quiet:
        print(f"skipped {skipped} non-audio file{'s' if skipped != 1 else ''}", file=sys.stderr, flush=True)
    for folder in empty:  # in the place of its files: one line, and the others are still analysed
        fail(f"{folder}: is a directory with no audio files")
    problem = _check_request(args, files)
    if problem:
        fail(problem)
        return EXIT_BAD_INPUT
    if not files:
        return EXIT_BAD_INPUT
    # The database is opened once, before any file is analysed: a missing or
    # unusable one is one line naming it, and no work is started (or lost).
    if args.match and not args.db:
        from ..locations import default_db_path

        args.db = str(default_db_path())
    with ExitStack() as stack:
        index = None
        if args.db:
            from ..fingerprint.index import FingerprintIndex

            try:
                index = stack.enter_context(FingerprintIndex.open(args.db, create=False))
            except GenreIdError as exc:  # already "DB_PATH: problem"
                fail(str(exc))
                return EXIT_BAD_INPUT
        return _identify_files(args, files, index, stack, empty)


def _results(rec, files: list[str], stdin, workers: int | None, executor=None) -> Iterator[tuple[str, object, object]]:
    """``(name, source, Prediction or FileFailure)`` for each of ``files`` in order; ``-`` is ``stdin``."""
    from ..parallel import call_isolated, default_workers

    paths = [f for f in files if f != "-"]
    on_disk = iter(rec.identify_files(paths, workers=workers, executor=executor)) if paths else iter(())
    alone = default_workers(workers, sys.maxsize) if not paths and executor is None else 1  # a long input's windows
    for f in files:
        if f == "-":
            yield STDIN_NAME, stdin, None if stdin is None else call_isolated(partial(rec.identify, workers=alone),
                                                                              stdin, name=STDIN_NAME)
        else:
            name, pred = next(on_disk)
            yield name, name, pred


def _identify_files(args: argparse.Namespace, files: list[str], index, stack: ExitStack, empty: list[str]) -> int:
    """Identify ``files``; with a fingerprint ``index`` (open), also name each recording."""
    from ..parallel import FileFailure
    from ..recognizer import Recognizer

    try:
        rec = Recognizer.load(args.model, backend=args.backend, top=args.top or 3)
    except GenreIdError as exc:
        fail(str(exc))
        return EXIT_BAD_INPUT
    if args.top is None:
        rec.top = min(3, len(rec.labels))
    elif not 1 <= args.top <= len(rec.labels):
        fail(f"--top must be from 1 to {len(rec.labels)} (the model's genres), not {args.top}")
        return EXIT_BAD_INPUT
    if args.verbose:
        where = rec.bundle.path if rec.bundle.path is not None else "built in"
        print(f"model {one_line(rec.bundle.name)} version {one_line(rec.bundle.version)} ({one_line(where)}); "
              f"{len(files)} input{'s' if len(files) != 1 else ''}", file=sys.stderr, flush=True)
    stdin = None
    if "-" in files:
        from ..audio import open_stream
        from ..errors import AudioError

        try:
            if sys.stdin is None:  # the program was started with its standard input closed
                raise AudioError(f"{STDIN_NAME}: standard input is closed")
            stdin = stack.enter_context(open_stream(sys.stdin.buffer, name=STDIN_NAME))
        except GenreIdError as exc:
            fail(str(exc))
            stdin = None
            if len(files) == 1:
                return EXIT_BAD_INPUT
    db_error: tuple | type = ()
    if index is not None:
        from ..fingerprint.store import FingerprintDBError
        from .index import format_match

        db_error = FingerprintDBError
    collected: list[str] = []  # the output, when it goes to --out
    bar = stack.enter_context(closing(progress(len(files), quiet=args.quiet, description="identifying")))

    def emit(text: str) -> None:
        if args.out:
            collected.append(text)
        else:
            bar.write(text, file=sys.stdout)
            sys.stdout.flush()

    def error(message: str) -> None:
        bar.write(f"error: {one_line(message)}", file=sys.stderr)
        sys.stderr.flush()

    if args.format == "csv":
        emit(_csv_header(rec.labels, with_match=index is not None))
    bad = internal = False
    answered = 0
    for name, source, pred in _results(rec, files, stdin, args.workers, getattr(args, "executor", None)):
        bar.update()
        if source is None:  # standard input could not be read: already reported
            bad = True
            continue
        if isinstance(pred, FileFailure):  # already one line naming the file
            error(pred.message)
            internal |= pred.internal
            bad |= not pred.internal
            continue
        try:
            match = _match(index, source) if index is not None else None
        except GenreIdError as exc:
            # A database that fails while reading says only its own path: add the file's.
            error(f"{name}: {exc}" if isinstance(exc, db_error) else str(exc))
            bad = True
            continue
        except Exception as exc:  # a bug: say so in one line, keep going with the other files
            error(f"{name}: internal error ({type(exc).__name__}: {exc})")
            internal = True
            continue
        answered += 1
        if args.format == "json":
            out = {**path_fields(name), **pred.to_dict(), "model": rec.model_info}
            if index is not None:
                out["match"] = match
            emit(json_line(out))
        elif args.format == "csv":
            emit(_csv_line(name, pred, rec.labels, match, with_match=index is not None))
        else:
            emit(format_prediction(name, pred, timeline=not args.no_timeline))
            if index is not None:
                emit("  " + format_match(match))
        if args.plot:
            from .plot import plot_timeline

            plot_timeline(pred, args.plot, title=name)
    if args.out and answered:
        write_output(args.out, "".join(line + "\n" for line in collected).encode("utf-8", "surrogateescape"))
    bad |= bool(empty)
    return EXIT_INTERNAL if internal else EXIT_BAD_INPUT if bad else EXIT_OK


def _match(index, source) -> dict | None:
    """The ``match`` of ``source`` (a path, or the stream of standard input) in the open fingerprint ``index``."""
    from ..audio import AudioStream

    if isinstance(source, AudioStream):
        from ..fingerprint.index import fingerprint_file

        m = index.match_landmarks(fingerprint_file(source, params=index.params, min_seconds=0.0))
        return None if m is None else m.to_dict()
    from .index import match_for_identify

    return match_for_identify(source, index)
