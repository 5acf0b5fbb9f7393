"""``genre-id index add|list|remove``.

Exit codes of ``index`` commands, as for the rest of the CLI: 0 when
everything asked for was done; 2 when some input could not be used (a file
that cannot be decoded, each reported on stderr in one line while the others
are still added; no such folder; an unusable database; no such recording);
1 for an internal error (a bug); 130 when interrupted.  Errors are one line
on stderr, ``error: FILE: problem``, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import AudioError, GenreIdError
from ..fingerprint.index import FileResult, FingerprintIndex
from ..fingerprint.store import Recording
from ..textsafe import json_line, one_line
from .common import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, add_scheduler_argument, progress
from .common import fail as _error

__all__ = [
    "DB_HELP",
    "add_db_argument",
    "add_parser",
    "cmd_index_add",
    "cmd_index_list",
    "cmd_index_remove",
]

#: Help text of ``--db``.
DB_HELP = ("fingerprint database (SQLite file; default: $GENRE_ID_DB, else fingerprints.sqlite in the user data "
           "folder, see 'genre-id cache info')")


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--db PATH`` (default :func:`genre_id.locations.default_db_path`) to ``parser``."""
    parser.add_argument("--db", type=Path, default=None, metavar="PATH", help=DB_HELP)


def _db(args: argparse.Namespace) -> Path:
    """The database the command works on: ``--db``, else the default location."""
    if args.db is None:
        from ..locations import default_db_path

        args.db = default_db_path()
    return args.db


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser] | None = None) -> None:
    """Register ``index`` with its commands ``add``, ``list`` and ``remove`` on ``subparsers``.

    ``subparsers`` is what ``ArgumentParser.add_subparsers()`` returned;
    ``parents`` the parsers of options every command has.  Each command sets
    ``func``: call ``args.func(args)`` for the exit code.
    """
    if parents is None:
        from .common import common_options

        parents = [common_options()]
    index = subparsers.add_parser(
        "index",
        help="manage the fingerprint database for song identification",
        description="Fingerprint songs into a database so that 'identify --db' can name recordings.",
    )
    commands = index.add_subparsers(dest="index_command", metavar="{add,list,remove}")
    commands.required = True

    add = commands.add_parser(
        "add", parents=parents,
        help="fingerprint every audio file of folders (recursively) or single files",
        description="Fingerprint audio files into the database. Unchanged files (same bytes) are skipped; "
        "a broken file is reported and skipped, and the exit code is then 2.",
    )
    add.add_argument("paths", nargs="+", type=Path, metavar="MUSIC_DIR", help="folder (searched recursively) or file")
    add_db_argument(add)
    add_scheduler_argument(add)
    add.set_defaults(func=cmd_index_add)

    lst = commands.add_parser("list", parents=parents, help="list the recordings in the database")
    add_db_argument(lst)
    lst.add_argument("--format", choices=("text", "json", "csv"), default="text",
                     help="text: an aligned table (default); json: a JSON array; csv: a header, then one row each")
    lst.add_argument("--json", dest="format", action="store_const", const="json", default=argparse.SUPPRESS,
                     help="the same as --format json")
    lst.set_defaults(func=cmd_index_list)

    rm = commands.add_parser("remove", parents=parents, help="remove recordings by id or by the path they were added from")
    rm.add_argument("targets", nargs="+", metavar="ID_OR_FILE", help="recording id (see 'index list') or file path")
    add_db_argument(rm)
    rm.set_defaults(func=cmd_index_remove)


def cmd_index_add(args: argparse.Namespace) -> int:
    """``genre-id index add MUSIC_DIR... [--db PATH] [-v]``."""
    from ..fingerprint.metadata import find_audio_files

    db = _db(args)
    counts = {"added": 0, "unchanged": 0, "failed": 0, "internal": 0}
    try:
        files: list[Path] = []
        for p in args.paths:
            if not Path(p).exists():
                raise AudioError(f"{p}: no such file or folder")
            files += find_audio_files(p) if Path(p).is_dir() else [Path(p)]
        with FingerprintIndex.open(db) as index:
            bar = progress(len(files), quiet=args.quiet, description="fingerprinting")

            def say(line: str, stream) -> None:
                bar.write(line, file=stream)
                stream.flush()

            def on_file(result: FileResult) -> None:
                counts[result.status] += 1
                counts["internal"] += result.internal
                if result.status == "failed":
                    say(f"error: {one_line(result.message)}", sys.stderr)
                elif args.verbose:
                    say(f"{result.status}: {one_line(result.path)}", sys.stdout)
                bar.update(1)

            try:
                index.add_files(files, on_file=on_file)
            finally:
                bar.close()
            total = len(index.list())
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (cli.Terminated, which has the signal's number)
        signum = getattr(exc, "signum", None)
        _error(f"{'terminated' if signum else 'interrupted'}; {db} holds the {counts['added']} files added before")
        return 128 + signum if signum else EXIT_INTERRUPTED
    except GenreIdError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    print(
        f"added {counts['added']}, unchanged {counts['unchanged']}, failed {counts['failed']}; "
        f"{one_line(db)} holds {total} recordings"
    )
    if counts["internal"]:
        return EXIT_INTERNAL
    return EXIT_BAD_INPUT if counts["failed"] else EXIT_OK


def _artist_text(artist: str | None) -> str:
    return artist if artist else "unknown artist"


def _format_table(recordings: list[Recording], fmt: str = "text") -> str:
    from ..formats import table

    rows = [(r.id, r.title, _artist_text(r.artist) if fmt == "text" else r.artist or "", f"{r.duration:.1f}",
             one_line(r.path)) for r in recordings]
    return table(("id", "title", "artist", "seconds", "file"), rows, fmt=fmt, right={0, 3})


def cmd_index_list(args: argparse.Namespace) -> int:
    """``genre-id index list [--db PATH] [--json]``."""
    try:
        with FingerprintIndex.open(_db(args), create=False) as index:
            recordings = index.list()
    except GenreIdError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    if args.format == "json":
        print(json_line([r.to_dict() for r in recordings], indent=2))
    elif recordings or args.format == "csv":
        print(_format_table(recordings, args.format))
    else:
        print(f"{one_line(args.db)}: no recordings")
    return EXIT_OK


def cmd_index_remove(args: argparse.Namespace) -> int:
    """``genre-id index remove ID_OR_FILE... [--db PATH]``; exit 2 if any was not found."""
    failed = False
    try:
        with FingerprintIndex.open(_db(args), create=False) as index:
            for target in args.targets:
                try:
                    rec = index.remove(target)
                except GenreIdError as exc:
                    _error(str(exc))
                    failed = True
                    continue
                print(f'removed {rec.id}: "{one_line(rec.title)}" by {one_line(_artist_text(rec.artist))} '
                      f"({one_line(rec.path)})")
    except GenreIdError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    return EXIT_BAD_INPUT if failed else EXIT_OK


