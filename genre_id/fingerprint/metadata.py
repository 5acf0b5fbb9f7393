"""What a file says about itself: content hash, title and artist, and the audio files of a folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..cache import UnreadableFile, file_digest
from ..errors import AudioError
from ..files import PathLike
from ..textsafe import MAX_TAG_CHARS, clip

__all__ = ["file_sha256", "find_audio_files", "title_and_artist", "title_and_artist_from_name"]


_TRACK_NUMBER = re.compile(r"^\d{1,3}(?:\s*[-._]\s*|\s+)")


def file_sha256(path: PathLike) -> str:
    """Hex sha256 of the file's bytes (:func:`genre_id.cache.file_digest`).

    Raises :class:`AudioError` (file and problem) when it cannot be read.
    """
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        return file_digest(path)
    except UnreadableFile as exc:  # missing, a FIFO, a device, too large: the message names the file
        raise AudioError(str(exc)) from None
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AudioError(f"{path}: is a directory, not an audio file") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror or exc})") from None


def title_and_artist_from_name(path: PathLike) -> tuple[str, str | None]:
    """Title and artist guessed from a file name.

    ``"Artist - Title.mp3"`` gives ``("Title", "Artist")``; a leading track
    number (``"03 - Title.flac"``, ``"03. Title.flac"``) is dropped; names
    that write spaces as underscores (``"Cab_Calloway_-_Jumpin_Jive.flac"``)
    are read with spaces; any other name is the title, with the artist
    unknown (``None``).
    """
    stem = Path(path).stem.strip()
    if " " not in stem and "_-_" in stem:
        stem = stem.replace("_", " ")
    parts = [p.strip() for p in stem.split(" - ")]
    if len(parts) >= 2 and parts[0].isdigit():
        parts = parts[1:]
    if len(parts) >= 2 and parts[0] and parts[-1]:
        return " - ".join(parts[1:]), parts[0]
    title = _TRACK_NUMBER.sub("", stem) or stem
    return title, None


def _first_tag(tags: object, key: str) -> str | None:
    try:
        values = tags[key]  # type: ignore[index]
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    if isinstance(values, (list, tuple)):
        values = values[0] if values else None
    if values is None:
        return None
    # Only a bounded prefix is kept: a tag may be megabytes long.
    text = clip(str(values)[: 4 * MAX_TAG_CHARS].strip(), MAX_TAG_CHARS)
    return text or None


def title_and_artist(path: PathLike) -> tuple[str, str | None]:
    """Title and artist from the file's tags (mutagen, easy tags), else from its name.

    A file whose tags cannot be read is named from its file name: tags are a
    nicety, never a reason to refuse a file.  Tag values are cut to
    :data:`~genre_id.textsafe.MAX_TAG_CHARS` characters.
    """
    name_title, name_artist = title_and_artist_from_name(path)
    try:
        import mutagen

        tagged = mutagen.File(str(path), easy=True)
    except Exception:  # mutagen raises many types on odd files; tags are optional
        tagged = None
    tags = getattr(tagged, "tags", None) if tagged is not None else None
    if not tags:
        return name_title, name_artist
    title = _first_tag(tags, "title")
    artist = _first_tag(tags, "artist") or _first_tag(tags, "albumartist")
    if title is None:
        return name_title, artist if artist is not None else name_artist
    return title, artist


def find_audio_files(directory: PathLike) -> list[Path]:
    """Every file under ``directory`` (recursively) with a supported audio extension, sorted.

    Found by :func:`genre_id.folders.walk_audio` (hidden and system files and folders skipped).  Raises
    :class:`AudioError` when ``directory`` is not a readable folder.
    """
    root = Path(directory)
    if not root.exists():
        raise AudioError(f"{root}: no such folder")
    if not root.is_dir():
        raise AudioError(f"{root}: is not a folder")
    from ..folders import walk_audio

    return sorted(walk_audio(root).files)
