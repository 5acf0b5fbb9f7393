"""The pretrained MSD_musicnn tagger (Pons & Serra 2019) in plain numpy.

musicnn is a music auto-tagging network trained on the Million Song Dataset
(50 Last.fm tags).  This module re-implements its input representation and
its forward pass at prediction time, with the weights imported once from the
``musicnn`` 0.1.0 wheel (ISC licence, see ``weights/LICENSE-musicnn.txt``) by
``scripts/import_musicnn.py``.  It imports numpy only (no TensorFlow, Keras
or librosa).

Input, exactly as musicnn was trained (``musicnn/extractor.py``, librosa 0.7):

- mono audio resampled to 16 kHz (soxr here; musicnn's librosa used resampy);
- power mel spectrogram: centred STFT with ``n_fft=512``, ``hop_length=256``,
  periodic Hann window and **reflect** padding of ``n_fft // 2`` samples at
  both ends (librosa < 0.10's ``pad_mode='reflect'``; librosa 0.11 pads with
  zeros), ``|X|**2``, 96 Slaney mel bands with Slaney area normalisation;
- ``log10(1 + 10000 * mel)`` computed in float32.  musicnn's extractor casts
  the mel spectrogram to float16 first, so ``10000 * mel`` overflows to
  infinity on loud audio (mel power above about 6.5); that bug is not
  reproduced;
- 3-second patches of 187 frames, not overlapping (the extractor's default);
  a trailing part shorter than a patch is dropped, as musicnn does.

Network (``build_musicnn`` in ``musicnn/models.py``), evaluated with the
batch-norm moving statistics (``epsilon = 0.001``):

- front end on the batch-normalised ``(187, 96)`` patch: timbral 2-D
  convolutions of 7 x 38 and 7 x 67 (204 filters each, time zero-padded by
  3) and temporal 1-D convolutions of 128, 64 and 32 frames along time
  (51 filters each, TensorFlow ``'same'`` padding), each followed by ReLU,
  batch norm and a max over frequency: 561 channels per frame;
- mid end: three 1-D convolutions of 7 frames with 64 filters (ReLU, batch
  norm), the second and third with residual connections; the front-end and
  the three mid-end outputs are concatenated (753 channels per frame);
- back end: max and mean over time (interleaved per channel, 1506 values),
  batch norm, dense 200 + ReLU + batch norm (the *penultimate* layer), dense
  50 + sigmoid (the tag probabilities).

Speed (``scripts/bench/musicnn.py``): everything is float32 matrix products.
The two timbral convolutions, four fifths of the arithmetic, are computed
through a real DFT of size 96 along frequency (see :func:`_timbral_pooled`),
which needs about 2.7 times fewer operations than a direct convolution; the
other convolutions are matrix products over a ``sliding_window_view`` of their
input (im2col).  Every convolution of the front end is followed by ReLU, batch
norm and a max over frequency; the max is taken on the raw convolution output
(see :func:`_pooled_activation`), so only ``(frames, filters)`` values are
transformed and no frequency-sized activation is ever stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .audio import check_samples, resample
from .errors import AudioTooShortError, ModelError
from .spectral import mel_filters, stft

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "N_MELS",
    "PATCH_FRAMES",
    "WEIGHTS_DIR",
    "ARRAY_SHAPES",
    "MusicnnOutput",
    "Musicnn",
    "log_mel_spectrogram",
    "split_patches",
    "load_weights",
    "load_musicnn",
    "analyze",
]

#: Sample rate (Hz) musicnn's input is computed at.
SAMPLE_RATE = 16000
#: STFT size and hop, in samples at :data:`SAMPLE_RATE`.
N_FFT = 512
HOP_LENGTH = 256
#: Mel bands.
N_MELS = 96
#: Frames in one input patch: 3 s (``librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1``).
PATCH_FRAMES = 187

#: Where the imported weights live (inside the package).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_WEIGHTS_NAME = "msd_musicnn"
_FORMAT = "genre-id musicnn weights 2"  # 2: stored as float16


def _bn_shapes(name: str, n: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.{k}": (n,) for k in ("gamma", "beta", "moving_mean", "moving_variance")}


#: Every array of the MSD_musicnn weights file and its shape (TensorFlow layouts:
#: conv kernels ``(time, frequency, in, out)``, dense kernels ``(in, out)``).
ARRAY_SHAPES: dict[str, tuple[int, ...]] = {
    **_bn_shapes("input_bn", 1),
    "timbral_7x38.kernel": (7, 38, 1, 204), "timbral_7x38.bias": (204,), **_bn_shapes("timbral_7x38_bn", 204),
    "timbral_7x67.kernel": (7, 67, 1, 204), "timbral_7x67.bias": (204,), **_bn_shapes("timbral_7x67_bn", 204),
    "temporal_128.kernel": (128, 1, 1, 51), "temporal_128.bias": (51,), **_bn_shapes("temporal_128_bn", 51),
    "temporal_64.kernel": (64, 1, 1, 51), "temporal_64.bias": (51,), **_bn_shapes("temporal_64_bn", 51),
    "temporal_32.kernel": (32, 1, 1, 51), "temporal_32.bias": (51,), **_bn_shapes("temporal_32_bn", 51),
    "midend_1.kernel": (7, 561, 1, 64), "midend_1.bias": (64,), **_bn_shapes("midend_1_bn", 64),
    "midend_2.kernel": (7, 64, 1, 64), "midend_2.bias": (64,), **_bn_shapes("midend_2_bn", 64),
    "midend_3.kernel": (7, 64, 1, 64), "midend_3.bias": (64,), **_bn_shapes("midend_3_bn", 64),
    **_bn_shapes("pool_bn", 1506),
    "penultimate.kernel": (1506, 200), "penultimate.bias": (200,), **_bn_shapes("penultimate_bn", 200),
    "tags.kernel": (200, 50), "tags.bias": (50,),
}

_TIMBRAL = ("timbral_7x38", "timbral_7x67")
_TEMPORAL = (("temporal_128", 128), ("temporal_64", 64), ("temporal_32", 32))
_MIDEND = ("midend_1", "midend_2", "midend_3")


# --- input representation ---------------------------------------------------------------------------

def log_mel_spectrogram(y: np.ndarray, *, sr: int) -> np.ndarray:
    """musicnn's input: the log-compressed mel spectrogram of mono ``y``, shape ``(frames, 96)``, float32.

    ``y`` (samples at ``sr`` Hz) is resampled to 16 kHz with soxr; the result
    equals ``log10(1 + 10000 * librosa.feature.melspectrogram(y=y16, sr=16000,
    n_fft=512, hop_length=256, n_mels=96, pad_mode='reflect')).T`` in float32,
    with ``frames = 1 + len(y16) // 256`` (one frame per 16 ms).
    """
    y16 = resample(check_samples(y), orig_sr=int(sr), target_sr=SAMPLE_RATE)
    pad = N_FFT // 2
    if y16.shape[0] <= pad:
        raise AudioTooShortError(f"audio of {y16.shape[0]} samples at 16 kHz is too short for a "
                                 f"{N_FFT}-point reflect-padded STFT")
    # librosa 0.7's centred STFT pads by reflection; spectral.stft pads with zeros, so its
    # first and last frames (centred on the zero padding) are dropped.
    spectrum = stft(np.pad(y16, pad, mode="reflect"), n_fft=N_FFT, hop_length=HOP_LENGTH)[:, 1:-1]
    power = np.square(np.abs(spectrum))  # float32, like librosa's np.abs(stft) ** 2
    mel = mel_filters(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS) @ power  # (96, frames)
    return np.log10(np.float32(1) + np.float32(10000) * mel.T).astype(np.float32, copy=False)


def split_patches(S: np.ndarray, *, n_frames: int = PATCH_FRAMES, hop_frames: int | None = None) -> np.ndarray:
    """Cut a ``(frames, 96)`` spectrogram into patches, shape ``(n_patches, n_frames, 96)`` (a copy).

    Patches start every ``hop_frames`` frames (default ``n_frames``: no
    overlap, musicnn's default); a trailing part shorter than ``n_frames`` is
    dropped.  Raises :class:`AudioTooShortError` when not even one patch fits
    (``n_frames`` frames are 3 s of audio).
    """
    hop_frames = n_frames if hop_frames is None else int(hop_frames)
    if hop_frames < 1:
        raise ValueError(f"hop_frames must be positive, not {hop_frames}")
    if S.ndim != 2 or S.shape[1] != N_MELS:
        raise ValueError(f"expected a spectrogram of shape (frames, {N_MELS}), got {S.shape}")
    if S.shape[0] < n_frames:
        raise AudioTooShortError(f"audio of {S.shape[0]} frames is shorter than one musicnn patch "
                                 f"({n_frames} frames, {n_frames * HOP_LENGTH / SAMPLE_RATE:.1f} s)")
    windows = sliding_window_view(S, n_frames, axis=0)[::hop_frames]  # (n_patches, 96, n_frames)
    return np.ascontiguousarray(windows.transpose(0, 2, 1), dtype=np.float32)


# --- weights ----------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    try:
        if path.stat().st_size > 1 << 20:
            raise ModelError(f"{path}: musicnn description is too large")
        return json.loads(path.read_text(encoding="utf-8"))
    except ModelError:
        raise
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read the musicnn description ({exc})") from None


def load_weights(directory: str | Path | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """The MSD_musicnn description (JSON) and arrays (npz) from ``directory`` (default :data:`WEIGHTS_DIR`).

    Every array is checked against the description and against
    :data:`ARRAY_SHAPES` (name, shape, float16, finite) before use; any
    mismatch raises :class:`ModelError`.  Arrays are read without pickle and
    returned as float32 (they are stored as float16 to halve the package).
    """
    directory = WEIGHTS_DIR if directory is None else Path(directory)
    meta_path, npz_path = directory / f"{_WEIGHTS_NAME}.json", directory / f"{_WEIGHTS_NAME}.npz"
    meta = _read_json(meta_path)
    described = {k: tuple(v) for k, v in meta.get("arrays", {}).items()} if isinstance(meta, dict) else {}
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ModelError(f"{meta_path}: not a musicnn weights description ({_FORMAT!r})")
    if described != ARRAY_SHAPES:
        raise ModelError(f"{meta_path}: the described arrays are not those of MSD_musicnn")
    if not (isinstance(meta.get("tags"), list) and len(meta["tags"]) == 50
            and all(isinstance(t, str) for t in meta["tags"])):
        raise ModelError(f"{meta_path}: expected the names of the 50 tags")
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            if sorted(npz.files) != sorted(ARRAY_SHAPES):
                raise ModelError(f"{npz_path}: holds other arrays than the description names")
            arrays = {}
            for name, shape in ARRAY_SHAPES.items():
                a = npz[name]
                if a.dtype != np.float16 or a.shape != shape or not np.isfinite(a).all():
                    raise ModelError(f"{npz_path}: array {name} is {a.dtype}{a.shape}, "
                                     f"expected finite float16{shape}")
                arrays[name] = a.astype(np.float32)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ModelError(f"{npz_path}: cannot read the musicnn weights ({exc})") from None
    return meta, arrays


# --- the network ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MusicnnOutput:
    """What MSD_musicnn says about each 3-second patch.

    ``penultimate``: ``(n_patches, 200)`` float32, the batch-normalised
    penultimate dense layer (an embedding; unitless, roughly zero-mean).
    ``tags``: ``(n_patches, 50)`` float32 tag probabilities in [0, 1]
    (independent sigmoids, the *taggram*), columns named by ``tag_names``.
    """

    penultimate: np.ndarray
    tags: np.ndarray
    tag_names: tuple[str, ...]


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


def _bn_sign(scale: np.ndarray) -> np.ndarray:
    """+1 where a batch-norm ``scale`` is non-negative, -1 elsewhere (float32); see :func:`_pooled_activation`."""
    return np.where(scale >= 0, 1, -1).astype(np.float32)


def _pooled_activation(peak: np.ndarray, sign: np.ndarray, bias: np.ndarray, scale: np.ndarray,
                       shift: np.ndarray) -> np.ndarray:
    """``max_f BN(relu(z + bias))`` from ``peak = max_f (sign * z)``, per channel (last axis).

    Adding the bias and ReLU are non-decreasing, and batch norm
    (``x * scale + shift``) is monotone in the direction of the sign of its
    scale.  So the maximum over frequency of the activation is the
    activation of the maximum of the raw convolution output ``z`` where the
    scale is positive, and of its minimum where it is negative.  The kernels
    of the negative-scale channels are stored negated (``sign = -1``), so
    that the network only ever takes maxima: ``min_f z = -max_f (-z)``.
    """
    return _relu(peak * sign + bias) * scale + shift


# --- timbral convolutions through a DFT along frequency ---------------------------------------------
#
# A 'valid' correlation of the 96 mel bins with a kernel of width w <= 96 equals the circular
# correlation of size 96 at its first 97 - w positions (none of them wraps around), and a circular
# correlation is a product per DFT bin.  The real DFT of 96 samples has 96 real coefficients; they are
# laid out as 48 pairs: (DC, Nyquist) first (both real), then (Re, Im) of bins 1 to 47.  In that
# layout the per-bin product of the input with a kernel of 7 time taps is a real (2, 14) x (14, 1)
# product per pair and filter (DC and Nyquist have no cross terms), and the inverse DFT of the
# wanted positions is one real matrix.

def _real_dft_matrix(n: int) -> np.ndarray:
    """``(n, n)`` float64: ``x @ M`` is the real DFT of ``x`` (last axis, ``n`` even) in pair layout.

    Columns ``2 b`` and ``2 b + 1`` hold ``(Re X_0, Re X_{n/2})`` for ``b = 0``
    and ``(Re X_b, Im X_b)`` for ``b = 1 .. n/2 - 1``, with
    ``X_b = sum_m x_m exp(-2 pi i b m / n)``.
    """
    m = np.arange(n)[:, None]
    angle = 2 * np.pi * m * np.arange(n // 2) / n
    M = np.stack([np.cos(angle), -np.sin(angle)], axis=2)  # (n, n / 2, 2)
    M[:, 0, 0], M[:, 0, 1] = 1.0, (-1.0) ** m[:, 0]
    return M.reshape(n, n)


def _inverse_real_dft_matrix(n: int, n_out: int) -> np.ndarray:
    """``(n_out, n)`` float64: ``M @ Y`` gives samples ``0 .. n_out - 1`` of the real signal whose DFT
    ``Y`` is in the pair layout of :func:`_real_dft_matrix` (rows ``2 b``, ``2 b + 1``)."""
    j = np.arange(n_out)[:, None]
    angle = 2 * np.pi * j * np.arange(n // 2) / n
    M = np.stack([2 * np.cos(angle), -2 * np.sin(angle)], axis=2) / n  # (n_out, n / 2, 2)
    M[:, 0, 0], M[:, 0, 1] = 1.0 / n, (-1.0) ** j[:, 0] / n
    return M.reshape(n_out, n)


def _spectral_kernel(kernel: np.ndarray) -> np.ndarray:
    """A timbral kernel ``(taps, width, filters)`` as per-pair matrices ``(n / 2, 2 * filters, 2 * taps)``.

    For DFT pair ``b`` (see :func:`_real_dft_matrix`, ``n = 96``) the matrix
    maps the input's ``(Re, Im)`` at the ``taps`` frames of a window (columns
    ``part * taps + tap``) to the ``(Re, Im)`` of the correlation's DFT for
    every filter (rows ``part * filters + filter``):
    ``Y = sum_tap X conj(K)``, i.e. ``Re Y = Xr Kr + Xi Ki``, ``Im Y = Xi Kr - Xr Ki``.
    """
    taps, width, filters = kernel.shape
    K = np.einsum("twf,wc->ctf", kernel.astype(np.float64), _real_dft_matrix(N_MELS)[:width])
    K = K.reshape(N_MELS // 2, 2, taps, filters)
    Kr, Ki = K[:, 0].transpose(0, 2, 1), K[:, 1].transpose(0, 2, 1)  # (pairs, filters, taps)
    M = np.block([[Kr, Ki], [-Ki, Kr]])  # (pairs, 2 * filters, 2 * taps)
    M[0] = np.block([[Kr[0], np.zeros_like(Kr[0])], [np.zeros_like(Kr[0]), Ki[0]]])  # DC, Nyquist: no cross terms
    return M.astype(np.float32)


def _timbral_pooled(x: np.ndarray, dft: np.ndarray, kernels: list[tuple[np.ndarray, np.ndarray]], *,
                    chunk_frames: int = 32) -> list[np.ndarray]:
    """``max_f`` of the 'valid' timbral convolutions of patches ``x`` ``(n, t, 96)``: ``(n * t, filters)`` each.

    ``dft`` is :func:`_real_dft_matrix` of size 96 in float32; ``kernels``
    holds, per convolution, its :func:`_spectral_kernel` and its
    :func:`_inverse_real_dft_matrix` for the ``97 - width`` valid positions.
    Time is zero-padded by ``(taps - 1) / 2`` frames on each side, as in musicnn.

    Cost per frame and filter: ``96 * 14 * 2`` operations for the per-bin
    products and ``(97 - width) * 96 * 2`` for the inverse DFT, against
    ``(97 - width) * 7 * width * 2`` for a direct convolution.  Frames are
    processed ``chunk_frames`` at a time so that the spectra (78 kB per frame
    and convolution) stay in cache.
    """
    n, t, f = x.shape
    taps = kernels[0][0].shape[2] // 2
    pairs = f // 2
    spectrum = np.pad(x, ((0, 0), ((taps - 1) // 2, taps // 2), (0, 0))) @ dft  # (n, t + 6, f)
    windows = sliding_window_view(spectrum.reshape(n, -1, pairs, 2), taps, axis=1)  # (n, t, pairs, 2, taps)
    windows = np.ascontiguousarray(windows.transpose(2, 3, 4, 0, 1)).reshape(pairs, 2 * taps, n * t)
    peaks = [np.empty((kernel.shape[1] // 2, n * t), np.float32) for kernel, _ in kernels]
    for start in range(0, n * t, chunk_frames):
        stop = min(start + chunk_frames, n * t)
        for (kernel, inverse), peak in zip(kernels, peaks):
            spectra = np.matmul(kernel, windows[:, :, start:stop]).reshape(f, -1)  # rows (pair, part)
            values = (inverse @ spectra).reshape(len(inverse), -1, stop - start)  # (positions, filters, frames)
            np.max(values, axis=0, out=peak[:, start:stop])
    return [peak.T for peak in peaks]


def _temporal_pooled(x: np.ndarray, kernels: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """``max_f`` of 1-D convolutions along time of every mel bin of ``x`` ``(n, t, f)``: ``(n * t, channels)``.

    ``kernels`` holds ``(offset, matrix)`` pairs: a ``(size, filters)`` kernel
    placed at ``offset`` in a common window of the longest size ``W`` centred
    like TensorFlow's 'same' padding (``(W - 1) // 2`` frames before the
    current one).  One im2col copy of the ``W``-frame windows serves every
    kernel (a kernel multiplies a column slice of it, so no zero taps are
    computed).  Bins are processed one at a time, keeping the running maximum,
    so the windows of one bin (``n * t * W`` values) stay in cache.
    """
    n, t, _ = x.shape
    width = max(offset + kernel.shape[0] for offset, kernel in kernels)
    padded = np.pad(x.transpose(2, 0, 1), ((0, 0), (0, 0), ((width - 1) // 2, width // 2)))  # (f, n, t + W - 1)
    windows = sliding_window_view(padded, width, axis=2)  # (f, n, t, W), a view
    peaks = [np.full((n * t, kernel.shape[1]), -np.inf, np.float32) for _, kernel in kernels]
    for band in windows:
        cols = band.reshape(n * t, width)  # the im2col copy of one bin
        for (offset, kernel), peak in zip(kernels, peaks):
            np.maximum(peak, cols[:, offset:offset + kernel.shape[0]] @ kernel, out=peak)
    return np.concatenate(peaks, axis=1)


class Musicnn:
    """The MSD_musicnn forward pass in numpy (prediction only: batch norm uses the moving statistics)."""

    def __init__(self, meta: dict, arrays: dict[str, np.ndarray]):
        self.tag_names: tuple[str, ...] = tuple(meta["tags"])
        eps = float(meta.get("batch_norm_epsilon", 1e-3))

        def bn(name: str) -> tuple[np.ndarray, np.ndarray]:
            # y = gamma * (x - mean) / sqrt(var + eps) + beta = x * scale + shift
            g, b = arrays[f"{name}.gamma"], arrays[f"{name}.beta"]
            m, v = arrays[f"{name}.moving_mean"], arrays[f"{name}.moving_variance"]
            scale = (g.astype(np.float64) / np.sqrt(v.astype(np.float64) + eps))
            return scale.astype(np.float32), (b - m * scale).astype(np.float32)

        self._input_bn = tuple(float(a[0]) for a in bn("input_bn"))
        # timbral kernels as per-DFT-pair matrices and the inverse DFT of their valid positions; the kernels
        # of negative batch-norm scales are negated so that pooling over frequency is always a maximum
        self._dft = _real_dft_matrix(N_MELS).astype(np.float32)
        self._timbral_kernels, timbral = [], []
        for name in _TIMBRAL:
            k = arrays[f"{name}.kernel"][:, :, 0, :]  # (7, width, 204)
            scale, shift = bn(f"{name}_bn")
            sign = _bn_sign(scale)
            inverse = _inverse_real_dft_matrix(N_MELS, N_MELS - k.shape[1] + 1).astype(np.float32)
            self._timbral_kernels.append((_spectral_kernel(k * sign), inverse))
            timbral.append((sign, arrays[f"{name}.bias"], scale, shift))
        # the temporal kernels in one 128-frame window ('same' padding: (k - 1) // 2 frames before the current one)
        window = _TEMPORAL[0][1]
        self._temporal_kernels, temporal = [], []
        for name, size in _TEMPORAL:
            scale, shift = bn(f"{name}_bn")
            sign = _bn_sign(scale)
            offset = (window - 1) // 2 - (size - 1) // 2
            self._temporal_kernels.append((offset, arrays[f"{name}.kernel"].reshape(size, -1) * sign))
            temporal.append((sign, arrays[f"{name}.bias"], scale, shift))
        # per-channel (sign, bias, scale, shift) of the 561 front-end channels, in output order
        self._front_bn = tuple(np.concatenate(a) for a in zip(*timbral, *temporal))
        self._midend = []
        for name in _MIDEND:
            k = arrays[f"{name}.kernel"][:, :, 0, :]  # (7, in, out) -> (in, 7 * out): every tap in one product
            mat = np.ascontiguousarray(k.transpose(1, 0, 2).reshape(k.shape[1], -1))
            self._midend.append((mat, arrays[f"{name}.bias"], *bn(f"{name}_bn")))
        self._pool_bn = bn("pool_bn")
        self._dense = (arrays["penultimate.kernel"], arrays["penultimate.bias"], *bn("penultimate_bn"))
        self._out = (arrays["tags.kernel"], arrays["tags.bias"])

    def _front_end(self, x: np.ndarray) -> np.ndarray:
        """The five front-end blocks on batch-normalised patches ``(n, t, 96)``: ``(n, t, 561)``."""
        n, t, _ = x.shape
        peaks = [*_timbral_pooled(x, self._dft, self._timbral_kernels), _temporal_pooled(x, self._temporal_kernels)]
        return _pooled_activation(np.concatenate(peaks, axis=1), *self._front_bn).reshape(n, t, -1)

    def _mid_end(self, front: np.ndarray) -> list[np.ndarray]:
        """The three mid-end convolutions on ``front`` ``(n, t, 561)``: ``[front, h1, h2, h3]``.

        Each 'same' convolution of 7 frames is one product of the zero-padded
        input with the kernels of all taps side by side, then a sum of the 7
        tap outputs shifted in time (no im2col copy of the input).
        """
        n, t, _ = front.shape
        outputs = [front]
        h = front
        for i, (mat, bias, scale, shift) in enumerate(self._midend):
            taps = mat.shape[1] // len(bias)
            padded = np.pad(h, ((0, 0), ((taps - 1) // 2, taps // 2), (0, 0)))
            per_tap = (padded.reshape(-1, padded.shape[2]) @ mat).reshape(n, -1, taps, len(bias))
            z = per_tap[:, :t, 0].copy()
            for tap in range(1, taps):
                z += per_tap[:, tap:tap + t, tap]
            h = _relu(z + bias) * scale + shift + (h if i > 0 else 0)
            outputs.append(h)
        return outputs

    def forward(self, patches: np.ndarray, *, batch_size: int = 4) -> MusicnnOutput:
        """Run the network on ``patches`` of shape ``(n_patches, frames, 96)`` (log-mel, any ``frames >= 1``).

        Patches are processed ``batch_size`` at a time to bound memory
        (about 4 MB per patch of 187 frames, plus 8 MB).  BLAS runs on one
        thread here: the network's matrix products are small, and extra BLAS
        threads only wait for each other (on a busy machine, a 30 s clip took
        1.5 to 9 s with two threads against 0.8 to 1.8 s with one).
        """
        from threadpoolctl import threadpool_limits

        x = np.asarray(patches, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != N_MELS or x.shape[1] < 1:
            raise ValueError(f"expected patches of shape (n, frames, {N_MELS}), got {x.shape}")
        pen, tags = [], []
        with threadpool_limits(1, user_api="blas"):
            for start in range(0, x.shape[0], max(1, int(batch_size))):
                p, s = self._forward_batch(x[start:start + batch_size])
                pen.append(p)
                tags.append(s)
        empty = np.zeros((0, 200), np.float32), np.zeros((0, len(self.tag_names)), np.float32)
        return MusicnnOutput(
            penultimate=np.concatenate(pen) if pen else empty[0],
            tags=np.concatenate(tags) if tags else empty[1],
            tag_names=self.tag_names,
        )

    def _forward_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        in_scale, in_shift = self._input_bn
        x = x * np.float32(in_scale) + np.float32(in_shift)
        features = np.concatenate(self._mid_end(self._front_end(x)), axis=2)  # (n, t, 753)
        # musicnn flattens concat([max, mean], axis=-1) of shape (n, 753, 2): the two alternate per channel
        pooled = np.stack([features.max(axis=1), features.mean(axis=1)], axis=2).reshape(x.shape[0], -1)
        scale, shift = self._pool_bn
        pooled = pooled * scale + shift
        kernel, bias, scale, shift = self._dense
        penultimate = _relu(pooled @ kernel + bias) * scale + shift
        kernel, bias = self._out
        logits = penultimate @ kernel + bias
        with np.errstate(over="ignore"):  # exp overflow for very negative logits gives exactly 0
            probs = 1 / (1 + np.exp(-logits))
        return penultimate.astype(np.float32), probs.astype(np.float32)


@lru_cache(maxsize=1)
def _default_model() -> Musicnn:
    return Musicnn(*load_weights())


def load_musicnn(directory: str | Path | None = None) -> Musicnn:
    """The MSD_musicnn network with the weights in ``directory`` (default: the packaged ones, loaded once)."""
    return _default_model() if directory is None else Musicnn(*load_weights(directory))


def analyze(y: np.ndarray, *, sr: int, network: Musicnn | None = None) -> MusicnnOutput:
    """Tag mono audio ``y`` (samples at ``sr`` Hz): one row per non-overlapping 3-second patch.

    Resamples to 16 kHz, computes :func:`log_mel_spectrogram`, cuts
    :func:`split_patches` and runs the network (default: the packaged
    MSD_musicnn).  Raises :class:`AudioTooShortError` below 3 s.
    """
    network = load_musicnn() if network is None else network
    return network.forward(split_patches(log_mel_spectrogram(y, sr=sr)))
