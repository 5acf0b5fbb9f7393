"""Where genre-id keeps its files: the feature cache and the default fingerprint database.

Both follow the platform's conventions (via platformdirs) unless an
environment variable or a command-line option says otherwise:

===================  ==========================  ==============================================
what                 environment variable        default (Linux; macOS and Windows alike)
===================  ==========================  ==============================================
feature cache        ``GENRE_ID_CACHE_DIR``      ``~/.cache/genre-id/features``
fingerprint database ``GENRE_ID_DB``             ``~/.local/share/genre-id/fingerprints.sqlite``
scan results         (``--results``)             ``~/.local/share/genre-id/genre-id-scan.sqlite``
===================  ==========================  ==============================================

(``$XDG_CACHE_HOME`` and ``$XDG_DATA_HOME`` move the Linux defaults; on macOS
they are under ``~/Library/Caches`` and ``~/Library/Application Support``, on
Windows under ``%LOCALAPPDATA%``.)  The environment is read at each call, not
at import.

:func:`clear_cache` removes the cache's own files and nothing else, even when
the cache folder is pointed at a folder that holds other things.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["APP_NAME", "CACHE_ENV", "DB_ENV", "CacheUsage", "cache_usage", "clear_cache", "default_cache_dir",
           "default_db_path", "default_scan_path"]

APP_NAME = "genre-id"
CACHE_ENV = "GENRE_ID_CACHE_DIR"
DB_ENV = "GENRE_ID_DB"


def default_cache_dir() -> Path:
    """The feature cache folder: ``$GENRE_ID_CACHE_DIR``, else the platform's user cache folder + ``features``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_cache_path(APP_NAME, appauthor=False) / "features"


def default_db_path() -> Path:
    """The fingerprint database: ``$GENRE_ID_DB``, else ``fingerprints.sqlite`` in the platform's user data folder."""
    env = os.environ.get(DB_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, appauthor=False) / "fingerprints.sqlite"


def default_scan_path() -> Path:
    """The results of ``genre-id scan``: ``genre-id-scan.sqlite`` in the platform's user data folder."""
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, appauthor=False) / "genre-id-scan.sqlite"


# A cache entry is ROOT/<namespace>/<first two hex digits>/<sha256>.npz (genre_id.cache.FeatureCache);
# a write interrupted by a crash leaves ROOT/<namespace>/<xx>/.<sha256>.npz.<random>.npz.
_ENTRY = re.compile(r"(?P<digest>[0-9a-f]{64})\.npz")
_LEFTOVER = re.compile(r"\.(?P<digest>[0-9a-f]{64})\.npz\.[A-Za-z0-9_]+\.npz")


@dataclass(frozen=True)
class CacheUsage:
    """What the cache holds: its folder, how many entries and how many bytes."""

    root: Path
    entries: int
    bytes: int


def _cache_files(root: Path):
    """``(path, size)`` of every file of ours under ``root``; other files, links and folders are left out."""
    if not root.is_dir():
        return
    for namespace in sorted(root.iterdir()):
        if namespace.is_symlink() or not namespace.is_dir():
            continue
        for shard in sorted(namespace.iterdir()):
            if shard.is_symlink() or not shard.is_dir() or not re.fullmatch(r"[0-9a-f]{2}", shard.name):
                continue
            for entry in sorted(shard.iterdir()):
                m = _ENTRY.fullmatch(entry.name) or _LEFTOVER.fullmatch(entry.name)
                if m is None or not m.group("digest").startswith(shard.name):
                    continue
                if entry.is_file() and not entry.is_symlink():
                    yield entry, entry.lstat().st_size


def cache_usage(root: str | os.PathLike[str] | None = None) -> CacheUsage:
    """How many cache entries ``root`` (default :func:`default_cache_dir`) holds, and their size in bytes."""
    folder = Path(root) if root is not None else default_cache_dir()
    files = list(_cache_files(folder))
    return CacheUsage(folder, sum(1 for p, _ in files if not p.name.startswith(".")), sum(s for _, s in files))


def clear_cache(root: str | os.PathLike[str] | None = None) -> CacheUsage:
    """Remove the cache's entries under ``root`` (default :func:`default_cache_dir`); what was removed.

    Only files named as cache entries, in folders laid out as the cache lays
    them out, are removed, then the folders this left empty (never ``root``
    itself); anything else in ``root`` stays.
    """
    folder = Path(root) if root is not None else default_cache_dir()
    entries = size = 0
    shards: set[Path] = set()
    for path, n_bytes in list(_cache_files(folder)):
        path.unlink(missing_ok=True)
        shards.add(path.parent)
        entries += not path.name.startswith(".")  # a leftover of a killed write is not an entry
        size += n_bytes
    for shard in sorted(shards):
        for empty in (shard, shard.parent):
            try:
                empty.rmdir()  # only when empty
            except OSError:
                pass
    return CacheUsage(folder, entries, size)
