#!/usr/bin/env python3
"""Benchmark song identification by fingerprint on the shared GTZAN clips.

    python scripts/bench_fingerprint.py [--data DIR] [--seed N] [--excerpts N] [--tune]

Prints a table (measure, value, target, pass/fail) and exits 1 if a target
is missed; ``--tune`` prints the chance-alignment scores the match threshold
is set from instead.  The clips are read from ``DIR`` (default
``$GENRE_ID_SHARED_DATA/gtzan_mini``, else ``../shared/data/gtzan_mini``);
when they are absent the benchmark is skipped (exit 0).  The logic lives in
:mod:`genre_id.fingerprint.bench`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genre_id.fingerprint.bench import default_data_dir, format_table, run_benchmark, run_tuning
from genre_id.fingerprint.metadata import find_audio_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="folder of <genre>/<clip> audio (default: shared gtzan_mini)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--excerpts", type=int, default=5, help="5 s excerpts per clip (default 5)")
    parser.add_argument("--tune", action="store_true", help="print chance-alignment scores for setting the threshold")
    args = parser.parse_args(argv)
    data = args.data or default_data_dir()
    if not data.is_dir() or not find_audio_files(data):
        print(f"skipped: no clips at {data} (set GENRE_ID_SHARED_DATA or pass --data)")
        return 0
    if args.tune:
        run_tuning(data, seed=args.seed + 1)
        return 0
    rows = run_benchmark(data, seed=args.seed, excerpts=args.excerpts)
    print()
    print(format_table(rows))
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
