"""Feature sets: named, versioned recipes that turn a window of audio into a vector.

A feature set fixes everything that decides the numbers: the sample rate the
audio is brought to, the STFT size and hop, the descriptors and their order.
Its name and version are stored in every model, and a model refuses features
of another set or version (:class:`~genre_id.errors.FeatureVersionError`).

The default set, ``gtzan57`` version 1, reproduces the 57 columns of the
widely used GTZAN feature table (``features_30_sec.csv``): mean and variance
over frames of chroma_stft, rms, spectral centroid, bandwidth, rolloff and
zero-crossing rate, mean and variance of the harmonic and percussive
waveforms of an HPSS, tempo, and mean and variance of 20 MFCCs, all with
librosa's defaults (sr 22050 Hz, n_fft 2048, hop 512).  The STFT is computed
once per window and every spectral descriptor is derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from .errors import FeatureVersionError

__all__ = [
    "FeatureSet",
    "Features",
    "FEATURE_SETS",
    "DEFAULT_FEATURE_SET",
    "get_feature_set",
    "extract",
    "gtzan57_columns",
]


def gtzan57_columns() -> list[str]:
    """The 57 feature column names of the GTZAN table, in its order."""
    cols: list[str] = []
    for name in (
        "chroma_stft",
        "rms",
        "spectral_centroid",
        "spectral_bandwidth",
        "rolloff",
        "zero_crossing_rate",
        "harmony",
        "perceptr",
    ):
        cols += [f"{name}_mean", f"{name}_var"]
    cols.append("tempo")
    for i in range(1, 21):
        cols += [f"mfcc{i}_mean", f"mfcc{i}_var"]
    return cols


def _mean_var(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()), float(x.var())


def _gtzan57(y: np.ndarray, *, sr: int, n_fft: int, hop_length: int) -> np.ndarray:
    import librosa  # imported lazily: it is heavy and not every caller extracts

    y = np.ascontiguousarray(y, dtype=np.float32)
    stft = librosa.stft(y, n_fft=n_fft, hop_length=hop_length)
    mag = np.abs(stft)
    power = mag**2

    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=n_fft, hop_length=hop_length)
    rms = librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop_length)
    centroid = librosa.feature.spectral_centroid(S=mag, sr=sr, n_fft=n_fft, hop_length=hop_length)
    bandwidth = librosa.feature.spectral_bandwidth(S=mag, sr=sr, n_fft=n_fft, hop_length=hop_length)
    rolloff = librosa.feature.spectral_rolloff(S=mag, sr=sr, n_fft=n_fft, hop_length=hop_length)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop_length)

    harm_stft, perc_stft = librosa.decompose.hpss(stft)
    harmony = librosa.istft(harm_stft, hop_length=hop_length, n_fft=n_fft, length=len(y))
    percussive = librosa.istft(perc_stft, hop_length=hop_length, n_fft=n_fft, length=len(y))

    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_fft=n_fft, hop_length=hop_length)
    mel_db = librosa.power_to_db(mel)
    onset_env = librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=hop_length)
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset_env, sr=sr, hop_length=hop_length))[0])
    mfcc = librosa.feature.mfcc(S=mel_db, sr=sr, n_mfcc=20)

    values: list[float] = []
    for frames in (chroma, rms, centroid, bandwidth, rolloff, zcr, harmony, percussive):
        values += _mean_var(frames)
    values.append(tempo)
    for row in mfcc:
        values += _mean_var(row)
    return np.asarray(values, dtype=np.float64)


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned feature recipe.

    Parameters
    ----------
    name, version
        Identify the recipe; models store both.
    sample_rate
        Audio is resampled to this rate (Hz) before extraction.
    n_fft, hop_length
        STFT size and hop, in samples at ``sample_rate``.
    columns
        Names of the vector's entries, in order.
    """

    name: str
    version: int
    sample_rate: int
    n_fft: int
    hop_length: int
    columns: tuple[str, ...]
    _fn: Callable[..., np.ndarray] = field(repr=False, compare=False)

    @property
    def n_features(self) -> int:
        return len(self.columns)

    def to_dict(self) -> dict:
        """The JSON form stored in a model's metadata."""
        return {
            "name": self.name,
            "version": self.version,
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "columns": list(self.columns),
        }

    def extract(self, samples: np.ndarray) -> "Features":
        """Compute the feature vector of mono ``samples`` at :attr:`sample_rate` Hz."""
        values = self._fn(samples, sr=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length)
        return Features(values=values, feature_set=self.name, version=self.version)


@dataclass(frozen=True)
class Features:
    """A feature vector (or matrix, one row per window) and the recipe that made it."""

    values: np.ndarray
    feature_set: str
    version: int

    def check(self, expected: Mapping) -> None:
        """Raise :class:`FeatureVersionError` unless made by ``expected`` (a ``to_dict()`` form)."""
        if (self.feature_set, self.version) != (expected["name"], expected["version"]):
            raise FeatureVersionError(
                f"features are '{self.feature_set}' version {self.version}, but the model needs "
                f"'{expected['name']}' version {expected['version']}"
            )


FEATURE_SETS: dict[str, FeatureSet] = {
    "gtzan57": FeatureSet(
        name="gtzan57",
        version=1,
        sample_rate=22050,
        n_fft=2048,
        hop_length=512,
        columns=tuple(gtzan57_columns()),
        _fn=_gtzan57,
    ),
}

#: The feature set new models use unless told otherwise.
DEFAULT_FEATURE_SET = "gtzan57"


def get_feature_set(spec: str | Mapping = DEFAULT_FEATURE_SET) -> FeatureSet:
    """Look up a feature set by name, or by a model's stored ``to_dict()`` form.

    A stored form must match this library's recipe exactly (name, version and
    settings); otherwise :class:`FeatureVersionError` explains the difference.
    """
    name = spec if isinstance(spec, str) else spec.get("name")
    fs = FEATURE_SETS.get(str(name))
    if fs is None:
        known = ", ".join(sorted(FEATURE_SETS))
        raise FeatureVersionError(f"unknown feature set '{name}' (this genre-id knows: {known})")
    if not isinstance(spec, str):
        stored = dict(spec)
        if stored.get("version") != fs.version:
            raise FeatureVersionError(
                f"the model needs feature set '{name}' version {stored.get('version')}, "
                f"but this genre-id computes version {fs.version}; retrain the model or install a matching genre-id"
            )
        mine = fs.to_dict()
        for key in ("sample_rate", "n_fft", "hop_length", "columns"):
            if key in stored and stored[key] != mine[key]:
                raise FeatureVersionError(
                    f"the model's feature set '{name}' v{fs.version} differs from this genre-id's in '{key}'"
                )
    return fs


def extract(samples: np.ndarray, *, feature_set: str = DEFAULT_FEATURE_SET) -> Features:
    """Compute ``feature_set``'s vector for mono ``samples`` already at its sample rate."""
    return get_feature_set(feature_set).extract(samples)
