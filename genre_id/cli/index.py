"""``genre-id index add|list|remove``, and the ``match`` part of ``identify --db``.

Exit codes of ``index`` commands, as for the rest of the CLI: 0 when
everything asked for was done; 2 when some input could not be used (a file
that cannot be decoded, each reported on stderr in one line while the others
are still added; no such folder; an unusable database; no such recording);
1 for an internal error (a bug); 130 when interrupted.  Errors are one line
on stderr, ``error: FILE: problem``, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import AudioError, GenreIdError
from ..fingerprint.index import DEFAULT_DB_PATH, FileResult, FingerprintIndex
from ..fingerprint.store import Recording
from .common import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, add_scheduler_argument
from .common import fail as _error

__all__ = [
    "DB_HELP",
    "add_db_argument",
    "add_parser",
    "cmd_index_add",
    "cmd_index_list",
    "cmd_index_remove",
    "format_match",
    "match_for_identify",
]

#: Help text of ``--db``, for ``identify`` too.
DB_HELP = f"fingerprint database (SQLite file; default: {DEFAULT_DB_PATH} in the current folder)"

def add_db_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--db PATH`` (default :data:`~genre_id.fingerprint.index.DEFAULT_DB_PATH`) to ``parser``."""
    parser.add_argument("--db", type=Path, default=DEFAULT_DB_PATH, metavar="PATH", help=DB_HELP)


def add_parser(subparsers: Any) -> None:
    """Register ``index`` with its commands ``add``, ``list`` and ``remove`` on ``subparsers``.

    ``subparsers`` is what ``ArgumentParser.add_subparsers()`` returned.  Each
    command sets ``func``: call ``args.func(args)`` for the exit code.
    """
    index = subparsers.add_parser(
        "index",
        help="manage the fingerprint database for song identification",
        description="Fingerprint songs into a database so that 'identify --db' can name recordings.",
    )
    commands = index.add_subparsers(dest="index_command", metavar="{add,list,remove}")
    commands.required = True

    add = commands.add_parser(
        "add",
        help="fingerprint every audio file of folders (recursively) or single files",
        description="Fingerprint audio files into the database. Unchanged files (same bytes) are skipped; "
        "a broken file is reported and skipped, and the exit code is then 2.",
    )
    add.add_argument("paths", nargs="+", type=Path, metavar="MUSIC_DIR", help="folder (searched recursively) or file")
    add_db_argument(add)
    add.add_argument("-v", "--verbose", action="store_true", help="print a line for every file")
    add_scheduler_argument(add)
    add.set_defaults(func=cmd_index_add)

    lst = commands.add_parser("list", help="list the recordings in the database")
    add_db_argument(lst)
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lst.set_defaults(func=cmd_index_list)

    rm = commands.add_parser("remove", help="remove recordings by id or by the path they were added from")
    rm.add_argument("targets", nargs="+", metavar="ID_OR_FILE", help="recording id (see 'index list') or file path")
    add_db_argument(rm)
    rm.set_defaults(func=cmd_index_remove)


def cmd_index_add(args: argparse.Namespace) -> int:
    """``genre-id index add MUSIC_DIR... [--db PATH] [-v]``."""
    from ..fingerprint.metadata import find_audio_files
    from ..parallel import progress_bar

    counts = {"added": 0, "unchanged": 0, "failed": 0, "internal": 0}
    try:
        files: list[Path] = []
        for p in args.paths:
            if not Path(p).exists():
                raise AudioError(f"{p}: no such file or folder")
            files += find_audio_files(p) if Path(p).is_dir() else [Path(p)]
        with FingerprintIndex.open(args.db) as index:
            bar = progress_bar(len(files)) if len(files) > 1 and sys.stderr.isatty() else None

            def say(line: str, stream) -> None:
                if bar is not None:
                    bar.write(line, file=stream)
                else:
                    print(line, file=stream, flush=True)

            def on_file(result: FileResult) -> None:
                counts[result.status] += 1
                counts["internal"] += result.internal
                if result.status == "failed":
                    say(f"error: {result.message}", sys.stderr)
                elif args.verbose:
                    say(f"{result.status}: {result.path}", sys.stdout)
                if bar is not None:
                    bar.update(1)

            try:
                index.add_files(files, on_file=on_file)
            finally:
                if bar is not None:
                    bar.close()
            total = len(index.list())
    except KeyboardInterrupt:
        _error(f"interrupted; {args.db} holds the {counts['added']} files added before")
        return EXIT_INTERRUPTED
    except GenreIdError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    print(
        f"added {counts['added']}, unchanged {counts['unchanged']}, failed {counts['failed']}; "
        f"{args.db} holds {total} recordings"
    )
    if counts["internal"]:
        return EXIT_INTERNAL
    return EXIT_BAD_INPUT if counts["failed"] else EXIT_OK


