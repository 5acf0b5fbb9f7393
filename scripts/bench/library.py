#!/usr/bin/env python3
"""Benchmark ``genre-id scan``: files per second in full and ``--quick`` mode, a resumed run, memory, agreement.

    python scripts/bench/library.py [--files 200] [--workers N] [--keep DIR]

Builds a library of ``--files`` files from the shared recordings, in mixed
formats (FLAC, Ogg Vorbis, Opus, MP3, AAC in MP4):

* four in five are single 30 s recordings (GTZAN clips and the real-world
  training recordings);
* every fifth is a 4 to 8 minute file made by joining 8 to 16 real-world
  recordings of one genre (an album side of one genre: the kind of file
  ``--quick`` is for).

Then runs the real command, ``genre-id scan``, each run in a fresh process
(wall time and peak RSS of the process and its workers): the long files in
full and ``--quick``, the short ones in full and ``--quick``, and a resumed
full scan of the whole unchanged library.  ``--quick`` agreement is the
share of files it names the same genre as the full scan.

Targets (issue 23): ``--quick`` at least 3 x the full scan's files/s on the
files of 4 minutes or more; the resumed run under 2 s for 200 files (no
decoding); agreement at least 0.9.  Prints a table, exits 1 when a target is
missed; skipped (exit 0) without the shared data.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import sys
import tempfile
from pathlib import Path

from bench_common import run_measured, shared_data_dir, verdict

import numpy as np

SR = 22050
#: Short files cycle through these (extension, how soundfile or FFmpeg writes them).
SHORT_FORMATS = ("flac", "ogg", "mp3", "opus", "m4a")
#: Long files cycle through these.
LONG_FORMATS = ("flac", "mp3", "m4a", "ogg")


def write(path: Path, y: np.ndarray, sr: int) -> Path:
    """``y`` (mono float32 at ``sr`` Hz) as ``path``, in the format its extension names."""
    import soundfile as sf

    ext = path.suffix[1:]
    if ext == "m4a":
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
        from test_audio_formats import encode

        return encode(path, np.stack([y, y]), sr, fmt="ipod", codec="aac")
    if ext == "opus":
        from genre_id.audio import resample

        y, sr = resample(y, orig_sr=sr, target_sr=48000), 48000
        with sf.SoundFile(path, "w", samplerate=sr, channels=1, format="OGG", subtype="OPUS") as out:
            for start in range(0, len(y), 1 << 16):
                out.write(y[start:start + (1 << 16)])
        return path
    kind = {"flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III")}[ext]
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, format=kind[0], subtype=kind[1]) as out:
        for start in range(0, len(y), 1 << 16):  # in blocks: libsndfile 1.2.2 crashed on one long MP3 write
            out.write(y[start:start + (1 << 16)])
    return path


def realworld_by_genre(data: Path) -> dict[str, list[Path]]:
    """The real-world training recordings, by labelled genre."""
    folder = data / "realworld_train"
    out: dict[str, list[Path]] = {}
    with open(folder / "labels.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(row["genre"], []).append(folder / row["path"])
    return {g: sorted(p for p in paths if p.exists()) for g, paths in sorted(out.items())}


def build(folder: Path, n: int, data: Path) -> tuple[list[Path], list[Path]]:
    """Write ``n`` files into ``folder/long`` and ``folder/short``; returns (long, short)."""
    from genre_id import audio

    (folder / "long").mkdir(parents=True)
    (folder / "short").mkdir(parents=True)
    real = realworld_by_genre(data)
    genres = list(real)
    singles = sorted((data / "gtzan_mini").glob("*/*.flac")) + [p for g in genres for p in real[g]]
    long, short = [], []
    for i in range(n):
        if i % 5 == 4:  # 8, 12 or 16 recordings of one genre: 4, 6 or 8 minutes
            k = len(long)
            genre = genres[k % len(genres)]
            pool = real[genre]
            picks = [pool[(k // len(genres) * 16 + j) % len(pool)] for j in range(8 + 4 * (k % 3))]
            y = np.concatenate([audio.load(p, sample_rate=SR)[0] for p in picks])
            long.append(write(folder / "long" / f"{genre}-{k:03d}.{LONG_FORMATS[k % len(LONG_FORMATS)]}", y, SR))
        else:
            k = len(short)
            y, _ = audio.load(singles[(k * 37) % len(singles)], sample_rate=SR)
            short.append(write(folder / "short" / f"clip{k:03d}.{SHORT_FORMATS[k % len(SHORT_FORMATS)]}", y, SR))
    return long, short


def genres(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as c:
        rows = dict(c.execute("SELECT path, genre FROM results"))
    c.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200, help="files in the library (default 200)")
    ap.add_argument("--workers", type=int, default=None, help="scan --workers (default: one per core)")
    ap.add_argument("--keep", metavar="DIR", help="build the library here and keep it (default: a temporary folder)")
    args = ap.parse_args()
    data = shared_data_dir()
    if not (data / "realworld_train" / "labels.csv").exists() or not (data / "gtzan_mini").is_dir():
        print(f"skipped: the shared recordings are not under {data}")
        return 0
    from genre_id.audio import info

    with tempfile.TemporaryDirectory(prefix="genre-id-library-") as tmp:
        root = Path(args.keep or tmp)
        lib = root / "lib"
        long, short = build(lib, args.files, data)
        minutes = {name: sum(info(p).duration for p in files) / 60 for name, files in (("long", long),
                                                                                          ("short", short))}
        workers = ["--workers", str(args.workers)] if args.workers else []

        def run(folder: Path, db: str, *flags: str):
            m = run_measured([sys.executable, "-m", "genre_id.cli", "scan", str(folder), "--results",
                              str(root / db), "-q", *workers, *flags], timeout=7200)
            if m.returncode != 0:
                sys.exit(f"scan failed ({m.returncode}): {m.stderr.strip()[-500:]}")
            return m

        runs = {
            "long, full": (len(long), run(lib / "long", "full.sqlite")),
            "long, --quick": (len(long), run(lib / "long", "quick.sqlite", "--quick")),
            "short, full": (len(short), run(lib / "short", "full.sqlite")),
            "short, --quick": (len(short), run(lib / "short", "quick.sqlite", "--quick")),
            "all, resumed (nothing changed)": (args.files, run(lib, "full.sqlite")),
        }
        full, quick = genres(root / "full.sqlite"), genres(root / "quick.sqlite")
    print(f"{args.files} files: {len(long)} of 4-8 min ({minutes['long']:.0f} min), {len(short)} of 30 s "
          f"({minutes['short']:.0f} min); formats {', '.join(SHORT_FORMATS)}; workers "
          f"{args.workers or 'one per core'}\n")
    print("| run | files | seconds | files/s | peak RSS MB |\n| --- | ---: | ---: | ---: | ---: |")
    for name, (n, m) in runs.items():
        print(f"| {name} | {n} | {m.wall:.2f} | {n / m.wall:.2f} | {m.rss_mb:.0f} |")
    speedup = runs["long, full"][1].wall / runs["long, --quick"][1].wall
    resumed = runs["all, resumed (nothing changed)"][1].wall
    long_paths = {str(p) for p in long}
    agree_long = np.mean([full[p] == quick[p] for p in full if p in long_paths])
    agree_all = np.mean([full[p] == quick[p] for p in full])
    checks = [
        ("--quick / full files/s, files of 4 min or more", f"{speedup:.2f}", ">= 3", speedup >= 3),
        (f"resumed scan of {args.files} unchanged files (s)", f"{resumed:.2f}", "< 2", resumed < 2),
        ("--quick agreement, long files (one genre each)", f"{agree_long:.3f}", ">= 0.9", agree_long >= 0.9),
        ("--quick agreement, all files", f"{agree_all:.3f}", "-", None),
    ]
    print("\n| measure | value | target | result |\n| --- | ---: | --- | --- |")
    for name, value, target, ok in checks:
        print(f"| {name} | {value} | {target} | {verdict(ok)} |")
    print("\nThe resumed run's time includes starting Python and loading the model; the scan skips every file "
          "by size and modification time, decoding none.")
    return 0 if all(ok is not False for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
