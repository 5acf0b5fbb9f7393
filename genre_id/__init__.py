"""genre-id: name the genre of a music recording.

The public API is small::

    from genre_id import Analyzer
    with Analyzer.load(db=None) as analyzer:       # the shipped model; db: a fingerprint database
        report = analyzer.analyze("song.mp3")      # or bytes, a file object, or samples + sample_rate=
        report.prediction.genre, report.prediction.top, report.match, report.error
        reports = analyzer.analyze_many(paths)     # one Report each, in order, on all cores

    from genre_id import Recognizer                # the genre alone
    p = Recognizer.load().identify("song.mp3")
    p.genre, p.confidence, p.top, p.probabilities, p.segments

    from genre_id import FingerprintIndex
    with FingerprintIndex.open("data/fingerprints.sqlite") as index:
        index.add_folder("path/to/music")
        m = index.match_file("clip.wav")    # a Match (title, artist, offset, ...) or None

Everything the library raises on purpose is a :class:`GenreIdError`.
"""

from typing import TYPE_CHECKING

from .errors import __all__ as _ERRORS
from .errors import (
    AudioError,
    AudioTooShortError,
    DatasetError,
    FeatureVersionError,
    GenreIdError,
    ModelError,
    SilentAudioError,
)

if TYPE_CHECKING:
    from .analysis import Analyzer, ModelInfo, Report
    from .config import AnalysisConfig
    from .fingerprint import FingerprintIndex, Match
    from .recognizer import GenreScore, Prediction, Recognizer, Segment

__version__ = "0.1.0"

# The API is imported on first use, so ``import genre_id.cli`` (the command's
# entry point) is cheap and everything heavy happens inside the command, where
# a Ctrl-C is one line rather than a traceback from the middle of an import.
_LAZY = {
    "Analyzer": "analysis",
    "Report": "analysis",
    "ModelInfo": "analysis",
    "AnalysisConfig": "config",
    "Recognizer": "recognizer",
    "Prediction": "recognizer",
    "Segment": "recognizer",
    "GenreScore": "recognizer",
    "FingerprintIndex": "fingerprint",  # song identification
    "Match": "fingerprint",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'genre_id' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Analyzer",
    "Report",
    "ModelInfo",
    "AnalysisConfig",
    "Recognizer",
    "Prediction",
    "Segment",
    "GenreScore",
    "FingerprintIndex",
    "Match",
    *_ERRORS,
    "__version__",
]
