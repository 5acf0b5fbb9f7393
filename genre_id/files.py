"""Small helpers for files that every layer shares: the path type, and atomic writes."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Union

__all__ = ["PathLike", "atomic_file", "atomic_write"]

#: A file name as the library accepts it.
PathLike = Union[str, "os.PathLike[str]"]


@contextmanager
def atomic_file(path: PathLike, *, suffix: str = "") -> Iterator[BinaryIO]:
    """A binary file to write that appears at ``path`` only when the block succeeds.

    The data goes to a temporary file in the same folder (created if
    absent), is flushed to disk and renamed over ``path`` (atomic on POSIX,
    safe with several processes writing at once).  On any error the
    temporary file is removed and ``path`` is untouched.  The file gets the
    permissions of any new file (0666 less the umask, usually 0644), not the
    private 0600 of a temporary file.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a folder of the path should be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target.parent)) from None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path) as fh:
        fh.write(data)
