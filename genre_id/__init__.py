"""genre-id: name the genre of a music recording.

The public API is small::

    from genre_id import Recognizer
    rec = Recognizer.load()            # the shipped default model
    p = rec.identify("song.mp3")       # or rec.identify(samples, sample_rate=44100)
    p.genre, p.confidence, p.top, p.probabilities, p.segments

    from genre_id import FingerprintIndex
    with FingerprintIndex.open("data/fingerprints.sqlite") as index:
        index.add_folder("path/to/music")
        m = index.match_file("clip.wav")    # a Match (title, artist, offset, ...) or None

Everything the library raises on purpose is a :class:`GenreIdError`.
"""

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
from .recognizer import GenreScore, Prediction, Recognizer, Segment

__version__ = "0.1.0"

_LAZY = {"FingerprintIndex", "Match"}  # song identification: imported on first use only


def __getattr__(name: str):
    if name in _LAZY:
        from . import fingerprint

        return getattr(fingerprint, name)
    raise AttributeError(f"module 'genre_id' has no attribute {name!r}")


__all__ = [
    "Recognizer",
    "Prediction",
    "Segment",
    "GenreScore",
    "FingerprintIndex",
    "Match",
    *_ERRORS,
    "__version__",
]
