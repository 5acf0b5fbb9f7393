"""Spectrogram peak-pair landmarks: the audio fingerprint itself.

The method is the one of Shazam (Wang 2003), dejavu, audfprint and Olaf:

1. the audio is brought to a low sample rate (:attr:`FingerprintParams.sample_rate`)
   and turned into a log-magnitude spectrogram;
2. *peaks* are the time-frequency points that are the maximum of their
   neighbourhood (``scipy.ndimage.maximum_filter``) and stand clearly above the
   local average level; peaks survive noise, lossy codecs and level changes far
   better than the rest of the spectrogram;
3. each peak (the *anchor*) is paired with the next few peaks in a target zone
   after it; a pair's frequencies and time gap, packed into one integer, is a
   *hash*, stored with the anchor's time (in frames).

Two recordings of the same audio share many hashes at one constant time
offset; matching (:mod:`genre_id.fingerprint.matching`) counts them.

Everything here is vectorised with numpy: there is no Python loop over peaks.
Hashes and anchor times are returned as ``int64`` arrays.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..audio import check_samples, resample, to_mono
from ..spectral import frame

__all__ = [
    "DEFAULT_PARAMS",
    "FingerprintParams",
    "Landmarks",
    "find_peaks",
    "fingerprint",
    "pair_peaks",
    "spectrogram",
]


@dataclass(frozen=True)
class FingerprintParams:
    """Everything that decides the hashes; stored in every database.

    A database refuses queries and additions made with other parameters, since
    their hashes would not be comparable.
    """

    scheme: str = "peakpairs"  #: name of the method
    version: int = 1  #: bumped whenever a change alters the hashes
    sample_rate: int = 11025  #: Hz the audio is resampled to
    n_fft: int = 1024  #: STFT window, samples
    hop: int = 256  #: STFT hop, samples (one *frame* = ``hop / sample_rate`` s)
    min_bin: int = 5  #: lowest frequency bin used (about 54 Hz)
    max_bin: int = 465  #: highest frequency bin used, exclusive (about 5 kHz)
    peak_freq: int = 15  #: neighbourhood half-height of a peak, bins
    peak_time: int = 7  #: neighbourhood half-width of a peak, frames
    mean_freq: int = 64  #: half-height of the local-average window, bins
    mean_time: int = 43  #: half-width of the local-average window, frames
    margin_db: float = 6.0  #: a peak must exceed the local average by this, dB
    floor_db: float = 70.0  #: peaks more than this below the loudest are dropped, dB
    fan_out: int = 5  #: partners paired with each anchor
    min_dt: int = 1  #: smallest time gap of a pair, frames
    max_dt: int = 63  #: largest time gap of a pair, frames (fits 6 bits)
    max_df: int = 63  #: largest frequency gap of a pair, bins (fits 7 bits signed)

    @property
    def frame_seconds(self) -> float:
        """Duration of one frame (one hop), in seconds."""
        return self.hop / self.sample_rate

    def to_dict(self) -> dict[str, object]:
        """The parameters as a JSON-ready dict."""
        return asdict(self)


#: The parameters every database uses unless told otherwise.
DEFAULT_PARAMS = FingerprintParams()


@dataclass(frozen=True)
class Landmarks:
    """The hashes of one piece of audio.

    ``hashes[i]`` was anchored at frame ``times[i]`` (multiply by
    :attr:`FingerprintParams.frame_seconds` for seconds).
    """

    hashes: np.ndarray  #: int64 packed pair hashes
    times: np.ndarray  #: int64 anchor times, frames from the start
    n_peaks: int  #: number of spectrogram peaks found
    duration: float  #: length of the audio, seconds

    def __len__(self) -> int:
        return int(self.hashes.size)


def spectrogram(samples: np.ndarray, *, params: FingerprintParams = DEFAULT_PARAMS) -> np.ndarray:
    """Log-magnitude spectrogram in dB, shape ``(bins, frames)``, float32.

    ``samples`` are mono at ``params.sample_rate`` Hz.  Only bins
    ``params.min_bin`` to ``params.max_bin`` are kept, so row 0 is bin
    ``min_bin``.  Frame ``k`` covers samples ``k * hop`` to ``k * hop + n_fft``.
    """
    n_fft, hop = params.n_fft, params.hop
    y = np.ascontiguousarray(samples, dtype=np.float32)
    if y.size < n_fft:
        y = np.pad(y, (0, n_fft - y.size))
    frames = frame(y, frame_length=n_fft, hop_length=hop).T  # (frames, n_fft), a view
    window = np.hanning(n_fft).astype(np.float32)
    spec = np.fft.rfft(frames * window, axis=1)[:, params.min_bin : params.max_bin]
    power = spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2
    return (10.0 * np.log10(power.T + np.float32(1e-12))).astype(np.float32)


def find_peaks(log_spec: np.ndarray, *, params: FingerprintParams = DEFAULT_PARAMS) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of a dB spectrogram: ``(frames, bins)`` as int64, sorted by time.

    A peak is the maximum of its ``(2 peak_freq + 1) x (2 peak_time + 1)``
    neighbourhood, at least ``margin_db`` above the average level of a larger
    window around it, and no more than ``floor_db`` below the loudest point.
    All thresholds are relative, so a gain change does not move the peaks.
    Bins are counted from ``params.min_bin``.
    """
    if log_spec.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    from scipy import ndimage  # imported here: heavy, and needed only when fingerprinting

    size = (2 * params.peak_freq + 1, 2 * params.peak_time + 1)
    local_max = ndimage.maximum_filter(log_spec, size=size, mode="constant", cval=-np.inf)
    mean_size = (2 * params.mean_freq + 1, 2 * params.mean_time + 1)
    local_mean = ndimage.uniform_filter(log_spec, size=mean_size, mode="nearest")
    loudest = float(log_spec.max())
    is_peak = (
        (log_spec == local_max)
        & (log_spec >= local_mean + params.margin_db)
        & (log_spec >= loudest - params.floor_db)
        & (log_spec > -100.0)  # digital silence is never a peak
    )
    bins, frames = np.nonzero(is_peak)
    order = np.lexsort((bins, frames))
    return frames[order].astype(np.int64), bins[order].astype(np.int64)


