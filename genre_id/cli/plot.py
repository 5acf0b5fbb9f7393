"""``identify --plot FILE.png``: the genre timeline of one recording as a stacked area chart."""

from __future__ import annotations

import os

import numpy as np

from ..textsafe import one_line
from ..formats import clock
from .common import output_file

__all__ = ["plot_timeline"]

#: Tick spacings of the time axis, seconds: the first that gives at most 10 ticks is used.
_TICK_SECONDS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)


def timeline_steps(pred) -> tuple[np.ndarray, np.ndarray]:
    """Step-curve points of ``pred``'s windows: times (s) and one row of probabilities per genre.

    Each window spans its start to its end at constant height; a window that
    overlaps the one before (the end-aligned last window) is drawn from where
    that one ended.  Silent windows are zero.
    """
    labels = list(pred.probabilities)
    times: list[float] = []
    rows: list[list[float]] = []
    drawn_to = 0.0
    for seg in pred.segments:
        start = max(seg.start, drawn_to)
        if seg.end <= start:
            continue
        probs = seg.probabilities or {}
        values = [probs.get(g, 0.0) for g in labels]
        times += [start, seg.end]
        rows += [values, values]
        drawn_to = seg.end
    return np.asarray(times), np.asarray(rows, dtype=float).T.reshape(len(labels), -1)


def plot_timeline(pred, path: str | os.PathLike[str], *, title: str) -> None:
    """Draw every window's genre probabilities over time (stacked, mm:ss axis, genres in a legend) to the PNG ``path``.

    Drawn with matplotlib's Agg canvas (no display needed) and written
    atomically; a failure to write is one :class:`~genre_id.cli.common.OutputError`.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

    labels = list(pred.probabilities)
    times, values = timeline_steps(pred)
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cmap = "tab10" if len(labels) <= 10 else "tab20"
    colors = [colormaps[cmap](i % 20) for i in range(len(labels))]
    ax.stackplot(times, values, labels=labels, colors=colors, linewidth=0)
    end = max(float(times[-1]) if len(times) else 0.0, pred.duration, 1.0)
    ax.set_xlim(0, end)
    ax.set_ylim(0, 1)
    step = next((s for s in _TICK_SECONDS if end / s <= 10), None)  # whole minutes and hours, not 8:20
    ax.xaxis.set_major_locator(MultipleLocator(step) if step else MaxNLocator(nbins=10, steps=[1, 2, 3, 5, 6, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda seconds, _pos: clock(seconds)))
    ax.set_xlabel("time (h:mm:ss)" if end >= 3600 else "time (mm:ss)")
    ax.set_ylabel("probability")
    ax.set_title(f"{one_line(title)}: {pred.genre} {pred.confidence:.2f}", fontsize=10, parse_math=False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, reverse=True)
    fig.tight_layout()
    with output_file(path, suffix=".png") as fh:
        fig.savefig(fh, format="png")
