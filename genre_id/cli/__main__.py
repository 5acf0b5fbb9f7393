"""``python -m genre_id.cli``: the same as ``genre-id``."""

import sys

from . import main

sys.exit(main())
