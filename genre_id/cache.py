"""On-disk cache of per-file features.

An entry is keyed by the file's content (SHA-256 of its bytes), the feature
set's name and version, and the window length, so a renamed file is still a
hit and an edited file or a new feature version is a miss.  Entries are
written to a temporary file and renamed into place (atomic on POSIX, safe
with several processes writing at once), and checked when read: a corrupt
or mismatched entry is ignored and recomputed, never trusted.  Entries are
``.npz`` files read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .files import PathLike, atomic_file, open_regular

__all__ = ["FeatureCache", "UnreadableFile", "file_digest", "cache_problem"]


class UnreadableFile(OSError):
    """A file whose content cannot be digested: missing, not a regular file (a FIFO, a device), or too large."""


def file_digest(path: PathLike, *, chunk_bytes: int = 1 << 20, max_bytes: int | None = None) -> str:
    """SHA-256 of the file's bytes, as hex.

    Only a regular file of at most ``max_bytes`` (default
    :data:`genre_id.audio.MAX_STREAM_BYTES`, the decoder's limit) is read:
    it is opened non-blocking, so a FIFO cannot hang the caller, and a device
    or a huge (sparse) file is refused before a byte is read, with an
    :class:`UnreadableFile` whose message names the file.
    """
    from .audio import MAX_STREAM_BYTES

    limit = MAX_STREAM_BYTES if max_bytes is None else max_bytes
    h = hashlib.sha256()
    read = 0
    with open_regular(path, max_bytes=limit, missing=f"{path}: no such file", error=UnreadableFile) as fh:
        while chunk := fh.read(min(chunk_bytes, limit + 1 - read)):
            read += len(chunk)
            if read > limit:  # it grew while we read it
                raise UnreadableFile(f"{path}: more than the {limit} bytes an audio file may have")
            h.update(chunk)
    return h.hexdigest()


class FeatureCache:
    """Feature matrices of files, stored under ``root``.

    Parameters
    ----------
    root
        Folder of the cache (created when first written).
    namespace
        What the entries depend on besides the file's content, such as
        ``"gtzan57-v1-w30"``; entries of other namespaces are never read.
    """

    def __init__(self, root: PathLike, *, namespace: str) -> None:
        self.root = Path(root)
        self.namespace = namespace

    def _path(self, digest: str) -> Path:
        return self.root / self.namespace / digest[:2] / f"{digest}.npz"

    def get(self, digest: str) -> dict[str, np.ndarray] | None:
        """The stored arrays for ``digest``, or None when absent or not trustworthy."""
        from .audio import MAX_STREAM_BYTES

        path = self._path(digest)
        try:  # opened non-blocking and only if a regular file: a FIFO or a device there is a miss, never a wait
            with open_regular(path, max_bytes=MAX_STREAM_BYTES, missing="", error=UnreadableFile) as fh, \
                    np.load(fh, allow_pickle=False) as npz:
                entry = {k: npz[k] for k in npz.files}
        except Exception:
            return None  # absent, not a regular file or corrupt: recompute
        if str(entry.get("key", "")) != f"{self.namespace}/{digest}":
            return None
        values = entry.get("values")
        if values is None or values.ndim != 2 or not np.isfinite(values).all():
            return None
        return entry

    def put(self, digest: str, **arrays: np.ndarray) -> None:
        """Store ``arrays`` for ``digest`` atomically (temporary file, then rename).

        When the write fails (a full disk, a read-only folder) the ``OSError``
        is raised and the folders this call created are removed again.
        """
        path = self._path(digest)
        created = [p for p in (path.parent, path.parent.parent) if not p.exists()]
        try:
            with atomic_file(path, suffix=".npz") as fh:
                np.savez(fh, key=np.asarray(f"{self.namespace}/{digest}"), **arrays)
        except OSError:
            for folder in created:
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise


def cache_problem(root: PathLike) -> str | None:
    """Why the cache folder ``root`` cannot be written (one phrase), or None when it can (it is created if absent)."""
    folder = Path(root)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return "it is not a folder"
    except OSError as exc:
        return f"it cannot be created ({exc.strerror or exc})"
    if not folder.is_dir():
        return "it is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "no permission to write in it"
    return None
