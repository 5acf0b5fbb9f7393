"""Fuzzing model folders: whatever model.json and weights.npz hold, the outcome is a model or a ModelError.

A small valid model (normalization, two dense layers) is mutated: model.json
values replaced by random JSON of any type at any place, keys deleted, deep
nesting and long strings, and its bytes flipped or cut; weights.npz members
replaced by arrays of other shapes and dtypes (object arrays included), by
headers that declare huge shapes, dropped, joined by extra (huge) members,
and its bytes mutated or truncated.  Each case must load or raise a one-line
:class:`ModelError` naming the folder, without growing memory by more than
32 MB (peak resident size, or tracemalloc where it cannot be reset).  Hypothesis runs derandomized.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from collections import Counter
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genre_id.errors import ModelError
from genre_id.model import load_bundle

#: No case may grow memory by more than this while loading (the valid model needs a few kB; the
#: resident-size measure also counts the allocator's arenas).
PEAK_BYTES = 32 << 20

N_IN, N_HIDDEN, N_OUT = 6, 5, 3
LAYERS = [{"type": "normalization"}, {"type": "dense", "units": N_HIDDEN, "activation": "relu"},
          {"type": "dense", "units": N_OUT, "activation": "softmax"}]
META = {
    "format": "genre-id-model", "format_version": 1, "name": "tiny", "version": "1",
    "labels": ["a", "b", "c"],
    "feature_set": {"name": "levelfree", "version": 1, "columns": [f"c{i}" for i in range(N_IN)]},
    "window_seconds": 30.0, "min_seconds": 3.0,
    "network": {"layers": LAYERS},
    "training": {"epochs": 3, "notes": ["x"]},
}
_rng = np.random.default_rng(0)
ARRAYS = {
    "0.mean": _rng.normal(size=N_IN).astype(np.float32),
    "0.variance": _rng.uniform(0.5, 2, size=N_IN).astype(np.float32),
    "1.kernel": _rng.normal(size=(N_IN, N_HIDDEN)).astype(np.float32),
    "1.bias": np.zeros(N_HIDDEN, dtype=np.float32),
    "2.kernel": _rng.normal(size=(N_HIDDEN, N_OUT)).astype(np.float32),
    "2.bias": np.zeros(N_OUT, dtype=np.float32),
}


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _npz(members: dict[str, bytes], deflate: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


VALID_MEMBERS = {f"{k}.npy": _npy(v) for k, v in ARRAYS.items()}
VALID_NPZ = _npz(VALID_MEMBERS)
VALID_JSON = json.dumps(META).encode()

#: ``(kind of mutation, "loaded" | "refused")``: cases seen, checked by the last test.
OUTCOMES: Counter[tuple[str, str]] = Counter()


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz_model") / "m"


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field))


def _peak_rss_resettable() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets the peak resident size (VmHWM) of this process
        return True
    except OSError:
        return False


#: Linux lets a process reset its peak resident size: cheap enough for every case.  Elsewhere tracemalloc.
_USE_RSS = _peak_rss_resettable()


def _measured(call) -> tuple[object, int]:
    """``(call(), bytes allocated at the peak of the call)``; re-raises what ``call`` raises."""
    if _USE_RSS:
        _peak_rss_resettable()
        before = _rss_kib("VmRSS")
        try:
            return call(), 0
        finally:
            _measured.last = (_rss_kib("VmHWM") - before) * 1024  # type: ignore[attr-defined]
    tracemalloc.start()
    try:
        return call(), 0
    finally:
        _measured.last = tracemalloc.get_traced_memory()[1]  # type: ignore[attr-defined]
        tracemalloc.stop()


def _load(folder: Path, meta: bytes, weights: bytes, kind: str = "valid") -> str:
    folder.mkdir(exist_ok=True)
    (folder / "model.json").write_bytes(meta)
    (folder / "weights.npz").write_bytes(weights)
    try:
        bundle, _ = _measured(lambda: load_bundle(folder))
        outcome = "loaded"
        assert bundle.predict_proba(np.zeros((1, bundle.network.n_inputs))).shape == (1, len(bundle.labels))
    except ModelError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(str(folder)), message
        outcome = "refused"
    peak = _measured.last  # type: ignore[attr-defined]
    assert peak < PEAK_BYTES, f"{outcome} after allocating {peak} bytes"
    OUTCOMES[kind, outcome] += 1
    return outcome


def test_the_unmutated_model_loads(folder: Path) -> None:
    assert _load(folder, VALID_JSON, VALID_NPZ) == "loaded"


# --- model.json -----------------------------------------------------------------------------

_scalar = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.sampled_from([0, 1, -1, 2, 3, 30, 120, 121])
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=80)
           | st.sampled_from(["dense", "normalization", "relu", "softmax", "a", "\x1b[31m", "a\nb", "\u202e"]))
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                                           max_size=5), max_leaves=20)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = list(_paths(META))[1:]

_edit = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(ALL_PATHS), _json),
    st.tuples(st.just("delete"), st.sampled_from(ALL_PATHS)),
    st.tuples(st.just("nest"), st.sampled_from(ALL_PATHS), st.integers(1, 3000)),
    st.tuples(st.just("long"), st.sampled_from(ALL_PATHS), st.integers(1, 2 << 20)),
)


def _apply(meta: dict, edit) -> None:
    """Apply one edit; an edit whose place an earlier edit removed does nothing."""
    kind, path = edit[0], edit[1]
    try:
        target = meta
        for key in path[:-1]:
            target = target[key]
        key = path[-1]
        if kind == "set":
            target[key] = edit[2]
        elif kind == "delete":
            del target[key]
        elif kind == "nest":
            value = target[key]
            for _ in range(edit[2]):
                value = [value]
            target[key] = value
        else:
            target[key] = "x" * edit[2]
    except (KeyError, IndexError, TypeError):
        pass


@_settings(400)
@given(edits=st.lists(_edit, min_size=1, max_size=4))
def test_mutated_model_json_gives_a_model_or_a_model_error(folder: Path, edits) -> None:
    meta = json.loads(VALID_JSON)
    for edit in edits:
        _apply(meta, edit)
    try:
        text = json.dumps(meta).encode()
    except RecursionError:  # too deep even for json.dumps: write it by hand
        text = b"[" * 5000 + b"]" * 5000
    _load(folder, text, VALID_NPZ, "json")


_byte_edit = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 1 << 16)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=32)),
)


def _mutate(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for kind, pos, *rest in edits:
        pos %= max(1, len(b))
        if kind == "flip" and b:
            b[pos] ^= 1 << rest[0]
        elif kind == "cut":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = rest[0]
    return bytes(b)


@_settings(300)
@given(edits=st.lists(_byte_edit, min_size=1, max_size=3))
def test_model_json_bytes_mutated_give_a_model_or_a_model_error(folder: Path, edits) -> None:
    _load(folder, _mutate(VALID_JSON, edits), VALID_NPZ, "json bytes")


# --- weights.npz -------------------------------------------------------------------------------


@_settings(400)
@given(edits=st.lists(_byte_edit, min_size=1, max_size=3))
def test_weights_bytes_mutated_give_a_model_or_a_model_error(folder: Path, edits) -> None:
    _load(folder, VALID_JSON, _mutate(VALID_NPZ, edits), "weights bytes")


def _header_only(descr: str, shape: tuple[int, ...], fortran: bool, payload: bytes) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}".encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + payload


_dims = st.sampled_from([0, 1, 2, N_IN, N_HIDDEN, N_OUT, 7, 1000, 2**31, 2**40, 2**63]) | st.integers(0, 2**64)
_shape = st.lists(_dims, max_size=3).map(tuple)
_dtype = st.sampled_from(["<f4", ">f4", "<f8", "<f2", "<i4", "|u1", "|b1", "<c8", "|O", "|V8", "<U4", "<M8[s]",
                          "[('a', '<f4')]"])

_member_edit = st.one_of(
    st.tuples(st.just("array"), st.sampled_from(sorted(VALID_MEMBERS)),
              st.sampled_from([np.float32, np.float64, np.float16, np.int16, np.complex64, object, bool]),
              st.lists(st.integers(0, 8), max_size=3)),
    st.tuples(st.just("header"), st.sampled_from(sorted(VALID_MEMBERS)), _dtype, _shape, st.booleans(),
              st.binary(max_size=256)),
    st.tuples(st.just("drop"), st.sampled_from(sorted(VALID_MEMBERS))),
    st.tuples(st.just("extra"), st.sampled_from(["junk.npy", "3.kernel.npy", "x", "0.mean.npy/", "../a.npy"]),
              st.integers(0, 300 << 20)),
    st.tuples(st.just("special"), st.sampled_from(sorted(VALID_MEMBERS)),
              st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 3.4e38, 0.0])),
)


def _edit_members(members: dict[str, bytes], edit) -> None:
    kind, name = edit[0], edit[1]
    if kind == "array":
        dtype, shape = edit[2], tuple(edit[3])
        array = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
        members[name] = _npy(array.astype(dtype) if dtype is not object else np.array([{"k": 1}] * array.size,
                                                                                        dtype=object))
    elif kind == "header":
        members[name] = _header_only(edit[2], edit[3], edit[4], edit[5])
    elif kind == "drop":
        members.pop(name, None)
    elif kind == "extra":
        members[name] = b"\0" * edit[2]  # at most 4 MB here; larger ones are declared, see _declare_huge
    else:
        array = ARRAYS[name[:-4]].copy()
        array.flat[0] = edit[2]
        members[name] = _npy(array)


@_settings(400)
@given(edits=st.lists(_member_edit, min_size=1, max_size=3), deflate=st.booleans())
def test_weights_members_mutated_give_a_model_or_a_model_error(folder: Path, edits, deflate) -> None:
    members = dict(VALID_MEMBERS)
    big = None
    for edit in edits:
        if edit[0] == "extra" and edit[2] > (4 << 20):
            big = edit[1]
            members[big] = b""
        else:
            _edit_members(members, edit)
    weights = _npz(members, deflate)
    if big is not None:
        weights = _declare_huge(weights, big)
    _load(folder, VALID_JSON, weights, "weights members")


def _declare_huge(weights: bytes, name: str) -> bytes:
    """The archive with member ``name``'s directory entry declaring 200 MB of content."""
    data = bytearray(weights)
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = int.from_bytes(data[pos + 28:pos + 30], "little")
        if bytes(data[pos + 46:pos + 46 + name_len]) == name.encode():
            data[pos + 24:pos + 28] = (200 << 20).to_bytes(4, "little")  # uncompressed size
        pos = data.find(b"PK\x01\x02", pos + 4)
    return bytes(data)


@pytest.fixture(scope="module", autouse=True)
def _the_fuzzing_reached_both_outcomes():
    """After the module's tests (in any order): each kind of mutation that ran both loaded (harmless edits) and
    was refused, so the cases are neither all trivial nor all junk."""
    yield
    kinds = {kind for kind, _ in OUTCOMES} & {"json", "json bytes", "weights bytes", "weights members"}
    print("\n" + ", ".join(f"{k}: {OUTCOMES[k, 'loaded']} loaded / {OUTCOMES[k, 'refused']} refused" for k in sorted(kinds)))
    for kind in kinds:
        assert OUTCOMES[kind, "loaded"] > 0 and OUTCOMES[kind, "refused"] > OUTCOMES[kind, "loaded"] / 10, kind