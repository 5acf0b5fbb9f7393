"""Training data: feature tables, GTZAN-style audio folders, and split lists.

Every row of a :class:`Dataset` belongs to a track (``groups``); splits and
folds always keep all windows of a track on one side.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from .config import GTZAN_WINDOW_SECONDS, AnalysisConfig
from .errors import DatasetError
from .extraction import WindowFeatures, extract_files
from .features import DEFAULT_FEATURE_SET, FeatureSet, get_feature_set
from .files import PathLike, read_text
from .folders import is_skipped, walk_audio
from .parallel import FileFailure

__all__ = ["Dataset", "LabelledClip", "track_id", "read_table", "scan_folder", "load_folder", "load_clips",
           "read_split_list", "read_labels", "labelled_set", "set_names", "load_sets", "concat"]


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
    the track id of each row; ``config`` says how the audio was cut into
    those windows (a model trained on the rows records it).
    """

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    feature_set: FeatureSet
    source: str
    config: AnalysisConfig
    failures: list[FileFailure] = field(default_factory=list)
    #: Per row, the unit that must stay on one side of a split (an artist, a source); default: the track.
    units: np.ndarray | None = None
    #: Per row, the labels also counted right, ``|``-separated (default: only ``y``).
    accept: np.ndarray | None = None
    #: Per row, the weight of its track in training (default 1).
    weights: np.ndarray | None = None
    #: Per row, the name of the labelled set it came from (default: :attr:`source`).
    origin: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.y)
        if self.units is None:
            self.units = self.groups.copy()
        if self.accept is None:
            self.accept = self.y.copy()
        if self.weights is None:
            self.weights = np.ones(n, dtype=np.float64)
        if self.origin is None:
            self.origin = np.full(n, self.source, dtype=object).astype(str)

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
        return Dataset(self.x[mask], self.y[mask], self.groups[mask], self.feature_set, self.source, self.config,
                       self.failures,
                       units=self.units[mask], accept=self.accept[mask], weights=self.weights[mask],
                       origin=self.origin[mask])

    def views(self) -> list["Dataset"]:
        """One dataset per part of a combined feature set (:func:`genre_id.features.combine`), same rows;
        ``[self]`` for a single feature set.  Features measured once serve every member of an ensemble."""
        parts = self.feature_set.members or (self.feature_set,)
        bounds = np.cumsum([0, *(fs.n_features for fs in parts)])
        return [Dataset(self.x[:, a:b], self.y, self.groups, fs, self.source, self.config, self.failures,
                        units=self.units,
                        accept=self.accept, weights=self.weights, origin=self.origin)
                for fs, a, b in zip(parts, bounds[:-1], bounds[1:])]

    def accepted(self, labels: Sequence[str] | None = None) -> list[frozenset[int]]:
        """Per row, the indices into ``labels`` (default :attr:`labels`) of the labels counted right."""
        index = {g: i for i, g in enumerate(labels or self.labels)}
        return [frozenset(index[a] for a in str(ok).split("|") if a in index) | {index[g]}
                for g, ok in zip(self.y.tolist(), self.accept.tolist())]

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
            "sets": dict(sorted(Counter(dict(zip(self.groups.tolist(), self.origin.tolist())).values()).items())),
            "skipped_files": [f.message for f in self.failures],
        }


def concat(datasets: Sequence["Dataset"]) -> Dataset:
    """One dataset of the rows of ``datasets`` (same feature set), in order.

    A track named in more than one of them (the GTZAN table and the GTZAN
    clips name the same tracks ``genre/name``) is used once, from the first
    that has it.
    """
    if not datasets:
        raise DatasetError("no data")
    first = datasets[0]
    for d in datasets[1:]:
        if d.feature_set.name != first.feature_set.name or d.x.shape[1] != first.x.shape[1]:
            raise DatasetError(f"{d.source}: measured with feature set '{d.feature_set.name}', "
                               f"{first.source} with '{first.feature_set.name}'")
        if d.config != first.config:
            raise DatasetError(f"{d.source}: cut into {d.config.window_seconds:g} s windows at "
                               f"{d.config.sample_rate} Hz, {first.source} into {first.config.window_seconds:g} s "
                               f"at {first.config.sample_rate} Hz")
    seen: set[str] = set()
    parts = []
    for d in datasets:
        keep = ~np.isin(d.groups, list(seen))
        seen.update(d.groups.tolist())
        parts.append(d.subset(keep))

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(d, name) for d in parts])

    return Dataset(np.vstack([d.x for d in parts]), cat("y"), cat("groups"), first.feature_set,
                   " + ".join(d.source for d in datasets), first.config, [f for d in datasets for f in d.failures],
                   units=cat("units"), accept=cat("accept"), weights=cat("weights"), origin=cat("origin"))


