#!/usr/bin/env python3
"""Rebuild the shipped default model: both members, then the ensemble, with the project's own commands.

    python scripts/build_default_model.py [--data ../shared/data] [--out genre_id/models/default]

1. the ``levelfree`` member, from the GTZAN feature table, augmented with the
   perturbations of the real clips in ``gtzan_mini``;
2. the ``musicnn-msd`` member, from the audio of those clips (its input is
   level-normalised, so it needs no augmentation for gain);
3. ``genre-id ensemble`` of the two, fused by the geometric mean.

Each step is a ``genre-id`` command, printed before it runs; the members are
kept in a temporary folder and copied into the ensemble.  Then run
``python scripts/bench/accuracy.py --record-in OUT`` for the figures.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

from bench_common import shared_data_dir  # noqa: E402


def run(args: list[str]) -> str:
    line = "genre-id " + " ".join(shlex.quote(a) for a in args)
    print("$ " + line, flush=True)
    subprocess.run([sys.executable, "-m", "genre_id.cli", *args], check=True, cwd=ROOT)
    return line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(shared_data_dir()), help="shared data folder (default ../shared/data)")
    ap.add_argument("--out", default="genre_id/models/default", help="where the ensemble goes")
    ap.add_argument("--cache-dir", default=None, help="feature cache folder (default: the platform's)")
    args = ap.parse_args()
    data = Path(args.data)
    cache = ["--cache-dir", args.cache_dir] if args.cache_dir else []
    clips = str(data / "gtzan_mini")
    with tempfile.TemporaryDirectory(prefix="genre-id-members-") as tmp:
        levelfree, musicnn = f"{tmp}/levelfree", f"{tmp}/musicnn-msd"
        steps = [
            run(["train", "--table", str(data / "gtzan_features_30_sec.csv"), "--augment-from", clips,
                 "--out", levelfree, "--name", "default-levelfree", "--model-version", "3", *cache]),
            run(["train", clips, "--feature-set", "musicnn-msd",
                 "--out", musicnn, "--name", "default-musicnn-msd", "--model-version", "3", *cache]),
            run(["ensemble", levelfree, musicnn, "--fusion", "geometric-mean", "--out", args.out,
                 "--name", "default", "--model-version", "3"]),
        ]
    from genre_id.model import record_metadata

    record_metadata(args.out, {"rebuild": {"command": "python scripts/build_default_model.py", "steps": steps}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
