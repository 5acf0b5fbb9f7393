#!/usr/bin/env python3
"""Throughput of ``genre-id identify`` locally and on a Dask cluster, and what it means for FMA-full.

    python scripts/bench/scale.py [--files 100] [--json]

One run, side by side, over the real clips of ``gtzan_mini`` (from
``../shared/data`` or ``$GENRE_ID_SHARED_DATA``), each a fresh
``genre-id identify --json`` process timed from start to last line (start-up,
model loading and, with ``--scheduler``, connecting included):

* ``--workers 1`` (this process only);
* ``--workers 2`` (two local worker processes);
* ``--scheduler`` on a Dask ``LocalCluster`` of 2 worker processes with one
  thread each, started by this script beforehand (its start is not timed).

Each row gives files per second and × real time (seconds of audio analysed
per second of wall time), and checks that every run gave the same genres.
Then the projection for FMA-full (106,574 tracks, about 880 hours) on N
machines of this size, each running ``dask worker --nworkers 2 --nthreads 1``:
hours = 880 h / (× real time of one machine × N), assuming throughput adds up
across machines (independent files, one scheduler, storage fast enough).
Requires ``pip install -e ".[cluster]"``.  About 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_common import env_with_checkout, run_measured, shared_data_dir
from genre_id.textsafe import text_table

FMA_TRACKS = 106_574
FMA_HOURS = 880.0


def _identify(files: list[Path], *extra: str):
    m = run_measured([sys.executable, "-m", "genre_id.cli", "identify", "--json", *extra, *map(str, files)],
                     env=env_with_checkout({"OMP_NUM_THREADS": "1"}))
    if m.returncode != 0:
        raise SystemExit(f"identify {' '.join(extra)} failed ({m.returncode}): {m.stderr.strip()[-500:]}")
    results = [json.loads(line) for line in m.stdout.splitlines()]
    audio = sum(r["duration"] for r in results)
    genres = [(r["file"], r["genre"]) for r in results]
    return {"wall": m.wall, "files": len(results), "audio_s": audio, "files_per_s": len(results) / m.wall,
            "x_realtime": audio / m.wall, "genres": genres}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=100, help="how many of the real clips (default all 100)")
    ap.add_argument("--machines", default="1,2,4,8,16,32", help="N for the projection (comma-separated)")
    ap.add_argument("--json", action="store_true", help="print the measurements as JSON too")
    args = ap.parse_args()
    mini = shared_data_dir() / "gtzan_mini"
    files = sorted(mini.glob("*/*.flac"))[: args.files]
    if not files:
        print(f"skipped: no real clips in {mini} (set GENRE_ID_SHARED_DATA)")
        return 0
    try:
        from distributed import LocalCluster
    except ImportError:
        print('skipped: Dask distributed is not installed (pip install -e ".[cluster]")')
        return 0

    rows = {"local, 1 worker": _identify(files, "--workers", "1"),
            "local, 2 workers": _identify(files, "--workers", "2")}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        rows["Dask, 2 workers x 1 thread"] = _identify(files, "--scheduler", cluster.scheduler_address)

    reference = next(iter(rows.values()))["genres"]
    same = all(r["genres"] == reference for r in rows.values())
    print(f"identify over {len(files)} real clips ({len(reference)} identified, "
          f"{next(iter(rows.values()))['audio_s']:.0f} s of audio), one process per row; same genres in every "
          f"row: {'yes' if same else 'NO'}")
    print(text_table(["setup", "wall s", "files/s", "x real time"],
                     [(k, f"{r['wall']:.1f}", f"{r['files_per_s']:.2f}", f"{r['x_realtime']:.0f}")
                      for k, r in rows.items()], rule=True))

    machine = rows["Dask, 2 workers x 1 thread"]
    per_track = FMA_HOURS * 3600 / FMA_TRACKS
    print(f"\nProjection for FMA-full ({FMA_TRACKS:,} tracks, {FMA_HOURS:.0f} h = {FMA_HOURS * 3600:,.0f} s of "
          f"audio, {per_track:.1f} s per track on average) on N machines like this one (2 cores, "
          f"'dask worker --nworkers 2 --nthreads 1' on each):")
    print(f"  one machine analyses {machine['x_realtime']:.0f} s of audio per second "
          f"({machine['files_per_s']:.2f} files/s of 30 s clips)")
    print(f"  hours = {FMA_HOURS * 3600:,.0f} s / ({machine['x_realtime']:.0f} x N) / 3600")
    proj = []
    for n in (int(x) for x in args.machines.split(",")):
        seconds = FMA_HOURS * 3600 / (machine["x_realtime"] * n)
        proj.append((n, f"{seconds / 3600:.2f}", f"{seconds / 60:.0f}", f"{FMA_TRACKS / seconds:.1f}"))
    print(text_table(["machines N", "hours", "minutes", "tracks/s"], proj, rule=True))
    print("  (assumes throughput adds up across machines: independent files, one scheduler at a few ms per task,\n"
          "   storage that serves every worker; FMA is mp3, whose decoding costs differ from these flac clips)")
    if args.json:
        print(json.dumps({k: {x: v for x, v in r.items() if x != "genres"} for k, r in rows.items()}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
