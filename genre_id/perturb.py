"""Realistic changes to a recording that must not change its genre.

Used by augmentation, the benchmarks and tests: playback gain, loud
mastering, an mp3 round trip, 44.1 kHz stereo, and band-limiting.  Each
function takes mono float32 samples and their rate (Hz) and returns
``(samples, rate)``; samples may come back with two channels.  And
:func:`add_noise`, white noise at a signal-to-noise ratio.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from .audio import resample

__all__ = ["gain", "loud_master", "mp3_compression_level", "encode_mp3", "mp3_round_trip", "stereo_44k", "band_limit",
           "add_noise", "PERTURBATIONS"]


def gain(y: np.ndarray, sr: int, *, db: float) -> tuple[np.ndarray, int]:
    """Scale by ``db`` decibels (no clipping: float samples may exceed 1)."""
    return (y * np.float32(10 ** (db / 20))).astype(np.float32), sr


def loud_master(y: np.ndarray, sr: int, *, rms_dbfs: float = -9.0, drive: float = 2.0) -> tuple[np.ndarray, int]:
    """Modern loud mastering: push the level to ``rms_dbfs``, soft-limit, peak-normalise to -0.1 dBFS."""
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) or 1e-9
    pushed = y * (10 ** (rms_dbfs / 20) / rms)
    limited = np.tanh(drive * pushed) / np.tanh(drive)
    peak = float(np.abs(limited).max()) or 1.0
    return (limited * (10 ** (-0.1 / 20) / peak)).astype(np.float32), sr


def mp3_compression_level(kbps: int, sample_rate: int) -> float:
    """libsndfile's compression level (0 best, 1 worst) that gives ``kbps`` in constant-bit-rate mp3.

    libsndfile maps the level linearly onto the bit rates LAME allows at the
    sample rate: 32-320 kbps for MPEG-1 (32 kHz and up), 8-160 kbps for
    MPEG-2 (16-24 kHz, e.g. GTZAN's 22.05 kHz).
    """
    lo, hi = (32, 320) if sample_rate >= 32000 else (8, 160)
    return float(np.clip((hi - kbps) / (hi - lo), 0.0, 1.0))


def encode_mp3(y: np.ndarray, sr: int, *, kbps: int = 128) -> bytes:
    """Mono float samples as a constant-bit-rate mp3 file of ``kbps`` kbit/s (libsndfile's LAME)."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=sr, channels=1, format="MP3", subtype="MPEG_LAYER_III",
                      compression_level=mp3_compression_level(kbps, sr), bitrate_mode="CONSTANT") as f:
        f.write(y)
    return buf.getvalue()


def mp3_round_trip(y: np.ndarray, sr: int, *, kbps: int = 128) -> tuple[np.ndarray, int]:
    """Encode to constant-bit-rate mp3 at ``kbps`` and decode again (LAME and mpg123, via libsndfile)."""
    peak = float(np.abs(y).max()) or 1.0
    scale = min(1.0, 0.99 / peak)  # the encoder clips at full scale
    out, out_sr = sf.read(io.BytesIO(encode_mp3(y * scale, sr, kbps=kbps)), dtype="float32")
    return (out / scale).astype(np.float32), int(out_sr)


def stereo_44k(y: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """Resample to 44.1 kHz and duplicate into two channels."""
    up = resample(y, orig_sr=sr, target_sr=44100)
    return np.stack([up, up], axis=1), 44100


def band_limit(y: np.ndarray, sr: int, *, cutoff_hz: float = 8000.0) -> tuple[np.ndarray, int]:
    """Remove everything above ``cutoff_hz`` (resample down to twice the cutoff and back up)."""
    low = int(2 * cutoff_hz)
    if low >= sr:
        return y, sr
    return resample(resample(y, orig_sr=sr, target_sr=low), orig_sr=low, target_sr=sr), sr


def add_noise(samples: np.ndarray, *, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``samples`` plus white Gaussian noise whose power is ``snr_db`` below theirs."""
    power = float(np.mean(np.square(samples, dtype=np.float64)))
    sigma = np.sqrt(power / 10 ** (snr_db / 10)) if power > 0 else 0.0
    return (samples + rng.normal(0.0, sigma, samples.size)).astype(np.float32)


#: The changes the robustness benchmark applies, by name.
PERTURBATIONS = {
    "gain -12 dB": lambda y, sr: gain(y, sr, db=-12.0),
    "gain +12 dB": lambda y, sr: gain(y, sr, db=12.0),
    "loud mastering": loud_master,
    "mp3 128 kbps": mp3_round_trip,
    "44.1 kHz stereo": stereo_44k,
    "band-limit 8 kHz": band_limit,
}
