"""Issue 6: robust against bad input and faults.

Every bad input gets one line naming the file and the problem (a GenreIdError;
exit code 2 at the command line) and leaves the other files alone; broken
training files are skipped and listed; damaged or unsafe model folders are
refused without running anything; the feature cache never trusts a bad entry
and survives concurrent writers; an interrupted save keeps the previous model;
an hour of audio is decoded in bounded memory.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, tone
from genre_id import Recognizer, audio
from genre_id.cache import file_digest
from genre_id.errors import (AudioError, AudioTooShortError, FeatureVersionError, GenreIdError, ModelError,
                             SilentAudioError)
from genre_id.extraction import extract_file
from genre_id.features import get_feature_set
from genre_id.model import DEFAULT_MODEL_DIR, load_bundle

PY = sys.executable
IDENTIFY = str(ROOT / "scripts" / "identify.py")


def _run(args, *, timeout=300, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8"}
    env.update(kw.pop("env", {}))
    return subprocess.run([PY, *args], capture_output=True, text=True, errors="surrogateescape", timeout=timeout, env=env, **kw)


# --- inputs ----------------------------------------------------------------------------------------

def _write(path: Path, y: np.ndarray, sr: int, **kw) -> Path:
    sf.write(path, y, sr, **kw)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _truncated(path: Path, y: np.ndarray, sr: int, fraction: float = 0.5, **kw) -> Path:
    sf.write(path, y, sr, **kw)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _claims_more(path: Path) -> Path:
    """A wav whose data chunk claims 100 MB while the file holds 8 s."""
    sf.write(path, tone(8.0), 22050)
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at:at + 4] = struct.pack("<I", 100_000_000)
    path.write_bytes(bytes(data))
    return path


def _with_bad_sample(path: Path, value: float) -> Path:
    y = tone(5.0)
    y[1000] = value
    return _write(path, y, 22050, subtype="FLOAT")


def _undecodable_name(path: Path) -> Path:
    target = Path(os.fsdecode(bytes(path.parent) + b"/bad\xff\xfe name.wav"))
    os.rename(path, target)
    return target


def _multi(seconds: float, sr: int, channels: int) -> np.ndarray:
    y = tone(seconds, sr)
    return np.stack([y * (1 - 0.05 * c) for c in range(channels)], axis=1)


# name -> (make(tmp_dir) -> path, expected error type, words in the message)
BAD_INPUTS = {
    "missing path": (lambda d: d / "missing.wav", AudioError, "no such file"),
    "a directory": (lambda d: _folder(d / "folder.wav"), AudioError, "is a directory"),
    "an empty file": (lambda d: _bytes(d / "empty.wav", b""), AudioError, "file is empty"),
    "a named pipe": (lambda d: _fifo(d / "pipe.wav"), AudioError, "not a regular file"),
    "text named .mp3": (lambda d: _bytes(d / "notes.mp3", b"not audio at all\n" * 50), AudioError,
                        "not a readable audio file"),
    "a png named .flac": (lambda d: _bytes(d / "cover.flac", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20),
                          AudioError, "not a readable audio file"),
    "wav header claims more data than the file holds": (lambda d: _claims_more(d / "claims.wav"), AudioError,
                                                        "file is truncated (its header promises 100000000 bytes"),
    "truncated mp3": (lambda d: _truncated(d / "cut.mp3", tone(10.0), 22050, subtype="MPEG_LAYER_III"), AudioError,
                      "file is truncated (its header promises 10.00 s of audio"),
    "truncated flac": (lambda d: _truncated(d / "cut.flac", tone(10.0), 22050), AudioError,
                       "audio data is corrupt or truncated"),
    "truncated ogg": (lambda d: _truncated(d / "cut.ogg", tone(10.0), 22050), AudioError, "file is truncated"),
    "truncated au": (lambda d: _truncated(d / "cut.au", tone(10.0), 22050), AudioError, "file is truncated"),
    "shorter than 3 s": (lambda d: _write(d / "short.wav", tone(2.9), 22050), AudioTooShortError,
                         "audio is 2.90 s long; at least 3 s is needed"),
    "pure silence": (lambda d: _write(d / "silence.wav", np.zeros(10 * 22050, np.float32), 22050),
                     SilentAudioError, "audio is silent"),
    "a constant DC offset (silence too)": (lambda d: _write(d / "dc.wav", np.full(5 * 22050, 0.25, np.float32),
                                                            22050), SilentAudioError, "audio is silent"),
    "float wav with NaN": (lambda d: _with_bad_sample(d / "nan.wav", np.nan), AudioError, "NaN or infinite samples"),
    "float wav with infinity": (lambda d: _with_bad_sample(d / "inf.wav", np.inf), AudioError,
                                "NaN or infinite samples"),
    "float wav with huge finite values": (
        lambda d: _write(d / "huge.wav", tone(4.0) * np.float32(1e30), 22050, subtype="FLOAT"), AudioError,
        "features cannot be computed"),
    "a 500 Hz sample rate": (lambda d: _write(d / "slow.wav", tone(8.0, 500), 500), AudioError,
                             "sample rate 500 Hz is not supported (from 1000 to 768000 Hz)"),
}

GOOD_INPUTS = {
    "8-bit PCM": lambda d: _write(d / "u8.wav", tone(4.0), 22050, subtype="PCM_U8"),
    "24-bit PCM": lambda d: _write(d / "p24.wav", _multi(4.0, 44100, 2), 44100, subtype="PCM_24"),
    "32-bit float": lambda d: _write(d / "f32.wav", tone(4.0, 44100), 44100, subtype="FLOAT"),
    "8 channels": lambda d: _write(d / "ch8.flac", _multi(4.0, 48000, 8), 48000),
    "8 kHz": lambda d: _write(d / "8k.wav", tone(4.0, 8000), 8000),
    "192 kHz": lambda d: _write(d / "192k.flac", _multi(4.0, 192000, 2), 192000, subtype="PCM_24"),
    "exactly 3 s (the minimum)": lambda d: _write(d / "three.wav", tone(3.0), 22050),
    "spaces and non-ASCII in the name": lambda d: _write(d / "Ünïcødé song — 日本 (live).wav", tone(4.0),
                                                         22050),
    "a name that is not UTF-8": lambda d: _undecodable_name(_write(d / "plain.wav", tone(4.0), 22050)),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_one_line_naming_the_file_and_the_problem(default_recognizer, tmp_path, case):
    make, error, words = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(error) as info:
        default_recognizer.identify(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)) and words in message, message


@pytest.mark.parametrize("case", list(GOOD_INPUTS))
def test_unusual_but_valid_input_is_identified(default_recognizer, tmp_path, case):
    path = GOOD_INPUTS[case](tmp_path)
    pred = default_recognizer.identify(path)
    assert pred.genre in default_recognizer.labels and 0 < pred.confidence <= 1
    assert abs(sum(pred.probabilities.values()) - 1) < 1e-4 and len(pred.segments) == 1


def test_a_file_without_read_permission_mocked(default_recognizer, tmp_path, monkeypatch):
    """os.access is what the library asks; as root it always says yes, so it is told no here."""
    path = _write(tmp_path / "locked.wav", tone(4.0), 22050)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == path else real_access(p, mode, **k))
    with pytest.raises(AudioError, match=r"locked\.wav: permission denied"):
        default_recognizer.identify(path)


def _drop_file_permission_override() -> None:
    """In a child process run as root: give up the capabilities that let root read any file."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, from the bounding set (lost at exec)
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_file_without_read_permission_really(tmp_path):
    """chmod 000 for real, through the command line: the unreadable file is named, the good one identified."""
    locked = _write(tmp_path / "locked.wav", tone(4.0), 22050)
    hidden_dir = tmp_path / "no entry"
    hidden_dir.mkdir()
    inside = _write(hidden_dir / "inside.wav", tone(4.0), 22050)
    good = _write(tmp_path / "good.wav", tone(4.0), 22050)
    locked.chmod(0)
    hidden_dir.chmod(0)
    try:
        preexec = None
        if os.geteuid() == 0:  # root reads anything: run the child as root without that privilege
            try:
                subprocess.run([PY, "-c", "pass"], preexec_fn=_drop_file_permission_override, check=True)
            except (OSError, subprocess.SubprocessError) as exc:
                pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE in a child ({exc})")
            preexec = _drop_file_permission_override
        r = _run([IDENTIFY, str(locked), str(inside), str(good)], preexec_fn=preexec)
    finally:
        locked.chmod(0o644)
        hidden_dir.chmod(0o755)
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert lines == [f"error: {locked}: permission denied",
                     f"error: {inside}: cannot access the file (Permission denied)"], r.stderr
    assert r.stdout.startswith(f"{good}  ")


