#!/usr/bin/env python3
"""Measure genre-id's speed and memory against its targets, each next to a reference from the same run.

    python scripts/bench_speed.py [--repeats 3] [--long-minutes 60] [--skip cold,throughput,long,warm,train]

Rows: cold ``scripts/identify.py`` on a 30 s wav (wall time and peak RSS)
next to ``python -c "import tensorflow"``; feature extraction throughput per
core of the default feature set on the 100 real clips next to the full
gtzan57 recipe (HPSS); ``identify`` on a 60-minute file; a warm
``Recognizer.identify``; training the default model from the GTZAN table.
Audio is made in a temporary folder (from the real clips in
``../shared/data`` or ``$GENRE_ID_SHARED_DATA``, synthesized when absent).
Exit code 0 when every target is met, 1 otherwise.  About 2 minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from genre_id.benchmark import format_table, run_benchmark  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="cold-start runs of each command (default 3)")
    ap.add_argument("--long-minutes", type=float, default=60.0, help="length of the long file (default 60)")
    ap.add_argument("--skip", default="", help="comma-separated rows to skip: cold,throughput,long,warm,train")
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (default ../shared/data)")
    ap.add_argument("--no-numba-cold", action="store_true", help="skip the empty-numba-cache cold start")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    t0 = time.perf_counter()
    rows, extra = run_benchmark(repeats=args.repeats, long_minutes=args.long_minutes,
                                skip=[s for s in args.skip.split(",") if s], data=args.data, keep=args.keep,
                                numba_cold=not args.no_numba_cold)
    print(format_table(rows))
    print()
    for line in extra:
        print(line)
    failed = [r.measure for r in rows if r.ok is False]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} rows pass or are informational; "
          f"{len(failed)} fail; benchmark took {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
