#!/usr/bin/env python3
"""Benchmark song identification by fingerprint on the shared GTZAN clips, and tune its threshold.

    python scripts/bench/fingerprint.py [--data DIR] [--seed N] [--excerpts N] [--tune]

Prints a table (measure, value, target, pass/fail) and exits 1 if a target
is missed; ``--tune`` prints the chance-alignment scores the match threshold
is set from instead.  The clips are read from ``DIR`` (default
``$GENRE_ID_SHARED_DATA/gtzan_mini``, else ``../shared/data/gtzan_mini``);
when they are absent the benchmark is skipped (exit 0).


Everything is measured on the real clips of a folder laid out
``<genre>/<file>`` (the shared ``gtzan_mini``: 10 clips of 30 s per genre),
seeded, in temporary databases that are deleted afterwards.

Benchmark (:func:`run_benchmark`):

- the whole folder is indexed (indexing speed, index size);
- ``excerpts`` 5 s excerpts per clip at random offsets, with white noise at
  10 dB SNR, are identified: correct means the right clip *and* an offset
  within ±0.1 s of the truth;
- the same excerpts after an MP3 round trip at 128 kbps (libsndfile's LAME,
  constant bit rate) and a random gain of -12 to +6 dB;
- the warm query time of those excerpts (95th percentile);
- false matches: the first 5 clips of each genre are indexed alone and the
  other 5 of each genre queried (clean and noisy 5 s excerpts, and the whole
  clip); any match is false.

Tuning (:func:`run_tuning`) uses other clips than the false-match measure
reports on: the first 3 clips of each genre are indexed, and the 4th and 5th
clips of each genre (never queries of the benchmark) are queried; it prints the
scores chance alignments reach, from which
:data:`~genre_id.fingerprint.matching.DEFAULT_THRESHOLD` was set.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from bench_common import shared_data_dir, verdict
from genre_id.textsafe import text_table

from genre_id.audio import PathLike, load
from genre_id.dataset import scan_folder
from genre_id.fingerprint.index import FingerprintIndex, Match
from genre_id.fingerprint.matching import MatchThreshold
from genre_id.fingerprint.metadata import find_audio_files
from genre_id.perturb import add_noise, encode_mp3, mp3_round_trip

EXCERPT_SECONDS = 5.0
SNR_DB = 10.0
MP3_KBPS = 128
GAIN_DB = (-12.0, 6.0)
OFFSET_TOLERANCE = 0.1  # seconds
MP3_BYTES_PER_SECOND = MP3_KBPS * 1000 / 8


@dataclass(frozen=True)
class BenchRow:
    """One line of the benchmark table."""

    measure: str
    value: str
    target: str
    passed: bool | None  #: ``None`` for a measure that is only reported


def clips_by_genre(data_dir: PathLike) -> dict[str, list[Path]]:
    """Audio files of the GTZAN-style folder ``data_dir`` grouped by genre (sub-folder), sorted."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for path, genre in scan_folder(data_dir):
        groups[genre].append(path)
    return dict(groups)


@dataclass(frozen=True)
class _Query:
    clip: int  #: index into the clip list
    start: float  #: true offset, seconds
    samples: np.ndarray


def _excerpts(
    audio: Sequence[np.ndarray], clips: Sequence[int], *, per_clip: int, sr: int, rng: np.random.Generator
) -> list[_Query]:
    n = int(EXCERPT_SECONDS * sr)
    out = []
    for c in clips:
        y = audio[c]
        for start in rng.integers(0, max(1, y.size - n), per_clip):
            out.append(_Query(c, start / sr, y[start : start + n]))
    return out


def _is_correct(match: Match | None, query: _Query, files: Sequence[Path]) -> bool:
    return (
        match is not None
        and Path(match.file) == files[query.clip].resolve()
        and abs(match.offset - query.start) <= OFFSET_TOLERANCE
    )


def _build(db: Path, files: Sequence[Path]) -> tuple[FingerprintIndex, float, float]:
    """Index ``files`` into a new database; return it, wall seconds and CPU seconds."""
    index = FingerprintIndex.open(db)
    wall, cpu = time.perf_counter(), time.process_time()
    for f in files:
        index.add(f)
    index.store.checkpoint()
    return index, time.perf_counter() - wall, time.process_time() - cpu


def _identify_all(
    index: FingerprintIndex, queries: Sequence[_Query], sr: int
) -> tuple[list[Match | None], list[float]]:
    index.match(queries[0].samples, sr)  # warm up caches
    seconds: list[float] = []
    return [_timed_match(index, q.samples, sr, seconds) for q in queries], seconds


def _timed_match(index: FingerprintIndex, samples: np.ndarray, sr: int, seconds: list[float]) -> Match | None:
    """``index.match(samples, sr)``, appending its wall time to ``seconds``."""
    t = time.perf_counter()
    match = index.match(samples, sr)
    seconds.append(time.perf_counter() - t)
    return match


