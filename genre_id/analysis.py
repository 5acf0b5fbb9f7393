"""What is this recording?  One analysis, one typed report per recording.

>>> from genre_id import Analyzer
>>> with Analyzer.load(db="fingerprints.sqlite") as analyzer:      # doctest: +SKIP
...     report = analyzer.analyze("song.mp3")
...     report.prediction.genre, report.match and report.match.title

:class:`Analyzer` is the one place that joins the genre (a
:class:`~genre_id.recognizer.Recognizer`) and the song (a
:class:`~genre_id.fingerprint.FingerprintIndex`).  Each input is decoded
once, inside the process that analyses it (this one, a local worker or a
Dask worker): the same decoded windows feed the genre model and the
fingerprint.  The command line, the web page and the library scanner only
render the :class:`Report`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from . import audio
from .audio import AudioStream, open_stream
from .config import AnalysisConfig
from .errors import GenreIdError
from .extraction import EXCERPT_MIN_SECONDS, WindowFeatures, excerpt_windows, extract_stream, stream_windows
from .features import get_feature_set
from .files import PathLike
from .fingerprint.index import FingerprintIndex, LandmarkBuilder, Match
from .fingerprint.landmarks import FingerprintParams, Landmarks
from .fingerprint.store import FingerprintDBError
from .parallel import Executor, FileFailure, call_isolated, default_workers, map_files
from .recognizer import AudioSource, Prediction, Recognizer, _encoded, check_source, source_name
from .textsafe import path_fields

__all__ = ["Analyzer", "Report", "ModelInfo"]

@dataclass(frozen=True)
class ModelInfo:
    """The model a report comes from."""

    name: str
    version: str
    labels: tuple[str, ...]  #: the genres it names, in output order
    members: tuple[str, ...]  #: its members' feature sets (one for a single model)

    def to_dict(self) -> dict[str, str]:
        """The ``model`` object of a JSON report: name and version."""
        return {"name": self.name, "version": self.version}


@dataclass(frozen=True)
class Report:
    """Everything genre-id found out about one recording.

    Attributes
    ----------
    source : str
        The input's name: its path as given, ``"<stdin>"``, or ``"audio"``.
    model : ModelInfo
        The model that judged it.
    prediction : Prediction or None
        The genre (``None`` when the recording could not be analysed).
    match : Match or None
        The recording it was identified as, when a fingerprint store was
        searched (:attr:`searched`) and one matched.
    searched : bool
        Whether a fingerprint store was searched.
    error : str or None
        What went wrong, in one line naming the input; ``None`` when it
        was analysed.
    internal : bool
        The error is a bug met on this input, not a fault of the input.
    """

    source: str
    model: ModelInfo
    prediction: Prediction | None = None
    match: Match | None = None
    searched: bool = False
    error: str | None = None
    internal: bool = False

    @property
    def ok(self) -> bool:
        """Whether the recording was analysed."""
        return self.error is None

    @property
    def duration(self) -> float | None:
        """Seconds of audio analysed (``None`` when it failed)."""
        return None if self.prediction is None else self.prediction.duration

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``genre-id identify --json`` prints one per line).

        ``file`` (and ``file_bytes`` for a name that is not UTF-8), the
        prediction's keys, ``model``, and ``match`` (an object or ``null``)
        when a store was searched; for a failed input ``file`` and ``error``.
        """
        out: dict[str, Any] = dict(path_fields(self.source))
        if self.prediction is None:
            out["error"] = self.error
            return out
        out.update(self.prediction.to_dict())
        out["model"] = self.model.to_dict()
        if self.searched:
            out["match"] = None if self.match is None else self.match.to_dict()
        return out


@dataclass(frozen=True)
class _Measured:
    """What a worker sends back: the genre windows' features, and the fingerprint when asked for."""

    windows: WindowFeatures
    landmarks: Landmarks | None
    duration: float | None = None  #: the recording's length (s) when only excerpts were measured


