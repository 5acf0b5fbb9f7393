#!/usr/bin/env python3
"""Train a model: ``python scripts/train.py DATA_DIR --out models/NAME`` (or ``--table FEATURES.csv``).

The same as ``genre-id train``; see ``--help``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from genre_id.cli import run  # noqa: E402

if __name__ == "__main__":
    run(["train", *sys.argv[1:]])
