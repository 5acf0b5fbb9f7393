"""Output formats: how a :class:`~genre_id.analysis.Report` (and a list of them) is written.

Each format is one :class:`Format` in :data:`FORMATS`: an optional header
line (from the :class:`Layout`: the model's labels, whether a fingerprint
store was searched) and one function that renders a report.  Adding a format
is one function and one registry line::

    FORMATS["tsv"] = Format("tsv", "tab-separated", _csv_header, _tsv_report)

Failed reports are not rendered (front ends say their error on stderr).
:func:`table` renders rows as an aligned text table, a CSV or JSON objects,
for lists such as ``genre-id index list``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .textsafe import json_line, one_line, text_table

if TYPE_CHECKING:  # the formats need no model, no numpy: front ends import them at start
    from .analysis import Report

__all__ = ["Layout", "Format", "FORMATS", "get_format", "render", "clock", "format_match", "table"]


@dataclass(frozen=True)
class Layout:
    """What every report of one output shares."""

    labels: tuple[str, ...]  #: the model's genres, in column order
    searched: bool = False  #: whether a fingerprint store was searched (a match column)
    timeline: bool = True  #: text: list each window of long audio


@dataclass(frozen=True)
class Format:
    """One output format: a name, a one-line description, its header and its report renderer."""

    name: str
    description: str
    header: Callable[[Layout], str | None]
    report: Callable[["Report", Layout], str]


def clock(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on: how times are shown in text and on plots."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def format_match(match: dict[str, object] | None) -> str:
    """One human-readable line for a report's match (its ``to_dict()``), or for no match.

    ``match: "Title" by Artist (file, at 12.3 s, score 87)`` or ``match: no match``.
    The offset is where the clip starts in the indexed recording; a negative
    one (the recording starts that far into the clip: a medley, a mix, a
    clip with a long intro of its own) is said in words.
    """
    if match is None:
        return "match: no match"
    artist = match.get("artist")
    offset = float(match.get("offset", 0.0))  # type: ignore[arg-type]
    where = f"at {offset:.1f} s" if offset >= 0 else f"starting {-offset:.1f} s into the clip"
    return (
        f'match: "{one_line(match.get("title"))}" by {one_line(artist if isinstance(artist, str) and artist else "unknown artist")} '
        f"({one_line(match.get('file'))}, {where}, score {match.get('score')})"
    )


def _text(report: "Report", layout: Layout) -> str:
    """Genre, confidence and runners-up on one line; the timeline of long audio; the match."""
    pred = report.prediction
    assert pred is not None
    runners = ", ".join(f"{g} {p:.2f}" for g, p in pred.top[1:])
    lines = [f"{one_line(report.source)}  {pred.genre} {pred.confidence:.2f}" + (f"   ({runners})" if runners else "")]
    if layout.timeline and len(pred.segments) > 1:
        for seg in pred.segments:
            what = f"{seg.genre} {seg.confidence:.2f}" if seg.genre else "(silence)"
            lines.append(f"  {clock(seg.start)}-{clock(seg.end)}  {what}")
    if layout.searched:
        lines.append("  " + format_match(None if report.match is None else report.match.to_dict()))
    return "\n".join(lines)


def _json(report: "Report", layout: Layout) -> str:
    return json_line(report.to_dict())


def _csv_row(values: Sequence[object]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue().rstrip("\n")


_MATCH_COLUMNS = ("match_title", "match_artist", "match_file", "match_offset", "match_score")


def _csv_header(layout: Layout) -> str:
    return _csv_row(["file", "genre", "confidence", "duration", *layout.labels,
                     *(_MATCH_COLUMNS if layout.searched else ())])


def _csv(report: "Report", layout: Layout) -> str:
    pred = report.prediction
    assert pred is not None
    row: list[object] = [one_line(report.source), pred.genre, f"{pred.confidence:.4f}", f"{pred.duration:.3f}",
                         *(f"{pred.probabilities[g]:.4f}" for g in layout.labels)]
    if layout.searched:
        m = None if report.match is None else report.match.to_dict()
        row += ["", "", "", "", ""] if m is None else [
            one_line(m.get("title") or ""), one_line(m.get("artist") or ""), one_line(m.get("file") or ""),
            m.get("offset"), m.get("score")]
    return _csv_row(row)


#: The output formats by name.
FORMATS: dict[str, Format] = {
    "text": Format("text", "genre, confidence and runners-up; a timeline for long audio", lambda layout: None, _text),
    "json": Format("json", "one JSON object per file", lambda layout: None, _json),
    "csv": Format("csv", "a header, then one row per file", _csv_header, _csv),
}


def get_format(name: str) -> Format:
    """The format called ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown format {name!r} (known: {', '.join(FORMATS)})") from None


def render(reports: Iterable["Report"], fmt: str | Format, layout: Layout) -> Iterator[str]:
    """The lines (without newlines; a text report may span several) of ``reports`` in ``fmt``, header first.

    Failed reports are skipped.
    """
    f = get_format(fmt) if isinstance(fmt, str) else fmt
    head = f.header(layout)
    if head is not None:
        yield head
    for report in reports:
        if report.ok:
            yield f.report(report, layout)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, fmt: str = "text",
          right: set[int] | frozenset[int] = frozenset()) -> str:
    """``rows`` under ``headers`` as an aligned text table (``right``: right-aligned columns), a CSV, or JSON lines."""
    if fmt == "csv":
        return "\n".join(_csv_row(r) for r in [headers, *rows])
    if fmt == "json":
        return "\n".join(json_line(dict(zip(headers, r))) for r in rows)
    return text_table(tuple(headers), [tuple(r) for r in rows], right=set(right))