def _measure(source: str | AudioStream, *, feature_set: str, config: AnalysisConfig,
             params: FingerprintParams | None, workers: int = 1, quick: bool = False) -> _Measured:
    """Decode ``source`` once: its windows' features, and with ``params`` its fingerprint from the same samples.

    With ``quick``, a file of :data:`~genre_id.extraction.EXCERPT_MIN_SECONDS`
    or more is measured from three windows read by seeking (no fingerprint).
    """
    if quick and not isinstance(source, AudioStream):
        try:
            seconds = audio.info(source).duration
        except GenreIdError:
            seconds = 0.0  # read whole below, where the decoder names the problem
        if seconds >= EXCERPT_MIN_SECONDS:
            windows = excerpt_windows(source, config=config, duration=seconds)
            features = extract_stream(source, feature_set=get_feature_set(feature_set), config=config,
                                      workers=workers, windows=windows)
            return _Measured(features, None, duration=seconds)
    windows = stream_windows(source, config=config)
    builder = None
    if params is not None:
        builder = LandmarkBuilder(sample_rate=config.sample_rate, params=params)
        windows = builder.tap(windows)
    features = extract_stream(source, feature_set=get_feature_set(feature_set), config=config, workers=workers,
                              windows=windows)
    return _Measured(features, None if builder is None else builder.result())




