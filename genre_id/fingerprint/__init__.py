"""Song identification by audio fingerprint (spectrogram peak-pair landmarks).

The public API:

- :class:`FingerprintIndex` — open a database (``FingerprintIndex.open(path)``),
  ``add`` a file, ``add_folder``, ``list``, ``remove``, and ``match`` samples or
  ``match_file`` a file;
- :class:`Match` — the identified recording (title, artist, file, offset in
  seconds, score), with ``to_dict()`` for JSON;
- :class:`Recording` — a stored recording; :class:`AddReport` — what
  ``add_folder`` did;
- :class:`FingerprintStore` — the database interface, implemented by
  :class:`SQLiteStore`;
- :func:`fingerprint` / :class:`FingerprintParams` — the landmark extractor;
- :class:`MatchThreshold` — when a best candidate is named.

Modules: :mod:`.landmarks` (peaks and hashes), :mod:`.matching` (offset
histograms and the decision), :mod:`.store` (databases), :mod:`.metadata`
(content hash, tags, folder walk) and :mod:`.index` (the index).  The
``genre-id index`` commands live in
:mod:`genre_id.cli.index`.
"""

from __future__ import annotations

from .index import (
    AddReport,
    FileResult,
    FingerprintIndex,
    Match,
    RecordingNotFoundError,
    fingerprint_file,
)
from .landmarks import DEFAULT_PARAMS, FingerprintParams, Landmarks, fingerprint
from .matching import DEFAULT_THRESHOLD, MatchThreshold
from .store import FingerprintDBError, FingerprintStore, Recording, SQLiteStore, StoreStats

__all__ = [
    "DEFAULT_PARAMS",
    "DEFAULT_THRESHOLD",
    "AddReport",
    "FileResult",
    "FingerprintDBError",
    "FingerprintIndex",
    "FingerprintParams",
    "FingerprintStore",
    "Landmarks",
    "Match",
    "MatchThreshold",
    "Recording",
    "RecordingNotFoundError",
    "SQLiteStore",
    "StoreStats",
    "fingerprint",
    "fingerprint_file",
]