#: A feature table larger than this (bytes) is refused (the GTZAN table is 0.4 MB).
MAX_TABLE_BYTES = 256 << 20
#: A split list larger than this (bytes) is refused.
MAX_SPLIT_BYTES = 16 << 20


def read_table(path: PathLike, *, feature_set: str | FeatureSet = DEFAULT_FEATURE_SET) -> Dataset:
    """Read a feature table such as ``gtzan_features_30_sec.csv``.

    It needs a ``filename`` column, a ``label`` column and one column per
    feature of ``feature_set``; other columns are ignored.  Each row is one
    GTZAN clip: one :data:`~genre_id.config.GTZAN_WINDOW_SECONDS` window.
    """
    fs = get_feature_set(feature_set)
    if fs.from_audio_only:
        raise DatasetError(f"{path}: feature set '{fs.name}' is measured from audio only; "
                           "train it from a folder of audio, not a table")
    p = Path(path)
    text = read_text(p, max_bytes=MAX_TABLE_BYTES, what="feature table", error=DatasetError)
    try:
        reader = csv.DictReader(text.splitlines())
        header = reader.fieldnames or []
        missing = [c for c in ("filename", "label", *fs.measured_columns) if c not in header]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DatasetError(f"{p}: the table lacks columns needed by feature set '{fs.name}': {shown}")
        rows = list(reader)
    except csv.Error as exc:
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
    config = AnalysisConfig.for_window(sample_rate=fs.sample_rate, window_seconds=GTZAN_WINDOW_SECONDS)
    return Dataset(x, y, groups, fs, source=str(p), config=config)


def scan_folder(root: PathLike, *, min_labels: int = 2) -> list[tuple[Path, str]]:
    """The audio files of a GTZAN-style folder, as ``(path, genre)``, sorted.

    Each sub-folder of ``root`` is a genre; audio files are found recursively
    inside it by their extension (:func:`genre_id.folders.walk_audio`: hidden
    files and folders such as ``.Trash`` and macOS's ``._name`` resource
    forks, and system folders, are passed over).  Fewer than
    ``min_labels`` labels with audio is a :class:`DatasetError`.
    """
    r = Path(root)
    if not r.is_dir():
        raise DatasetError(f"{r}: no such folder")
    items: list[tuple[Path, str]] = []
    for genre_dir in sorted(d for d in r.iterdir() if d.is_dir() and not is_skipped(d.name)):
        items += [(f, genre_dir.name) for f in sorted(walk_audio(genre_dir).files)]
    genres = {g for _, g in items}
    if len(genres) < min_labels:
        raise DatasetError(f"{r}: needs at least {'two' if min_labels == 2 else min_labels} genre sub-folders "
                           f"with audio files, found {len(genres)}")
    return items


def load_folder(root: PathLike, **options: Any) -> Dataset:
    """Extract features of every file of a GTZAN-style folder (one row per window).

    ``options`` are those of :func:`load_clips` (``feature_set``,
    ``config``, ``cache_dir``, ``workers``, ...).  Files that cannot
    be used are skipped and listed in ``failures``.
    """
    clips = [LabelledClip(p, g, (g,)) for p, g in scan_folder(root)]
    return load_clips(clips, Path(root), **options)