class Analyzer(AbstractContextManager):
    """A loaded model, and optionally a fingerprint store: analyse recordings into :class:`Report` objects.

    Parameters
    ----------
    recognizer
        The genre model.
    index
        An open fingerprint store to name the recording from; ``None``: the
        genre only.
    workers
        Processes for :meth:`analyze_many` (default: one per core, never
        more than inputs), or for the windows of one long input.
    executor
        Where :meth:`analyze_many` runs its per-file work instead (e.g. a
        Dask cluster, :mod:`genre_id.cluster`).
    """

    def __init__(self, recognizer: Recognizer, *, index: FingerprintIndex | None = None, workers: int | None = None,
                 executor: Executor | None = None) -> None:
        self.recognizer = recognizer
        self.index = index
        self.workers = workers
        self.executor = executor
        self._owned: FingerprintIndex | None = None
        bundle = recognizer.bundle
        self.model = ModelInfo(name=str(bundle.name), version=str(bundle.version), labels=tuple(recognizer.labels),
                               members=tuple(m.name for m in (recognizer.feature_set.members
                                                              or (recognizer.feature_set,))))

    @classmethod
    def load(cls, model: PathLike | None = None, *, db: PathLike | None = None, backend: str = "numpy",
             top: int | None = None, workers: int | None = None, executor: Executor | None = None) -> "Analyzer":
        """Load a model folder (default: the shipped model) and open the fingerprint database ``db`` if given.

        The database must exist (it is opened read-only in spirit: nothing is
        added); close it with :meth:`close` or a ``with`` block.
        """
        recognizer = Recognizer.load(model, backend=backend, top=top)
        index = None if db is None else FingerprintIndex.open(db, create=False)
        analyzer = cls(recognizer, index=index, workers=workers, executor=executor)
        analyzer._owned = index
        return analyzer

    def close(self) -> None:
        """Close the fingerprint database if :meth:`load` opened it."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def config(self) -> AnalysisConfig:
        """How the model cuts and judges audio."""
        return self.recognizer.config

    @property
    def labels(self) -> list[str]:
        """The genres the model names."""
        return self.recognizer.labels

    def analyze(self, source: AudioSource, *, sample_rate: int | None = None, name: str | None = None,
                workers: int = 1, quick: bool = False) -> Report:
        """Analyse one recording: a path, encoded audio (``bytes`` or a binary file object) or samples.

        Parameters
        ----------
        source
            A path to an audio file; encoded audio as ``bytes`` or an object
            with ``.read`` (read to its end); or samples of shape ``(n,)`` or
            ``(n, channels)``.
        sample_rate
            The samples' rate in Hz (only with samples).
        name
            What the report and its messages call the input.
        workers
            Processes that measure the windows of a long input while this
            one decodes it (the answer is the same).
        quick
            Judge a file of two minutes or more from three windows at 20, 50
            and 80 % of its length, read by seeking instead of decoding the
            whole file (for scanning big libraries).  Its report's timeline
            has those three windows; the fingerprint is not searched, so
            ``quick`` needs an analyzer without a database.

        Returns
        -------
        Report
            With :attr:`Report.error` set (one line) when the input cannot
            be analysed; nothing is raised for a bad input.
        """
        self._check_quick(quick)
        shown = source_name(source) if name is None else name
        try:
            if _encoded(source):
                with open_stream(source, name=shown) as stream:
                    return self.analyze(stream, name=shown, workers=workers)
            check_source(source)
        except GenreIdError as exc:
            return self._failed(shown, str(exc))
        if isinstance(source, np.ndarray):
            return self._judge(shown, call_isolated(partial(self._measure_samples, sample_rate=sample_rate, name=shown),
                                                    source, name=shown), samples=(source, sample_rate))
        measured = call_isolated(partial(_measure, feature_set=self.recognizer.feature_set.name, config=self.config,
                                          params=self._params, workers=workers, quick=quick), source, name=shown)
        return self._judge(shown, measured)

    def analyze_many(self, sources: Iterable[AudioSource], *, quick: bool = False) -> Iterator[Report]:
        """One :class:`Report` per source, in order, as each is ready.

        Files are analysed by :attr:`workers` processes (or on
        :attr:`executor`), each decoding its file once for the genre and the
        fingerprint; a file that fails, even one that crashes its worker,
        costs only its own report.  Other sources (streams, bytes, samples)
        are analysed in this process.  A single input is analysed here, its
        windows spread over the workers when it is long.  ``quick``: as in
        :meth:`analyze`.
        """
        self._check_quick(quick)
        sources = list(sources)
        paths = [os.fsdecode(s) for s in sources if isinstance(s, (str, os.PathLike))]
        if self.executor is None and default_workers(self.workers, len(paths)) == 1:
            alone = default_workers(self.workers, sys.maxsize) if len(sources) == 1 else 1
            for source in sources:
                yield self.analyze(source, workers=alone, quick=quick)
            return
        measure = partial(_measure, feature_set=self.recognizer.feature_set.name, config=self.config,
                          params=self._params, quick=quick)
        on_disk = iter(zip(paths, map_files(measure, paths, workers=self.workers, executor=self.executor)))
        for source in sources:
            if isinstance(source, (str, os.PathLike)):
                yield self._judge(*next(on_disk))
            else:
                yield self.analyze(source)

    def _check_quick(self, quick: bool) -> None:
        if quick and self.index is not None:
            raise ValueError("quick analyses read excerpts, which cannot name a recording: use an analyzer "
                             "without a fingerprint database")

    @property
    def _params(self) -> FingerprintParams | None:
        return None if self.index is None else self.index.params

    def _measure_samples(self, samples: np.ndarray, *, sample_rate: int | None, name: str) -> _Measured:
        return _Measured(self.recognizer.features(samples, sample_rate=sample_rate, name=name), None)

    def _failed(self, name: str, message: str, *, internal: bool = False) -> Report:
        return Report(source=name, model=self.model, searched=self.index is not None, error=message,
                      internal=internal)

    def _judge(self, name: str, measured: _Measured | FileFailure,
               samples: tuple[np.ndarray, int | None] | None = None) -> Report:
        """The report of ``name`` from what was measured: classify, and search the store."""
        if isinstance(measured, FileFailure):
            return self._failed(name, measured.message, internal=measured.internal)
        prediction = call_isolated(partial(self.recognizer.classify, name=name), measured.windows, name=name)
        if isinstance(prediction, FileFailure):
            return self._failed(name, prediction.message, internal=prediction.internal)
        if measured.duration is not None:  # excerpts: the length is the recording's, not theirs
            prediction = replace(prediction, duration=measured.duration)
        if self.index is None:
            return Report(source=name, model=self.model, prediction=prediction)
        try:
            if samples is not None:
                match = self.index.match(samples[0], int(samples[1] or 0))
            else:
                assert measured.landmarks is not None
                match = self.index.match_landmarks(measured.landmarks)
        except FingerprintDBError as exc:  # says only the database's path: add the input's
            return self._failed(name, f"{name}: {exc}")
        except GenreIdError as exc:
            return self._failed(name, str(exc))
        except Exception as exc:  # a bug: one line, and the batch goes on
            return self._failed(name, f"{name}: internal error ({type(exc).__name__}: {exc})", internal=True)
        return Report(source=name, model=self.model, prediction=prediction, match=match, searched=True)
