"""Feature sets: named, versioned recipes that turn a window of audio into a vector.

A feature set fixes everything that decides the numbers: the sample rate the
audio is brought to, the STFT size and hop, the descriptors and their order.
Its name and version are stored in every model, and a model refuses features
of another set or version (:class:`~genre_id.errors.FeatureVersionError`).

:func:`measure` reproduces the 57 columns of the widely used GTZAN feature
table (``features_30_sec.csv``): mean and variance over frames of
chroma_stft, rms, spectral centroid, bandwidth, rolloff and zero-crossing
rate, mean and variance of the harmonic and percussive waveforms of an HPSS,
tempo, and mean and variance of 20 MFCCs, all with librosa's defaults (sr
22050 Hz, n_fft 2048, hop 512).  The STFT is computed once per window and
every spectral descriptor is derived from it.  Columns without the HPSS are
measured by :mod:`genre_id.spectral`, a numpy transcription of librosa's
functions that needs neither librosa nor numba (identify starts in well
under a second instead of about three, and there is no 25 s numba
compilation on the first run); the HPSS columns use librosa itself.

Two sets are built on it:

* ``gtzan57`` v1: the 57 table columns as they are;
* ``levelfree`` v1 (the default): 51 features derived from the table's
  columns that do not depend on playback level: RMS and the first MFCC's
  mean are replaced by RMS's coefficient of variation, variances and
  frequency-like means go on a log scale, and the costly HPSS columns are
  not measured.  Models train on it from the table or from audio alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from .errors import FeatureVersionError

__all__ = [
    "FeatureSet",
    "Features",
    "FEATURE_SETS",
    "DEFAULT_FEATURE_SET",
    "get_feature_set",
    "combine",
    "gtzan57_columns",
    "measure",
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


def _frames_stat(frames: np.ndarray, stat: str) -> float:
    x = np.asarray(frames, dtype=np.float64)
    return float(x.mean() if stat == "mean" else x.var())


#: Columns only the librosa engine measures: the harmonic / percussive separation's.
_HPSS_PREFIXES = ("harmony", "perceptr")
ENGINES = ("auto", "numpy", "librosa")


def _needs_hpss(columns: Sequence[str]) -> bool:
    return any(c.startswith(_HPSS_PREFIXES) for c in columns)


def measure(
    y: np.ndarray, *, sr: int, n_fft: int = 2048, hop_length: int = 512,
    columns: Sequence[str] | None = None, engine: str = "auto",
) -> np.ndarray:
    """The GTZAN-table descriptors named in ``columns`` (default: all 57), from one STFT of ``y``.

    ``y`` is mono audio at ``sr`` Hz; the result has one value per column, in
    the table's units (Hz for the spectral shape, BPM for tempo).

    Each descriptor is computed only when a column needs it; the harmonic /
    percussive separation, by far the most expensive, only for ``harmony_*``
    and ``perceptr_*``.

    ``engine`` chooses the implementation: ``"numpy"`` (:mod:`genre_id.spectral`,
    a numpy transcription of librosa that starts in a fraction of the time
    and never compiles anything; no HPSS columns), ``"librosa"`` (librosa
    itself), or ``"auto"``: numpy unless a column needs the HPSS.  The choice
    depends on the columns only, so a feature set is always measured the
    same way, in training and in prediction.  The two engines agree to a
    relative 1e-4 (``tests/test_spectral.py``).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    y = np.ascontiguousarray(y, dtype=np.float32)
    columns = tuple(gtzan57_columns() if columns is None else columns)
    if engine == "auto":
        engine = "librosa" if _needs_hpss(columns) else "numpy"
    if engine == "numpy" and _needs_hpss(columns):
        raise ValueError("the numpy engine does not measure the harmonic/percussive (HPSS) columns")
    if engine == "numpy":
        from . import spectral as ops
    else:
        ops = _LibrosaOps()
    frames, tempo = _describe(y, ops=ops, sr=sr, n_fft=n_fft, hop_length=hop_length, columns=columns)
    values = []
    for c in columns:
        if c == "tempo":
            values.append(tempo)
        else:
            name, stat = c.rsplit("_", 1)
            values.append(_frames_stat(frames[name], stat))
    return np.asarray(values, dtype=np.float64)


