"""beets plugin ``genreid``: name the genre of library items with genre-id.

Enable it with ``plugins: genreid`` in beets' config, then::

    beet genreid [QUERY]

sets each matching item's ``genre`` and the flexible attribute
``genreid_confidence`` (and writes the file's tags when beets' ``import.write``
is on).  Options (``genreid:`` in the config)::

    auto: no            # also name the genre of items as they are imported
    min_confidence: 0.0 # leave the genre alone below this confidence
    overwrite: yes      # replace a genre the item already has
    model: null         # a model folder (default: the shipped model)
    workers: null       # processes analysing (default: one per core)
"""

from __future__ import annotations

import os

from beets import ui
from beets.plugins import BeetsPlugin


class GenreIdPlugin(BeetsPlugin):
    def __init__(self) -> None:
        super().__init__()
        self.config.add({"auto": False, "min_confidence": 0.0, "overwrite": True, "model": None, "workers": None})
        if self.config["auto"].get(bool):
            self.register_listener("import_task_files", self._imported)

    def commands(self) -> list[ui.Subcommand]:
        cmd = ui.Subcommand("genreid", help="name the genre of items with genre-id")
        cmd.func = lambda lib, opts, args: self.classify(lib.items(args), write=ui.should_write())
        return [cmd]

    def _imported(self, session, task) -> None:
        self.classify(task.imported_items(), write=ui.should_write())

    def classify(self, items, *, write: bool) -> None:
        """Analyse ``items`` (genre_id.Analyzer.analyze_many) and store their genres."""
        from genre_id.analysis import Analyzer
        from genre_id.library import display_genre

        items = list(items)
        if not items:
            return
        floor, overwrite = self.config["min_confidence"].as_number(), self.config["overwrite"].get(bool)
        with Analyzer.load(self.config["model"].get(), workers=self.config["workers"].get()) as analyzer:
            for item, report in zip(items, analyzer.analyze_many([os.fsdecode(item.path) for item in items])):
                if report.prediction is None:
                    self._log.warning("{0}", report.error)
                    continue
                p = report.prediction
                if p.confidence < floor or (item.get("genre") and not overwrite):
                    self._log.info("{0}: {1} ({2:.2f}) not set", report.source, p.genre, p.confidence)
                    continue
                item.genre = display_genre(p.genre)
                item["genreid_confidence"] = float(p.confidence)
                item.store()
                if write:
                    item.try_write()
                self._log.info("{0}: {1} ({2:.2f})", report.source, item.genre, p.confidence)
