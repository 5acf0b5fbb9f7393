"""What every command shares: exit codes, the one-line error printer, argument types."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from contextlib import contextmanager
from typing import Iterator, Sequence

__all__ = ["EXIT_OK", "EXIT_INTERNAL", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "fail", "int_at_least",
           "positive_int", "command_line", "add_scheduler_argument", "SCHEDULER_VARIABLE", "executor_for"]

#: Exit codes of every command.
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130


def fail(message: str) -> None:
    """One ``error: ...`` line on stderr (the message names the file and the problem)."""
    print(f"error: {message}", file=sys.stderr, flush=True)


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
                        f"(default: ${SCHEDULER_VARIABLE}, else processes on this machine; --workers is then unused)")


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
