"""Small helpers for files that every layer shares: the path type, and atomic writes."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Union

__all__ = ["PathLike", "atomic_file", "atomic_files", "atomic_write", "open_regular", "read_text"]

#: A file name as the library accepts it.
PathLike = Union[str, "os.PathLike[str]"]


@contextmanager
def atomic_file(path: PathLike, *, suffix: str = "") -> Iterator[BinaryIO]:
    """A binary file to write that appears at ``path`` only when the block succeeds.

    The data goes to a temporary file in the same folder (created if
    absent), is flushed to disk and renamed over ``path`` (atomic on POSIX,
    safe with several processes writing at once).  On any error the
    temporary file is removed and ``path`` is untouched.  Something at
    ``path`` that is not a regular file (a device, a FIFO, a folder) is
    never replaced: :class:`FileExistsError`.  The file gets the
    permissions of any new file (0666 less the umask, usually 0644), not the
    private 0600 of a temporary file.
    """
    with atomic_files([path], suffix=suffix) as (fh,):
        yield fh


@contextmanager
def atomic_files(paths: Sequence[PathLike], *, suffix: str = "") -> Iterator[list[BinaryIO]]:
    """:func:`atomic_file` for several files at once: all appear when the block succeeds, none when it fails.

    Every file is written and flushed to disk before the first is renamed
    into place, so a failure (a full disk) leaves every previous file as it was.
    """
    targets = [Path(p) for p in paths]
    for target in targets:
        try:
            st = os.stat(target)
        except OSError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):  # a device, a FIFO, a folder: never replaced
            raise FileExistsError(errno.EEXIST, "exists and is not a regular file", str(target))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file where a folder of the path should be
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target.parent)) from None
    handles: list[BinaryIO] = []
    temporary: list[str] = []
    try:
        for target in targets:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
            temporary.append(tmp)
            handles.append(os.fdopen(fd, "wb"))
            os.fchmod(fd, 0o666 & ~_umask())
        yield handles
        for fh in handles:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        while temporary:
            os.replace(temporary[0], targets[len(targets) - len(temporary)])
            temporary.pop(0)
    except BaseException:
        for fh in handles:
            fh.close()
        for tmp in temporary:
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


def open_regular(path: PathLike, *, max_bytes: int, missing: str, error: type[Exception]) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file of at most ``max_bytes``.

    Opened non-blocking, so a FIFO cannot hang the caller; the type and size
    are checked on the open file (``fstat``), so a link to a device is refused
    before a byte is read.  Every problem is an ``error`` with one line;
    ``missing`` is the message when the file does not exist.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(missing) from None
    except OSError as exc:
        raise error(f"{path}: cannot open ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: not a regular file")
        if st.st_size > max_bytes:
            raise error(f"{path}: {st.st_size} bytes, more than the {max_bytes} this file may have")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text(path: PathLike, *, max_bytes: int, what: str, error: type[Exception]) -> str:
    """The UTF-8 text of the regular file ``path`` (a byte-order mark is dropped), at most ``max_bytes``.

    ``what`` names the file in messages (``"labels file"``); every problem
    (missing, not a regular file, too large, not UTF-8) is one ``error`` line.
    """
    with open_regular(path, max_bytes=max_bytes, missing=f"{path}: no such {what}", error=error) as fh:
        try:
            raw = fh.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{path}: unreadable {what} ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:  # it grew while we read it
        raise error(f"{path}: more than the {max_bytes} bytes a {what} may have")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"{path}: the {what} is not UTF-8 text") from None
