"""Text from outside (file names, tags, model labels) made safe to print.

A file name may hold a newline or an escape sequence, a tag may hold ANSI
colour codes, and a name that is not valid UTF-8 arrives in Python as lone
surrogates (``os.fsdecode``'s *surrogateescape*).  Printed raw, such text can
forge output lines or drive the terminal.  Everything genre-id prints that it
did not write itself goes through one of these functions:

:func:`one_line`
    for human-readable output: one printable line, every character that is not
    printable shown as an escape (``\\n``, ``\\t``, ``\\x1b``, ``\\u202e``); the
    raw bytes of a non-UTF-8 name as ``\\xNN``; a backslash as ``\\\\`` so that
    the escapes are unambiguous.
:func:`path_fields`
    for JSON output: ``{"file": text}`` where ``text`` is always valid Unicode,
    plus ``"file_bytes"`` (standard base64 of the name's bytes) exactly when the
    name is not valid UTF-8, so the name is never lost:
    ``base64.b64decode(d["file_bytes"])`` is ``os.fsencode`` of the original path.
:func:`json_line`
    ``json.dumps`` whose output holds no character a terminal acts on (controls,
    bidirectional overrides, line separators are ``\\uXXXX`` escapes) and is
    always encodable as UTF-8.
:func:`clip`
    bounds a stored text (a tag value) to a number of characters.
:func:`text_table`
    aligned columns of such text (``index list``, the benchmarks' tables).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Collection, Sequence
from typing import Any

__all__ = ["MAX_TAG_CHARS", "clip", "json_line", "one_line", "path_fields", "text_table", "valid_unicode"]

#: Longest title or artist stored in a fingerprint database, characters.
MAX_TAG_CHARS = 1024

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape_char(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def one_line(value: object, *, controls: str = "escape", max_chars: int | None = None) -> str:
    """``value`` as one printable line: every non-printable character escaped.

    ``value`` is a ``str``, ``bytes`` or path (decoded as the file system
    does), or anything else (``str(value)``).  Printable characters, including
    the space and non-ASCII letters, are kept; newlines, tabs, escape, DEL, C1
    controls, bidirectional and zero-width format characters, line and paragraph
    separators and lone surrogates are shown as ``\\n``, ``\\t``, ``\\xNN``,
    ``\\uNNNN`` (a byte of a non-UTF-8 file name as ``\\xNN``); a backslash is
    doubled.  The result never contains a line break or a terminal control.

    ``controls="space"`` is for prose from a library (a decoder's error
    message): each run of ASCII controls and DEL becomes one space and the
    ends are stripped, other non-printable characters are escaped as above,
    and a backslash is kept as it is.  ``max_chars`` cuts a longer result to
    that many characters, the last three ``...``.
    """
    if isinstance(value, (bytes, os.PathLike)):
        value = os.fsdecode(value)
    text = value if isinstance(value, str) else str(value)
    if controls not in ("escape", "space"):
        raise ValueError(f"controls must be 'escape' or 'space', not {controls!r}")
    backslash = "\\" if controls == "escape" else ""  # escaped only where escapes must be unambiguous
    if controls == "space":
        text = _CONTROL_RUNS.sub(" ", text).strip()
    if not text.isprintable() or (backslash and backslash in text):
        text = "".join(ch if ch.isprintable() and ch != backslash else _escape_char(ch) for ch in text)
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 3] + "..."
    return text


_CONTROL_RUNS = re.compile(r"[\x00-\x1f\x7f]+")


def valid_unicode(text: str) -> str:
    """``text`` with any lone surrogate (from a non-UTF-8 name) replaced by U+FFFD, so it encodes as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape" if _only_escapes(text) else "surrogatepass").decode(
            "utf-8", "replace"
        )


def _only_escapes(text: str) -> bool:
    return all(not 0xD800 <= ord(ch) <= 0xDFFF or 0xDC80 <= ord(ch) <= 0xDCFF for ch in text)


def path_fields(path: str | bytes | os.PathLike[str] | None, *, key: str = "file") -> dict[str, str | None]:
    """The JSON form of a file name: ``{key: text}``, plus ``{key}_bytes`` when the name is not UTF-8.

    ``text`` is the name decoded as UTF-8 with undecodable bytes as U+FFFD (for
    display); ``{key}_bytes`` is the standard base64 of the name's exact bytes
    (``os.fsencode``), present only when ``text`` lost something.  ``None``
    gives ``{key: None}``.
    """
    if path is None:
        return {key: None}
    name = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else path
    text = valid_unicode(name)
    if text == name:
        return {key: name}
    raw = os.fsencode(name) if _only_escapes(name) else name.encode("utf-8", "surrogatepass")
    return {key: text, f"{key}_bytes": base64.b64encode(raw).decode("ascii")}


_UNSAFE_IN_JSON = re.compile(r"[^\x20-\x7e\n]")


def _json_escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_line(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False, **kwargs)`` with every non-printable character as ``\\uXXXX``.

    Letters of any script stay readable; controls, DEL, C1 controls,
    bidirectional overrides, line separators and lone surrogates become JSON
    escapes, so the text is valid JSON, encodable as UTF-8 and inert on a terminal.
    """
    text = json.dumps(obj, ensure_ascii=False, **kwargs)
    return _UNSAFE_IN_JSON.sub(_json_escape, text)


def clip(text: str, max_chars: int = MAX_TAG_CHARS) -> str:
    """``text`` cut to at most ``max_chars`` characters (the last one an ellipsis when cut)."""
    if len(text) <= max_chars:
        return text
    return text[: max_chars - 1] + "\u2026"


def text_table(header: Sequence[object], rows: Sequence[Sequence[object]], *, right: Collection[int] = (),
               rule: bool = False) -> str:
    """An aligned text table: ``header``, a line of dashes when ``rule``, then ``rows``.

    Every cell is shown with :func:`one_line` (escaped before the widths are
    measured, so columns line up whatever the text holds); columns are two
    spaces apart, those whose index is in ``right`` right-aligned, the last one
    not padded.
    """
    cells = [[one_line(c) for c in header]] + [[one_line(c) for c in row] for row in rows]
    n = len(cells[0])
    if any(len(row) != n for row in cells):
        raise ValueError("every row needs as many cells as the header")
    widths = [max(len(row[i]) for row in cells) for i in range(n)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c if i == n - 1 else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))

    lines = [line(row) for row in cells]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
