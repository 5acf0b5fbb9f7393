"""What every command shares: exit codes, the one-line error printer, argument types."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Sequence

__all__ = ["EXIT_OK", "EXIT_INTERNAL", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "fail", "int_at_least",
           "positive_int", "command_line"]

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


def command_line(argv: Sequence[str]) -> str:
    """The command as typed, for the records of models and reports."""
    return "genre-id " + " ".join(shlex.quote(a) for a in argv)