def _artist_text(artist: str | None) -> str:
    return artist if artist else "unknown artist"


def _format_table(recordings: list[Recording]) -> str:
    rows = [("id", "title", "artist", "seconds", "file")] + [
        (str(r.id), r.title, _artist_text(r.artist), f"{r.duration:.1f}", r.path) for r in recordings
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(
            [row[0].rjust(widths[0])] + [row[i].ljust(widths[i]) for i in (1, 2)] + [row[3].rjust(widths[3]), row[4]]
        )
        for row in rows
    )


def cmd_index_list(args: argparse.Namespace) -> int:
    """``genre-id index list [--db PATH] [--json]``."""
    try:
        with FingerprintIndex.open(args.db, create=False) as index:
            recordings = index.list()
    except GenreIdError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps([r.to_dict() for r in recordings], indent=2, ensure_ascii=False))
    elif recordings:
        print(_format_table(recordings))
    else:
        print(f"{args.db}: no recordings")
    return EXIT_OK


def cmd_index_remove(args: argparse.Namespace) -> int:
    """``genre-id index remove ID_OR_FILE... [--db PATH]``; exit 2 if any was not found."""
    failed = False
    try:
        with FingerprintIndex.open(args.db, create=False) as index:
            for target in args.targets:
                try:
                    rec = index.remove(target)
                except GenreIdError as exc:
                    _error(str(exc))
                    failed = True
                    continue
                print(f'removed {rec.id}: "{rec.title}" by {_artist_text(rec.artist)} ({rec.path})')
    except GenreIdError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    return EXIT_BAD_INPUT if failed else EXIT_OK


def match_for_identify(path: str, db: FingerprintIndex | str | os.PathLike[str]) -> dict[str, object] | None:
    """The ``match`` value of ``identify --json``: the recording ``path`` is, or ``None``.

    ``db`` is an open :class:`FingerprintIndex` (``identify`` opens it once
    for all its files, and it stays open) or the path of a database, opened
    and closed for this one query.  The dict has ``title``, ``artist``
    (``None`` if unknown), ``file``, ``offset`` (seconds into the recording
    where ``path`` starts), ``score`` (aligned hashes), ``second_score``,
    ``query_hashes`` and ``recording_id``.  Raises
    :class:`~genre_id.errors.GenreIdError` (one line naming the file, or the
    database, and the problem) when the database is missing or unusable or
    ``path`` cannot be decoded; the caller prints it.
    """
    if isinstance(db, FingerprintIndex):
        match = db.match_file(path)
    else:
        with FingerprintIndex.open(db, create=False) as index:
            match = index.match_file(path)
    return None if match is None else match.to_dict()


def format_match(match: dict[str, object] | None) -> str:
    """One human-readable line for a :func:`match_for_identify` result.

    ``match: "Title" by Artist (file, at 12.3 s, score 87)`` or ``match: no match``.
    """
    if match is None:
        return "match: no match"
    artist = match.get("artist")
    offset = float(match.get("offset", 0.0))  # type: ignore[arg-type]
    return (
        f'match: "{match.get("title")}" by {_artist_text(artist if isinstance(artist, str) else None)} '
        f"({match.get('file')}, at {offset:.1f} s, score {match.get('score')})"
    )
