"""Speed of the numpy MSD_musicnn view on one core: resample + log-mel + network per 30 s of audio.

    python scripts/bench/musicnn.py [--runs 9] [--clip metal/metal.00000.flac]

Runs on one thread (OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = 1 unless set)
and prints, per stage and in total, the median wall-clock and CPU seconds per
30 s of audio and the resulting multiple of real time.  CPU time is the
fairer figure on a shared machine: wall time also counts waiting for a core.
The network's parts (indented) are timed on all patches at once, through the
private pieces of ``genre_id.musicnn``.
Target: at least 60x real time (0.5 s per 30 s).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from bench_common import shared_data_dir  # noqa: E402  (puts the checkout first on sys.path)

from genre_id import audio, musicnn  # noqa: E402


def _timed(fn, runs: int) -> tuple[float, float, object]:
    walls, cpus, result = [], [], None
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus)), result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=9)
    p.add_argument("--clip", default="metal/metal.00000.flac", help="a clip under gtzan_mini/")
    args = p.parse_args(argv)
    path = shared_data_dir() / "gtzan_mini" / args.clip
    if not path.exists():
        print(f"skipped: {path} not found (set GENRE_ID_SHARED_DATA)")
        return 0
    sr = audio.info(path).sample_rate
    y = audio.load(path, sample_rate=sr)
    seconds = len(y) / sr
    network = musicnn.load_musicnn()
    musicnn.analyze(y, sr=sr, network=network)  # warm-up (weights, filter banks, BLAS buffers)

    y16 = audio.resample(y, orig_sr=sr, target_sr=musicnn.SAMPLE_RATE)
    S = musicnn.log_mel_spectrogram(y16, sr=musicnn.SAMPLE_RATE)
    patches = musicnn.split_patches(S)
    x = patches * np.float32(network._input_bn[0]) + np.float32(network._input_bn[1])
    front = network._front_end(x)
    stages = [
        ("resample", lambda: audio.resample(y, orig_sr=sr, target_sr=musicnn.SAMPLE_RATE)),
        ("log-mel", lambda: musicnn.log_mel_spectrogram(y16, sr=musicnn.SAMPLE_RATE)),
        ("  timbral", lambda: musicnn._timbral_pooled(x, network._dft, network._timbral_kernels)),
        ("  temporal", lambda: musicnn._temporal_pooled(x, network._temporal_kernels)),
        ("  mid end", lambda: network._mid_end(front)),
        ("network", lambda: network.forward(patches)),
        ("total (analyze)", lambda: musicnn.analyze(y, sr=sr, network=network)),
    ]
    scale = 30.0 / seconds
    print(f"{path.name}: {seconds:.1f} s at {sr} Hz, {len(patches)} patches, "
          f"threads={os.environ['OPENBLAS_NUM_THREADS']}, median of {args.runs} runs, per 30 s of audio")
    for name, fn in stages:
        wall, cpu, _ = _timed(fn, args.runs)
        print(f"  {name:16s} wall {wall * scale:6.3f} s ({30 / (wall * scale):6.1f}x real time)   "
              f"cpu {cpu * scale:6.3f} s ({30 / (cpu * scale):6.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
