#!/usr/bin/env python3
"""Measure genre-id's speed and memory against its targets, each next to a reference from the same run.

    python scripts/bench/speed.py [--repeats 3] [--long-minutes 60] [--skip cold,throughput,long,warm,train]

Rows, each measured in a fresh process so that nothing is shared between measurements:

* cold ``python scripts/identify.py`` on a 30 s wav: wall time and peak
  memory, next to ``python -c "import tensorflow"`` alone;
* feature extraction throughput of the default feature set in one process
  with one thread (seconds of audio per second of CPU) on the 100 real
  clips, next to the full ``gtzan57`` recipe (with HPSS);
* ``identify`` on a 60-minute file: peak memory and speed;
* a warm ``Recognizer.identify`` on a 30 s clip;
* training the default model from the GTZAN table.

Peak memory (RSS) of a command is read with ``getrusage(RUSAGE_CHILDREN)``
in a small wrapper process that runs only that command
(:func:`bench_common.run_measured`).  Audio is made in a temporary folder
(from the real clips in ``../shared/data`` or ``$GENRE_ID_SHARED_DATA``,
synthesized when absent), never in the repository.  Exit code 0 when every
target is met, 1 otherwise.  About 2 minutes.

The steps that run inside the measured process are this script's
``--step throughput|warm`` (they print JSON).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from bench_common import ROOT, env_with_checkout, run_measured, shared_data_dir, verdict
from genre_id.textsafe import text_table

IDENTIFY = ROOT / "scripts" / "identify.py"

def import_breakdown(cmd_args: Sequence[str], *, top: int = 8, env: dict[str, str] | None = None) -> list[tuple[str, float]]:
    """The top-level imports of ``python -X importtime CMD_ARGS`` by cumulative seconds, largest first.

    "Top-level" means imported by the program itself, not by another module;
    lazily imported modules count where they were first needed.
    """
    p = subprocess.run([sys.executable, "-X", "importtime", *map(str, cmd_args)], capture_output=True, text=True,
                       env=env_with_checkout(env), timeout=600)
    found: list[tuple[str, float]] = []
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3:
            continue
        name = parts[2].rstrip()
        if name.startswith(" ") and not name.startswith("  "):  # depth 0: one space after the bar
            found.append((name.strip(), int(parts[1]) / 1e6))
    found.sort(key=lambda kv: -kv[1])
    return found[:top]


# --- audio for the benchmark --------------------------------------------------------------------------


def real_clips(data: Path | None = None) -> list[Path]:
    """The 100 real GTZAN clips, or an empty list when they are absent."""
    return sorted((data or shared_data_dir()).glob("gtzan_mini/*/*.flac"))


def _synth(seconds: float, seed: int = 0):
    """Synthetic music (:func:`make_example.synth_groove`), 22050 Hz mono, when no real clip is at hand."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_example import synth_groove

    return synth_groove(seconds=seconds, seed=seed)


def make_clip(path: Path, clips: Sequence[Path]) -> Path:
    """A 30 s wav at the clip's own rate: the first real clip, or a synthetic one."""
    import soundfile as sf

    if clips:
        y, sr = sf.read(clips[0], dtype="float32")
    else:
        y, sr = _synth(30.0), 22050
    sf.write(path, y, sr, subtype="PCM_16")
    return path


def make_long(path: Path, clips: Sequence[Path], seconds: float) -> Path:
    """A ``seconds`` long wav, 22050 Hz mono PCM_16: the real clips one after another (or synthetic audio).

    Written clip by clip, so making it needs no more memory than one clip.
    """
    import soundfile as sf

    from genre_id.audio import load

    sr = 22050
    need = int(seconds * sr)
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as out:
        i = 0
        while need > 0:
            if clips:
                y = load(clips[i % len(clips)], sample_rate=sr)[0]  # mono, resampled
            else:
                y = _synth(30.0, seed=i)
            y = y[:need]
            out.write(y)
            need -= len(y)
            i += 1
    return path


# --- the measurements done in subprocesses --------------------------------------------------------------


def _one_thread_env() -> dict[str, str]:
    return {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}


def _throughput_main(feature_set: str, files: Sequence[str]) -> dict:
    """Extract ``feature_set`` from ``files`` in this process; seconds of audio per CPU second.

    The first file is extracted once beforehand and not counted, so the
    figure is the steady rate (the cold start is measured separately).
    Decoding and resampling are included.  The process is set up as a
    worker process (and the ``genre-id`` command) sets itself up: one BLAS
    thread (from the environment) and glibc's heap kept for large arrays.
    """
    from genre_id.extraction import extract_file
    from genre_id.parallel import keep_arrays_on_the_heap

    keep_arrays_on_the_heap()

    extract_file(files[0], feature_set=feature_set)
    audio_s = 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for f in files:
        audio_s += extract_file(f, feature_set=feature_set).duration
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"feature_set": feature_set, "files": len(files), "audio_s": audio_s, "cpu_s": cpu, "wall_s": wall,
            "rate_cpu": audio_s / cpu, "rate_wall": audio_s / wall}


