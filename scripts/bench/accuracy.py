#!/usr/bin/env python3
"""Reproduce every accuracy figure of genre-id in one command, and print a table.

    python scripts/bench/accuracy.py [--data ../shared/data] [--seeds 3] [--out reports/accuracy]

1. The fault-filtered, artist-disjoint split of the GTZAN feature table:
   train on train+valid lists, test on the test list (mean of seeds).
2. 10-fold cross-validation of the table, stratified by genre, grouped by track.
3. 10-fold grouped cross-validation on the 100 real clips, audio pipeline end to end.
4. Whether models keep their answers on the 100 clips under gain, loud
   mastering, mp3, 44.1 kHz stereo and band-limiting: judged by models that
   never saw the judged clips (the headline rows), and for the shipped model.

The recipe is the library's default (feature set and TrainConfig), the same
that made genre_id/models/default.  Reports (Markdown, JSON, confusion matrices) go
to --out.  Nothing is tuned here; the test list is only ever tested on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench_common import ROOT, format_table, shared_data_dir, verdict


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(shared_data_dir()), help="shared data folder (default ../shared/data)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "reports" / "accuracy"))
    ap.add_argument("--skip-audio", action="store_true", help="only the table figures")
    ap.add_argument("--record-in", metavar="MODEL_DIR",
                    help="also store the figures in this model's model.json (under 'evaluation'), atomically")
    args = ap.parse_args()

    import numpy as np

    from genre_id import Recognizer
    from genre_id.augment import perturbation_deltas
    from genre_id.dataset import load_folder, read_split_list, read_table, scan_folder, track_id
    from genre_id.evaluation import evaluate_folds, evaluate_split, prediction_stability
    from genre_id.features import DEFAULT_FEATURE_SET
    from genre_id.files import atomic_write
    from genre_id.report import write_report
    from genre_id.training import fit

    data_dir = Path(args.data)
    table, split, mini = data_dir / "gtzan_features_30_sec.csv", data_dir / "gtzan_split", data_dir / "gtzan_mini"
    if not table.exists():
        print(f"skipped: no feature table at {table} (pass --data)")
        return 0
    t0 = time.time()
    rows = []  # (measure, reference, target, value, passed)
    seeds = list(range(args.seeds))
    data = read_table(table, feature_set=DEFAULT_FEATURE_SET)
    train = read_split_list(split / "train_filtered.txt") + read_split_list(split / "valid_filtered.txt")
    test = read_split_list(split / "test_filtered.txt")
    print(f"feature set {DEFAULT_FEATURE_SET}; {len(seeds)} seeds", flush=True)
    cache = ROOT / "data" / "cache"
    deltas = clips = None
    if mini.exists() and not args.skip_audio:
        items = scan_folder(mini)
        clips = [str(p) for p, _ in items]
        clip_tracks = [track_id(p.relative_to(mini).as_posix()) for p, _ in items]
        deltas = perturbation_deltas(clips, tracks=clip_tracks, feature_set=DEFAULT_FEATURE_SET, cache_dir=cache)
        print(f"  perturbation deltas of {len(clips)} clips ({time.time() - t0:.0f} s)", flush=True)

    filtered = evaluate_split(data, train, test, seeds=seeds, protocol="fault-filtered test list (table)",
                              deltas=deltas)
    rows.append(("fault-filtered test list, table", "MLP 0.53-0.54; SVM 0.49", ">= 0.60",
                 f"{filtered.accuracy:.3f} ± {filtered.accuracy_std:.3f}", filtered.accuracy >= 0.60))
    rows.append(("calibration (ECE) on that test list", "plain MLP ~0.3", "< 0.10",
                 f"{filtered.ece:.3f}", filtered.ece < 0.10))
    print(f"  filtered split done ({time.time() - t0:.0f} s)", flush=True)
    folds = evaluate_folds(data, folds=10, seeds=seeds[:1], importance=False, deltas=deltas)
    rows.append(("10-fold grouped CV, table", "MLP 0.76; SVM 0.74", ">= 0.80",
                 f"{folds.accuracy:.3f}", folds.accuracy >= 0.80))
    print(f"  10-fold table done ({time.time() - t0:.0f} s)", flush=True)
    results = [filtered, folds]
    stability = None
    if clips:
        audio = load_folder(mini, feature_set=DEFAULT_FEATURE_SET, cache_dir=cache, progress=False)
        audio_cv = evaluate_folds(audio, folds=10, seeds=seeds[:1], importance=False, deltas=deltas)
        audio_cv.protocol = "10-fold grouped CV, 100 real clips (audio pipeline)"
        results.append(audio_cv)
        rows.append(("10-fold grouped CV, 100 real clips, audio", "not yet measured", "report",
                     f"{audio_cv.accuracy:.3f}", None))
        print(f"  10-fold audio done ({time.time() - t0:.0f} s)", flush=True)
        # Honest robustness: models that never saw the judged clips, nor their deltas.  Two halves of
        # the clips (5 per genre each); each is judged by a model trained on the table without any of
        # the 100 clips, augmented with the other half's deltas.
        half = np.asarray([int(t.rsplit(".", 1)[-1]) % 2 for t in clip_tracks])
        table_without = data.subset(~np.isin(data.groups, clip_tracks))
        kept: dict[str, list[float]] = {}
        right = []
        for h in (0, 1):
            judged = [c for c, k in zip(clips, half) if k == h]
            others = [t for t, k in zip(clip_tracks, half) if k == h]
            model = fit(table_without, deltas=deltas.without(others))
            st = prediction_stability(Recognizer(model), judged, cache_dir=str(cache))
            right.append(st["accuracy_unperturbed"])
            for name, share in st["unchanged"].items():
                kept.setdefault(name, []).append(share)
        stability = {name: float(np.mean(v)) for name, v in kept.items()}
        rows.append(("held-out models on the 100 clips, unchanged audio", "", "accuracy",
                     f"{np.mean(right):.3f}", None))
        for name, share in stability.items():
            rows.append((f"predictions kept: {name}", "", ">= 0.90", f"{share:.3f}", share >= 0.90))
        shipped = prediction_stability(Recognizer.load(), clips, cache_dir=str(cache))
        rows.append(("shipped model (trained on these clips too): kept, worst change", "", "report",
                     f"{min(shipped['unchanged'].values()):.3f}", None))
        stability = {"held_out": stability, "shipped": shipped}
        print(f"  robustness done ({time.time() - t0:.0f} s)", flush=True)
    else:
        print(f"  audio figures skipped: no clips at {mini}" if not mini.exists() else "  audio figures skipped")

    paths = write_report(results, args.out, title="genre-id accuracy benchmark",
                         command="python scripts/bench/accuracy.py " + " ".join(sys.argv[1:]))
    if stability is not None:
        atomic_write(Path(args.out) / "robustness.json", (json.dumps(stability, indent=2) + "\n").encode())
    print()
    print(format_table(("measure", "reference", "target", "value", "result"),
                       [(*r[:4], verdict(r[4])) for r in rows]))
    print(f"\n{time.time() - t0:.0f} s; reports in {', '.join(str(p) for p in paths[:2])}")
    if args.record_in:
        from genre_id.model import load_bundle, save_bundle

        bundle = load_bundle(args.record_in)
        bundle.metadata = {**bundle.metadata, "evaluation": {
            "command": "python scripts/bench/accuracy.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"),
            "recipe": "the library's default feature set and TrainConfig, as this model",
            "figures": [{"measure": r[0], "reference": r[1], "target": r[2], "value": r[3],
                         "passed": None if r[4] is None else bool(r[4])} for r in rows],
        }}
        save_bundle(bundle, args.record_in)
        print(f"figures recorded in {Path(args.record_in) / 'model.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
