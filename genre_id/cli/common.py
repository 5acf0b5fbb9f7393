"""What every command shares: exit codes, the parser class and common options, the one-line error printer,
argument types, safe output files, and the expansion of folders into audio files."""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import GenreIdError
from ..textsafe import one_line

__all__ = ["EXIT_OK", "EXIT_INTERNAL", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "OutputError", "Parser",
           "command_line", "common_options", "expand_inputs", "fail", "input_paths", "broken_link_problem",
           "int_at_least", "missing_extra",
           "inside", "output_file", "output_path", "output_problem", "same_output", "positive_int", "progress", "write_output", "add_scheduler_argument", "SCHEDULER_VARIABLE",
           "executor_for"]

#: Exit codes of every command.
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130

#: Modules of the ``train`` extra, and the extra's install command.
TRAINING_MODULES = ("keras", "tensorflow", "sklearn", "librosa")
TRAIN_EXTRA = "pip install 'genre-id[train]'"


class OutputError(GenreIdError):
    """A file the user asked for (a model, a report, ``--out``, ``--plot``) could not be written."""


def fail(message: object) -> None:
    """One ``error: ...`` line on stderr; the message (naming the file and the problem) is made one printable line."""
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose commands take options anywhere among their file names.

    ``identify a.flac --no-timeline b.flac`` works: a parser without
    sub-commands parses with :meth:`~argparse.ArgumentParser.parse_known_intermixed_args`.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._subparsers is None and not self._intermixing:
            self._intermixing = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._intermixing = False
        return super().parse_known_args(args, namespace)


def common_options() -> argparse.ArgumentParser:
    """The options every command has (a parent parser): ``-q/--quiet`` and ``-v/--verbose``."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true",
                       help="print only results and errors (no progress bar, no notes)")
    group.add_argument("-v", "--verbose", action="store_true", help="say more about what is done")
    return parent


def int_at_least(minimum: int):
    """An argparse ``type``: a whole number of at least ``minimum`` (else a usage error, exit code 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


positive_int = int_at_least(1)


#: Environment variable giving the default of ``--scheduler``.
SCHEDULER_VARIABLE = "GENRE_ID_SCHEDULER"


def add_scheduler_argument(p: argparse.ArgumentParser) -> None:
    """``--scheduler ADDRESS``: run the command's per-file work on a Dask distributed cluster."""
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the per-file work on the Dask distributed scheduler at ADDRESS, e.g. tcp://host:8786 "
                        f"(default: ${SCHEDULER_VARIABLE}, else processes on this machine"
                        + ("; --workers is then unused)" if any(a.dest == "workers" for a in p._actions) else ")"))


@contextmanager
def executor_for(args: argparse.Namespace) -> Iterator[object]:
    """The executor the command's per-file work runs on: a Dask cluster with ``--scheduler``, else None (local).

    Within the block it is also :mod:`genre_id.parallel`'s current executor.
    Dask is imported only when a scheduler is named.
    """
    if not hasattr(args, "scheduler"):
        yield None
        return
    address = args.scheduler or os.environ.get(SCHEDULER_VARIABLE) or None
    if address is None:
        yield None
        return
    from ..cluster import connect
    from ..parallel import use_executor

    with connect(address) as executor, use_executor(executor):
        yield executor


def command_line(argv: Sequence[str]) -> str:
    """The command as typed, for the records of models and reports."""
    return "genre-id " + " ".join(shlex.quote(a) for a in argv)


def missing_extra(command: str) -> str | None:
    """The one-line message when ``command`` cannot run because the ``train`` extra is not installed, else None."""
    import importlib.util

    for module in TRAINING_MODULES:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return training_extra_message(command)
    return None


def training_extra_message(command: str) -> str:
    return f"genre-id {command} needs the training extra: {TRAIN_EXTRA}"


def progress(total: int, *, quiet: bool = False, description: str = "", unit: str = "file") -> Any:
    """A progress bar on stderr for a batch of ``total`` files: shown on a terminal only, and not with ``quiet``.

    Always returns an object with ``update()``, ``write()`` and ``close()``
    (a disabled bar when not shown), so callers need no special case.
    """
    from ..parallel import progress_bar

    return progress_bar(total, description=description, unit=unit, disable=quiet)


# -- files the user asked for ------------------------------------------------------------------------

#: errno values that mean "the user's environment", reported as exit code 2 rather than as a bug.
ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS", "EFBIG", "EIO", "ENOTDIR",
                                      "EISDIR", "ENAMETOOLONG", "ENOENT", "EEXIST", "ELOOP", "EMLINK", "ENXIO",
                                      "ETXTBSY", "EBUSY", "EXDEV")
    if hasattr(errno, name)
)


