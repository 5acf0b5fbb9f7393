"""Small helpers for files that every layer shares: the path type, atomic writes, bounded reads.

A file is written atomically by :func:`atomic_file` (a temporary sibling,
fsynced, renamed over the target); a folder by :func:`atomic_folder` (a
temporary sibling folder, every file fsynced, swapped into place), so an
interrupted write never leaves a half-written file or folder, and the previous
one stays usable until the new one is complete.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Union

__all__ = ["PathLike", "atomic_file", "atomic_files", "atomic_folder", "atomic_write", "open_regular", "read_text"]

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
    never replaced: :class:`FileExistsError`.  A file that replaces an
    existing one keeps its permissions and owner; a new one gets those of
    any new file (0666 less the umask, usually 0644), not the private 0600
    of a temporary file.
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
    previous: list[os.stat_result | None] = []
    for target in targets:
        try:
            st = os.stat(target)
        except FileNotFoundError:
            st = None
        previous.append(st)
        if st is not None and not stat.S_ISREG(st.st_mode):  # a device, a FIFO, a folder: never replaced
            raise FileExistsError(errno.EEXIST, "exists and is not a regular file", str(target))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file where a folder of the path should be
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target.parent)) from None
    handles: list[BinaryIO] = []
    temporary: list[str] = []
    try:
        for target, st in zip(targets, previous):
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
            temporary.append(tmp)
            handles.append(os.fdopen(fd, "wb"))
            os.fchmod(fd, 0o666 & ~_umask() if st is None else stat.S_IMODE(st.st_mode))
            if st is not None and hasattr(os, "fchown") and (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                try:
                    os.fchown(fd, st.st_uid, st.st_gid)  # the replaced file's owner keeps it
                except PermissionError:
                    pass
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


def atomic_folder(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Fill a temporary folder beside ``path`` with ``write(tmp)``, fsync it, and swap it into place.

    At every instant ``path`` is the previous folder or the complete new one
    (on Linux the two are exchanged atomically with ``renameat2``; elsewhere
    two renames leave a moment when ``path`` is absent).  On any error,
    including an interrupt, the temporary folder is removed and ``path`` is
    untouched.  Temporary folders left by writes that were killed outright
    are removed by a later write, once :data:`STALE_SECONDS` old.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The name is chosen before the folder exists, so that an interrupt at any
    # point after the folder is made lands inside the ``try`` that removes it.
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir()  # an ordinary folder (the umask applies), unlike mkdtemp's private one
        write(tmp)
        for child in tmp.rglob("*"):
            if child.is_file():
                with open(child, "rb") as fh:
                    os.fsync(fh.fileno())
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remove_stale_leftovers(target)
    return target


#: Temporary folders of a write older than this (seconds) were left by a killed process.
STALE_SECONDS = 3600


def _remove_stale_leftovers(target: Path) -> None:
    """Remove the hidden temporary folders that writes killed outright (SIGKILL, power loss) left beside ``target``."""
    for leftover in target.parent.glob(f".{target.name}.*-*"):
        if not (leftover.name.startswith((f".{target.name}.tmp-", f".{target.name}.old-")) and leftover.is_dir()):
            continue
        try:
            if time.time() - leftover.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Put the complete folder ``tmp`` at ``target``; at every instant ``target`` is the old or the new folder."""
    if not target.exists():
        os.replace(tmp, target)
    elif _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous folder
    else:  # no atomic exchange here: two renames, with a moment when ``target`` is absent
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
