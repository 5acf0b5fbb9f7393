"""``genre-id identify FILE|DIR|-...``: parse, analyse (:class:`genre_id.Analyzer`), render (:mod:`genre_id.formats`)."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack, closing

from ..errors import GenreIdError
from ..formats import FORMATS, Layout, get_format
from ..textsafe import one_line
from .common import (EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, add_scheduler_argument, expand_inputs, fail,
                     input_paths, output_problem, positive_int, progress, same_output, write_output)

__all__ = ["add_parser", "cmd_identify"]


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("identify", parents=parents, help="name the genre of audio files",
                       description="Name the genre of audio files. Options may come anywhere among the file names.")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="audio files, folders (searched recursively for audio files) or - for standard input")
    p.add_argument("--top", type=int, default=None, metavar="K",
                   help="how many genres to list, 1 to the model's number of genres (default 3, or all if fewer)")
    p.add_argument("--format", choices=tuple(FORMATS), default="text",
                   help="; ".join(f"{f.name}: {f.description}" for f in FORMATS.values()) + " (default text)")
    p.add_argument("--json", dest="format", action="store_const", const="json", default=argparse.SUPPRESS,
                   help="the same as --format json")
    p.add_argument("--out", metavar="FILE",
                   help="write the results to FILE (atomically) instead of stdout ('-': stdout, as without it)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw the genre timeline (every window's probabilities) as a PNG; one input only")
    p.add_argument("--model", metavar="PATH", help="model folder (default: the shipped model)")
    p.add_argument("--backend", choices=("numpy", "keras"), default="numpy",
                   help="evaluate the network with numpy (default, fast start) or Keras")
    p.add_argument("--no-timeline", action="store_true", help="omit the per-window timeline of long audio (text)")
    p.add_argument("--db", metavar="PATH", help="fingerprint database: also name the recording")
    p.add_argument("--match", action="store_true", help="also name the recording, with the database 'genre-id index "
                   "add' fills by default ($GENRE_ID_DB, else the user data folder; see 'genre-id cache info')")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="processes analysing (default: one per core): one file each, or, "
                        "for a single input (a file or -) of 4 minutes or more, its windows")
    add_scheduler_argument(p)
    p.set_defaults(func=cmd_identify)


def _check_request(args: argparse.Namespace, files: list[str]) -> str | None:
    """What is wrong with the request before any work (one line), or None."""
    if files.count("-") > 1:
        return "- (standard input) can be read only once"
    if args.plot and len(files) != 1:
        return f"--plot draws the timeline of one input; {len(files)} given"
    if args.out and args.plot and same_output(args.out, args.plot):
        return f"{args.plot}: --out and --plot name the same file"
    from ..model import DEFAULT_MODEL_DIR

    inputs, folders = input_paths(files, db=args.db), [args.model or DEFAULT_MODEL_DIR]
    return next(filter(None, (output_problem(o, inputs=inputs, folders=folders) for o in (args.out, args.plot) if o)),
                None)


def cmd_identify(args: argparse.Namespace) -> int:
    from ..analysis import Analyzer
    from ..audio import open_stdin
    from ..locations import default_db_path
    from .plot import plot_timeline

    args.out = None if args.out == "-" else args.out  # as most tools read it: standard output
    files, empty = expand_inputs(args.files, quiet=args.quiet)
    if args.match and not args.db:
        args.db = str(default_db_path())
    if problem := _check_request(args, files):
        fail(problem)
    if problem or not files:
        return EXIT_BAD_INPUT
    with ExitStack() as stack:
        try:  # the model and the database first: a missing one is one line, and no work is started
            analyzer = stack.enter_context(Analyzer.load(args.model, db=args.db, backend=args.backend, top=args.top,
                                                         workers=args.workers, executor=getattr(args, "executor", None)))
        except GenreIdError as exc:
            fail(str(exc))
            return EXIT_BAD_INPUT
        sources: list[object] = list(files)
        if "-" in files:
            try:
                sources[files.index("-")] = stack.enter_context(open_stdin())
            except GenreIdError as exc:  # the other inputs are still analysed
                fail(str(exc))
                if len(files) == 1:
                    return EXIT_BAD_INPUT
                sources.remove("-")
                empty.append("-")
        if args.verbose:
            m, where = analyzer.model, analyzer.recognizer.bundle.path or "built in"
            print(f"model {one_line(m.name)} version {one_line(m.version)} ({one_line(where)}); {len(files)} "
                  f"input{'s' if len(files) != 1 else ''}", file=sys.stderr, flush=True)
        fmt, layout = get_format(args.format), Layout(analyzer.model.labels, args.db is not None, not args.no_timeline)
        bar = stack.enter_context(closing(progress(len(files), quiet=args.quiet, description="identifying")))
        collected: list[str] = []  # the output, when it goes to --out
        emit = collected.append if args.out else (lambda text: (bar.write(text, file=sys.stdout), sys.stdout.flush()))
        if (header := fmt.header(layout)) is not None:
            emit(header)
        bad, internal, answered = bool(empty), False, 0
        for report in analyzer.analyze_many(sources):
            bar.update()
            if not report.ok:  # one line naming the file; the others go on
                bar.write(f"error: {one_line(report.error)}", file=sys.stderr)
                internal, bad = internal or report.internal, bad or not report.internal
                continue
            answered += 1
            emit(fmt.report(report, layout))
            if args.plot:
                plot_timeline(report.prediction, args.plot, title=report.source)
        if args.out and answered:
            write_output(args.out, "".join(line + "\n" for line in collected).encode("utf-8", "surrogateescape"))
    return EXIT_INTERNAL if internal else EXIT_BAD_INPUT if bad else EXIT_OK

