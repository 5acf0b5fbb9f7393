"""The one folder walker: which files under a folder are audio to analyse, train on or index.

Every command walks folders the same way (:func:`walk_audio`): sorted,
recursive, hidden files and folders skipped (``.Trash``, macOS's ``._name``
resource forks, ``.DS_Store``), system folders skipped (``$RECYCLE.BIN``,
``System Volume Information``, ``__MACOSX``, ``@eaDir``, ``lost+found``),
symbolic links to folders followed once (a link back up the tree is not
walked again, so loops end).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .files import PathLike

__all__ = ["SYSTEM_FOLDERS", "FolderScan", "is_skipped", "walk_audio"]

#: Folders operating systems and NAS boxes put among people's files; never music.
SYSTEM_FOLDERS = frozenset({"$RECYCLE.BIN", "System Volume Information", "__MACOSX", "@eaDir", "#recycle",
                            "lost+found", "RECYCLER", "$Recycle.Bin"})


def is_skipped(name: str) -> bool:
    """Whether a file or folder called ``name`` is passed over: hidden (``.x``, ``._x``) or a system folder."""
    return name.startswith(".") or name in SYSTEM_FOLDERS


@dataclass
class FolderScan:
    """What :func:`walk_audio` found: the audio files (sorted) and how many other files it passed over."""

    files: list[Path] = field(default_factory=list)
    skipped: int = 0


def walk_audio(root: PathLike, *, suffixes: tuple[str, ...] | None = None) -> FolderScan:
    """Every audio file under the folder ``root``, recursively, in sorted order.

    Parameters
    ----------
    root
        The folder.
    suffixes
        File name endings counted as audio, lower case (default:
        :data:`genre_id.audio.SUPPORTED_EXTENSIONS`).

    Returns
    -------
    FolderScan
        ``files``: paths under ``root`` (as ``root`` is spelled), a folder's
        own files before its sub-folders', each level sorted by name;
        ``skipped``: visible files that are not audio.
    """
    if suffixes is None:
        from .audio import SUPPORTED_EXTENSIONS

        suffixes = SUPPORTED_EXTENSIONS
    scan = FolderScan()
    seen: set[tuple[int, int]] = set()
    for folder, subdirs, names in os.walk(root, followlinks=True):
        try:
            st = os.stat(folder)
        except OSError:
            subdirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:  # reached again through a link: a loop, or a second way in
            subdirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        subdirs[:] = sorted(d for d in subdirs if not is_skipped(d))
        for name in sorted(names):
            if is_skipped(name):
                continue
            if name.lower().endswith(suffixes):
                scan.files.append(Path(folder) / name)
            else:
                scan.skipped += 1
    return scan
