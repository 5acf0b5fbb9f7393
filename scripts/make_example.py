#!/usr/bin/env python3
"""Synthesize the bundled example clip ``examples/synth_groove.flac``.

The clip is made here from scratch (no third-party audio): 30 seconds at
22050 Hz of a 120 BPM drum pattern (kick, snare, hi-hat), a bass line and
sustained chords.  Deterministic: the same file every run.

    python scripts/make_example.py [OUT.flac]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050


def _env(n: int, *, decay_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay_s * SR))


def synth_groove(*, seconds: float = 30.0, bpm: float = 120.0, seed: int = 7) -> np.ndarray:
    """Mono float32 samples of a simple groove, peak about -3 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    out = np.zeros(n, dtype=np.float64)
    beat = int(SR * 60 / bpm)
    t = np.arange(int(0.4 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-t * 30)) * t) * _env(t.size, decay_s=0.12)
    snare = rng.standard_normal(int(0.2 * SR)) * _env(int(0.2 * SR), decay_s=0.05) * 0.5
    hat = np.diff(rng.standard_normal(int(0.05 * SR) + 1)) * _env(int(0.05 * SR), decay_s=0.01) * 0.25
    roots = [110.0, 87.31, 130.81, 98.0]  # A2 F2 C3 G2
    for b, start in enumerate(range(0, n - beat, beat)):
        def add(sig: np.ndarray, at: int) -> None:
            end = min(n, at + sig.size)
            out[at:end] += sig[: end - at]

        add(kick if b % 2 == 0 else snare, start)
        add(hat, start + beat // 2)
        root = roots[(b // 8) % 4]
        tb = np.arange(beat) / SR
        add(0.3 * np.sign(np.sin(2 * np.pi * root * tb)) * _env(beat, decay_s=0.2), start)
        if b % 8 == 0:
            tc = np.arange(8 * beat) / SR
            chord = sum(np.sin(2 * np.pi * root * 2 * r * tc) for r in (1.0, 1.26, 1.5))
            add(0.08 * chord * np.minimum(1, tc * 10), start)
    out *= 0.7 / np.abs(out).max()
    return out.astype(np.float32)


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "examples" / "synth_groove.flac"
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, synth_groove(), SR, subtype="PCM_16")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
