#!/usr/bin/env python3
"""Reproduce every accuracy figure of genre-id in one command, and print them side by side.

    python scripts/bench/accuracy.py [--data ../shared/data] [--out reports/accuracy] [--record-in MODEL_DIR]

1. Grouped 5-fold cross-validation of the shipped recipe over the real-world
   pool (``realworld_train`` grouped by its ``group`` column, ``realworld_dev``
   by ``source_repo``; the GTZAN table and clips in every training fold):
   balanced and lenient accuracy with 95 % bootstrap intervals, per-genre
   recall, mean confidence when wrong, ECE; the dev rows alone; each member
   alone (the ``musicnn-msd`` member is the plain logistic head on the
   pretrained embeddings: the floor the fused model must clear).
2. Teaching a genre from a few recordings: the same cross-validation with
   one genre (``--extend-genre``, default pop) cut to 8 real recordings in every training
   fold (none of its GTZAN rows): that genre's recall and the change of the
   others', against step 1.
3. ``genre-id train --extend default`` with 50 recordings (5 new labels of
   10 recordings each, features not cached): wall time.
4. Whether the fused model keeps its answers on the 100 GTZAN clips under
   gain, loud mastering, mp3, 44.1 kHz stereo and band-limiting, judged by
   models that never saw the judged clips (two halves of the clips; each
   judged by members trained on the real-world pool plus the GTZAN data
   without the judged half, the ``levelfree`` member augmented with the
   other half's perturbations only).

The recipe is the library's (feature sets, ``default_config``, fusion
fitted on held-out predictions), the one that made the shipped model.
Reports (Markdown, JSON, confusion matrices) go to --out.  Nothing here is
ever tested on data its model trained on.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import ROOT, shared_data_dir, verdict
from genre_id.textsafe import text_table

GROUP_BY = ("group", "source_repo")
MEMBERS = ("levelfree", "musicnn-msd")


def _fmt(r) -> str:
    return f"{r.balanced_accuracy:.3f} ({r.lenient_balanced_accuracy:.3f})"


def _ci(r) -> str:
    ci = r.intervals()
    (a, b), (c, d) = ci["balanced_accuracy"], ci["lenient_balanced_accuracy"]
    return f"[{a:.2f}-{b:.2f}] ([{c:.2f}-{d:.2f}])"


def _recall(r) -> dict[str, float]:
    return {g: m["recall"] for g, m in r.per_genre().items() if m["support"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(shared_data_dir()), help="shared data folder (default ../shared/data)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "accuracy"))
    ap.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"), help="feature cache (default data/cache)")
    ap.add_argument("--extend-genre", default="pop",
                    help="the genre(s) taught from 8 recordings in step 2, comma-separated (default pop)")
    ap.add_argument("--skip", action="append", default=[], choices=("extend", "robustness"),
                    help="leave out a step (repeatable)")
    ap.add_argument("--record-in", metavar="MODEL_DIR",
                    help="also store the figures in this model's model.json (under 'benchmark'), atomically")
    args = ap.parse_args()

    import numpy as np

    from genre_id import Recognizer
    from genre_id.augment import perturbation_deltas
    from genre_id.dataset import concat, load_sets, read_table, scan_folder, track_id
    from genre_id.evaluation import evaluate_grouped, prediction_stability, rows_of
    from genre_id.model import Ensemble
    from genre_id.report import write_report
    from genre_id.training import fit

    data_dir = Path(args.data)
    table, mini = data_dir / "gtzan_features_30_sec.csv", data_dir / "gtzan_mini"
    real = [data_dir / "realworld_train", data_dir / "realworld_dev"]
    if not all(p.exists() for p in (table, mini, *real)):
        print(f"skipped: the shared data is not complete at {data_dir} (pass --data)")
        return 0
    t0 = time.time()
    cache = args.cache_dir

    def done(what: str) -> None:
        print(f"  {what} ({time.time() - t0:.0f} s)", flush=True)

    rows = []  # (measure, reference, target, value, passed)

    # 1. Grouped cross-validation of the shipped recipe.
    sets = [str(p) for p in real]
    musicnn = load_sets([*sets, str(mini)], feature_set="musicnn-msd", group_by=GROUP_BY, cache_dir=cache,
                        progress=False, prefix=True)
    levelfree = concat([read_table(table, feature_set="levelfree"),
                        load_sets(sets, feature_set="levelfree", group_by=GROUP_BY, cache_dir=cache, progress=False,
                                  prefix=True)])
    items = scan_folder(mini)
    paths = [str(p) for p, _ in items]
    tracks = [track_id(p.relative_to(mini).as_posix()) for p, _ in items]
    lf_deltas = perturbation_deltas(paths, tracks=tracks, feature_set="levelfree", cache_dir=cache)
    deltas = [lf_deltas, None]  # the shipped recipe augments the levelfree member only
    scored = ["realworld_train", "realworld_dev"]
    cv, extra = evaluate_grouped([levelfree, musicnn], scored=scored, folds=5, deltas=deltas)
    dev = rows_of(cv, cv.origin == "realworld_dev", protocol=f"{cv.protocol}: realworld_dev rows alone")
    lf_alone, msd_alone = extra["member_results"]
    done("grouped cross-validation")
    recall = _recall(cv)
    rows += [
        ("whole pool: balanced (lenient) accuracy", f"musicnn-msd head alone {_fmt(msd_alone)}",
         ">= 0.83 (>= 0.90)", f"{_fmt(cv)} {_ci(cv)}",
         cv.balanced_accuracy >= 0.83 and cv.lenient_balanced_accuracy >= 0.90),
        ("  the dev rows alone", f"musicnn-msd head alone {_fmt(rows_of(msd_alone, cv.origin == 'realworld_dev', protocol='x'))}",
         ">= 0.72 (>= 0.85)", f"{_fmt(dev)} {_ci(dev)}",
         dev.balanced_accuracy >= 0.72 and dev.lenient_balanced_accuracy >= 0.85),
        ("  every genre's recall (lowest)", f"musicnn-msd head alone {min(_recall(msd_alone).values()):.2f}",
         ">= 0.65 each", f"{min(recall, key=recall.get)} {min(recall.values()):.2f}", min(recall.values()) >= 0.65),
        ("  per-genre recall", "", "report", ", ".join(f"{g} {v:.2f}" for g, v in recall.items()), None),
        ("  mean confidence when wrong; ECE", f"musicnn-msd head alone {msd_alone.mean_confidence_wrong:.2f}; "
         f"{msd_alone.ece:.3f}", "< 0.50; <= 0.06", f"{cv.mean_confidence_wrong:.3f}; {cv.ece:.3f}",
         cv.mean_confidence_wrong < 0.50 and cv.ece <= 0.06),
        ("  member levelfree alone", "", "report", _fmt(lf_alone), None),
        ("  fusion fitted on all held-out predictions", "", "report",
         f"weights {extra['fusion']['weights']}, temperature {extra['fusion']['temperature']}", None),
    ]
    results = [cv, dev, lf_alone, msd_alone]

    # 2. A genre taught from 8 recordings.
    if "extend" not in args.skip:
        for g in [x.strip() for x in args.extend_genre.split(",") if x.strip()]:
            few, _ = evaluate_grouped([levelfree, musicnn], scored=scored, folds=5, deltas=deltas,
                                      train_limit={g: 8})
            few.protocol = f"{cv.protocol}, {g} from 8 recordings"
            results.append(few)
            few_recall = _recall(few)
            others = {k: few_recall[k] - recall[k] for k in recall if k != g}
            worst = min(others, key=others.get)
            rows += [
                (f"{g} taught from 8 recordings: its recall", f"{recall[g]:.2f} with all of them", ">= 0.60",
                 f"{few_recall[g]:.2f}", few_recall[g] >= 0.60),
                ("  the others' recall, largest drop", "", "<= 0.03", f"{worst} {others[worst]:+.2f} "
                 f"(mean {np.mean(list(others.values())):+.3f})", others[worst] >= -0.03),
            ]
            done(f"{g} from 8 recordings")

        # 3. Extend the shipped model with 50 recordings.
        with tempfile.TemporaryDirectory(prefix="genre-id-extend-bench-") as tmp:
            with open(real[0] / "labels.csv", newline="", encoding="utf-8") as fh:
                rows_of_set = list(csv.DictReader(fh))
            picked = [r for g in ("blues", "country", "jazz", "metal", "reggae")
                      for r in [r for r in rows_of_set if r["genre"] == g][:10]]  # 5 labels x 10 recordings
            labels = Path(tmp) / "labels.csv"
            with open(labels, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["path", "genre"])
                for r in picked:  # new labels: the user's own names for these recordings
                    w.writerow([str((real[0] / r["path"]).resolve()), f"my-{r['genre']}"])
            started = time.time()
            res = subprocess.run([sys.executable, "-m", "genre_id.cli", "train", "--extend", "default", str(labels),
                                  "--out", str(Path(tmp) / "mine"), "--no-cache", "-q"],
                                 capture_output=True, text=True, cwd=ROOT)
            took = time.time() - started
        ok = res.returncode == 0
        rows.append(("train --extend default, 50 recordings (5 new labels x 10, no cache)", "", "< 60 s",
                     f"{took:.1f} s" if ok else f"failed: {res.stderr.strip()[-200:]}", ok and took < 60))
        done("extend with 50 recordings")

    # 4. Robustness of the fused model, judged by held-out models on the GTZAN clips.
    if "robustness" not in args.skip:
        half = np.asarray([int(t.rsplit(".", 1)[-1]) % 2 for t in tracks])
        fusion = extra["fusion"]
        kept: dict[str, list[float]] = {}
        right = []
        for h in (0, 1):
            judged = [p for p, k in zip(paths, half) if k == h]
            held = [t for t, k in zip(tracks, half) if k == h]
            lf = fit(levelfree.subset(~np.isin(levelfree.groups, held)), deltas=lf_deltas.without(held))
            msd = fit(musicnn.subset(~np.isin(musicnn.groups, [f"gtzan_mini/{t}" for t in held])))
            ensemble = Ensemble(metadata={**lf.metadata, "fusion": fusion["rule"], "fusion_weights": fusion["weights"],
                                          "temperature": fusion["temperature"],
                                          "members": [{"folder": m} for m in MEMBERS]}, members=[lf, msd])
            st = prediction_stability(Recognizer(ensemble), judged, cache_dir=cache)
            right.append(st["accuracy_unperturbed"])
            for name, share in st["unchanged"].items():
                kept.setdefault(name, []).append(share)
        rows.append(("held-out fused models on the 100 GTZAN clips, unchanged audio", "", "accuracy",
                     f"{np.mean(right):.3f}", None))
        for name, shares in kept.items():
            share = float(np.mean(shares))
            rows.append((f"  predictions kept: {name}", "0.85 for loud mastering before" if name == "loud" else "",
                         ">= 0.90", f"{share:.3f}", share >= 0.90))
        done("robustness")

    command = "python scripts/bench/accuracy.py " + " ".join(sys.argv[1:])
    written = write_report(results, args.out, title="genre-id accuracy benchmark", command=command)
    print()
    print(text_table(("measure", "reference (same run)", "target", "value", "result"),
                     [(*r[:4], verdict(r[4])) for r in rows], rule=True))
    print(f"\n{time.time() - t0:.0f} s; reports in {written[0].parent}")
    if args.record_in:
        from genre_id.model import record_metadata

        record_metadata(args.record_in, {"benchmark": {
            "command": command, "date": time.strftime("%Y-%m-%d"),
            "figures": [{"measure": r[0].strip(), "reference": r[1], "target": r[2], "value": r[3],
                         "passed": None if r[4] is None else bool(r[4])} for r in rows],
        }})
        print(f"figures recorded in {Path(args.record_in) / 'model.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
