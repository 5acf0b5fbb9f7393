"""Hostile model folders: bounded reads, weights checked from their headers, a schema for model.json.

Every case must end in a loaded model or a one-line :class:`ModelError`
naming the folder, quickly and without reading more than the network needs.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from genre_id.errors import ModelError
from genre_id.model import DEFAULT_MODEL_DIR, load_bundle

ROOT = Path(__file__).resolve().parents[1]


def _model(tmp_path: Path, name: str = "m") -> Path:
    """A copy of the shipped model's numpy part (no model.keras)."""
    folder = tmp_path / name
    folder.mkdir()
    for f in ("model.json", "weights.npz"):
        shutil.copy(DEFAULT_MODEL_DIR / "levelfree" / f, folder / f)
    return folder


def _edit_meta(folder: Path, edit) -> Path:
    meta = json.loads((folder / "model.json").read_text())
    edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def _members(folder: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(folder / "weights.npz") as z:
        return {n: z.read(n) for n in z.namelist()}


def _write_members(folder: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(folder / "weights.npz", "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _npy_header_only(descr: str, shape: tuple[int, ...], payload: bytes = b"") -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (118 - len(header)) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + payload


def _refused_cheaply(folder: Path, match: str) -> None:
    """Refused while allocating less than 5 MB."""
    tracemalloc.start()
    try:
        _refused(folder, match)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 << 20


def _refused(folder: Path, match: str) -> str:
    with pytest.raises(ModelError, match=match) as info:
        load_bundle(folder)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(folder)), message
    return message


def test_the_shipped_model_still_loads_and_predicts() -> None:
    bundle = load_bundle()
    assert bundle.labels[0] == "blues" and len(bundle.labels) == 10
    assert bundle.window_seconds == 30.0 and bundle.min_seconds == 3.0
    width = sum(m.network.n_inputs for m in bundle.members)
    p = bundle.predict_proba(np.zeros((2, width), dtype=np.float32))
    assert p.shape == (2, 10) and np.allclose(p.sum(axis=1), 1, atol=1e-5)


def test_finite_weights_that_overflow_are_one_line_not_a_nan_genre(tmp_path: Path) -> None:
    folder = _model(tmp_path)
    with np.load(folder / "weights.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for k in arrays:
        if k.endswith("kernel"):
            arrays[k] = arrays[k] * np.float32(1e15)  # every value finite; their products are not
    np.savez(folder / "weights.npz", **arrays)
    clip = ROOT / "examples" / "synth_groove.flac"
    out = subprocess.run([sys.executable, "-m", "genre_id.cli", "identify", "--model", str(folder), str(clip)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == f"error: {clip}: {folder}: the network's output is not finite for this audio " \
                         "(its weights overflow float32)\n"


# -- item 1: files that are not regular, or too large ------------------------------------------

_LOAD_IN_CHILD = (
    "import sys\nfrom genre_id.errors import ModelError\nfrom genre_id.model import load_bundle\n"
    "try:\n    load_bundle(sys.argv[1])\nexcept ModelError as e:\n    print(e)\n"
)


def _load_in_child(folder: Path) -> str:
    """Load in a child process, so that a regression hangs or balloons the child, not the test run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _LOAD_IN_CHILD, str(folder)], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize("name", ["model.json", "weights.npz"])
def test_a_fifo_in_a_model_folder_is_refused_at_once(tmp_path: Path, name: str) -> None:
    folder = _model(tmp_path)
    (folder / name).unlink()
    os.mkfifo(folder / name)
    assert _load_in_child(folder) == f"{folder / name}: not a regular file"


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize("name", ["model.json", "weights.npz"])
def test_a_link_to_a_device_is_refused_before_reading(tmp_path: Path, name: str) -> None:
    folder = _model(tmp_path)
    (folder / name).unlink()
    (folder / name).symlink_to("/dev/zero")
    assert _load_in_child(folder) == f"{folder / name}: not a regular file"


def test_oversized_files_are_refused_by_their_size(tmp_path: Path) -> None:
    folder = _model(tmp_path)
    with open(folder / "model.json", "ab") as fh:
        fh.truncate((1 << 20) + 1)
    _refused(folder, "more than the 1048576")
    folder = _model(tmp_path, "w")
    with open(folder / "weights.npz", "ab") as fh:
        fh.truncate((64 << 20) + 1)  # sparse: costs no disk
    _refused(folder, "more than the 67108864")


def test_an_extra_huge_member_is_refused_without_being_read(tmp_path: Path) -> None:
    folder = _model(tmp_path)
    with zipfile.ZipFile(folder / "weights.npz", "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("junk.npy", _npy(np.zeros(64 << 20, dtype=np.float32)))  # 256 MB deflating to 250 kB
    assert (folder / "weights.npz").stat().st_size < 600_000
    _refused_cheaply(folder, "unpacks to more than")


def test_extra_small_members_are_ignored_and_only_needed_arrays_read(tmp_path: Path) -> None:
    folder = _model(tmp_path)
    with zipfile.ZipFile(folder / "weights.npz", "a") as z:
        z.writestr("notes.txt", b"hello")
        z.writestr("9.kernel.npy", b"not even an npy file")
    bundle = load_bundle(folder)
    assert sorted(bundle.network.arrays) == sorted(n[:-4] for n in _members(_model(tmp_path, "ref")))


def test_an_archive_of_very_many_members_is_refused_before_parsing(tmp_path: Path) -> None:
    folder = _model(tmp_path)
    members = _members(folder)
    members.update({f"x{i}": b"" for i in range(2000)})
    _write_members(folder, members)
    _refused(folder, "too many members")


def test_a_huge_declared_shape_is_refused_from_the_header(tmp_path: Path) -> None:
    folder = _model(tmp_path)
    members = _members(folder)
    members["1.kernel.npy"] = _npy_header_only("<f4", (51, 4_000_000_000), b"\0" * 64)
    _write_members(folder, members)
    _refused_cheaply(folder, "more than 16777216 values")


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((51, 256), dtype=np.int32), "not floating point"),
        (np.zeros((51, 256), dtype=np.complex64), "not floating point"),
        (np.array([{"a": 1}] * 4, dtype=object), "not floating point"),
        (np.zeros((52, 256), dtype=np.float32), "do not fit the network"),
        (np.zeros((51, 255), dtype=np.float32), "do not fit the network"),
        (np.zeros((51, 256, 1), dtype=np.float32), "invalid shape"),
        (np.zeros((0, 256), dtype=np.float32), "invalid shape"),
        (np.full((51, 256), np.nan, dtype=np.float32), "NaN or infinite"),
    ],
    ids=["int32", "complex", "object", "rows", "columns", "3d", "empty", "nan"],
)
def test_arrays_of_the_wrong_kind_or_shape_are_refused(tmp_path: Path, array: np.ndarray, match: str) -> None:
    folder = _model(tmp_path)
    members = _members(folder)
    members["1.kernel.npy"] = _npy(array)
    _write_members(folder, members)
    _refused(folder, match)


def test_shapes_are_checked_against_labels_and_columns(tmp_path: Path) -> None:
    folder = _edit_meta(_model(tmp_path), lambda m: m["labels"].append("polka"))
    _refused(folder, "10 outputs but the metadata lists 11 labels")
    folder = _edit_meta(_model(tmp_path, "c"), lambda m: m["feature_set"]["columns"].pop())
    _refused(folder, "do not fit the network")
    folder = _edit_meta(_model(tmp_path, "u"), lambda m: m["network"]["layers"][1].update(units=255))
    _refused(folder, "do not fit the network")


def test_a_damaged_archive_member_is_refused(tmp_path: Path) -> None:
    folder = _model(tmp_path)
    members = _members(folder)
    members["2.kernel.npy"] = members["2.kernel.npy"][:-100]  # declared size no longer matches the header
    _write_members(folder, members)
    _refused(folder, "does not match its declared size")
    folder = _model(tmp_path, "crc")
    data = bytearray((folder / "weights.npz").read_bytes())
    start = data.find(b"2.kernel.npy") + len("2.kernel.npy") + 200
    data[start] ^= 0xFF  # a bit of array data: only the CRC can tell
    (folder / "weights.npz").write_bytes(bytes(data))
    _refused(folder, "corrupt weights file .*CRC")
    folder = _model(tmp_path, "cut")
    data = (folder / "weights.npz").read_bytes()
    (folder / "weights.npz").write_bytes(data[: len(data) // 2])
    _refused(folder, "corrupt weights file")


# -- items 2 and 9: the model.json schema --------------------------------------------------------------


@pytest.mark.parametrize("window", [0.5, 120.5, 1e5, -30, True, "30", None, [30]])
def test_window_seconds_must_be_between_1_and_120(tmp_path: Path, window) -> None:
    folder = _edit_meta(_model(tmp_path), lambda m: m.update(window_seconds=window))
    _refused(folder, "invalid 'window_seconds'")


def test_window_limits_and_min_seconds(tmp_path: Path) -> None:
    for i, (window, least) in enumerate([(1, 0.5), (120, 120), (30.0, 3.0)]):
        folder = _edit_meta(_model(tmp_path, f"ok{i}"), lambda m: m.update(window_seconds=window, min_seconds=least))
        assert load_bundle(folder).window_seconds == window
    for i, least in enumerate([31.0, 0.1, 0, -1, False, "3"]):
        folder = _edit_meta(_model(tmp_path, f"bad{i}"), lambda m: m.update(min_seconds=least))
        _refused(folder, "invalid 'min_seconds'")


def test_non_finite_numbers_in_json_are_refused(tmp_path: Path) -> None:
    folder = _model(tmp_path)
    text = (folder / "model.json").read_text().replace('"window_seconds": 30.0', '"window_seconds": NaN')
    (folder / "model.json").write_text(text)
    _refused(folder, "unreadable model metadata")


def _set(path: list, value):
    def edit(meta):
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


@pytest.mark.parametrize(
    "edit, match",
    [
        (_set(["feature_set", "columns"], 5), "feature columns"),
        (_set(["feature_set", "columns"], [1, 2]), "feature columns"),
        (_set(["feature_set"], []), "valid feature set"),
        (_set(["feature_set", "version"], "1"), "valid feature set"),
        (_set(["feature_set", "name"], {"x": 1}), "valid feature set"),
        (_set(["labels"], "blues"), "list of labels"),
        (_set(["labels"], ["only"]), "list of labels"),
        (_set(["labels"], [f"g{i}" for i in range(1001)]), "list of labels"),
        (_set(["labels", 1], "blues"), "not unique"),
        (_set(["labels", 1], ""), "printable text"),
        (_set(["labels", 1], "x" * 65), "printable text"),
        (_set(["labels", 1], "rock\n"), "printable text"),
        (_set(["labels", 1], "\x1b[2Jpwned"), "printable text"),
        (_set(["labels", 1], "\u202eevil"), "printable text"),
        (_set(["labels", 1], 7), "printable text"),
        (_set(["network"], [1]), "describes no network"),
        (_set(["network", "layers"], "x"), "network layers"),
        (_set(["network", "layers"], []), "network layers"),
        (_set(["network", "layers", 1], 3), "not a layer description"),
        (_set(["network", "layers", 1, "type"], ["dense"]), "unknown layer type"),
        (_set(["network", "layers", 1, "type"], "conv"), "unknown layer type"),
        (_set(["network", "layers", 1, "activation"], {"a": 1}), "unsupported activation"),
        (_set(["network", "layers", 1, "activation"], "gelu"), "unsupported activation"),
        (_set(["network", "layers", 1, "units"], "256"), "units"),
        (_set(["network", "layers", 1, "units"], 10**30), "units"),
        (_set(["format_version"], True), "format version"),
        (_set(["format_version"], 1.0), "format version"),
        (_set(["format"], ["genre-id-model"]), "not a genre-id model"),
        (_set(["name"], "a\nb"), "invalid 'name'"),
        (_set(["name"], 5), "invalid 'name'"),
        (_set(["version"], [1]), "invalid 'version'"),
        (_set(["training"], json.loads("[" * 40 + "]" * 40)), "nested more than 32"),
    ],
)
def test_damaged_metadata_is_one_line_model_error(tmp_path: Path, edit, match: str) -> None:
    folder = _edit_meta(_model(tmp_path), edit)
    _refused(folder, match)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000,
                                  "1" * 5000, "\xff\xfe", "", "[]", '"text"'])
def test_unparsable_metadata_is_one_line_model_error(tmp_path: Path, text: str) -> None:
    folder = _model(tmp_path)
    (folder / "model.json").write_bytes(text.encode("latin-1"))
    _refused(folder, "model metadata")
