"""The genre model at work: load it once, name the genre of many recordings.

:class:`~genre_id.analysis.Analyzer` builds on it to report the genre and
the song; use a :class:`Recognizer` alone when only the genre matters.

>>> from genre_id import Recognizer
>>> rec = Recognizer.load()                      # the shipped default model
>>> p = rec.identify("song.mp3")                 # or rec.identify(samples, sample_rate=44100)
>>> p.genre, p.confidence, p.top, p.segments     # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple, Union

import numpy as np

from .audio import AudioStream, open_stream
from .config import AnalysisConfig
from .errors import FeatureVersionError, GenreIdError, ModelError, SilentAudioError
from .extraction import WindowFeatures, extract_samples, extract_stream
from .features import FeatureSet, Features, combine, get_feature_set
from .model import Ensemble, ModelBundle, fuse, load_bundle

__all__ = ["Recognizer", "Prediction", "Segment", "GenreScore", "AudioSource", "check_source", "source_name"]

AudioSource = Union[str, "os.PathLike[str]", bytes, BinaryIO, np.ndarray]


def _encoded(source: object) -> bool:
    """Whether ``source`` is encoded audio in memory or in a stream (bytes, or anything with ``.read``)."""
    return isinstance(source, (bytes, bytearray, memoryview)) or callable(getattr(source, "read", None))


def source_name(source: object) -> str:
    """What messages and reports call ``source``: a path as given, a stream's name, else ``"audio"``."""
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    return str(source) if isinstance(source, AudioStream) else "audio"


def check_source(source: object) -> None:
    """Refuse what is neither a path, an open :class:`~genre_id.audio.AudioStream`, encoded audio nor samples."""
    if not isinstance(source, (str, os.PathLike, AudioStream, np.ndarray)) and not _encoded(source):
        raise GenreIdError(f"cannot identify a {type(source).__name__}: pass a path to an audio file, "
                           "bytes or a binary file object of encoded audio, or a numpy array of samples")


class GenreScore(NamedTuple):
    """A genre and its probability."""

    genre: str
    probability: float


@dataclass(frozen=True)
class Segment:
    """One analysis window of the audio: its time span (seconds) and its genre.

    ``genre`` is None, ``confidence`` 0 and ``probabilities`` None for a
    silent window; else ``probabilities`` holds every genre's for this window.
    """

    start: float
    end: float
    genre: str | None
    confidence: float
    probabilities: dict[str, float] | None = None

    def to_dict(self, *, top: int = 3) -> dict:
        """A JSON-ready form, with the window's ``top`` genres (best first) and every genre's probability."""
        probs = self.probabilities or {}
        best = sorted(probs.items(), key=lambda kv: -kv[1])[:top]
        return {"start": round(self.start, 3), "end": round(self.end, 3), "genre": self.genre,
                "confidence": round(self.confidence, 4),
                "top": [{"genre": g, "probability": round(p, 4)} for g, p in best],
                "probabilities": None if self.probabilities is None else {g: round(p, 4) for g, p in probs.items()}}


