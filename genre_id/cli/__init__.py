"""The ``genre-id`` command line: a thin layer over the library.

One module per command family: :mod:`.identify`, :mod:`.train` (``train``
and ``evaluate``) and :mod:`.index` (the fingerprint database).  Commands
only parse their arguments, call the library and print.

Exit codes: 0 when everything asked for was done, 2 when some input could
not be used (the others are still reported), 1 for an internal error, 130
when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from ..errors import GenreIdError
from .common import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, executor_for, fail

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_INTERNAL", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "fail"]


def build_parser() -> argparse.ArgumentParser:
    from . import identify, index, train

    parser = argparse.ArgumentParser(prog="genre-id", description="Name the genre of music recordings.")
    sub = parser.add_subparsers(dest="command", required=True)
    identify.add_parser(sub)
    train.add_parsers(sub)
    index.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # File names come from the OS as bytes; one that is not valid UTF-8 must
    # still print (as the OS gave it) rather than stop the whole batch.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        with executor_for(args) as args.executor:
            return int(args.func(args))
    except GenreIdError as exc:
        fail(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        fail("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader (head, less) went away: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_INTERNAL
    except Exception as exc:
        fail(f"internal error ({type(exc).__name__}: {exc})")
        if os.environ.get("GENRE_ID_DEBUG"):
            raise
        return EXIT_INTERNAL
