"""model.json: the shipped models follow the documented schema and record no machine's absolute paths."""

from __future__ import annotations

import json
import re
import shutil
from importlib import resources
from pathlib import Path

import pytest

from conftest import ROOT
from genre_id.errors import ModelError
from genre_id.metadata import SCHEMA_VERSION
from genre_id.model import DEFAULT_MODEL_DIR, load_bundle, save_ensemble

SCHEMA = json.loads((ROOT / "docs" / "model.schema.json").read_text(encoding="utf-8"))
#: An absolute path where a word starts: POSIX, home-relative, or a Windows drive.
ABSOLUTE = re.compile(r"(?:^|[\s'\"=,(])(?:/[^\s/]|~/|[A-Za-z]:[\\/])")


def _packaged_model_files() -> list[Path]:
    models = resources.files("genre_id") / "models"
    found = sorted(Path(str(models)).rglob("model.json"))
    assert len(found) >= 3, "the default ensemble and its two members"
    return found


def _strings(value, where=""):
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k, f"{where}/{k} (key)")
            yield from _strings(v, f"{where}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")


def _absolute_paths(path: Path) -> list[str]:
    return [f"{where}: {text[:120]}" for where, text in _strings(json.loads(path.read_text(encoding="utf-8")))
            if ABSOLUTE.search(text)]


def _schema_problems(meta: dict) -> list[str]:
    """Every way ``meta`` breaks the documented schema (jsonschema when installed, else a hand check of its keys)."""
    try:
        import jsonschema
    except ImportError:
        return _hand_check(meta)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(meta)]


_TYPES = {"string": str, "integer": int, "number": (int, float), "array": list, "object": dict, "null": type(None)}


def _hand_check(meta: dict) -> list[str]:
    """The schema's required keys and the types of its top-level properties (without jsonschema)."""
    defs = SCHEMA["$defs"]
    branch = defs["ensemble" if "members" in meta else "single"]
    problems = []
    for part in (defs["format"], branch):
        problems += [f"lacks '{key}'" for key in part.get("required", []) if key not in meta]
        for key, spec in part["properties"].items():
            if key in meta and "const" in spec and meta[key] != spec["const"]:
                problems.append(f"'{key}' is not {spec['const']!r}")
            kinds = spec.get("type")
            if key in meta and kinds is not None:
                kinds = [kinds] if isinstance(kinds, str) else kinds
                if not isinstance(meta[key], tuple(_TYPES[k] for k in kinds)) or isinstance(meta[key], bool):
                    problems.append(f"'{key}' is not of type {kinds}")
    return problems


@pytest.mark.parametrize("path", _packaged_model_files(), ids=lambda p: str(p.relative_to(DEFAULT_MODEL_DIR.parent)))
def test_a_shipped_model_json_follows_the_documented_schema(path):
    meta = json.loads(path.read_text(encoding="utf-8"))
    assert _schema_problems(meta) == []
    assert meta["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize("path", _packaged_model_files(), ids=lambda p: str(p.relative_to(DEFAULT_MODEL_DIR.parent)))
def test_a_shipped_model_json_records_no_absolute_path(path):
    assert _absolute_paths(path) == []


def test_the_hand_check_catches_what_the_schema_refuses():
    meta = json.loads((DEFAULT_MODEL_DIR / "levelfree" / "model.json").read_text(encoding="utf-8"))
    del meta["schema_version"]
    assert _hand_check(meta) == ["lacks 'schema_version'"]
    assert _hand_check({**meta, "schema_version": 1, "labels": "rock"}) == ["'labels' is not of type ['array']"]


def test_a_written_model_json_follows_the_schema_and_makes_paths_relative(tmp_path, monkeypatch):
    """What genre-id writes: the schema version, and the paths of the building machine made relative."""
    monkeypatch.chdir(tmp_path)
    members = [tmp_path / "build" / "levelfree", tmp_path / "build" / "musicnn-msd"]
    for member in members:
        shutil.copytree(DEFAULT_MODEL_DIR / member.name, member)
    command = f"genre-id ensemble {members[0]} {members[1]} --out={tmp_path / 'ens'} --labels '{tmp_path}/a b.csv'"
    out = save_ensemble(members, tmp_path / "ens", fusion="mean",
                        metadata={"training": {"command": command, "data": {"source": f"{tmp_path}/data + other"}}})
    meta = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert _schema_problems(meta) == []
    assert _absolute_paths(out / "model.json") == []
    assert meta["training"]["command"].startswith("genre-id ensemble build/levelfree build/musicnn-msd --out=ens ")
    assert meta["training"]["data"]["source"] == "data + other"
    assert meta["labels"] == load_bundle(out).labels


def test_a_model_json_without_a_schema_version_loads_and_a_newer_one_is_refused(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(DEFAULT_MODEL_DIR / "levelfree", folder)
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    del meta["schema_version"]
    (folder / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    assert load_bundle(folder).labels == meta["labels"]
    (folder / "model.json").write_text(json.dumps({**meta, "schema_version": SCHEMA_VERSION + 1}), encoding="utf-8")
    with pytest.raises(ModelError, match=f"schema version {SCHEMA_VERSION + 1} is not supported"):
        load_bundle(folder)
