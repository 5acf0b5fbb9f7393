"""Benchmark ``genre-id scan``: files per second in full and ``--quick`` mode, a resumed run, and agreement.

Builds a library of N files from the shared clips (30 s clips as FLAC and Ogg
Vorbis, and every fifth file a 4 to 8 minute FLAC made by joining clips),
then times, in this process (library API, ``--workers`` processes):

* a full scan, a resumed scan of the unchanged folder, and a ``--quick``
  scan into a second results file;
* how many files ``--quick`` names the same genre as the full scan.

    python scripts/bench/library.py [--files 20] [--workers 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench_common import shared_data_dir

import numpy as np
import soundfile as sf


def build(folder: Path, n: int) -> None:
    from genre_id import audio

    clips = sorted((shared_data_dir() / "gtzan_mini").glob("*/*.flac"))
    if not clips:
        sys.exit(f"skipped: no shared clips under {shared_data_dir()}")
    for i in range(n):
        if i % 5 == 4:  # a long file: 8, 12 or 16 clips joined
            parts = [audio.load(clips[(i + k * 7) % len(clips)], sample_rate=22050)[0] for k in range(8 + 4 * (i % 3))]
            sf.write(folder / f"long{i:03d}.flac", np.concatenate(parts), 22050)
            continue
        y, sr = sf.read(clips[i % len(clips)], dtype="float32")
        fmt = ("OGG", "VORBIS", "ogg") if i % 2 else ("FLAC", "PCM_16", "flac")
        sf.write(folder / f"clip{i:03d}.{fmt[2]}", y, sr, format=fmt[0], subtype=fmt[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    from genre_id.analysis import Analyzer
    from genre_id.library import ResultStore, scan

    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "lib"
        lib.mkdir()
        build(lib, args.files)
        hours = sum(sf.info(p).duration for p in lib.iterdir()) / 3600
        rows = []
        with Analyzer.load(workers=args.workers) as analyzer:
            for name, quick, db in (("full", False, "full"), ("resumed (nothing changed)", False, "full"),
                                    ("--quick", True, "quick")):
                with ResultStore(Path(tmp) / f"{db}.sqlite") as store:
                    started = time.perf_counter()
                    summary = scan(lib, analyzer, store, quick=quick, batch=10)
                    seconds = time.perf_counter() - started
                rows.append((name, summary.analysed, seconds))
        with ResultStore(Path(tmp) / "full.sqlite") as full, ResultStore(Path(tmp) / "quick.sqlite") as quick:
            a = {r["path"]: r["genre"] for r in full.rows()}
            b = {r["path"]: r["genre"] for r in quick.rows()}
            long = [p for p in a if "/long" in p]
    print(f"{args.files} files ({len(long)} of 4-8 min), {hours * 60:.1f} min of audio, workers={args.workers}\n")
    print("| run | analysed | seconds | files/s |\n|---|---:|---:|---:|")
    for name, analysed, seconds in rows:
        print(f"| {name} | {analysed} | {seconds:.2f} | {args.files / seconds:.1f} |")
    agree = sum(a[p] == b[p] for p in a)
    agree_long = sum(a[p] == b[p] for p in long)
    print(f"\n--quick agrees with the full scan on {agree}/{len(a)} files ({agree_long}/{len(long)} long files)")


if __name__ == "__main__":
    main()