def test_samples_that_are_not_audio_get_a_genre_id_error(default_recognizer):
    n = 4 * 22050
    for source, kw, words in [
        (np.array(["a"] * n), {"sample_rate": 22050}, "must be numbers"),
        (np.ones(n, complex), {"sample_rate": 22050}, "not complex"),
        (np.zeros((2, 2, 2)), {"sample_rate": 22050}, "shape"),
        (np.zeros((n, 0)), {"sample_rate": 22050}, "no channels"),
        (np.full(n, 1e300), {"sample_rate": 22050}, "NaN or infinite"),
        (tone(4.0), {"sample_rate": 0}, "positive whole number"),
        (tone(4.0), {"sample_rate": 22050.0}, "positive whole number"),
        (tone(4.0), {"sample_rate": 100}, "not supported"),
        (tone(4.0), {}, "needs sample_rate"),
        (3.14, {}, "cannot identify a float"),
        (None, {}, "cannot identify a NoneType"),
    ]:
        with pytest.raises(GenreIdError, match=words):
            default_recognizer.identify(source, **kw)


@pytest.mark.parametrize("kind", ["dc", "noise", "impulse", "alternating"])
@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1e6, 1e30, 3e38])
def test_odd_but_finite_signals_give_a_genre_or_a_clear_error(default_recognizer, kind, scale):
    n = 3 * 22050
    base = {"dc": np.ones(n), "noise": np.random.default_rng(0).standard_normal(n), "impulse": np.eye(1, n, 99)[0],
            "alternating": np.tile([1.0, -1.0], n // 2 + 1)[:n]}[kind]
    y = np.clip(base * scale, -3e38, 3e38).astype(np.float32)
    try:
        pred = default_recognizer.identify(y, sample_rate=22050)
    except GenreIdError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("audio: ")
    else:
        assert pred.genre in default_recognizer.labels and np.isfinite(list(pred.probabilities.values())).all()


# --- the command line -----------------------------------------------------------------------------

def test_cli_reports_each_bad_file_on_one_line_and_still_identifies_the_good_ones(tmp_path):
    bad = {case: make(tmp_path) for case, (make, _, _) in BAD_INPUTS.items()}
    good = [_write(tmp_path / "first good.wav", tone(4.0), 22050),
            GOOD_INPUTS["spaces and non-ASCII in the name"](tmp_path)]
    args = [str(good[0]), *map(str, bad.values()), str(good[1])]
    r = _run([IDENTIFY, *args])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == len(bad), r.stderr
    for case, path in bad.items():
        words = BAD_INPUTS[case][2]
        assert [line for line in lines if line.startswith(f"error: {path}: ") and words in line], (case, r.stderr)
    out = r.stdout.splitlines()
    assert [line.split("  ")[0] for line in out] == [str(g) for g in good], r.stdout


def test_cli_prints_a_name_that_is_not_utf8(tmp_path):
    odd = GOOD_INPUTS["a name that is not UTF-8"](tmp_path)
    good = _write(tmp_path / "good.wav", tone(4.0), 22050)
    r = _run([IDENTIFY, str(odd), str(good)], env={"PYTHONIOENCODING": "utf-8"})  # as in a UTF-8 locale
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2 and r.stdout.splitlines()[1].startswith(f"{good}  ")


def test_cli_json_output_and_exit_codes(tmp_path):
    good = _write(tmp_path / "good.wav", tone(4.0), 22050)
    r = _run([IDENTIFY, "--json", str(good)])
    assert r.returncode == 0 and r.stderr == ""
    assert json.loads(r.stdout)["file"] == str(good)
    r = _run([IDENTIFY, "--json", str(good), str(tmp_path / "nope.flac")])
    assert r.returncode == 2 and r.stderr == f"error: {tmp_path / 'nope.flac'}: no such file\n"
    assert json.loads(r.stdout)["file"] == str(good)


def test_cli_refuses_a_broken_model_folder_in_one_line(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model)
    (model / "weights.npz").write_bytes(b"PK\x03\x04 not really a zip")
    r = _run([IDENTIFY, "--model", str(model), str(_write(tmp_path / "a.wav", tone(4.0), 22050))])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"error: {model}") and "corrupt weights file" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stdout == ""


# --- training on a folder with broken files --------------------------------------------------------

_CRASH_HOOK = """
import os, signal
if os.environ.get("GENRE_ID_TEST_CRASH"):
    import soundfile

    _init = soundfile.SoundFile.__init__

    def _crashing_init(self, file, *args, **kwargs):
        if isinstance(file, (str, bytes)) and os.environ["GENRE_ID_TEST_CRASH"] in os.fsdecode(file):
            os.kill(os.getpid(), signal.SIGKILL)  # as a decoder crash or the OOM killer would
        _init(self, file, *args, **kwargs)

    soundfile.SoundFile.__init__ = _crashing_init
"""


def test_training_folder_with_broken_files_skips_and_lists_them(tmp_path, monkeypatch):
    from genre_id.dataset import load_folder

    root = tmp_path / "data"
    for genre, freq in (("low", 220.0), ("high", 1760.0)):
        (root / genre).mkdir(parents=True)
        for i in range(2):
            _write(root / genre / f"{genre}.{i:05d}.wav", tone(3.5, freq=freq, seed=i), 22050)
    broken = {
        root / "low" / "empty.wav": "file is empty",
        root / "low" / "notes.mp3": "not a readable audio file",
        root / "high" / "cut.flac": "corrupt or truncated",
        root / "high" / "short.au": "at least 3 s",
        root / "high" / "quiet.wav": "silent",
        root / "low" / "crash-me.wav": "the process decoding this file died",
    }
    (root / "low" / "empty.wav").write_bytes(b"")
    (root / "low" / "notes.mp3").write_text("hello\n" * 100)
    _truncated(root / "high" / "cut.flac", tone(10.0), 22050)
    _write(root / "high" / "short.au", tone(1.0), 22050)
    _write(root / "high" / "quiet.wav", np.zeros(5 * 22050, np.float32), 22050)
    _write(root / "low" / "crash-me.wav", tone(4.0), 22050)
    # The worker processes kill themselves when they open crash-me.wav (the parent does not).
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_CRASH_HOOK)
    paths = [str(hook), str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("GENRE_ID_TEST_CRASH", "crash-me")

    data = load_folder(root, workers=2, progress=False)

    assert sorted(set(data.groups.tolist())) == ["high/high.00000", "high/high.00001", "low/low.00000", "low/low.00001"]
    assert data.x.shape == (4, get_feature_set().n_features) and np.isfinite(data.x).all()
    failed = {f.path: f.message for f in data.failures}
    assert sorted(failed) == sorted(str(p) for p in broken)
    for path, words in broken.items():
        message = failed[str(path)]
        assert message.startswith(str(path)) and words in message and "\n" not in message, message
    assert sorted(data.summary()["skipped_files"]) == sorted(failed.values())


# --- model folders --------------------------------------------------------------------------------

def _meta_edit(**changes):
    def damage(d: Path) -> None:
        meta = json.loads((d / "model.json").read_text())
        meta.update(changes)
        (d / "model.json").write_text(json.dumps(meta))
    return damage


def _weights_edit(fn):
    def damage(d: Path) -> None:
        with np.load(d / "weights.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
        fn(arrays)
        np.savez(d / "weights.npz", **arrays)
    return damage


def _layers_edit(fn):
    def damage(d: Path) -> None:
        meta = json.loads((d / "model.json").read_text())
        fn(meta["network"]["layers"])
        (d / "model.json").write_text(json.dumps(meta))
    return damage


MODEL_DAMAGE = {
    "model.json missing": (lambda d: (d / "model.json").unlink(), ModelError, "model.json is missing"),
    "weights.npz missing": (lambda d: (d / "weights.npz").unlink(), ModelError, "weights.npz is missing"),
    "model.json empty": (lambda d: (d / "model.json").write_bytes(b""), ModelError, "unreadable model metadata"),
    "model.json binary": (lambda d: (d / "model.json").write_bytes(b"\xff\xfe\x00garbage"), ModelError,
                          "unreadable model metadata"),
    "model.json a list": (lambda d: (d / "model.json").write_text("[1, 2]"), ModelError, "not a JSON object"),
    "weights.npz garbage": (lambda d: (d / "weights.npz").write_bytes(b"garbage"), ModelError, "corrupt weights"),
    "weights.npz truncated": (lambda d: (d / "weights.npz").write_bytes((d / "weights.npz").read_bytes()[:5000]),
                              ModelError, "corrupt weights"),
    "another format version": (_meta_edit(format_version=2), ModelError, "format version 2 is not supported"),
    "another program's JSON": (_meta_edit(format="keras-model"), ModelError, "not a genre-id model"),
    "another feature set version": (lambda d: _meta_edit(feature_set={**json.loads((d / "model.json").read_text())
                                                                     ["feature_set"], "version": 7})(d),
                                    FeatureVersionError, "version 7"),
    "window length not a number": (_meta_edit(window_seconds="thirty"), ModelError, "invalid 'window_seconds'"),
    "negative minimum length": (_meta_edit(min_seconds=-1), ModelError, "invalid 'min_seconds'"),
    "labels missing": (_meta_edit(labels=None), ModelError, "no valid list of labels"),
    "a layer that is not a dict": (_layers_edit(lambda layers: layers.__setitem__(1, "dense")), ModelError,
                                   "not a layer description"),
    "an unknown layer type": (_layers_edit(lambda layers: layers[1].update(type="lambda")), ModelError,
                              "unknown layer type 'lambda'"),
    "weights of the wrong shape": (_weights_edit(lambda a: a.__setitem__("1.kernel", a["1.kernel"][:-3])),
                                   ModelError, "do not fit the network"),
    "NaN weights": (_weights_edit(lambda a: a["2.bias"].__setitem__(0, np.nan)), ModelError, "NaN or infinite"),
    "a pickled object array": (_weights_edit(lambda a: a.__setitem__("2.bias", np.array([object()] * 10))),
                               ModelError, "corrupt weights"),
}


@pytest.mark.parametrize("case", list(MODEL_DAMAGE))
def test_a_damaged_model_folder_is_refused_clearly(tmp_path, case):
    folder = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    damage, error, words = MODEL_DAMAGE[case]
    damage(folder)
    with pytest.raises(error) as info:
        Recognizer.load(folder)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(folder)) and words in message, message


def test_a_model_path_that_is_no_model_folder(tmp_path):
    for path, words in [(tmp_path / "nowhere", "no such model folder"),
                        (_write(tmp_path / "a.wav", tone(1.0), 22050), "a model is a folder"),
                        (tmp_path, "model.json is missing")]:
        with pytest.raises(ModelError, match=words):
            Recognizer.load(path)


def test_a_keras_file_carrying_code_is_refused_and_never_run(tmp_path):
    from genre_id.keras_backend import import_keras, load_keras_model

    keras = import_keras()
    marker = tmp_path / "payload ran"
    payload = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t)[1]")  # noqa: S307
    evil = keras.Sequential([keras.Input(shape=(57,)), keras.layers.Lambda(payload)])
    folder = tmp_path / "evil"
    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    evil.save(folder / "model.keras")
    # The payload is live: loading without safe mode runs it.
    marker.unlink(missing_ok=True)
    keras.models.load_model(folder / "model.keras", safe_mode=False)
    assert marker.exists(), "the test's payload should run when code is allowed"
    marker.unlink()

    with pytest.raises(ModelError, match=r"refused to load the Keras model \(it holds keras.layers.Lambda"):
        load_bundle(folder, backend="keras")
    assert not marker.exists()
    with pytest.raises(ModelError, match="refused"):  # Keras's own safe mode, the second line of defence
        load_keras_model(folder / "model.keras")
    assert not marker.exists()
    # The default numpy backend never opens model.keras at all.
    assert load_bundle(folder).labels == load_bundle().labels and not marker.exists()