def pair_peaks(
    frames: np.ndarray, bins: np.ndarray, *, params: FingerprintParams = DEFAULT_PARAMS
) -> tuple[np.ndarray, np.ndarray]:
    """Pair each peak with up to ``fan_out`` later peaks; return ``(hashes, times)``.

    ``frames`` and ``bins`` are the peaks sorted by frame.  A partner lies
    ``min_dt`` to ``max_dt`` frames after its anchor and at most ``max_df``
    bins above or below it; the first ``fan_out`` partners in time order are
    taken.  A hash packs ``(anchor bin, bin difference, time difference)``
    into 22 bits: ``bin << 13 | (df & 127) << 6 | dt``.
    """
    n = frames.size
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    end = np.searchsorted(frames, frames + params.max_dt, side="right")
    width = int((end - np.arange(n)).max())
    if width <= 1:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    anchor = np.arange(n)[:, None]
    partner = anchor + np.arange(1, width)[None, :]
    inside = partner < n
    partner = np.where(inside, partner, n - 1)
    dt = frames[partner] - frames[anchor]
    df = bins[partner] - bins[anchor]
    valid = inside & (dt >= params.min_dt) & (dt <= params.max_dt) & (np.abs(df) <= params.max_df)
    valid &= np.cumsum(valid, axis=1) <= params.fan_out
    rows, cols = np.nonzero(valid)
    f1 = bins[rows]
    hashes = (f1 << 13) | ((df[rows, cols] & 0x7F) << 6) | dt[rows, cols]
    return hashes.astype(np.int64), frames[rows].astype(np.int64)


def fingerprint(
    samples: np.ndarray,
    *,
    sample_rate: int,
    params: FingerprintParams = DEFAULT_PARAMS,
) -> Landmarks:
    """Landmark hashes of ``samples`` recorded at ``sample_rate`` Hz.

    ``samples`` have shape ``(n,)`` or ``(n, channels)`` (channels are
    averaged) and are resampled to ``params.sample_rate`` first.  Raises
    :class:`~genre_id.errors.AudioError` when they hold NaN or infinity.
    """
    y = to_mono(check_samples(samples, name="audio"))
    duration = y.size / float(sample_rate) if sample_rate else 0.0
    y = resample(y, orig_sr=int(sample_rate), target_sr=params.sample_rate)
    log_spec = spectrogram(y, params=params)
    frames, bins = find_peaks(log_spec, params=params)
    hashes, times = pair_peaks(frames, bins, params=params)
    return Landmarks(hashes=hashes, times=times, n_peaks=int(frames.size), duration=duration)
