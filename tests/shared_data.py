"""Where the development data lives, for the tests (and the benchmarks, which import it from here).

The development data (``gtzan_mini/`` real clips, ``gtzan_features_30_sec.csv``
and ``gtzan_split/``) is read from ``$GENRE_ID_SHARED_DATA``, else from
``../shared/data`` beside the repository; it is never copied into the
project, and where it is absent the tests and benchmarks that need it skip, saying so.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["ROOT", "shared_data_dir"]


def shared_data_dir() -> Path:
    """``$GENRE_ID_SHARED_DATA``, else ``../shared/data`` beside the repository."""
    return Path(os.environ.get("GENRE_ID_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()
