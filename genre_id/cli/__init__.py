"""The ``genre-id`` command line: a thin layer over the library.

One module per command family: :mod:`.identify`, :mod:`.train` (``train``
and ``evaluate``), :mod:`.index` (the fingerprint database), :mod:`.cache`, :mod:`.serve`
(the web page) and :mod:`.scan` (a whole library).
Commands only parse their arguments, call the library and print.  Every
command takes ``-q/--quiet`` and ``-v/--verbose``, and options anywhere
among its file names.

Exit codes: 0 when everything asked for was done, 2 when some input could
not be used (the others are still reported) or the environment refused
(a full disk, no permission to write an output, a missing extra), 1 for an
internal error, 130 when interrupted (Ctrl-C), 128 + the signal's number
when terminated (143 for SIGTERM, 129 for SIGHUP): a termination stops the
work as a Ctrl-C does, worker processes included.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import NoReturn, Sequence

from ..errors import GenreIdError
from ..parallel import CtrlCHeld, keep_arrays_on_the_heap
from .common import (
    ENVIRONMENT_ERRNOS,
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    TRAINING_MODULES,
    Parser,
    common_options,
    executor_for,
    describe_os_error,
    fail,
    training_extra_message,
)

__all__ = ["main", "run", "build_parser", "EXIT_OK", "EXIT_INTERNAL", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "fail"]


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached the program: stop as on Ctrl-C (every cleanup that a Ctrl-C runs runs)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def _stopped(exc: KeyboardInterrupt) -> int:
    """One line for an interrupt or a termination, and its exit code."""
    if isinstance(exc, Terminated):
        fail("terminated")
        return 128 + exc.signum
    fail("interrupted")
    return EXIT_INTERRUPTED


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("genre-id")
    except Exception:  # running from a source tree that is not installed
        from .. import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    from . import cache, identify, index, scan, serve, train

    parser = Parser(prog="genre-id", description="Name the genre of music recordings.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    parents = [common_options()]
    identify.add_parser(sub, parents)
    train.add_parsers(sub, parents)
    index.add_parser(sub, parents)
    cache.add_parser(sub, parents)
    serve.add_parser(sub, parents)
    scan.add_parser(sub, parents)
    return parser


#: What messages call standard output.
STDOUT_NAME = "<stdout>"


class _NamedStdout:
    """Standard output whose write errors (a full disk, a closed pipe) name it: their ``filename`` is ``<stdout>``."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def __getattr__(self, name: str):
        return getattr(self._stream, name)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise _named(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise _named(exc) from None


def _named(exc: OSError) -> OSError:
    if exc.filename is None:
        exc.filename = STDOUT_NAME
    return exc


def _silence_stdout() -> None:
    """Standard output to the null device, so that what is still buffered cannot fail again at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    finally:
        os.close(devnull)


def _stdout_needed(args: argparse.Namespace) -> bool:
    """Whether the command writes to standard output (all do, but ``identify --out FILE``)."""
    return not (args.command == "identify" and getattr(args, "out", None) not in (None, "-"))


def _fill_closed_standard_files() -> set[int]:
    """The standard descriptors (0, 1, 2) the program was started without (``>&-``), now on the null device.

    Filled so that no file the program opens takes their number (an error
    message would land in a model or a report).  Standard input becomes
    closed (None), standard error the null device (messages are lost, exit
    codes are not); a closed standard output is the caller's to judge.
    """
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            if fd and _read_only(fd):  # an output open for reading only (a leftover of a wrapper script) is none
                raise OSError
        except OSError:
            closed.add(fd)
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
    if 0 in closed:
        sys.stdin = None  # type: ignore[assignment]
    if 2 in closed or sys.stderr is None:
        sys.stderr = open(os.devnull, "w")
    if 1 in closed:
        sys.stdout = None  # type: ignore[assignment]
    return closed | ({1} if sys.stdout is None else set())


def _read_only(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        return False
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    closed = _fill_closed_standard_files()
    # File names come from the OS as bytes; one that is not valid UTF-8 must
    # still print (as the OS gave it) rather than stop the whole batch.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    with CtrlCHeld():  # building the parser imports every command family
        parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    if 1 in closed:  # started with standard output closed (>&-)
        if _stdout_needed(args):
            fail(f"{STDOUT_NAME}: standard output is closed")
            return EXIT_BAD_INPUT
    saved = sys.stdout
    sys.stdout = open(os.devnull, "w") if 1 in closed else _NamedStdout(saved)
    try:
        return _dispatch(args)
    finally:
        sys.stdout = saved


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command ``args`` names; every failure is one line and an exit code."""
    keep_arrays_on_the_heap()  # this process is ours: large arrays reused, not faulted in afresh
    try:
        with executor_for(args) as args.executor:
            code = int(args.func(args))
        sys.stdout.flush()  # a full disk behind standard output is said here, not lost at exit
        return code
    except GenreIdError as exc:
        fail(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        return _stopped(exc)
    except BrokenPipeError:  # the reader (head, less) went away: stop quietly
        _silence_stdout()
        return EXIT_INTERNAL
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in TRAINING_MODULES:
            return _internal(exc)
        fail(training_extra_message(args.command))
        return EXIT_BAD_INPUT
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            return _internal(exc)
        if exc.filename == STDOUT_NAME:
            _silence_stdout()
        # The environment refused (a full disk, no permission): one line naming the file if known.
        fail(f"{exc.filename}: {describe_os_error(exc)}" if exc.filename else describe_os_error(exc))
        return EXIT_BAD_INPUT
    except Exception as exc:
        return _internal(exc)


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``genre-id`` program: :func:`main`, then exit with its code.

    A Ctrl-C at any moment from reading the arguments to the end of the work
    is ``error: interrupted``, exit 130.  Once the work is done, a Ctrl-C
    while the interpreter shuts down (a fraction of a second) is ignored, instead of turning a finished run into
    an interrupted one (Python's own handler is gone by then, and the signal
    would kill the process: exit 130, silently).  SIGTERM (what
    ``Popen.terminate()``, systemd and container runtimes send) and SIGHUP
    end the work the same way, workers included: ``error: terminated``, exit
    128 + the signal's number.
    """
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None and signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _terminate)
    try:
        code = main(argv)
    except KeyboardInterrupt as exc:  # before the work started (reading the arguments)
        code = _stopped(exc)
    except SystemExit as exc:  # argparse: --help, --version, a usage error (its message already printed)
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    for signum in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            signal.signal(signum, signal.SIG_IGN)
    sys.exit(code)


def _internal(exc: Exception) -> int:
    """An unexpected exception (a bug): one line, exit code 1 (a traceback too with ``GENRE_ID_DEBUG=1``)."""
    fail(f"internal error ({type(exc).__name__}: {exc})")
    if os.environ.get("GENRE_ID_DEBUG"):
        raise exc
    return EXIT_INTERNAL
