"""``genre-id scan DIR``: tag a whole library (:mod:`genre_id.library`): scan, export, write tags, undo."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import closing

from ..errors import GenreIdError
from ..textsafe import one_line
from .common import (EXIT_BAD_INPUT, EXIT_OK, add_scheduler_argument, fail, inside, output_path, output_problem,
                     positive_int, progress)

__all__ = ["add_parser", "cmd_scan"]


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("scan", parents=parents, help="name the genre of every file of a music library",
                       description="Analyse every audio file under DIR into a SQLite file of results; a second "
                                   "scan analyses only new and changed files. Also: export the results, write "
                                   "genre tags, undo them.")
    p.add_argument("folder", nargs="?", metavar="DIR", help="the library folder (searched recursively)")
    p.add_argument("--results", metavar="FILE.sqlite",
                   help="the results file (default: genre-id-scan.sqlite in the user data folder)")
    p.add_argument("--batch", type=positive_int, default=50, metavar="N",
                   help="files per transaction: an interruption loses at most these (default 50)")
    p.add_argument("--quick", action="store_true",
                   help="judge files of 2 minutes or more from three 30 s windows (at 20, 50 and 80 %%)")
    p.add_argument("--model", metavar="PATH", help="model folder (default: the shipped model)")
    p.add_argument("--backend", choices=("numpy", "keras"), default="numpy", help="evaluate with numpy or Keras")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="processes analysing (default: one per core)")
    add_scheduler_argument(p)
    p.add_argument("--export", metavar="OUT",
                   help="write the results as CSV (or Parquet for OUT.parquet; - for CSV on standard output)")
    p.add_argument("--write-tags", action="store_true",
                   help="write the stored genres into the files' tags (a dry run without --apply)")
    p.add_argument("--min-confidence", type=_confidence, default=0.6, metavar="P",
                   help="write only genres at least this confident (default 0.6)")
    p.add_argument("--overwrite", action="store_true", help="replace a genre tag a file already has")
    p.add_argument("--apply", action="store_true", help="with --write-tags: really write (default: only print)")
    p.add_argument("--undo", action="store_true", help="put back the genre tags --write-tags --apply replaced")
    p.set_defaults(func=cmd_scan)


def cmd_scan(args: argparse.Namespace) -> int:
    from ..library import ResultStore
    from ..locations import default_scan_path

    if not (args.folder or args.export or args.write_tags or args.undo):
        fail("nothing to do: give a folder to scan, or --export, --write-tags or --undo")
        return EXIT_BAD_INPUT
    if args.folder and not os.path.isdir(args.folder):
        fail(f"{args.folder}: not a folder")
        return EXIT_BAD_INPUT
    results = args.results or str(default_scan_path())
    if not args.folder and not os.path.lexists(results):
        fail(f"{results}: no such results file (scan a folder first)")
        return EXIT_BAD_INPUT
    if problem := _check_request(args, results):
        fail(problem)
        return EXIT_BAD_INPUT
    code = EXIT_OK
    try:
        store = ResultStore(results)
    except GenreIdError as exc:
        fail(str(exc))
        return EXIT_BAD_INPUT
    with store:
        if args.export and args.export != "-" and any(
                store.get(p) is not None for p in {os.path.abspath(args.export), str(output_path(args.export))}):
            fail(f"{args.export}: is one of the scanned files; refusing to overwrite it")
            return EXIT_BAD_INPUT
        if args.folder:
            code = max(code, _scan(args, store))
        if args.undo:
            code = max(code, _tags(store, undo=True, args=args))
        elif args.write_tags:
            code = max(code, _tags(store, undo=False, args=args))
        if args.export:
            from ..library import export

            try:
                n = export(store, sys.stdout.buffer if args.export == "-" else output_path(args.export))
            except (GenreIdError, OSError) as exc:
                fail(f"{args.export}: cannot write ({exc})" if isinstance(exc, OSError) else str(exc))
                return EXIT_BAD_INPUT
            if not args.quiet:
                where = "standard output" if args.export == "-" else one_line(args.export)
                print(f"{n} rows written to {where}", file=sys.stderr)
    return code


def _audio_name(path: str) -> bool:
    from ..audio import SUPPORTED_EXTENSIONS

    return path.lower().endswith(tuple(e.lower() for e in SUPPORTED_EXTENSIONS))


def _check_request(args: argparse.Namespace, results: str) -> str | None:
    """What is wrong with the results file or the export before any work (one line), or None."""
    from ..library import store_files
    from ..model import DEFAULT_MODEL_DIR

    model = args.model or str(DEFAULT_MODEL_DIR)
    # The results file: never a link to nothing, never in the model folder; an existing file that is not a
    # results database (a recording, another program's database) is refused when it is opened.
    if problem := output_problem(results, folders=[model]):
        return problem
    if not args.export or args.export == "-":
        return None
    # The export: never over the results (or SQLite's files beside it), a recording or into the model folder.
    inputs = [results, *store_files(results)]
    problem = output_problem(args.export, inputs=inputs, folders=[model])
    if problem is None and args.folder and inside(args.export, args.folder) and _audio_name(args.export):
        problem = f"{args.export}: is in {args.folder}, one of the inputs; refusing to write there"
    return problem


def _scan(args: argparse.Namespace, store) -> int:
    from ..analysis import Analyzer
    from ..folders import walk_audio
    from ..library import scan

    try:
        analyzer = Analyzer.load(args.model, backend=args.backend, workers=args.workers,
                                 executor=getattr(args, "executor", None))
    except GenreIdError as exc:
        fail(str(exc))
        return EXIT_BAD_INPUT
    with analyzer, closing(progress(len(walk_audio(args.folder).files), quiet=args.quiet,
                                    description="scanning")) as bar:
        summary = scan(args.folder, analyzer, store, batch=args.batch, quick=args.quick,
                       on_file=lambda path, what: bar.update())
        for error in summary.errors:
            bar.write(f"error: {one_line(error)}", file=sys.stderr)
    if not args.quiet:
        print(f"{summary.files} files: {summary.analysed} analysed, {summary.unchanged} unchanged, "
              f"{summary.moved} recognised by content, {summary.failed} failed, {summary.removed} removed",
              file=sys.stderr)
    return EXIT_BAD_INPUT if summary.errors else EXIT_OK


def _tags(store, *, undo: bool, args: argparse.Namespace) -> int:
    from ..library import undo_tags, write_tags

    changes = undo_tags(store) if undo else write_tags(store, min_confidence=args.min_confidence,
                                                        overwrite=args.overwrite, apply=args.apply)
    bad = False
    for change in changes:
        if change.error:
            fail(f"{one_line(change.path)}: {one_line(change.error)}")
            bad = True
            continue
        print(f"{one_line(change.path)}: {one_line(change.old or '(none)')} -> {one_line(change.new or '(none)')}")
    if not undo and not args.apply and not args.quiet:
        print("dry run: nothing written (add --apply to write)", file=sys.stderr)
    return EXIT_BAD_INPUT if bad else EXIT_OK