def load_clips(
    clips: Sequence["LabelledClip"],
    root: PathLike,
    *,
    feature_set: str | FeatureSet = DEFAULT_FEATURE_SET,
    config: AnalysisConfig,
    cache_dir: PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    name: str | None = None,
) -> Dataset:
    """Extract features of labelled clips (one row per window); ``root`` is the folder their track ids are relative to.

    A clip's track id is its path relative to ``root`` without extension;
    its unit (what stays on one side of a split) is its ``group``, else the
    artist where the path says it (``label/artist/track``), else the track.
    Files that cannot be used are skipped and listed in ``failures``.
    """
    fs = get_feature_set(feature_set)
    root = Path(root)
    results = extract_files(
        [c.path for c in clips], feature_set=fs, config=config,
        cache_dir=cache_dir, workers=workers, progress=progress,
    )
    xs: list[np.ndarray] = []
    cols: dict[str, list] = {"y": [], "groups": [], "units": [], "accept": [], "weights": []}
    failures = []
    for clip, res in zip(clips, results):
        if isinstance(res, FileFailure):
            failures.append(res)
            continue
        assert isinstance(res, WindowFeatures)
        keep = ~res.silent
        if not keep.any():
            failures.append(FileFailure(str(clip.path), f"{clip.path}: audio is silent"))
            continue
        n = int(keep.sum())
        try:
            track = track_id(clip.path.relative_to(root).as_posix())
        except ValueError:
            track = track_id(clip.path.as_posix())
        parts = track.split("/")
        unit = clip.group or (f"{parts[0]}/{parts[1]}" if len(parts) >= 3 else track)
        xs.append(res.values[keep])
        for key, value in (("y", clip.genre), ("groups", track), ("units", unit),
                           ("accept", "|".join(clip.accept)), ("weights", clip.weight)):
            cols[key] += [value] * n
    if not xs:
        raise DatasetError(f"{root}: no usable audio file")
    source = name or str(root)
    return Dataset(np.vstack(xs), np.asarray(cols["y"]), np.asarray(cols["groups"]), fs, source, config, failures,
                   units=np.asarray(cols["units"]), accept=np.asarray(cols["accept"]),
                   weights=np.asarray(cols["weights"], dtype=np.float64),
                   origin=np.full(len(cols["y"]), source, dtype=object).astype(str))


def read_split_list(path: PathLike) -> list[str]:
    """Track ids listed in a split file (one ``genre/name.ext`` per line)."""
    p = Path(path)
    lines = read_text(p, max_bytes=MAX_SPLIT_BYTES, what="split list", error=DatasetError).splitlines()
    ids = [track_id(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not ids:
        raise DatasetError(f"{p}: the split list is empty")
    return ids


class LabelledClip(NamedTuple):
    """A labelled recording: its file, its label, the labels also accepted for it, its group and weight."""

    path: Path
    genre: str
    accept: tuple[str, ...]
    #: The unit that must stay on one side of a split (an artist, a source); "" for the track itself.
    group: str = ""
    #: How much the recording counts in training (1 by default).
    weight: float = 1.0


#: A labels file larger than this (bytes) is refused.
MAX_LABELS_BYTES = 16 << 20
#: The name of the labels file a data folder may hold.
LABELS_FILE = "labels.csv"
#: The columns that name a clip's group, first found first (see :func:`read_labels`).
DEFAULT_GROUP_COLUMNS = ("group",)


def _read_labels_csv(p: Path) -> list[dict[str, str]]:
    """The rows of a labels CSV (a regular file of at most :data:`MAX_LABELS_BYTES`; a UTF-8 BOM is allowed)."""
    text = read_text(p, max_bytes=MAX_LABELS_BYTES, what="labels file", error=DatasetError)
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))  # line breaks inside quoted fields stay there
    except csv.Error as exc:
        raise DatasetError(f"{p}: unreadable labels file ({type(exc).__name__})") from None
    if not rows or not {"path", "genre"} <= set(rows[0]):
        raise DatasetError(f"{p}: a labels file needs a header with 'path' and 'genre' columns and one row per clip")
    return rows


