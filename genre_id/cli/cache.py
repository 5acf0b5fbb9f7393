"""``genre-id cache info|clear``: where the feature cache and the fingerprint database live, and clearing the cache."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..textsafe import one_line
from .common import EXIT_OK

__all__ = ["add_parser", "cmd_cache_clear", "cmd_cache_info"]


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    cache = subparsers.add_parser("cache", help="show or clear the feature cache",
                                  description="The feature cache of 'train' and 'evaluate' (audio inputs).")
    commands = cache.add_subparsers(dest="cache_command", metavar="{info,clear}", required=True)
    for name, func, text in (("info", cmd_cache_info, "where the cache and the fingerprint database are, and sizes"),
                             ("clear", cmd_cache_clear, "remove the cache's files (nothing else)")):
        p = commands.add_parser(name, parents=parents, help=text)
        p.add_argument("--cache-dir", default=None, metavar="DIR",
                       help="the cache folder (default: $GENRE_ID_CACHE_DIR, else the user cache folder)")
        p.set_defaults(func=func)


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def _check_cache_dir(folder: str | None) -> None:
    """A cache folder that exists but is not a folder (a file, a device) is one line, not an empty cache."""
    from ..errors import GenreIdError
    from ..locations import default_cache_dir

    root = Path(folder) if folder else default_cache_dir()
    if os.path.lexists(root) and not root.is_dir():
        raise GenreIdError(f"{root}: is not a folder; the feature cache is a folder")


def cmd_cache_info(args: argparse.Namespace) -> int:
    from ..locations import cache_usage, default_db_path

    _check_cache_dir(args.cache_dir)
    usage = cache_usage(args.cache_dir)
    print(f"feature cache: {one_line(usage.root)} ({usage.entries} entries, {_size(usage.bytes)})")
    db = default_db_path()
    if db.is_file():
        held = _size(db.stat().st_size)
    elif db.exists() or db.is_symlink():
        held = "not a database file: it is a folder" if db.is_dir() else "not a database file"
    else:
        held = "not created yet"
    print(f"fingerprint database: {one_line(db)} ({held})")
    return EXIT_OK


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from ..locations import clear_cache

    _check_cache_dir(args.cache_dir)
    removed = clear_cache(args.cache_dir)
    if not args.quiet:
        print(f"removed {removed.entries} cache entries ({_size(removed.bytes)}) from {one_line(removed.root)}")
    return EXIT_OK
