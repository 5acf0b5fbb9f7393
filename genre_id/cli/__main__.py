"""``python -m genre_id.cli``: the same as ``genre-id``."""

from . import run

run()
