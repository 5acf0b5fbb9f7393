"""``model.json``: the one place that writes it and the one place that checks it.

A model folder's ``model.json`` holds what the network's arrays do not: the
labels, the feature set, the window, the layers, how the model was trained and
how it scored.  An ensemble's lists its ``members`` (sub-folders, each a model)
and how their probabilities are fused.  The layout is documented as a JSON
Schema in ``docs/model.schema.json``.

:func:`model_metadata` and :func:`ensemble_metadata` build the dict,
:func:`write_metadata` writes it (stamping the format and schema version, and
recording paths relative to the working folder, never a machine's absolute
paths); :func:`read_metadata` reads it within bounds, and :func:`check_model`
and :func:`check_ensemble` check it before anything else of the folder is read.
Every problem is one :class:`~genre_id.errors.ModelError` line naming the folder.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ModelError
from .files import open_regular
from .network import ACTIVATIONS, LAYER_ARRAYS
from .textsafe import one_line

__all__ = [
    "META_FILE",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "SCHEMA_VERSION",
    "FUSION_RULES",
    "check_ensemble",
    "check_model",
    "ensemble_metadata",
    "model_metadata",
    "read_metadata",
    "relative_paths",
    "write_metadata",
]

META_FILE = "model.json"
MODEL_FORMAT = "genre-id-model"
MODEL_FORMAT_VERSION = 1
#: The layout of ``model.json`` this genre-id writes; a file without ``schema_version`` has layout 1.
SCHEMA_VERSION = 1
#: How an ensemble turns its members' probabilities into one distribution (see :func:`genre_id.model.fuse`).
FUSION_RULES = ("mean", "geometric-mean")

#: Bounds on model.json, checked before it is trusted.
MAX_METADATA_BYTES = 1 << 20
MAX_LABELS = 1000
MAX_LABEL_CHARS = 64
MAX_LAYERS = 64
MAX_UNITS = 1 << 16
MAX_COLUMNS = 10_000
MAX_JSON_DEPTH = 32
MAX_MEMBERS = 8
#: Window lengths a model may declare, seconds.
WINDOW_SECONDS_RANGE = (1.0, 120.0)
MIN_SECONDS_FLOOR = 0.5

#: Entries that describe the model itself; paths are made relative everywhere else (the records).
_MODEL_ENTRIES = ("labels", "feature_set", "network", "members")


# --- writing --------------------------------------------------------------------------------------


def model_metadata(*, name: str, version: str, labels: Sequence[str], feature_set: Mapping,
                   window_seconds: float, min_seconds: float, layers: Sequence[dict],
                   network_config: Mapping | None = None, created: str | None = None, **records: Any) -> dict:
    """``model.json`` of a single model; ``records`` (``training``, ``metrics``, ...) are added as they are."""
    network: dict = {"layers": list(layers)}
    if network_config is not None:
        network["config"] = dict(network_config)
    return {"name": name, "version": version, **({"created": created} if created is not None else {}),
            "labels": list(labels), "feature_set": dict(feature_set), "window_seconds": float(window_seconds),
            "min_seconds": float(min_seconds), "network": network, **records}


def ensemble_metadata(*, members: Sequence[Mapping], labels: Sequence[str], fusion: str,
                      weights: Sequence[float] | None = None, temperature: float = 1.0,
                      records: Mapping | None = None) -> dict:
    """``model.json`` of an ensemble of ``members`` (each ``{"folder", "name", "version"}``), fused by ``fusion``."""
    meta = {**(records or {}), "members": [dict(m) for m in members], "fusion": fusion, "labels": list(labels)}
    if weights is not None:
        meta["fusion_weights"] = [round(float(w), 6) for w in weights]
    if temperature != 1.0:
        meta["temperature"] = round(float(temperature), 6)
    return meta


def write_metadata(path: str | os.PathLike[str], meta: Mapping, *, base: str | os.PathLike[str] | None = None) -> None:
    """Write ``meta`` as ``model.json`` at ``path``: format and schema version first, records' paths relative.

    Absolute paths in the records (a training command, a data source) are
    written relative to ``base`` (default: the working folder), so a model
    never records the folders of the machine that built it.
    """
    out: dict = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "schema_version": SCHEMA_VERSION}
    base = os.fspath(base) if base is not None else os.getcwd()
    for key, value in meta.items():
        if key not in out:
            out[key] = value if key in _MODEL_ENTRIES else relative_paths(value, base)
    Path(path).write_text(json.dumps(out, indent=2, sort_keys=False) + "\n", encoding="utf-8")


#: An absolute POSIX path where a word starts (after a space, a quote, ``=``, ``,`` or ``(``).
_ABSOLUTE_PATH = re.compile(r"(?<![^\s'\"=,(])/[^\s'\",;)]+")


def relative_paths(value: Any, base: str | os.PathLike[str]) -> Any:
    """``value`` (parsed JSON) with every absolute path in its strings made relative to ``base``."""
    if isinstance(value, str):
        return _ABSOLUTE_PATH.sub(lambda m: os.path.relpath(m.group(0), base), value)
    if isinstance(value, dict):
        return {k: relative_paths(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_paths(v, base) for v in value]
    return value


# --- reading and checking -------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def read_metadata(path: Path) -> dict:
    """The JSON object in the ``model.json`` at ``path``, read within :data:`MAX_METADATA_BYTES` (not yet checked)."""
    with open_regular(path, max_bytes=MAX_METADATA_BYTES, error=ModelError,
                      missing=f"{path.parent}: not a model folder ({path.name} is missing)") as fh:
        try:
            raw = fh.read(MAX_METADATA_BYTES + 1)
        except OSError as exc:
            raise ModelError(f"{path}: unreadable model metadata ({exc.strerror or exc})") from None
    if len(raw) > MAX_METADATA_BYTES:
        raise ModelError(f"{path}: more than {MAX_METADATA_BYTES} bytes of model metadata")
    try:
        meta = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        raise ModelError(f"{path}: unreadable model metadata (nested too deeply)") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable model metadata ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: model metadata is not a JSON object")
    return meta


def is_ensemble(meta: Mapping) -> bool:
    """Whether ``meta`` (a ``model.json``) describes an ensemble."""
    return "members" in meta


def _json_depth_ok(value: object, limit: int) -> bool:
    """Whether ``value`` (parsed JSON) nests at most ``limit`` levels deep (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_name(value: object, max_chars: int) -> bool:
    """A non-empty printable string of at most ``max_chars`` characters, without outer spaces."""
    return (isinstance(value, str) and 0 < len(value) <= max_chars and value.isprintable()
            and value.strip() == value)


def _check_schema_version(meta: Mapping, where: Path) -> None:
    version = meta.get("schema_version", 1)
    if not _is_int(version) or not 1 <= version <= SCHEMA_VERSION:
        raise ModelError(f"{where}: model metadata schema version "
                         f"{version if _is_int(version) else '(invalid)'} is not supported "
                         f"(this genre-id reads versions 1 to {SCHEMA_VERSION})")


def _check_layers(layers: object, where: Path) -> list[dict]:
    if not isinstance(layers, list) or not 0 < len(layers) <= MAX_LAYERS:
        raise ModelError(f"{where}: model metadata describes no valid list of network layers (1 to {MAX_LAYERS})")
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise ModelError(f"{where}: layer {i}: not a layer description ({type(layer).__name__})")
        kind = layer.get("type")
        if not isinstance(kind, str) or kind not in LAYER_ARRAYS:
            raise ModelError(f"{where}: layer {i}: unknown layer type {one_line(kind)[:40]!r}")
        if kind == "dense":
            act = layer.get("activation", "linear")
            if not isinstance(act, str) or act not in ACTIVATIONS:
                raise ModelError(f"{where}: layer {i}: unsupported activation {one_line(act)[:40]!r}")
            units = layer.get("units")
            if units is not None and not (_is_int(units) and 0 < units <= MAX_UNITS):
                raise ModelError(f"{where}: layer {i}: invalid number of units")
    if layers[-1]["type"] != "dense":
        raise ModelError(f"{where}: the network's last layer is not a dense layer")
    return layers


def check_model(meta: Mapping, where: Path) -> None:
    """Check a single model's ``model.json``; :class:`ModelError` (one line, naming ``where``) on the first problem."""
    if not _json_depth_ok(meta, MAX_JSON_DEPTH):
        raise ModelError(f"{where}: model metadata is nested more than {MAX_JSON_DEPTH} levels deep")
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{where}: not a genre-id model (format {one_line(meta.get('format'))[:40]!r})")
    version = meta.get("format_version")
    if not _is_int(version) or version != MODEL_FORMAT_VERSION:
        raise ModelError(
            f"{where}: model format version {version if _is_int(version) else '(invalid)'} is not supported "
            f"(this genre-id reads version {MODEL_FORMAT_VERSION})"
        )
    _check_schema_version(meta, where)
    for key in ("labels", "feature_set", "window_seconds", "network"):
        if key not in meta:
            raise ModelError(f"{where}: model metadata lacks '{key}'")
    labels = meta["labels"]
    if not isinstance(labels, list) or not 2 <= len(labels) <= MAX_LABELS:
        raise ModelError(f"{where}: model metadata has no valid list of labels (2 to {MAX_LABELS})")
    for label in labels:
        if not _is_name(label, MAX_LABEL_CHARS):
            raise ModelError(f"{where}: model label {one_line(str(label)[:80])} is not a printable text "
                             f"of 1 to {MAX_LABEL_CHARS} characters")
    if len(set(labels)) != len(labels):
        raise ModelError(f"{where}: model labels are not unique")
    fs = meta["feature_set"]
    if not isinstance(fs, dict) or not _is_name(fs.get("name"), 64) or not _is_int(fs.get("version")):
        raise ModelError(f"{where}: model metadata has no valid feature set (name and version)")
    columns = fs.get("columns", [])
    if not isinstance(columns, list) or len(columns) > MAX_COLUMNS or not all(_is_name(c, 128) for c in columns):
        raise ModelError(f"{where}: model metadata has an invalid list of feature columns")
    lo, hi = WINDOW_SECONDS_RANGE
    window = meta["window_seconds"]
    if not _is_number(window) or not lo <= window <= hi:
        raise ModelError(f"{where}: model metadata has an invalid 'window_seconds' "
                         f"({window if _is_number(window) else type(window).__name__}; {lo:g} to {hi:g} s)")
    least = meta.get("min_seconds", min(3.0, window))
    if not _is_number(least) or not MIN_SECONDS_FLOOR <= least <= window:
        raise ModelError(f"{where}: model metadata has an invalid 'min_seconds' "
                         f"({least if _is_number(least) else type(least).__name__}; "
                         f"{MIN_SECONDS_FLOOR:g} s to the window length)")
    if "name" in meta and not _is_name(meta["name"], 100):
        raise ModelError(f"{where}: model metadata has an invalid 'name'")
    if "version" in meta and not (_is_name(meta["version"], 100) or _is_int(meta["version"])):
        raise ModelError(f"{where}: model metadata has an invalid 'version'")
    if not isinstance(meta["network"], dict):
        raise ModelError(f"{where}: model metadata describes no network")
    _check_layers(meta["network"].get("layers"), where)


def check_ensemble(meta: Mapping, where: Path) -> list[str]:
    """Check an ensemble's ``model.json``; the sub-folders of its members, in order.

    The members' own ``model.json`` are checked by :func:`check_model` as
    they are loaded.  :class:`ModelError` (one line) on the first problem.
    """
    if not _json_depth_ok(meta, MAX_JSON_DEPTH):
        raise ModelError(f"{where}: model metadata is nested more than {MAX_JSON_DEPTH} levels deep")
    if meta.get("format") != MODEL_FORMAT or meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelError(f"{where}: not a genre-id model of format version {MODEL_FORMAT_VERSION}")
    _check_schema_version(meta, where)
    listed = meta["members"]
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_MEMBERS:
        raise ModelError(f"{where}: an ensemble lists 1 to {MAX_MEMBERS} members")
    if meta.get("fusion") not in FUSION_RULES:
        raise ModelError(f"{where}: unknown fusion rule (known: {', '.join(FUSION_RULES)})")
    weights = meta.get("fusion_weights")
    if weights is not None and not (isinstance(weights, list) and len(weights) == len(listed)
                                    and all(_is_number(w) and 0 <= w <= 1e6 for w in weights) and sum(weights) > 0):
        raise ModelError(f"{where}: 'fusion_weights' must list one non-negative number per member, not all zero")
    temperature = meta.get("temperature", 1.0)
    if not (_is_number(temperature) and 0.01 <= temperature <= 100):
        raise ModelError(f"{where}: 'temperature' must be a number from 0.01 to 100")
    folders = []
    for entry in listed:
        name = entry.get("folder") if isinstance(entry, dict) else None
        if not _is_name(name, 64) or name in (".", "..") or "/" in name or "\\" in name:
            raise ModelError(f"{where}: an ensemble member must name a sub-folder of the ensemble")
        folders.append(name)
    return folders