def _rate_row(
    name: str,
    matches: Sequence[Match | None],
    queries: Sequence[_Query],
    files: Sequence[Path],
    log: Callable[[str], None],
) -> BenchRow:
    scores = [m.score for m, q in zip(matches, queries) if m is not None and _is_correct(m, q, files)]
    if scores:
        log(f"{name}: scores of correct matches: min {min(scores)}, median {int(np.median(scores))}")
    good = len(scores)
    wrong = sum(m is not None and not _is_correct(m, q, files) for m, q in zip(matches, queries))
    rate = good / len(queries)
    return BenchRow(name, f"{100 * rate:.1f}% ({good}/{len(queries)}, {wrong} wrong)", ">= 95%", rate >= 0.95)


def run_benchmark(
    data_dir: PathLike,
    *,
    seed: int = 0,
    excerpts: int = 5,
    log: Callable[[str], None] = print,
) -> list[BenchRow]:
    """Measure the fingerprinting of the clips under ``data_dir``; return the table rows."""
    rng = np.random.default_rng(seed)
    groups = clips_by_genre(data_dir)
    files = [f for paths in groups.values() for f in paths]
    if not files:
        raise FileNotFoundError(f"{data_dir}: no audio files")
    sr = int(sf.info(str(files[0])).samplerate)
    audio = [load(f, sample_rate=sr)[0] for f in files]
    seconds = sum(y.size for y in audio) / sr
    log(f"{len(files)} clips in {len(groups)} genres, {seconds / 60:.1f} min of audio at {sr} Hz; seed {seed}")
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="bench_fp_") as tmp:
        index, wall, cpu = _build(Path(tmp) / "all.sqlite", files)
        with index:
            stats = index.store.stats()
            log(
                f"indexed: {stats.hashes} hashes ({stats.hashes / seconds:.0f}/s of audio)"
                f" in {wall:.2f} s wall, {cpu:.2f} s CPU"
            )
            queries = _excerpts(audio, range(len(files)), per_clip=excerpts, sr=sr, rng=rng)
            index.match(queries[0].samples, sr)  # warm up caches
            matches: list[Match | None] = []
            coded_matches: list[Match | None] = []
            times: list[float] = []
            for q in queries:  # one query at a time: the noisy and coded copies are not kept
                noisy = add_noise(q.samples, snr_db=SNR_DB, rng=rng)
                matches.append(_timed_match(index, noisy, sr, times))
                coded, _ = mp3_round_trip(noisy, sr, kbps=MP3_KBPS)
                gain = 10 ** (rng.uniform(*GAIN_DB) / 20)
                coded_matches.append(_timed_match(index, (coded * gain).astype(np.float32), sr, times))
            rows.append(_rate_row(f"5 s excerpts, white noise {SNR_DB:g} dB SNR", matches, queries, files, log))
            kbps = len(encode_mp3(queries[0].samples, sr, kbps=MP3_KBPS)) * 8 / 1000 / EXCERPT_SECONDS
            log(f"mp3 round trip: {kbps:.1f} kbps measured; gain {GAIN_DB[0]:g} to +{GAIN_DB[1]:g} dB")
            rows.append(_rate_row(f"same + mp3 {MP3_KBPS} kbps + gain", coded_matches, queries, files, log))
            p95 = float(np.percentile(times, 95))
            log(f"query time: median {1000 * np.median(times):.1f} ms over {len(times)} queries")
            rows.append(BenchRow("query time, warm, 5 s excerpt (p95)", f"{p95:.3f} s", "<= 0.3 s", p95 <= 0.3))
        rows.append(
            BenchRow("indexing speed (one process)", f"{seconds / wall:.0f}x real time", ">= 50x", seconds / wall >= 50)
        )
        rows.append(
            BenchRow(
                "index size",
                f"{stats.bytes / seconds:.0f} B/s of audio"
                f" ({stats.bytes / seconds / MP3_BYTES_PER_SECOND:.2f}x mp3 128k)",
                "report",
                None,
            )
        )
        rows.append(_false_match_row(Path(tmp) / "half.sqlite", groups, files, audio, sr, rng))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log(f"peak memory {peak_mb:.0f} MB")
    return rows


def _unindexed_queries(
    audio: Sequence[np.ndarray], clips: Sequence[int], *, sr: int, rng: np.random.Generator, per_clip: int
) -> list[_Query]:
    """Per clip: ``per_clip`` clean and ``per_clip`` noisy 5 s excerpts, and the whole clip."""
    clean = _excerpts(audio, clips, per_clip=per_clip, sr=sr, rng=rng)
    noisy = [
        _Query(q.clip, q.start, add_noise(q.samples, snr_db=SNR_DB, rng=rng))
        for q in _excerpts(audio, clips, per_clip=per_clip, sr=sr, rng=rng)
    ]
    whole = [_Query(c, 0.0, audio[c]) for c in clips]
    return clean + noisy + whole