class _LibrosaOps:
    """librosa behind the signatures of :mod:`genre_id.spectral`, so one recipe serves both engines."""

    def __init__(self) -> None:
        import librosa  # imported lazily: it is heavy, and only the HPSS columns need it

        self.librosa = librosa

    def stft(self, y: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
        return self.librosa.stft(y, n_fft=n_fft, hop_length=hop_length)

    def estimate_tuning(self, *, S: np.ndarray, sr: float, n_fft: int) -> float:
        return self.librosa.estimate_tuning(S=S, sr=sr, n_fft=n_fft)

    def chroma_stft(self, *, S: np.ndarray, sr: float, n_fft: int, tuning: float) -> np.ndarray:
        return self.librosa.feature.chroma_stft(S=S, sr=sr, n_fft=n_fft, tuning=tuning)

    def rms(self, *, y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
        return self.librosa.feature.rms(y=y, frame_length=frame_length, hop_length=hop_length)

    def spectral_shape(self, *, S: np.ndarray, sr: float, n_fft: int) -> dict[str, np.ndarray]:
        feature = self.librosa.feature
        return {"spectral_centroid": feature.spectral_centroid(S=S, sr=sr, n_fft=n_fft),
                "spectral_bandwidth": feature.spectral_bandwidth(S=S, sr=sr, n_fft=n_fft),
                "rolloff": feature.spectral_rolloff(S=S, sr=sr, n_fft=n_fft)}

    def zero_crossing_rate(self, *, y: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
        return self.librosa.feature.zero_crossing_rate(y, frame_length=frame_length, hop_length=hop_length)

    def melspectrogram(self, *, S: np.ndarray, sr: float, n_fft: int) -> np.ndarray:
        return self.librosa.feature.melspectrogram(S=S, sr=sr, n_fft=n_fft)

    def power_to_db(self, S: np.ndarray) -> np.ndarray:
        return self.librosa.power_to_db(S)

    def mfcc(self, *, S: np.ndarray, n_mfcc: int) -> np.ndarray:
        return self.librosa.feature.mfcc(S=S, n_mfcc=n_mfcc)

    def onset_strength(self, *, S: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
        return self.librosa.onset.onset_strength(S=S, n_fft=n_fft, hop_length=hop_length)

    def tempo(self, *, onset_envelope: np.ndarray, sr: float, hop_length: int) -> float:
        bpm = self.librosa.feature.tempo(onset_envelope=onset_envelope, sr=sr, hop_length=hop_length)
        return float(np.atleast_1d(bpm)[0])

    def hpss_waveforms(self, stft: np.ndarray, *, n_fft: int, hop_length: int, length: int):
        harm, perc = self.librosa.decompose.hpss(stft)
        return (self.librosa.istft(harm, hop_length=hop_length, n_fft=n_fft, length=length),
                self.librosa.istft(perc, hop_length=hop_length, n_fft=n_fft, length=length))


def _describe(
    y: np.ndarray, *, ops, sr: int, n_fft: int, hop_length: int, columns: Sequence[str]
) -> tuple[dict[str, np.ndarray], float]:
    """Per-frame descriptors (name to frames) and the tempo, computed with ``ops``
    (:mod:`genre_id.spectral` or :class:`_LibrosaOps`) from one STFT."""
    wanted = {c.rsplit("_", 1)[0] for c in columns}
    mfcc_wanted, tempo_wanted = any(c.startswith("mfcc") for c in columns), "tempo" in columns
    stft = ops.stft(y, n_fft=n_fft, hop_length=hop_length)
    mag = np.abs(stft)
    power = mag**2
    frames: dict[str, np.ndarray] = {}
    if "chroma_stft" in wanted:
        # Tuning is estimated on every 4th frame: the same estimate to 0.01 bin, a quarter of the cost.
        tuning = ops.estimate_tuning(S=power[:, ::4], sr=sr, n_fft=n_fft)
        frames["chroma_stft"] = ops.chroma_stft(S=power, sr=sr, n_fft=n_fft, tuning=tuning)
    if "rms" in wanted:
        frames["rms"] = ops.rms(y=y, frame_length=n_fft, hop_length=hop_length)
    if wanted & {"spectral_centroid", "spectral_bandwidth", "rolloff"}:
        frames.update(ops.spectral_shape(S=mag, sr=sr, n_fft=n_fft))
    if "zero_crossing_rate" in wanted:
        frames["zero_crossing_rate"] = ops.zero_crossing_rate(y=y, frame_length=n_fft, hop_length=hop_length)
    if wanted & {"harmony", "perceptr"}:
        frames["harmony"], frames["perceptr"] = ops.hpss_waveforms(stft, n_fft=n_fft, hop_length=hop_length,
                                                                   length=len(y))
    tempo = float("nan")
    if mfcc_wanted or tempo_wanted:
        mel_db = ops.power_to_db(ops.melspectrogram(S=power, sr=sr, n_fft=n_fft))
        if mfcc_wanted:
            for i, row in enumerate(ops.mfcc(S=mel_db, n_mfcc=20), start=1):
                frames[f"mfcc{i}"] = row
        if tempo_wanted:
            onset = ops.onset_strength(S=mel_db, n_fft=n_fft, hop_length=hop_length)
            tempo = ops.tempo(onset_envelope=onset, sr=sr, hop_length=hop_length)
    return frames, tempo


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned feature recipe.

    Parameters
    ----------
    name, version
        Identify the recipe; models store both.
    sample_rate
        The rate (Hz) of the windows the set is given: audio is resampled to
        it once, for every set of an ensemble.
    n_fft, hop_length
        The front end's STFT size and hop, in samples at ``front_end_rate``;
        ``None`` for a combination of sets, which has no front end of its own.
    columns
        Names of the vector's entries, in order.
    table_columns
        The descriptors measured on the audio, as columns of a feature table
        (the GTZAN table's names); the set's own columns are derived from
        them by ``_derive``.  Empty when they are the set's columns.
    groups
        Feature groups (name to column names) for importance reports.
    """

    name: str
    version: int
    sample_rate: int
    n_fft: int | None
    hop_length: int | None
    columns: tuple[str, ...]
    table_columns: tuple[str, ...] = ()
    #: The rate (Hz) the front end resamples the windows to before its STFT; ``None``: :attr:`sample_rate`.
    front_end_rate: int | None = None
    _derive: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False, compare=False)
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)
    _measure: Callable[[np.ndarray, int], np.ndarray] | None = field(default=None, repr=False, compare=False)
    members: tuple["FeatureSet", ...] = field(default=(), repr=False)

    @property
    def measured_columns(self) -> tuple[str, ...]:
        """The columns a feature table must have to train this set."""
        return self.table_columns or self.columns

    @property
    def from_audio_only(self) -> bool:
        """True for sets that are not measured from the GTZAN table's descriptors (no table can train them)."""
        return self._measure is not None or bool(self.members)

    def from_table(self, measured: np.ndarray) -> np.ndarray:
        """This set's features from rows of :attr:`measured_columns` (shape ``(n, len(measured_columns))``)."""
        measured = np.atleast_2d(np.asarray(measured, dtype=np.float64))
        return measured if self._derive is None else self._derive(measured)

    @property
    def n_features(self) -> int:
        return len(self.columns)

    def to_dict(self) -> dict:
        """The JSON form stored in a model's metadata."""
        out = {
            "name": self.name,
            "version": self.version,
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "columns": list(self.columns),
        }
        if self.front_end_rate is not None:  # the STFT runs at another rate than the windows arrive at
            out["front_end_rate"] = self.front_end_rate
        return out

    def extract(self, samples: np.ndarray) -> "Features":
        """Compute the feature vector of mono ``samples`` at :attr:`sample_rate` Hz."""
        if self.members:
            values = np.concatenate([m.extract(samples).values for m in self.members])
        elif self._measure is not None:
            values = np.asarray(self._measure(samples, self.sample_rate), dtype=np.float64)
        else:
            measured = measure(samples, sr=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
                               columns=self.measured_columns)
            values = self.from_table(measured)[0]
        return Features(values=values, feature_set=self.name, version=self.version)


@dataclass(frozen=True)
class Features:
    """A feature vector (or matrix, one row per window) and the recipe that made it."""

    values: np.ndarray
    feature_set: str
    version: int

    def check(self, expected: "FeatureSet") -> None:
        """Raise :class:`FeatureVersionError` unless made by the feature set ``expected``."""
        if (self.feature_set, self.version) != (expected.name, expected.version):
            raise FeatureVersionError(
                f"features are '{self.feature_set}' version {self.version}, but the model needs "
                f"'{expected.name}' version {expected.version}"
            )


_FLOOR = 1e-12  # below this a variance or level is treated as this, so logs stay finite

#: GTZAN columns the ``levelfree`` set is derived from: all but the harmonic /
#: percussive separation's, which make extraction 16 times slower (23x against
#: 374x real time per core) for about one point of accuracy (valid list 0.513
#: against 0.501, 10-fold 0.710 against 0.694; see README, "Features").
_LEVELFREE_MEASURED = tuple(c for c in gtzan57_columns() if not c.startswith(_HPSS_PREFIXES))
#: Columns that measure absolute level: they follow the playback gain and
#: the mastering, not the genre.
_LEVEL_COLUMNS = ("rms_mean", "rms_var", "mfcc1_mean")
#: Columns whose spread over clips is multiplicative: compared on a log scale.
_LOG_MEANS = ("spectral_centroid_mean", "spectral_bandwidth_mean", "rolloff_mean", "zero_crossing_rate_mean", "tempo")


def _levelfree_columns() -> list[str]:
    cols = [f"log_{c}" if c.endswith("_var") or c in _LOG_MEANS else c
            for c in _LEVELFREE_MEASURED if c not in _LEVEL_COLUMNS]
    return cols + ["log_rms_cv2"]


def _levelfree(measured: np.ndarray) -> np.ndarray:
    """The ``levelfree`` features from rows of the :data:`_LEVELFREE_MEASURED` columns.

    Level enters these descriptors only through RMS and the first MFCC's
    mean; they are replaced by the squared coefficient of variation of RMS
    (its variance over its squared mean), which a gain change leaves alone.
    Variances and the frequency-like means are taken on a log scale.
    """
    idx = {c: i for i, c in enumerate(_LEVELFREE_MEASURED)}

    def col(name: str) -> np.ndarray:
        return np.maximum(measured[:, idx[name]], _FLOOR)

    out = [np.log(col(c)) if c.endswith("_var") or c in _LOG_MEANS else measured[:, idx[c]]
           for c in _LEVELFREE_MEASURED if c not in _LEVEL_COLUMNS]
    out.append(np.log(col("rms_var") / col("rms_mean") ** 2))
    return np.column_stack(out)


def _groups(columns: list[str]) -> dict[str, tuple[str, ...]]:
    def mfcc_range(a: int, b: int) -> tuple[str, ...]:
        return tuple(c for c in columns if any(c.endswith(f"mfcc{i}_mean") or c.endswith(f"mfcc{i}_var")
                                                 for i in range(a, b + 1)))

    def having(*parts: str) -> tuple[str, ...]:
        return tuple(c for c in columns if any(p in c for p in parts))

    groups = {
        "chroma": having("chroma"),
        "loudness and dynamics": having("rms"),
        "spectral shape (centroid, bandwidth, rolloff)": having("centroid", "bandwidth", "rolloff"),
        "zero-crossing rate": having("zero_crossing"),
        "harmonic/percussive": having("harmon", "perceptr", "hpss"),
        "tempo": having("tempo"),
        "mfcc 1": mfcc_range(1, 1),
        "mfcc 2-5": mfcc_range(2, 5),
        "mfcc 6-12": mfcc_range(6, 12),
        "mfcc 13-20": mfcc_range(13, 20),
    }
    return {k: v for k, v in groups.items() if v}


#: The rate (Hz) the GTZAN table was measured at (librosa's default), and every feature set's window rate.
GTZAN_SAMPLE_RATE = 22050


def _gtzan_recipe(name: str, columns: Sequence[str], **kwargs) -> FeatureSet:
    """A feature set measured with the GTZAN table's settings (librosa defaults: 22050 Hz, n_fft 2048, hop 512)."""
    return FeatureSet(name=name, version=1, sample_rate=GTZAN_SAMPLE_RATE, n_fft=2048, hop_length=512,
                      columns=tuple(columns), groups=_groups(list(columns)), **kwargs)


#: The level (RMS) every window is brought to before MSD_musicnn hears it: -20 dBFS.
MUSICNN_RMS = 0.1


def _musicnn_msd(samples: np.ndarray, sr: int) -> np.ndarray:
    """The ``musicnn-msd`` vector of one window: MSD_musicnn's penultimate layer, averaged over its 3 s patches.

    The window is first scaled to an RMS of :data:`MUSICNN_RMS`: the network
    is very sensitive to playback level (a 12 dB change flipped a third of
    its answers), which says nothing about the genre.
    """
    from . import musicnn  # its weights are read on first use only

    y = np.asarray(samples, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    if rms > 0:
        y = y * np.float32(MUSICNN_RMS / rms)
    return musicnn.analyze(y, sr=sr).penultimate.mean(axis=0, dtype=np.float64)


def _musicnn_recipe() -> FeatureSet:
    """``musicnn-msd`` v2: what a network pretrained on the Million Song Dataset hears.

    Windows arrive at 22050 Hz, like the other sets' (so an ensemble decodes
    a file once); each is brought to -20 dBFS RMS, resampled to the
    network's 16 kHz, cut into 3 s patches of log-mel frames (n_fft 512,
    hop 256 at 16 kHz, 96 bands) and passed through MSD_musicnn
    (:mod:`genre_id.musicnn`); the window's vector is the mean over patches
    of the 200-unit penultimate layer.  The weights are stored as float16.
    """
    from .musicnn import SAMPLE_RATE

    cols = tuple(f"msd_penultimate_{i:03d}" for i in range(200))
    return FeatureSet(name="musicnn-msd", version=2, sample_rate=GTZAN_SAMPLE_RATE, n_fft=512, hop_length=256,
                      front_end_rate=SAMPLE_RATE, columns=cols, groups={"musicnn (MSD) embedding": cols},
                      _measure=_musicnn_msd)


FEATURE_SETS: dict[str, FeatureSet] = {
    "gtzan57": _gtzan_recipe("gtzan57", gtzan57_columns()),
    "levelfree": _gtzan_recipe("levelfree", _levelfree_columns(), table_columns=tuple(_LEVELFREE_MEASURED),
                               _derive=_levelfree),
    "musicnn-msd": _musicnn_recipe(),
}


def combine(sets: Sequence[FeatureSet]) -> FeatureSet:
    """One feature set whose vector is the concatenation of ``sets``' vectors (for an ensemble of models).

    The sets must share their sample rate, so the audio is decoded and
    windowed once for all of them.  The name joins the parts with ``+``
    (``"levelfree+musicnn-msd"``); :func:`get_feature_set` knows such names.
    """
    sets = tuple(sets)
    if len(sets) == 1:
        return sets[0]
    rates = {fs.sample_rate for fs in sets}
    if len(rates) != 1:
        raise FeatureVersionError(f"feature sets at different sample rates cannot be combined: {sorted(rates)}")
    columns = tuple(f"{fs.name}:{c}" for fs in sets for c in fs.columns)
    groups = {f"{fs.name}: {g}": tuple(f"{fs.name}:{c}" for c in cols) for fs in sets for g, cols in fs.groups.items()}
    version = 1  # a combination has no recipe of its own: its parts' versions are checked where it is used
    return FeatureSet(name="+".join(fs.name for fs in sets), version=version, sample_rate=rates.pop(),
                      n_fft=None, hop_length=None, columns=columns, groups=groups, members=sets)

#: The feature set new models use unless told otherwise.
DEFAULT_FEATURE_SET = "levelfree"


def get_feature_set(spec: str | Mapping | FeatureSet = DEFAULT_FEATURE_SET) -> FeatureSet:
    """Look up a feature set by name, or by a model's stored ``to_dict()`` form (a ``FeatureSet`` is itself).

    A stored form must match this library's recipe exactly (name, version and
    settings); otherwise :class:`FeatureVersionError` explains the difference.
    """
    if isinstance(spec, FeatureSet):
        return spec
    if isinstance(spec, str) and "+" in spec:
        return combine([get_feature_set(part) for part in spec.split("+")])
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
        for key in ("sample_rate", "n_fft", "hop_length", "front_end_rate", "columns"):
            if key in stored and stored[key] != mine[key]:
                raise FeatureVersionError(
                    f"the model's feature set '{name}' v{fs.version} differs from this genre-id's in '{key}'"
                )
    return fs