@dataclass(frozen=True)
class Prediction:
    """The answer for one clip.

    ``probabilities`` holds every genre; ``top`` the best ones, best first;
    ``segments`` every window in time order (a timeline for long audio).
    The clip's probabilities are the mean over its non-silent windows.
    ``members`` holds, for an ensemble model, each member's own clip
    probabilities (member name to genre to probability), so both views can
    be seen; for a single model, its one entry equals ``probabilities``.
    """

    genre: str
    confidence: float
    top: list[GenreScore]
    probabilities: dict[str, float]
    segments: list[Segment]
    duration: float
    members: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready form."""
        return {
            "genre": self.genre,
            "confidence": round(self.confidence, 4),
            "top": [{"genre": g, "probability": round(p, 4)} for g, p in self.top],
            "probabilities": {g: round(p, 4) for g, p in self.probabilities.items()},
            "segments": [s.to_dict(top=len(self.top)) for s in self.segments],
            "duration": round(self.duration, 3),
            "members": [{"name": name, "probabilities": {g: round(p, 4) for g, p in probs.items()}}
                        for name, probs in self.members.items()],
        }


class Recognizer:
    """A loaded genre model, ready to classify audio.

    Load it once with :meth:`load` and call :meth:`identify` on as many clips
    as you like; nothing is set up again between calls.
    """

    def __init__(self, bundle: ModelBundle | Ensemble, *, top: int | None = None) -> None:
        self.bundle = bundle
        sets = []
        for member in bundle.members:
            try:
                sets.append(get_feature_set(member.feature_set))
            except FeatureVersionError as exc:
                if member.path is None:
                    raise
                raise FeatureVersionError(f"{member.path}: {exc}") from None
        #: What the model hears: for an ensemble, its members' feature sets side by side.
        self.feature_set: FeatureSet = combine(sets)
        n = len(bundle.labels)
        if top is not None and not (isinstance(top, int) and 1 <= top <= n):
            raise GenreIdError(f"--top must be from 1 to {n} (the model's genres), not {top}")
        #: How many genres :attr:`Prediction.top` lists (default 3, or every genre when the model has fewer).
        self.top = min(3, n) if top is None else top

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, backend: str = "numpy",
             top: int | None = None) -> "Recognizer":
        """Load a model folder (default: the shipped model).

        ``backend="numpy"`` (default) never imports TensorFlow; ``"keras"``
        evaluates the saved Keras model (loaded in safe mode).
        """
        return cls(load_bundle(path, backend=backend), top=top)

    @property
    def labels(self) -> list[str]:
        """The genres this model names."""
        return self.bundle.labels

    @property
    def config(self) -> AnalysisConfig:
        """How the model cuts and judges audio (its rate, window, minimum length and silence rule)."""
        return self.bundle.analysis

    @property
    def model_info(self) -> dict:
        """The model's name and version."""
        return {"name": self.bundle.name, "version": self.bundle.version}

    def features(self, source: AudioSource, *, sample_rate: int | None = None, name: str | None = None,
                 workers: int = 1) -> WindowFeatures:
        """The model's features for ``source``, one row per window (``workers``: see :meth:`identify`)."""
        if isinstance(source, np.ndarray):
            if sample_rate is None:
                raise GenreIdError("identify(samples) needs sample_rate= (Hz)")
            return extract_samples(source, sample_rate=sample_rate, name=name or "audio",
                                   feature_set=self.feature_set, config=self.config)
        if _encoded(source):
            with open_stream(source, name=name) as stream:
                return extract_stream(stream, feature_set=self.feature_set, config=self.config, workers=workers)
        check_source(source)
        return extract_stream(source, feature_set=self.feature_set, config=self.config, workers=workers)

    def identify(self, source: AudioSource, *, sample_rate: int | None = None, top: int | None = None,
                 workers: int = 1) -> Prediction:
        """Name the genre of an audio file or of samples.

        Parameters
        ----------
        source
            A path to an audio file; encoded audio as ``bytes`` or a binary
            file object (anything with ``.read``, such as ``sys.stdin.buffer``;
            read to its end); or samples of shape ``(n,)`` or ``(n, channels)``.
        sample_rate
            The samples' rate in Hz (only with samples).
        top
            How many genres :attr:`Prediction.top` lists (default 3).
        workers
            Processes that measure the windows of a long input (at least
            :data:`~genre_id.extraction.PARALLEL_MIN_WINDOWS` windows) while
            this one decodes it; default 1 (all in this process).  The answer
            is the same.

        Raises
        ------
        GenreIdError
            The audio cannot be read, is too short, or is silent.
        """
        if _encoded(source):
            with open_stream(source) as stream:
                return self.identify(stream, top=top, workers=workers)
        name = source_name(source)
        return self.classify(self.features(source, sample_rate=sample_rate, name=name, workers=workers), top=top,
                             name=name)

    def classify(self, windows: WindowFeatures | Features, *, top: int | None = None, name: str = "audio") -> Prediction:
        """Name the genre from features already computed (refused if of another feature set or version)."""
        if isinstance(windows, Features):
            windows.check(self.feature_set)
            values = np.atleast_2d(windows.values)
            n = len(values)
            w = self.config.window_seconds
            windows = WindowFeatures(
                starts=np.arange(n) * w, ends=np.arange(1, n + 1) * w, values=values,
                silent=np.zeros(n, dtype=bool), feature_set=windows.feature_set, version=windows.version,
            )
        windows.features().check(self.feature_set)
        if windows.silent.all():
            raise SilentAudioError(f"{name}: audio is silent; there is no genre to name")
        values = windows.values[~windows.silent]
        try:
            parts = self.bundle.member_proba(values)
            members = dict(zip(self.bundle.member_names, (p.mean(axis=0) for p in parts)))
            proba = fuse(parts, rule=self.bundle.fusion, weights=self.bundle.fusion_weights,
                         temperature=self.bundle.temperature)
        except ModelError as exc:  # e.g. weights that overflow on this audio: name the audio too
            raise ModelError(f"{name}: {exc}") from None
        return self._prediction(windows, proba, members=members, top=self.top if top is None else top)

    def _prediction(self, windows: WindowFeatures, proba: np.ndarray, *, members: dict[str, np.ndarray],
                    top: int) -> Prediction:
        labels = self.labels
        mean = proba.mean(axis=0)
        order = np.argsort(-mean)
        segments: list[Segment] = []
        rows = iter(proba)
        for start, end, quiet in zip(windows.starts, windows.ends, windows.silent):
            if quiet:
                segments.append(Segment(float(start), float(end), None, 0.0))
            else:
                p = next(rows)
                k = int(p.argmax())
                segments.append(Segment(float(start), float(end), labels[k], float(p[k]),
                                        {labels[i]: float(p[i]) for i in range(len(labels))}))
        best = int(order[0])
        return Prediction(
            genre=labels[best],
            confidence=float(mean[best]),
            top=[GenreScore(labels[int(i)], float(mean[i])) for i in order[: max(1, top)]],
            probabilities={labels[i]: float(mean[i]) for i in range(len(labels))},
            segments=segments,
            duration=windows.duration,
            members={name: {labels[i]: float(p[i]) for i in range(len(labels))} for name, p in members.items()},
        )