def describe_os_error(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def output_path(path: str | os.PathLike[str]) -> Path:
    """Where to write the output ``path``: a symbolic link is followed (its target is written, the link stays)."""
    p = Path(path)
    return Path(os.path.realpath(p)) if p.is_symlink() else p


@contextmanager
def output_file(path: str | os.PathLike[str], *, suffix: str = "") -> Iterator[BinaryIO]:
    """:func:`genre_id.files.atomic_file` for a file the user named; a failure to write is one :class:`OutputError`.

    A symbolic link at ``path`` is followed.  On any failure (a full disk,
    no permission) nothing is left behind and the previous file, if any, is
    untouched.
    """
    from ..files import atomic_file

    target = output_path(path)
    try:
        with atomic_file(target, suffix=suffix) as fh:
            yield fh
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({describe_os_error(exc)})") from None


def _identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(device, inode)`` of what ``path`` names, links followed; None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def broken_link_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path``, a link to nothing or a loop of links, is never written (one line); None for anything else."""
    if not Path(path).is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as exc:  # never replaced, never followed into new folders
        what = "a loop of links" if exc.errno == errno.ELOOP else "a link to nothing"
        return f"{path}: is {what}; refusing to write there"
    return None


def output_problem(path: str | os.PathLike[str], *, inputs: Sequence[str | os.PathLike[str]] = (),
                   folders: Sequence[str | os.PathLike[str]] = ()) -> str | None:
    """Why the output file ``path`` cannot be written (one line), checked before any work; None when it can.

    An output is written only where nothing is, or over a regular file that
    is not one of the command's ``inputs`` (compared by device and inode,
    links followed): never over a device, a FIFO, a socket or an input.
    Every file in the input ``folders`` (a model folder) is an input, and
    nothing is written inside one.
    """
    problem = broken_link_problem(path)
    if problem:
        return problem
    target = output_path(path)
    folder = next((f for f in folders if inside(path, f)), None)
    if folder is not None:
        return f"{path}: is in {folder}, one of the inputs; refusing to write there"
    if target.is_dir():
        return f"{path}: is a folder; name a file to write"
    if target.exists() and not target.is_file():
        return f"{path}: is not a regular file (a device, a FIFO or a socket); refusing to replace it"
    if any(same_output(target, p) for p in inputs if p != "-"):
        return f"{path}: is one of the inputs; refusing to overwrite it"
    folder = target.parent
    while not folder.exists() and folder != folder.parent:  # the folders that would be created
        folder = folder.parent
    if not folder.is_dir():
        return f"{path}: cannot write ({folder} is not a folder)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{path}: cannot write (no permission to write in {folder})"
    return None


def input_paths(files: Sequence[str], *, db: str | os.PathLike[str] | None = None) -> list[str]:
    """What a command reads, for :func:`output_problem`: its ``files`` (``-``: the file behind ``<``, if any) and
    the SQLite database ``db`` with the files SQLite keeps beside it (beside the file a link points to)."""
    paths = ["/dev/stdin" if f == "-" else str(f) for f in files]
    if db:
        real = os.path.realpath(db)
        paths += [os.fspath(db), real, *(real + s for s in ("-wal", "-shm", "-journal"))]
    return paths


def inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the folder ``folder`` or lies somewhere inside it (links followed)."""
    p, f = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return p == f or f in p.parents or (_identity(f) is not None and _identity(p) == _identity(f))


def same_output(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two output paths name the same file (links followed; also when neither exists yet)."""
    return os.path.realpath(a) == os.path.realpath(b) or (_identity(a) is not None and _identity(a) == _identity(b))


def write_output(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to the file ``path`` atomically (:func:`output_file`)."""
    with output_file(path) as fh:
        fh.write(data)


@contextmanager
def saving(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an ``OSError`` of the block (writing ``path``) into one :class:`OutputError` naming ``path``."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({describe_os_error(exc)})") from None


# -- inputs --------------------------------------------------------------------------------------------

def expand_inputs(paths: Sequence[str], *, quiet: bool = False) -> tuple[list[str], list[str]]:
    """The files to analyse for ``paths`` (``-`` for stdin kept as is), and the folders among them with no audio.

    A folder is searched by :func:`genre_id.folders.walk_audio`; how many
    other files it held is said on stderr (unless ``quiet``), and each folder
    without audio is one error line there.  A
    file named on the command line is always kept (whatever its name), and a
    missing one is kept too, so that it is reported in its turn.
    """
    from ..folders import walk_audio

    files: list[str] = []
    skipped = 0
    empty: list[str] = []
    for p in paths:
        if p == "-" or not os.path.isdir(p):
            files.append(p)
            continue
        scan = walk_audio(p)
        files += [str(f) for f in scan.files]
        skipped += scan.skipped
        if not scan.files:
            empty.append(p)
    if skipped and not quiet:
        print(f"skipped {skipped} non-audio file{'s' if skipped != 1 else ''}", file=sys.stderr, flush=True)
    for folder in empty:  # in the place of its files: one line, and the others are still analysed
        fail(f"{folder}: is a directory with no audio files")
    return files, empty