def _warm_main(clip: str, repeats: int = 7) -> dict:
    """A loaded ``Recognizer`` identifying ``clip`` again and again: the median seconds per call."""
    from genre_id import Recognizer

    rec = Recognizer.load()
    t = time.perf_counter()
    rec.identify(clip)
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        p = rec.identify(clip)
        times.append(time.perf_counter() - t)
    heavy = sorted(m for m in ("tensorflow", "keras", "sklearn") if m in sys.modules)
    return {"first_s": first, "median_s": statistics.median(times), "duration": p.duration,
            "genre": p.genre, "heavy_modules": heavy}


def _run_json(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 900) -> dict:
    p = subprocess.run([sys.executable, __file__, "--step", *map(str, args)], capture_output=True,
                       text=True, env=env_with_checkout(env), timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark step {args[0]} failed: {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# --- the table --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the result table."""

    measure: str
    value: str
    reference: str = "-"
    ratio: str = "-"
    target: str = "report"
    ok: bool | None = None  #: None when there is no target
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return verdict(self.ok, passed="PASS", info="info")


def table(rows: Sequence[Row]) -> str:
    return text_table(("measure", "ours", "reference (same run)", "ratio", "target", "result"),
                      [(r.measure, r.value, r.reference, r.ratio, r.target, r.verdict) for r in rows], rule=True)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_benchmark(*, repeats: int = 3, long_minutes: float = 60.0, skip: Sequence[str] = (),
                  data: Path | None = None, keep: bool = False, numba_cold: bool = True,
                  log: Callable[[str], None] = _say) -> tuple[list[Row], list[str]]:
    """Measure everything; the rows of the table and extra lines (details, import breakdown)."""
    data = data or shared_data_dir()
    clips = real_clips(data)
    rows: list[Row] = []
    extra: list[str] = []
    tmp_ctx = tempfile.TemporaryDirectory(prefix="genre-id-bench-")
    tmp = Path(tmp_ctx.name)
    try:
        clip = make_clip(tmp / "clip30.wav", clips)
        source = f"{clips[0].parent.name}/{clips[0].name}" if clips else "synthetic"
        extra.append(f"audio: 30 s wav from {source}; {len(clips)} real clips under {data}"
                     if clips else "audio: synthetic (the real clips were not found)")

        if "cold" not in skip:
            log(f"cold start: identify vs import tensorflow, {repeats} runs each, interleaved ...")
            ours, ref = [], []
            for _ in range(repeats):
                ref.append(run_measured([sys.executable, "-c", "import tensorflow"]))
                ours.append(run_measured([sys.executable, str(IDENTIFY), str(clip)]))
            if any(m.returncode for m in ours):
                raise RuntimeError(f"identify failed: {ours[0].stderr.strip()}")
            w, rw = statistics.median(m.wall for m in ours), statistics.median(m.wall for m in ref)
            rss, rrss = max(m.rss_mb for m in ours), max(m.rss_mb for m in ref)
            rows.append(Row("cold identify 30 s wav (both members), wall (median)", f"{w:.2f} s",
                            f"{rw:.2f} s import tensorflow", f"{w / rw:.2f}x", "<= 0.35x", w / rw <= 0.35))
            rows.append(Row("cold identify 30 s wav, peak RSS (max)", f"{rss:.0f} MB", f"{rrss:.0f} MB import tensorflow",
                            f"{rss / rrss:.2f}x", "< 400 MB", rss < 400))
            extra.append("cold identify runs: " + ", ".join(f"{m.wall:.2f} s/{m.rss_mb:.0f} MB" for m in ours)
                         + "; import tensorflow runs: " + ", ".join(f"{m.wall:.2f} s/{m.rss_mb:.0f} MB" for m in ref))
            extra.append("answer: " + ours[0].stdout.strip().splitlines()[0])
            breakdown = import_breakdown([str(IDENTIFY), str(clip)])
            extra.append("cold identify, top-level imports by cumulative time: "
                         + ", ".join(f"{n} {s * 1000:.0f} ms" for n, s in breakdown))
            if numba_cold:
                log("cold start with an empty numba cache (first run after installing) ...")
                m = run_measured([sys.executable, str(IDENTIFY), str(clip)],
                                 env={"NUMBA_CACHE_DIR": str(tmp / "numba-cache")})
                rows.append(Row("cold identify, empty numba cache (first run)", f"{m.wall:.2f} s",
                                f"{w:.2f} s with the cache", f"{m.wall / w:.1f}x"))

        if "throughput" not in skip:
            files = [str(c) for c in clips] or [str(make_long(tmp / f"s{i}.wav", [], 30.0)) for i in range(20)]
            ref_files = files[:: max(1, len(files) // 10)][:10]
            log(f"throughput: default feature set on {len(files)} clips, gtzan57 on {len(ref_files)}, "
                "one process, one thread ...")
            from genre_id.features import DEFAULT_FEATURE_SET  # light: numpy only

            one = _one_thread_env()
            ours_t = _run_json(["throughput", DEFAULT_FEATURE_SET, *files], env=one)
            ref_t = _run_json(["throughput", "gtzan57", *ref_files], env=one)
            rows.append(Row(f"extraction throughput, {DEFAULT_FEATURE_SET}, per core",
                            f"{ours_t['rate_cpu']:.0f}x real time",
                            f"{ref_t['rate_cpu']:.0f}x gtzan57 (HPSS)",
                            f"{ours_t['rate_cpu'] / ref_t['rate_cpu']:.1f}x", ">= 200x real time",
                            ours_t["rate_cpu"] >= 200))
            msd_t = _run_json(["throughput", "musicnn-msd", *ref_files], env=one)
            rows.append(Row("musicnn view alone (musicnn-msd), per core", f"{msd_t['rate_cpu']:.0f}x real time",
                            f"{ours_t['rate_cpu']:.0f}x {DEFAULT_FEATURE_SET}", "-", ">= 60x real time",
                            msd_t["rate_cpu"] >= 60))
            for t in (ours_t, ref_t, msd_t):
                extra.append(f"throughput {t['feature_set']}: {t['files']} files, {t['audio_s']:.0f} s of audio in "
                             f"{t['cpu_s']:.1f} s CPU / {t['wall_s']:.1f} s wall (decode + resample + features)")

        if "long" not in skip:
            log(f"identify on a {long_minutes:g}-minute file ...")
            long_path = make_long(tmp / "long.wav", clips, long_minutes * 60)
            m = run_measured([sys.executable, str(IDENTIFY), "--json", str(long_path)])
            if m.returncode:
                raise RuntimeError(f"identify failed on the long file: {m.stderr.strip()}")
            out = json.loads(m.stdout.strip().splitlines()[-1])
            rate = out["duration"] / m.wall
            rows.append(Row(f"identify {long_minutes:g}-min file, peak RSS", f"{m.rss_mb:.0f} MB", "-", "-",
                            "< 500 MB", m.rss_mb < 500))
            rows.append(Row(f"identify {long_minutes:g}-min file, speed (cold, wall)", f"{rate:.0f}x real time",
                            f"{m.wall:.1f} s for {out['duration']:.0f} s", "-", ">= 100x real time", rate >= 100))
            extra.append(f"long file: {long_path.stat().st_size / 1e6:.0f} MB wav, {len(out['segments'])} windows "
                         f"in the timeline, answer {out['genre']} {out['confidence']:.2f}")
            long_path.unlink()

        if "warm" not in skip:
            log("warm Recognizer.identify on the 30 s clip ...")
            warm = _run_json(["warm", str(clip)])
            rows.append(Row("warm Recognizer.identify, 30 s clip (median)", f"{warm['median_s'] * 1000:.0f} ms",
                            f"first call {warm['first_s'] * 1000:.0f} ms", f"{warm['duration'] / warm['median_s']:.0f}x RT"))
            if warm["heavy_modules"]:
                extra.append(f"WARNING: Recognizer imported {warm['heavy_modules']}")

        if "train" not in skip:
            needed = ("gtzan_features_30_sec.csv", "gtzan_mini", "realworld_train", "realworld_dev")
            if all((data / name).exists() for name in needed):
                log("rebuilding the default model (grouped cross-validation, both members, the ensemble) ...")
                m = run_measured([sys.executable, str(ROOT / "scripts" / "build_default_model.py"), "--data", str(data),
                                  "--out", str(tmp / "model"), "--cache-dir", str(ROOT / "data" / "cache"),
                                  "--reports", str(tmp / "cv")],
                                 cwd=str(ROOT), timeout=3600)
                if m.returncode:
                    raise RuntimeError(f"rebuilding failed: {m.stderr.strip()[-2000:]}")
                rows.append(Row("rebuild the default model (CV, both members, ensemble)", f"{m.wall:.0f} s", "-", "-",
                                "< 900 s", m.wall < 900))
                extra.append(f"rebuild: peak RSS {m.rss_mb:.0f} MB")
            else:
                extra.append(f"rebuild skipped: the GTZAN table and clips and the real-world sets are not all under {data}")
    finally:
        if keep:
            extra.append(f"kept {tmp}")
        else:
            tmp_ctx.cleanup()
    return rows, extra


def run_step(argv: Sequence[str]) -> int:
    """``--step throughput FEATURE_SET FILE...`` or ``--step warm CLIP``: measure in this process; print JSON."""
    what, *rest = argv
    if what == "throughput":
        result = _throughput_main(rest[0], rest[1:])
    elif what == "warm":
        result = _warm_main(rest[0])
    else:
        raise SystemExit(f"unknown step {what!r}")
    print(json.dumps(result))
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--step"]:
        return run_step(sys.argv[2:])
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
    print(table(rows))
    print()
    for line in extra:
        print(line)
    failed = [r.measure for r in rows if r.ok is False]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} rows pass or are informational; "
          f"{len(failed)} fail; benchmark took {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