def _split(groups: dict[str, list[Path]], files: Sequence[Path], lo: int, hi: int) -> list[int]:
    """Indexes (into ``files``) of clips ``lo`` to ``hi - 1`` of each genre."""
    pos = {f: i for i, f in enumerate(files)}
    return [pos[f] for paths in groups.values() for f in paths[lo:hi]]


def _false_match_row(
    db: Path,
    groups: dict[str, list[Path]],
    files: Sequence[Path],
    audio: Sequence[np.ndarray],
    sr: int,
    rng: np.random.Generator,
) -> BenchRow:
    indexed, queried = _split(groups, files, 0, 5), _split(groups, files, 5, 10)
    index, _, _ = _build(db, [files[i] for i in indexed])
    with index:
        queries = _unindexed_queries(audio, queried, sr=sr, rng=rng, per_clip=2)
        matches, _ = _identify_all(index, queries, sr)
    false = sum(m is not None for m in matches)
    return BenchRow(
        f"false matches, {len(queried)} unindexed clips",
        f"{false} in {len(queries)} queries",
        "0 in >= 50",
        false == 0 and len(queries) >= 50,
    )


def run_tuning(data_dir: PathLike, *, seed: int = 1, log: Callable[[str], None] = print) -> None:
    """Print the scores of chance alignments and of true matches, on clips the benchmark does not report on.

    Index the first 3 clips of each genre; unindexed queries come from the 4th and 5th
    (5 s, 10 s and whole clips, clean and noisy); true queries are noisy
    5 s excerpts of the indexed clips.  The threshold is set well above the
    worst chance alignment and well below the weakest true match.
    """
    rng = np.random.default_rng(seed)
    groups = clips_by_genre(data_dir)
    files = [f for paths in groups.values() for f in paths]
    sr = int(sf.info(str(files[0])).samplerate)
    audio = [load(f, sample_rate=sr)[0] for f in files]
    indexed, queried = _split(groups, files, 0, 3), _split(groups, files, 3, 5)
    # No threshold: every query reports its best candidate.
    open_threshold = MatchThreshold(min_score=1, min_ratio=0.0)
    with tempfile.TemporaryDirectory(prefix="tune_fp_") as tmp:
        index, _, _ = _build(Path(tmp) / "tune.sqlite", [files[i] for i in indexed])
        index.threshold = open_threshold
        with index:
            false_q = _unindexed_queries(audio, queried, sr=sr, rng=rng, per_clip=10)
            n10 = int(10 * sr)
            false_q += [
                _Query(c, 0.0, audio[c][s : s + n10]) for c in queried for s in rng.integers(0, audio[c].size - n10, 5)
            ]
            false_m, _ = _identify_all(index, false_q, sr)
            true_q = [
                _Query(q.clip, q.start, add_noise(q.samples, snr_db=SNR_DB, rng=rng))
                for q in _excerpts(audio, indexed, per_clip=5, sr=sr, rng=rng)
            ]
            true_m, _ = _identify_all(index, true_q, sr)
    f_scores = np.array([0 if m is None else m.score for m in false_m])
    f_ratio = np.array([0.0 if m is None else m.score / max(m.second_score, 1) for m in false_m])
    t_scores = np.array([m.score if m is not None and _is_correct(m, q, files) else 0 for m, q in zip(true_m, true_q)])
    log(f"chance alignments ({len(false_q)} unindexed queries of clips 4-5 per genre, index of clips 1-3):")
    log(
        f"  best score: max {f_scores.max()}, 99th pct {np.percentile(f_scores, 99):.1f},"
        f" median {np.median(f_scores):.0f}"
    )
    log(f"  best/second ratio: max {f_ratio.max():.2f}, 99th pct {np.percentile(f_ratio, 99):.2f}")
    log(f"  highest (score, ratio) by score: {sorted(zip(f_scores.tolist(), np.round(f_ratio, 2).tolist()))[-5:]}")
    log(f"  highest (ratio, score) by ratio: {sorted(zip(np.round(f_ratio, 2).tolist(), f_scores.tolist()))[-5:]}")
    log(f"true matches ({len(true_q)} noisy 5 s excerpts of indexed clips):")
    log(f"  score: min {t_scores.min()}, 1st pct {np.percentile(t_scores, 1):.1f}, median {np.median(t_scores):.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="folder of <genre>/<clip> audio (default: shared gtzan_mini)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--excerpts", type=int, default=5, help="5 s excerpts per clip (default 5)")
    parser.add_argument("--tune", action="store_true", help="print chance-alignment scores for setting the threshold")
    args = parser.parse_args(argv)
    data = args.data or shared_data_dir() / "gtzan_mini"
    if not data.is_dir() or not find_audio_files(data):
        print(f"skipped: no clips at {data} (set GENRE_ID_SHARED_DATA or pass --data)")
        return 0
    if args.tune:
        run_tuning(data, seed=args.seed + 1)
        return 0
    rows = run_benchmark(data, seed=args.seed, excerpts=args.excerpts)
    print()
    print(text_table(("measure", "value", "target", "result"),
                     [(r.measure, r.value, r.target, verdict(r.passed)) for r in rows], rule=True))
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