@pytest.mark.parametrize("damage,words", [
    (lambda p: p.unlink(), "model.keras is missing"),
    (lambda p: p.write_bytes(b"not a zip"), "corrupt Keras model file"),
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "corrupt Keras model file"),
])
def test_a_missing_or_corrupt_keras_file_is_refused(tmp_path, damage, words):
    folder = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    damage(folder / "model.keras")
    with pytest.raises(ModelError, match=words):
        load_bundle(folder, backend="keras")


# --- interrupted saves ------------------------------------------------------------------------------

_SAVE_LOOP = """
import sys
import numpy as np
from genre_id.model import load_bundle, save_bundle

target = sys.argv[1]
a, b = load_bundle(), load_bundle()
b.network.arrays = {k: v + 1 for k, v in b.network.arrays.items()}
a.metadata = {**a.metadata, "version": "A"}
b.metadata = {**b.metadata, "version": "B"}
print("ready", flush=True)
i = 0
while True:
    bundle = (a, b)[i % 2]
    save_bundle(bundle, target)
    bundle.path = load_bundle().path  # copy model.keras from the shipped model each time
    i += 1
"""


def _check_complete_model(target: Path) -> str:
    bundle = load_bundle(target)
    version = bundle.version
    assert version in ("A", "B")
    expected = load_bundle().network.arrays
    for k, v in bundle.network.arrays.items():
        np.testing.assert_array_equal(v, expected[k] + (1 if version == "B" else 0))
    assert sorted(p.name for p in target.iterdir()) == ["model.json", "model.keras", "weights.npz"]
    return version


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killing_a_save_leaves_the_old_or_the_new_model(tmp_path, sig):
    target = tmp_path / "models" / "mine"
    script = tmp_path / "save_loop.py"
    script.write_text(_SAVE_LOOP)
    rng = random.Random(6)
    first = load_bundle()
    first.metadata = {**first.metadata, "version": "A"}
    from genre_id.model import save_bundle

    save_bundle(first, target)  # the previous model
    seen = set()
    for _ in range(5):
        proc = subprocess.Popen([PY, str(script), str(target)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(sig)
        proc.wait(timeout=60)
        seen.add(_check_complete_model(target))
    assert seen  # a complete model every time
    leftovers = [p.name for p in target.parent.iterdir() if p.name != "mine"]
    assert all(name.startswith(".mine.") for name in leftovers), leftovers
    if sig == signal.SIGINT:  # Ctrl-C: the temporary folder is cleaned up
        assert leftovers == []
    else:  # a kill leaves a hidden temporary folder; a later save removes it once it is stale
        for name in leftovers:
            os.utime(target.parent / name, (time.time() - 7200,) * 2)
        save_bundle(first, target)
        assert [p.name for p in target.parent.iterdir()] == ["mine"]


# --- the feature cache ------------------------------------------------------------------------------

def _entry(cache: Path) -> Path:
    (entry,) = [p for p in cache.rglob("*.npz")]
    return entry


def _savez_entry(path: Path, key: str, **arrays) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, key=np.asarray(key), **arrays)


def test_cache_is_keyed_by_content_and_feature_version(tmp_path, monkeypatch):
    import dataclasses

    fs = get_feature_set()
    clip = _write(tmp_path / "clip.wav", tone(3.5), 22050)
    cache = tmp_path / "cache"
    first = extract_file(clip, cache_dir=cache)
    entry = _entry(cache)
    assert entry.stem == file_digest(clip) and f"{fs.name}-v{fs.version}-" in str(entry)
    assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp-")]

    decoded = []
    real = audio.iter_windows
    monkeypatch.setattr(audio, "iter_windows", lambda *a, **k: decoded.append(1) or real(*a, **k))
    copy = tmp_path / "another name.wav"
    shutil.copy(clip, copy)
    np.testing.assert_array_equal(extract_file(copy, cache_dir=cache).values, first.values)
    assert decoded == []  # a renamed copy is a hit
    _write(copy, tone(3.5, seed=1), 22050)
    extract_file(copy, cache_dir=cache)
    assert decoded == [1]  # changed content is a miss
    v2 = dataclasses.replace(fs, version=fs.version + 1)
    extract_file(clip, feature_set=v2, cache_dir=cache)
    assert decoded == [1, 1]  # another feature set version is a miss


@pytest.mark.parametrize("damage", [
    "truncated", "garbage", "empty", "bit flip", "another file's entry", "NaN values", "wrong width",
    "rows disagree", "no silent array", "strings",
])
def test_a_corrupt_cache_entry_is_recomputed_never_trusted(tmp_path, damage):
    clip = _write(tmp_path / "clip.wav", tone(3.5), 22050)
    cache = tmp_path / "cache"
    fresh = extract_file(clip)
    extract_file(clip, cache_dir=cache)
    entry = _entry(cache)
    data = entry.read_bytes()
    with np.load(entry) as npz:
        good = {k: npz[k] for k in npz.files}
    key = str(good.pop("key"))
    if damage == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        entry.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "bit flip":  # inside the stored values: the zip's CRC catches it
        b = bytearray(data)
        at = data.index(good["values"].tobytes()[:16]) + 8
        b[at] ^= 0x10
        entry.write_bytes(bytes(b))
    elif damage == "another file's entry":
        _savez_entry(entry, key.replace(entry.stem, "0" * 64), **{**good, "values": good["values"] + 1})
    elif damage == "NaN values":
        _savez_entry(entry, key, **{**good, "values": good["values"] * np.nan})
    elif damage == "wrong width":
        _savez_entry(entry, key, **{**good, "values": good["values"][:, :40]})
    elif damage == "rows disagree":
        _savez_entry(entry, key, **{**good, "starts": np.zeros(3), "ends": np.ones(3), "silent": np.zeros(3, bool)})
    elif damage == "no silent array":
        _savez_entry(entry, key, **{k: v for k, v in good.items() if k != "silent"})
    elif damage == "strings":
        _savez_entry(entry, key, **{**good, "starts": np.asarray(["a"] * len(good["starts"]))})
    got = extract_file(clip, cache_dir=cache)
    np.testing.assert_allclose(got.values, fresh.values)
    np.testing.assert_array_equal(got.silent, fresh.silent)
    with np.load(_entry(cache)) as npz:  # and the entry was written again, sound
        np.testing.assert_allclose(npz["values"], fresh.values)


def test_an_unusable_cache_only_costs_time(tmp_path, monkeypatch):
    clip = _write(tmp_path / "clip.wav", tone(3.5), 22050)
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    assert extract_file(clip, cache_dir=blocker).values.shape == (1, get_feature_set().n_features)

    def interrupted(fh, **arrays):  # a kill in the middle of writing an entry
        fh.write(b"PK\x03\x04half")
        raise KeyboardInterrupt

    cache = tmp_path / "real cache"
    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_file(clip, cache_dir=cache)
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # no entry, no temporary file


def test_a_pipe_is_refused_not_waited_on_even_with_a_cache(tmp_path):
    pipe = _fifo(tmp_path / "pipe.wav")
    code = ("import sys\nfrom genre_id.extraction import extract_file\nfrom genre_id.errors import AudioError\n"
            "try:\n    extract_file(sys.argv[1], cache_dir=sys.argv[2])\nexcept AudioError as exc:\n    print(exc)\n")
    r = _run(["-c", code, str(pipe), str(tmp_path / "cache")], timeout=60)
    assert r.stdout == f"{pipe}: not a regular file\n", r.stderr


_CACHE_STRESS = """
import sys
import numpy as np
from genre_id.cache import FeatureCache

cache = FeatureCache(sys.argv[1], namespace="stress")
rng = np.random.default_rng(int(sys.argv[2]))
bad = 0
for _ in range(400):
    digest = "%064x" % int(rng.integers(4))
    n = int(rng.integers(1, 40))
    cache.put(digest, values=np.full((n, 57), float(n)), starts=np.arange(n) * 30.0)
    entry = cache.get("%064x" % int(rng.integers(4)))
    if entry is not None:
        v = entry["values"]
        bad += not (v.shape == (len(entry["starts"]), 57) and (v == v.shape[0]).all())
print(bad)
"""

_EXTRACT = """
import sys
from genre_id.extraction import extract_files, FileFailure

results = extract_files(sys.argv[2:], cache_dir=sys.argv[1], workers=1, progress=False)
print(sum(isinstance(r, FileFailure) for r in results))
"""


def test_concurrent_processes_sharing_a_cache_corrupt_nothing(tmp_path):
    cache = tmp_path / "cache"
    stress = [subprocess.Popen([PY, "-c", _CACHE_STRESS, str(cache), str(seed)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}) for seed in (1, 2)]
    outs = [p.communicate(timeout=120)[0] for p in stress]
    assert [p.returncode for p in stress] == [0, 0] and [o.strip() for o in outs] == ["0", "0"]

    clips = [_write(tmp_path / f"clip{i}.wav", tone(3.0 + 0.25 * i, freq=300.0 * (i + 1)), 22050) for i in range(4)]
    procs = [subprocess.Popen([PY, "-c", _EXTRACT, str(cache), *map(str, order)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for order in (clips, clips[::-1])]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and [o.strip() for o in outs] == ["0", "0"]
    assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp-")]
    for clip in clips:
        cached = extract_file(clip, cache_dir=cache)
        np.testing.assert_allclose(cached.values, extract_file(clip).values)


# --- an hour of audio ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hour_flac(tmp_path_factory) -> Path:
    """60 minutes of quiet tone and noise at 8 kHz, written block by block (about 1 s, 39 MB)."""
    path = tmp_path_factory.mktemp("hour") / "an hour.flac"
    sr = 8000
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 1, format="FLAC", subtype="PCM_16") as f:
        for minute in range(60):
            t = np.arange(minute * 60 * sr, (minute + 1) * 60 * sr) / sr
            f.write((0.05 * np.sin(2 * np.pi * (220 + 5 * minute) * t) + 0.01 * rng.standard_normal(t.size))
                    .astype(np.float32))
    return path


_PEAK = """
def peak_mb():
    # The high-water mark of this process's memory.  getrusage's ru_maxrss would do, but Linux carries it
    # over execve from the forked parent (pytest, maybe with TensorFlow loaded); VmHWM starts afresh.
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) // 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
"""

_STREAM = _PEAK + """
import sys
from genre_id import audio

n = sum(1 for _ in audio.iter_windows(sys.argv[1]))
print(n, peak_mb())
"""


def test_an_hour_of_audio_streams_in_bounded_memory(hour_flac):
    """Decoding and resampling the hour holds two windows at a time (all of it at 22.05 kHz would be 318 MB)."""
    r = _run(["-c", _STREAM, str(hour_flac)])
    windows, peak_mb = map(int, r.stdout.split())
    assert windows == 120 and peak_mb < 250, (windows, peak_mb)


_IDENTIFY_WITH_PEAK = _PEAK + """
import sys
from genre_id.cli import main

code = main(["identify", "--json", sys.argv[1]])
print(peak_mb(), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.slow
def test_an_hour_of_audio_is_identified(hour_flac):
    r = _run(["-c", _IDENTIFY_WITH_PEAK, str(hour_flac)], timeout=1800)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["segments"]) == 120 and abs(out["duration"] - 3600) < 1e-6
    assert [s["start"] for s in out["segments"]] == [30.0 * i for i in range(120)]
    peak_mb = int(r.stderr.split()[-1])
    assert peak_mb < 1500, f"peak memory {peak_mb} MB"
