"""genre-id: name the genre of a music recording.

The public API is small::

    from genre_id import Recognizer
    rec = Recognizer.load()            # the shipped default model
    p = rec.identify("song.mp3")       # or rec.identify(samples, sample_rate=44100)
    p.genre, p.confidence, p.top, p.probabilities, p.segments

Everything the library raises on purpose is a :class:`GenreIdError`.
"""

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

__all__ = [
    "Recognizer",
    "Prediction",
    "Segment",
    "GenreScore",
    "GenreIdError",
    "AudioError",
    "AudioTooShortError",
    "SilentAudioError",
    "ModelError",
    "FeatureVersionError",
    "DatasetError",
    "__version__",
]
