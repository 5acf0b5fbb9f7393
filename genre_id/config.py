"""How audio is cut and judged: the settings a model is trained with and must be fed.

An :class:`AnalysisConfig` belongs to a model (its ``model.json`` records it)
and to the :class:`~genre_id.dataset.Dataset` the model learnt from: the same
rate, the same windows, the same minimum length and the same silence rule at
training and at identification.  Nothing else in the library defaults these.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

__all__ = ["AnalysisConfig", "SILENCE_RMS", "MIN_ACTIVE_SECONDS", "GTZAN_WINDOW_SECONDS", "GTZAN_MIN_SECONDS"]

#: Frames whose RMS level around the window's mean is below this (about -80 dBFS) are silent.
SILENCE_RMS = 1e-4
#: A window with less active audio than this (seconds; the whole window when it is shorter) is silent.
MIN_ACTIVE_SECONDS = 2.0
#: GTZAN's clip length (s): the window of the GTZAN feature table and of every shipped model.
GTZAN_WINDOW_SECONDS = 30.0
#: The shortest input (s) the shipped models judge: a tenth of their window.
GTZAN_MIN_SECONDS = 3.0


@dataclass(frozen=True)
class AnalysisConfig:
    """The analysis settings of a model.

    Attributes
    ----------
    sample_rate : int
        Hz the audio is resampled to before its features are measured.
    window_seconds : float
        Length of an analysis window (s).  Windows tile the audio without
        overlap (:func:`genre_id.audio.window_spans`); each gets one feature
        vector and one answer.
    min_seconds : float
        Shortest input (s) that is judged; shorter audio is refused.
    silence_rms : float
        50 ms frames with an RMS level (around the window's mean) below this
        are silent.
    min_active_seconds : float
        A window with less non-silent audio than this (s; the whole window
        when it is shorter) is silent: it has no genre and never pulls the
        answer.
    """

    sample_rate: int
    window_seconds: float
    min_seconds: float
    silence_rms: float = SILENCE_RMS
    min_active_seconds: float = MIN_ACTIVE_SECONDS

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(problem)

    @classmethod
    def for_window(cls, *, sample_rate: int, window_seconds: float) -> "AnalysisConfig":
        """The config of ``window_seconds`` windows at ``sample_rate`` Hz, with the shipped models' other
        settings (a minimum length of :data:`GTZAN_MIN_SECONDS`, or the window when it is shorter)."""
        return cls(sample_rate=int(sample_rate), window_seconds=float(window_seconds),
                   min_seconds=min(GTZAN_MIN_SECONDS, float(window_seconds)))

    @property
    def window_samples(self) -> int:
        """Samples in one window at :attr:`sample_rate`."""
        return max(1, int(round(self.window_seconds * self.sample_rate)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the ``analysis`` object of ``model.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AnalysisConfig":
        """The config of a :meth:`to_dict` form; raises ``ValueError`` naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError("the analysis settings are not an object")
        known = {"sample_rate", "window_seconds", "min_seconds", "silence_rms", "min_active_seconds"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown analysis setting {unknown[0]!r}")
        missing = sorted({"sample_rate", "window_seconds", "min_seconds"} - set(data))
        if missing:
            raise ValueError(f"the analysis settings lack {missing[0]!r}")
        return cls(**dict(data))


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _problem(c: AnalysisConfig) -> str | None:
    if not isinstance(c.sample_rate, int) or isinstance(c.sample_rate, bool) or not 1000 <= c.sample_rate <= 768000:
        return f"sample_rate must be a whole number of Hz from 1000 to 768000, not {c.sample_rate!r}"
    if not _number(c.window_seconds) or not 1.0 <= c.window_seconds <= 120.0:
        return f"window_seconds must be from 1 to 120 s, not {c.window_seconds!r}"
    if not _number(c.min_seconds) or not 0.5 <= c.min_seconds <= c.window_seconds:
        return f"min_seconds must be from 0.5 s to the window ({c.window_seconds:g} s), not {c.min_seconds!r}"
    if not _number(c.silence_rms) or not 0.0 <= c.silence_rms < 1.0:
        return f"silence_rms must be from 0 to 1, not {c.silence_rms!r}"
    if not _number(c.min_active_seconds) or not 0.0 <= c.min_active_seconds <= c.window_seconds:
        return f"min_active_seconds must be from 0 to the window, not {c.min_active_seconds!r}"
    return None
