"""Training data: feature tables, GTZAN-style audio folders, and split lists.

Every row of a :class:`Dataset` belongs to a track (``groups``); splits and
folds always keep all windows of a track on one side.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from .audio import SUPPORTED_EXTENSIONS
from .errors import DatasetError
from .extraction import WindowFeatures, extract_files
from .features import DEFAULT_FEATURE_SET, FeatureSet, get_feature_set
from .files import PathLike
from .parallel import FileFailure

__all__ = ["Dataset", "LabelledClip", "track_id", "read_table", "scan_folder", "load_folder", "read_split_list",
           "read_labels"]


def track_id(name: str) -> str:
    """A track's id: its path relative to the data folder, without extension.

    ``"blues/blues.00012.wav"`` gives ``"blues/blues.00012"``; split lists,
    folders and tables (``genre/filename``) all name tracks this way.
    """
    text = str(name).strip().replace("\\", "/")
    stem, ext = os.path.splitext(text)
    return stem if ext and "/" not in ext else text


@dataclass
class Dataset:
    """Feature rows with their genre and their track.

    ``x`` has one row per window, ``y`` the genre name of each row, ``groups``
    the track id of each row.
    """

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    feature_set: FeatureSet
    source: str
    failures: list[FileFailure] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """The genres, sorted."""
        return sorted(set(self.y.tolist()))

    def encoded(self, labels: Sequence[str] | None = None) -> np.ndarray:
        """``y`` as indices into ``labels`` (default :attr:`labels`)."""
        index = {g: i for i, g in enumerate(labels or self.labels)}
        return np.asarray([index[g] for g in self.y], dtype=np.int64)

    def subset(self, mask: np.ndarray) -> "Dataset":
        """The rows where ``mask`` is true (a boolean mask or index array)."""
        return Dataset(self.x[mask], self.y[mask], self.groups[mask], self.feature_set, self.source, self.failures)

    def tracks(self, ids: Sequence[str]) -> "Dataset":
        """The rows of the tracks named in ``ids``."""
        return self.subset(np.isin(self.groups, list(ids)))

    def summary(self) -> dict:
        """A JSON-ready description: source, counts per genre, failures."""
        per_track = {g: y for g, y in zip(self.groups.tolist(), self.y.tolist())}
        return {
            "source": self.source,
            "tracks": len(per_track),
            "rows": int(len(self.y)),
            "genres": dict(sorted(Counter(per_track.values()).items())),
            "skipped_files": [f.message for f in self.failures],
        }


def read_table(path: PathLike, *, feature_set: str | FeatureSet = DEFAULT_FEATURE_SET) -> Dataset:
    """Read a feature table such as ``gtzan_features_30_sec.csv``.

    It needs a ``filename`` column, a ``label`` column and one column per
    feature of ``feature_set``; other columns are ignored.
    """
    fs = get_feature_set(feature_set)
    if fs.from_audio_only:
        raise DatasetError(f"{path}: feature set '{fs.name}' is measured from audio only; "
                           "train it from a folder of audio, not a table")
    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in ("filename", "label", *fs.measured_columns) if c not in header]
            if missing:
                shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
                raise DatasetError(f"{p}: the table lacks columns needed by feature set '{fs.name}': {shown}")
            rows = list(reader)
    except FileNotFoundError:
        raise DatasetError(f"{p}: no such feature table") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{p}: unreadable feature table ({exc})") from None
    if not rows:
        raise DatasetError(f"{p}: the feature table has no rows")
    try:
        measured = np.asarray([[float(r[c]) for c in fs.measured_columns] for r in rows], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{p}: a feature value is not a number ({exc})") from None
    if not np.isfinite(measured).all():
        raise DatasetError(f"{p}: the feature table holds NaN or infinite values")
    x = fs.from_table(measured)
    y = np.asarray([r["label"].strip() for r in rows])
    groups = np.asarray([track_id(f'{r["label"].strip()}/{os.path.basename(r["filename"])}') for r in rows])
    return Dataset(x, y, groups, fs, source=str(p))


def scan_folder(root: PathLike) -> list[tuple[Path, str]]:
    """The audio files of a GTZAN-style folder, as ``(path, genre)``, sorted.

    Each sub-folder of ``root`` is a genre; audio files are found recursively
    inside it by their extension.
    """
    r = Path(root)
    if not r.is_dir():
        raise DatasetError(f"{r}: no such folder")
    items: list[tuple[Path, str]] = []
    for genre_dir in sorted(d for d in r.iterdir() if d.is_dir() and not d.name.startswith(".")):
        for f in sorted(genre_dir.rglob("*")):
            if f.is_file() and f.suffix.lower() in SUPPORTED_EXTENSIONS:
                items.append((f, genre_dir.name))
    genres = {g for _, g in items}
    if len(genres) < 2:
        raise DatasetError(f"{r}: needs at least two genre sub-folders with audio files, found {len(genres)}")
    return items


def load_folder(
    root: PathLike,
    *,
    feature_set: str | FeatureSet = DEFAULT_FEATURE_SET,
    window_seconds: float = 30.0,
    min_seconds: float = 3.0,
    cache_dir: PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Dataset:
    """Extract features of every file of a GTZAN-style folder (one row per window).

    Files that cannot be used are skipped and listed in ``failures``.
    """
    fs = get_feature_set(feature_set)
    items = scan_folder(root)
    results = extract_files(
        [p for p, _ in items], feature_set=fs, window_seconds=window_seconds, min_seconds=min_seconds,
        cache_dir=cache_dir, workers=workers, progress=progress,
    )
    xs, ys, groups, failures = [], [], [], []
    for (path, genre), res in zip(items, results):
        if isinstance(res, FileFailure):
            failures.append(res)
            continue
        assert isinstance(res, WindowFeatures)
        keep = ~res.silent
        if not keep.any():
            failures.append(FileFailure(str(path), f"{path}: audio is silent"))
            continue
        xs.append(res.values[keep])
        ys += [genre] * int(keep.sum())
        groups += [track_id(path.relative_to(root).as_posix())] * int(keep.sum())
    if not xs:
        raise DatasetError(f"{root}: no usable audio file")
    return Dataset(np.vstack(xs), np.asarray(ys), np.asarray(groups), fs, str(root), failures)


def read_split_list(path: PathLike) -> list[str]:
    """Track ids listed in a split file (one ``genre/name.ext`` per line)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{p}: no such split list") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{p}: unreadable split list ({exc})") from None
    ids = [track_id(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not ids:
        raise DatasetError(f"{p}: the split list is empty")
    return ids


class LabelledClip(NamedTuple):
    """A clip to score a model on: its file, its label, and the labels also accepted for it."""

    path: Path
    genre: str
    accept: tuple[str, ...]


#: A labels file larger than this (bytes) is refused.
MAX_LABELS_BYTES = 16 << 20


def read_labels(root: PathLike, labels_csv: PathLike | None = None) -> list[LabelledClip]:
    """The labelled clips of a folder: from ``labels_csv`` when given, else one sub-folder per label.

    The CSV has a header with at least ``path`` (relative to ``root``) and
    ``genre``; an optional ``accept`` column lists, separated by ``|``, the
    labels also counted right where the label is debatable.
    """
    r = Path(root)
    if labels_csv is None:
        return [LabelledClip(p, g, (g,)) for p, g in scan_folder(r)]
    p = Path(labels_csv)
    try:
        if p.stat().st_size > MAX_LABELS_BYTES:
            raise DatasetError(f"{p}: labels file is larger than {MAX_LABELS_BYTES >> 20} MB")
        rows = list(csv.DictReader(p.read_text(encoding="utf-8").splitlines()))
    except FileNotFoundError:
        raise DatasetError(f"{p}: no such labels file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{p}: unreadable labels file ({type(exc).__name__})") from None
    if not rows or not {"path", "genre"} <= set(rows[0]):
        raise DatasetError(f"{p}: a labels file needs a header with 'path' and 'genre' columns and one row per clip")
    clips = []
    for row in rows:
        genre = (row.get("genre") or "").strip()
        if not genre or not row.get("path"):
            raise DatasetError(f"{p}: a row lacks its path or genre")
        accept = tuple(a.strip() for a in (row.get("accept") or "").split("|") if a.strip())
        clips.append(LabelledClip(r / row["path"], genre, accept if genre in accept else (genre, *accept)))
    return clips
