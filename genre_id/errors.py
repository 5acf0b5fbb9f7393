"""The project's own error types.

Every problem caused by the user's input (a file that cannot be decoded, a model
folder that is incomplete, features of the wrong version, ...) is raised as a
:class:`GenreIdError`, whose message is one line naming the file and the
problem.  Anything else escaping the library is a bug.
"""

from __future__ import annotations

__all__ = [
    "GenreIdError",
    "AudioError",
    "AudioTooShortError",
    "SilentAudioError",
    "ModelError",
    "FeatureVersionError",
    "DatasetError",
]


class GenreIdError(Exception):
    """Base class of every error genre-id raises on purpose."""


class AudioError(GenreIdError):
    """An input cannot be read or decoded as audio."""


class AudioTooShortError(AudioError):
    """The audio is shorter than the shortest clip the recognizer judges."""


class SilentAudioError(AudioError):
    """The audio holds no signal (digital silence or near it)."""


class ModelError(GenreIdError):
    """A model folder is missing, incomplete, corrupt or unsafe."""


class FeatureVersionError(ModelError):
    """Features were computed with another feature set or version than the model's."""


class DatasetError(GenreIdError):
    """A training folder, feature table or split list is unusable."""