def read_labels(
    root: PathLike,
    labels_csv: PathLike | None = None,
    *,
    group_by: Sequence[str] = DEFAULT_GROUP_COLUMNS,
    min_labels: int = 2,
) -> list[LabelledClip]:
    """The labelled clips of a folder: from ``labels_csv``, else from the folder's ``labels.csv``, else one sub-folder per label.

    The CSV has a header with at least ``path`` (relative to ``root``) and
    ``genre``.  Optional columns: ``accept`` lists, separated by ``|``, the
    labels also counted right where the label is debatable; ``weight``
    (a positive number) says how much the clip counts in training; the
    first column of ``group_by`` that the file has names the clip's group,
    the unit kept on one side of a cross-validation split (an artist, a
    source).  A folder per label needs ``min_labels`` labels with audio.
    """
    r = Path(root)
    if labels_csv is None:
        if os.path.lexists(r / LABELS_FILE):  # a FIFO or a device there is refused when read, never passed over
            labels_csv = r / LABELS_FILE
        else:
            return [LabelledClip(p, g, (g,)) for p, g in scan_folder(r, min_labels=min_labels)]
    p = Path(labels_csv)
    rows = _read_labels_csv(p)
    column = next((c for c in group_by if c in rows[0]), None)
    clips = []
    seen: set[object] = set()
    for line, row in enumerate(rows, start=2):
        genre = (row.get("genre") or "").strip()
        path = (row.get("path") or "").strip()
        if not genre or not path:
            raise DatasetError(f"{p}: line {line} lacks its path or genre")
        where = os.path.realpath(r / path)  # ./blues/x.flac, blues//x.flac and blues/x.flac are one file
        try:
            st = os.stat(where)
            same = (st.st_dev, st.st_ino)  # and so are two hard links to it
        except OSError:
            same = where  # the decoder names the problem later
        if where in seen or same in seen:
            raise DatasetError(f"{p}: line {line} repeats the path {path!r}")
        seen.update((where, same))
        accept = tuple(a.strip() for a in (row.get("accept") or "").split("|") if a.strip())
        weight = 1.0
        if (row.get("weight") or "").strip():
            try:
                weight = float(row["weight"])
            except ValueError:
                weight = float("nan")
            if not (0 < weight < 1e6):
                raise DatasetError(f"{p}: line {line} has a weight that is not a positive number")
        group = (row.get(column) or "").strip() if column else ""
        clips.append(LabelledClip(r / path, genre, accept if genre in accept else (genre, *accept),
                                  f"{column}:{group}" if group else "", weight))
    return clips


def labelled_set(spec: PathLike, *, group_by: Sequence[str] = DEFAULT_GROUP_COLUMNS) -> tuple[Path, list[LabelledClip]]:
    """A labelled set named on the command line: ``(root, clips)``.

    ``spec`` is a labels CSV (paths relative to its folder), a folder with a
    ``labels.csv``, or a folder with one sub-folder of audio per label.
    """
    p = Path(spec)
    if p.is_dir():
        return p, read_labels(p, group_by=group_by, min_labels=1)  # one set may add a single label
    if p.exists() and p.suffix.lower() == ".csv":
        return p.parent, read_labels(p.parent, p, group_by=group_by)
    if not p.exists():
        raise DatasetError(f"{p}: no such folder or labels file")
    raise DatasetError(f"{p}: not a folder of labelled audio or a labels CSV")


def set_names(specs: Sequence[PathLike]) -> list[str]:
    """The names :func:`load_sets` gives the labelled sets ``specs``: each folder's name (a CSV's folder), made unique."""
    names: list[str] = []
    for spec in specs:
        p = Path(spec)
        root = p.parent if p.suffix.lower() == ".csv" and not p.is_dir() else p
        name = root.resolve().name or str(root)
        while name in names:
            name += "'"
        names.append(name)
    return names


def load_sets(
    specs: Sequence[PathLike],
    *,
    group_by: Sequence[str] = DEFAULT_GROUP_COLUMNS,
    prefix: bool | None = None,
    **options: Any,
) -> Dataset:
    """The features of several labelled sets (see :func:`labelled_set`) as one dataset.

    Each row's :attr:`Dataset.origin` names its set (the folder's name); a
    set's track ids are prefixed with that name (``prefix``; by default when
    several sets are given) so that they cannot collide.  ``options`` are
    those of :func:`load_clips` (``feature_set``, ``cache_dir``, ...).
    """
    parts = []
    for spec, name in zip(specs, set_names(specs)):
        root, clips = labelled_set(spec, group_by=group_by)
        d = load_clips(clips, root, name=name, **options)
        if prefix or (prefix is None and len(specs) > 1):
            d.groups = np.char.add(f"{name}/", d.groups.astype(str))
            d.units = np.asarray([u if ":" in u else f"{name}/{u}" for u in d.units.tolist()])
        parts.append(d)
    return concat(parts)
