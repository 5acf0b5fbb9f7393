#!/usr/bin/env python3
"""Name the genre of audio files: ``python scripts/identify.py FILE [FILE ...]``.

The same as ``genre-id identify``; see ``--help``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from genre_id.cli import run  # noqa: E402

if __name__ == "__main__":
    run(["identify", *sys.argv[1:]])
