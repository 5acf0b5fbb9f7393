"""Fuzzing the decoding and feature path: whatever bytes a file holds, the only outcomes are a result or a GenreIdError.

More than 10,000 generated files in all (random bytes with audio extensions,
mutated valid wav/flac/mp3/au/ogg/aiff files, hand-built wav headers), each
decoded with ``audio.info``, ``audio.load`` and ``audio.iter_windows``, and a
share of them identified by the default recognizer; and well-formed files of
odd sample values (huge, tiny, constant, NaN, ...) long enough to reach the
feature extraction.  Hypothesis runs
derandomized, so CI sees the same cases every time; the whole module takes
well under a minute.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genre_id import audio
from genre_id.errors import GenreIdError

EXTENSIONS = [".wav", ".flac", ".mp3", ".au", ".ogg", ".aiff", ".snd", ".oga"]
EDGE_INTS = [0, 1, 2, 3, 7, 8, 255, 256, 1000, 8000, 44100, 65535, 65536, 0x7FFF, 0x8000,
             0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


def _fuzz_settings(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def _seed_files() -> dict[str, bytes]:
    """Small valid files of every container the project reads (0.1-0.3 s of audio)."""
    rng = np.random.default_rng(0)
    t = np.arange(2400) / 8000
    y = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    stereo = np.stack([y, y[::-1]], axis=1)
    seeds = {}
    for key, ext, fmt, subtype, data, sr in [
        ("wav16", ".wav", "WAV", "PCM_16", y, 8000),
        ("wav8", ".wav", "WAV", "PCM_U8", y, 8000),
        ("wav24", ".wav", "WAV", "PCM_24", stereo, 8000),
        ("wavfloat", ".wav", "WAV", "FLOAT", y, 8000),
        ("wavex", ".wav", "WAVEX", "PCM_16", stereo, 8000),
        ("wavadpcm", ".wav", "WAV", "IMA_ADPCM", y, 8000),
        ("flac", ".flac", "FLAC", "PCM_16", y, 8000),
        ("flac24", ".flac", "FLAC", "PCM_24", stereo, 8000),
        ("mp3", ".mp3", "MP3", "MPEG_LAYER_III", y, 8000),
        ("au", ".au", "AU", "PCM_16", y, 8000),
        ("aulaw", ".au", "AU", "ULAW", y, 8000),
        ("ogg", ".ogg", "OGG", "VORBIS", y, 8000),
        ("aiff", ".aiff", "AIFF", "PCM_16", y, 8000),
    ]:
        buf = io.BytesIO()
        sf.write(buf, data, sr, format=fmt, subtype=subtype)
        seeds[key] = (ext, buf.getvalue())
    return seeds


SEEDS = _seed_files()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(folder: Path, ext: str, data: bytes) -> Path:
    path = folder / f"case{ext}"
    path.write_bytes(data)
    return path


def _decode_everything(path: Path) -> None:
    """Run the decoding path; only a result or a GenreIdError may come out."""
    try:
        i = audio.info(path)
        assert audio.MIN_SAMPLE_RATE <= i.sample_rate <= audio.MAX_SAMPLE_RATE and i.channels >= 1
    except GenreIdError as exc:
        _check_message(exc, path)
    try:
        y, _ = audio.load(path, sample_rate=8000)
        assert y.dtype == np.float32 and y.ndim == 1 and np.isfinite(y).all()
    except GenreIdError as exc:
        _check_message(exc, path)
    try:
        for start, x in audio.iter_windows(path, sample_rate=8000, window_seconds=0.1, min_seconds=0.05):
            assert start >= 0 and x.dtype == np.float32 and x.size > 0 and np.isfinite(x).all()
    except GenreIdError as exc:
        _check_message(exc, path)


def _check_message(exc: GenreIdError, path: Path) -> None:
    message = str(exc)
    assert "\n" not in message and str(path) in message, message


# --- random bytes --------------------------------------------------------------------------


@_fuzz_settings(2500)
@given(ext=st.sampled_from(EXTENSIONS), data=st.binary(min_size=1, max_size=1024))
def test_random_bytes_with_audio_extensions(fuzz_dir, ext, data):
    _decode_everything(_write(fuzz_dir, ext, data))


@_fuzz_settings(1000)
@given(
    magic=st.sampled_from([b"RIFF", b"fLaC", b"ID3\x03", b"\xff\xfb\x90\xc4", b".snd", b"OggS", b"FORM", b"RF64",
                           b"caff", b"wvpk", b"\x00\x00\x00\x00"]),
    ext=st.sampled_from(EXTENSIONS),
    data=st.binary(min_size=0, max_size=1024),
)
def test_random_bytes_behind_a_real_magic_number(fuzz_dir, magic, ext, data):
    _decode_everything(_write(fuzz_dir, ext, magic + data))


# --- mutated valid files ---------------------------------------------------------------------

_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(0, 7)),
    st.tuples(st.just("byte"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("int32"), st.integers(0, 96), st.sampled_from(EDGE_INTS) | st.integers(0, 0xFFFFFFFF),
              st.sampled_from(["<I", ">I"])),
    st.tuples(st.just("int16"), st.integers(0, 96), st.sampled_from(EDGE_INTS) | st.integers(0, 0xFFFF),
              st.sampled_from(["<H", ">H"])),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.integers(1, 256)),
)


def _mutate(data: bytes, mutations) -> bytes:
    b = bytearray(data)
    for m in mutations:
        kind, pos = m[0], m[1] % max(1, len(b))
        if kind == "flip" and b:
            b[pos] ^= 1 << m[2]
        elif kind == "byte" and b:
            b[pos] = m[2]
        elif kind in ("int32", "int16"):
            fmt = m[3]
            size = struct.calcsize(fmt)
            value = m[2] & (0xFFFFFFFF if size == 4 else 0xFFFF)
            if m[1] + size <= len(b):
                b[m[1]:m[1] + size] = struct.pack(fmt, value)
        elif kind == "truncate":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = m[2]
        elif kind == "delete":
            del b[pos:pos + m[2]]
    return bytes(b)


@_fuzz_settings(4300)
@given(seed=st.sampled_from(sorted(SEEDS)), mutations=st.lists(_mutation, min_size=1, max_size=4),
       other_ext=st.booleans(), ext=st.sampled_from(EXTENSIONS))
def test_mutated_valid_files(fuzz_dir, seed, mutations, other_ext, ext):
    own_ext, data = SEEDS[seed]
    _decode_everything(_write(fuzz_dir, ext if other_ext else own_ext, _mutate(data, mutations)))


# --- hand-built wav headers ----------------------------------------------------------------------


@_fuzz_settings(1300)
@given(
    tag=st.sampled_from([1, 3, 6, 7, 2, 0x11, 0x31, 0x55, 0xFFFE, 0]) | st.integers(0, 0xFFFF),
    channels=st.sampled_from([0, 1, 2, 8, 255, 1024, 1025, 65535]) | st.integers(0, 0xFFFF),
    rate=st.sampled_from(EDGE_INTS + [192000, 768000, 768001, 999, 1000]) | st.integers(0, 0xFFFFFFFF),
    bits=st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64, 65535]) | st.integers(0, 0xFFFF),
    block_align=st.sampled_from([0, 1, 2, 3, 4, 8, 0xFFFF]) | st.integers(0, 0xFFFF),
    data_size=st.sampled_from(EDGE_INTS) | st.integers(0, 0xFFFFFFFF),
    riff_size=st.sampled_from(EDGE_INTS) | st.integers(0, 0xFFFFFFFF),
    payload=st.binary(min_size=0, max_size=2048),
)
def test_hand_built_wav_headers(fuzz_dir, tag, channels, rate, bits, block_align, data_size, riff_size, payload):
    byte_rate = (rate * block_align) & 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", tag, channels, rate, byte_rate, block_align, bits)
    head = b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    data = head + b"data" + struct.pack("<I", data_size) + payload
    _decode_everything(_write(fuzz_dir, ".wav", data))


# --- the whole identify path ---------------------------------------------------------------------


@_fuzz_settings(1200)
@given(seed=st.sampled_from(sorted(SEEDS)), mutations=st.lists(_mutation, min_size=0, max_size=3),
       raw=st.none() | st.binary(min_size=1, max_size=512))
def test_identify_gives_a_prediction_or_a_genre_id_error(fuzz_dir, default_recognizer, seed, mutations, raw):
    ext, data = SEEDS[seed]
    path = _write(fuzz_dir, ext, raw if raw is not None else _mutate(data, mutations))
    try:
        pred = default_recognizer.identify(path)
    except GenreIdError as exc:
        _check_message(exc, path)
    else:  # a fuzzed file that still holds 3 s of audio
        assert pred.genre in default_recognizer.labels and np.isfinite(pred.confidence)


# --- odd sample values, through the feature extraction ------------------------------------------------

_component = st.tuples(
    st.sampled_from(["sine", "noise", "dc", "impulses", "square", "ramp"]),
    st.sampled_from([0.0, 1e-30, 1e-8, 1e-4, 1e-2, 0.5, 1.0, 100.0, 1e6, 1e20, 1e38, 3.4028235e38]),
    st.integers(1, 4000),
)
_special = st.tuples(st.sampled_from([np.nan, np.inf, -np.inf, 3.4028235e38, -3.4028235e38, 1e-45, 0.0]),
                     st.integers(0, 1 << 20))


def _signal(n: int, sr: int, components, specials) -> np.ndarray:
    t = np.arange(n) / sr
    y = np.zeros(n, dtype=np.float64)
    for kind, amp, k in components:
        if kind == "sine":
            y += amp * np.sin(2 * np.pi * k * t)
        elif kind == "noise":
            y += amp * np.random.default_rng(k).standard_normal(n)
        elif kind == "dc":
            y += amp
        elif kind == "impulses":
            y[::k] += amp
        elif kind == "square":
            y += amp * np.sign(np.sin(2 * np.pi * k * t))
        else:
            y += amp * (t * k % 1.0)
    y = np.clip(np.nan_to_num(y, nan=0.0), -3.4028235e38, 3.4028235e38).astype(np.float32)
    for value, at in specials:
        y[at % n] = value
    return y


@_fuzz_settings(150)
@given(
    sr=st.sampled_from([1000, 8000, 22050, 44100]),
    seconds=st.sampled_from([2.99, 3.0, 3.5]),
    components=st.lists(_component, min_size=1, max_size=3),
    specials=st.lists(_special, max_size=2),
    subtype=st.sampled_from(["FLOAT", "DOUBLE", "PCM_16"]),
)
def test_odd_sample_values_give_a_prediction_or_a_genre_id_error(fuzz_dir, default_recognizer, sr, seconds,
                                                                 components, specials, subtype):
    y = _signal(int(seconds * sr), sr, components, specials)
    path = fuzz_dir / "values.wav"
    if subtype == "PCM_16":
        y = np.clip(np.nan_to_num(y), -1, 1)
    sf.write(path, y, sr, subtype=subtype)
    try:
        pred = default_recognizer.identify(path)
    except GenreIdError as exc:
        _check_message(exc, path)
    else:
        assert pred.genre in default_recognizer.labels
        assert np.isfinite(list(pred.probabilities.values())).all()
