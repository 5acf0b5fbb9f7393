"""Import the pretrained MSD_musicnn weights from the musicnn 0.1.0 wheel (ISC licence).

    python scripts/import_musicnn.py [--wheel musicnn-0.1.0-py3-none-any.whl]

fetches the wheel with ``pip download musicnn==0.1.0 --no-deps`` unless
``--wheel`` names it (never installs it: its dependencies pin numpy < 1.17),
checks its sha256, reads the MSD_musicnn TensorFlow 1 checkpoint and writes,
atomically, into ``genre_id/weights/``:

- ``msd_musicnn.npz``: the arrays under clear names, stored as float16 and
  deflated (0.94 MB instead of 3.2 MB; computed in float32), no pickle;
- ``msd_musicnn.json``: layer description, array shapes, the 50 MSD tag names
  (from the wheel's ``configuration.py``), source wheel and sha256, licence;
- ``LICENSE-musicnn.txt``: the wheel's ISC licence notice.

With ``--reference-fixture`` it also runs the ORIGINAL musicnn graph
(``musicnn/models.py`` from the wheel, TensorFlow 1 graph mode via
``tf.compat.v1``, checkpoint restored with ``tf.compat.v1.train.Saver``) on
the log-mel patches of two real GTZAN clips and stores the taggrams and
penultimate layers in ``tests/data/musicnn_reference.npz``.  models.py uses
``tf.compat.v1.layers``, which TensorFlow >= 2.16 only provides through the
legacy ``tf-keras`` package (``TF_USE_LEGACY_KERAS=1``, set by this script):
install the tf-keras matching TensorFlow, e.g. into a side folder with
``pip install --no-deps --target DIR tf-keras==<tf version>`` and put DIR on
PYTHONPATH.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
CHECKPOINT = "musicnn/MSD_musicnn/"
FIXTURE_CLIPS = ("classical/classical.00000.flac", "metal/metal.00000.flac")

# TensorFlow 1 variable name -> our name (tf.compat.v1.layers numbers layers in creation order)
_LAYERS = [
    ("batch_normalization", "input_bn"),
    ("conv2d", "timbral_7x38"), ("batch_normalization_1", "timbral_7x38_bn"),
    ("conv2d_1", "timbral_7x67"), ("batch_normalization_2", "timbral_7x67_bn"),
    ("conv2d_2", "temporal_128"), ("batch_normalization_3", "temporal_128_bn"),
    ("conv2d_3", "temporal_64"), ("batch_normalization_4", "temporal_64_bn"),
    ("conv2d_4", "temporal_32"), ("batch_normalization_5", "temporal_32_bn"),
    ("conv2d_5", "midend_1"), ("batch_normalization_6", "midend_1_bn"),
    ("conv2d_6", "midend_2"), ("batch_normalization_7", "midend_2_bn"),
    ("conv2d_7", "midend_3"), ("batch_normalization_8", "midend_3_bn"),
    ("batch_normalization_9", "pool_bn"),
    ("dense", "penultimate"), ("batch_normalization_10", "penultimate_bn"),
    ("dense_1", "tags"),
]

_DESCRIPTION = [
    {"name": "input_bn", "type": "batch_norm", "input": "log-mel patch (frames, 96)"},
    {"name": "timbral_7x38", "type": "conv2d", "kernel": [7, 38], "filters": 204, "padding": "time 3+3 zeros",
     "then": ["relu", "timbral_7x38_bn", "max over frequency"]},
    {"name": "timbral_7x67", "type": "conv2d", "kernel": [7, 67], "filters": 204, "padding": "time 3+3 zeros",
     "then": ["relu", "timbral_7x67_bn", "max over frequency"]},
    {"name": "temporal_128", "type": "conv2d", "kernel": [128, 1], "filters": 51, "padding": "same (63+64)",
     "then": ["relu", "temporal_128_bn", "max over frequency"]},
    {"name": "temporal_64", "type": "conv2d", "kernel": [64, 1], "filters": 51, "padding": "same (31+32)",
     "then": ["relu", "temporal_64_bn", "max over frequency"]},
    {"name": "temporal_32", "type": "conv2d", "kernel": [32, 1], "filters": 51, "padding": "same (15+16)",
     "then": ["relu", "temporal_32_bn", "max over frequency"]},
    {"name": "front_end", "type": "concat", "channels": 561, "order": ["timbral_7x38", "timbral_7x67",
                                                                       "temporal_128", "temporal_64", "temporal_32"]},
    {"name": "midend_1", "type": "conv1d", "kernel": 7, "filters": 64, "padding": "3+3 zeros",
     "then": ["relu", "midend_1_bn"]},
    {"name": "midend_2", "type": "conv1d", "kernel": 7, "filters": 64, "padding": "3+3 zeros",
     "then": ["relu", "midend_2_bn", "+ midend_1"]},
    {"name": "midend_3", "type": "conv1d", "kernel": 7, "filters": 64, "padding": "3+3 zeros",
     "then": ["relu", "midend_3_bn", "+ midend_2 residual sum"]},
    {"name": "features", "type": "concat", "channels": 753, "order": ["front_end", "midend_1", "midend_2",
                                                                      "midend_3"]},
    {"name": "pool", "type": "temporal pooling", "units": 1506,
     "order": "per channel c: [max over time, mean over time] at 2c, 2c+1", "then": ["pool_bn"]},
    {"name": "penultimate", "type": "dense", "units": 200, "then": ["relu", "penultimate_bn"]},
    {"name": "tags", "type": "dense", "units": 50, "then": ["sigmoid"]},
]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write(path: Path, write) -> None:
    """``write(file)`` into ``path`` atomically: temporary file, fsync, rename (:func:`genre_id.files.atomic_file`)."""
    from genre_id.files import atomic_file

    with atomic_file(path) as f:
        write(f)


def _prefix(unpacked: Path) -> str:
    """The checkpoint prefix: the MSD_musicnn folder itself, with its trailing slash."""
    return str(unpacked / CHECKPOINT) + "/"


def fetch_wheel(directory: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "musicnn==0.1.0", "--no-deps", "--only-binary=:all:",
                    "-d", str(directory)], check=True)
    return directory / WHEEL_NAME


def _tags_from_configuration(source: str) -> list[str]:
    """MSD_LABELS from the wheel's configuration.py, read as a literal (nothing of the wheel is executed)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MSD_LABELS" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise SystemExit("configuration.py has no MSD_LABELS")


def read_checkpoint(unpacked: Path) -> dict[str, np.ndarray]:
    """Our name -> float32 array, from the unpacked wheel's MSD_musicnn checkpoint."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    # The checkpoint's prefix is the folder itself (files ".index", ".data-00000-of-00001"), and its
    # "checkpoint" file names the author's machine, so tf.train.load_checkpoint(folder) would follow
    # that; the reader it wraps is given the prefix directly.
    reader = tf.compat.v1.train.NewCheckpointReader(_prefix(unpacked))
    available = reader.get_variable_to_shape_map()
    arrays = {}
    for tf_name, ours in _LAYERS:
        kinds = (("gamma", "beta", "moving_mean", "moving_variance") if ours.endswith("_bn")
                 else ("kernel", "bias"))
        for kind in kinds:
            if f"{tf_name}/{kind}" not in available:
                raise SystemExit(f"checkpoint lacks {tf_name}/{kind}")
            arrays[f"{ours}.{kind}"] = np.asarray(reader.get_tensor(f"{tf_name}/{kind}"), dtype=np.float32)
    model_vars = {k for k in available if "Adam" not in k and not k.startswith("beta")}
    unused = model_vars - {f"{t}/{k}" for t, _ in _LAYERS for k in
                           ("gamma", "beta", "moving_mean", "moving_variance", "kernel", "bias")}
    if unused:
        raise SystemExit(f"checkpoint variables not mapped: {sorted(unused)}")
    return arrays


def import_weights(wheel: Path, unpacked: Path, out_dir: Path) -> None:
    from genre_id.musicnn import ARRAY_SHAPES, HOP_LENGTH, N_FFT, N_MELS, PATCH_FRAMES, SAMPLE_RATE

    arrays = read_checkpoint(unpacked)
    shapes = {k: list(v.shape) for k, v in arrays.items()}
    if {k: tuple(v) for k, v in shapes.items()} != ARRAY_SHAPES:
        raise SystemExit("checkpoint arrays differ from genre_id.musicnn.ARRAY_SHAPES")
    licence = (unpacked / "musicnn-0.1.0.dist-info" / "LICENSE.md").read_text(encoding="utf-8").strip()
    tags = _tags_from_configuration((unpacked / "musicnn" / "configuration.py").read_text(encoding="utf-8"))
    config = json.loads((unpacked / CHECKPOINT / "config.json").read_text(encoding="utf-8"))
    meta = {
        "format": "genre-id musicnn weights 2",
        "model": "MSD_musicnn",
        "reference": "J. Pons and X. Serra, musicnn: pre-trained convolutional neural networks for music audio "
                     "tagging, ISMIR 2019 late-breaking/demo",
        "source": {"package": "musicnn", "version": "0.1.0", "wheel": WHEEL_NAME, "sha256": _sha256(wheel),
                   "checkpoint": CHECKPOINT,
                   "variables": {ours: tf_name for tf_name, ours in _LAYERS}},
        "licence": {"name": "ISC", "file": "LICENSE-musicnn.txt",
                    "notice": licence.splitlines()[0]},
        "input": {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop_length": HOP_LENGTH, "n_mels": N_MELS,
                  "stft": "centred, periodic Hann, reflect padding of n_fft // 2", "power": 2,
                  "mel": "Slaney scale and area normalisation, 0 Hz to sr / 2",
                  "compression": "log10(1 + 10000 * mel), float32", "patch_frames": PATCH_FRAMES,
                  "trained_patch_frames": config["n_frames"]},
        "storage": "float16 (each array rounded to nearest), computed in float32",
        "batch_norm_epsilon": 0.001,
        "layers": _DESCRIPTION,
        "arrays": shapes,
        "tags": tags,
    }
    stored = {k: a.astype(np.float16) for k, a in arrays.items()}
    worst = max(float(np.abs(a - stored[k].astype(np.float32)).max()) for k, a in arrays.items())
    if not all(np.isfinite(a).all() for a in stored.values()):
        raise SystemExit("a weight does not fit float16")
    _atomic_write(out_dir / "msd_musicnn.npz", lambda f: np.savez_compressed(f, **stored))
    _atomic_write(out_dir / "msd_musicnn.json",
                  lambda f: f.write((json.dumps(meta, indent=1) + "\n").encode("utf-8")))
    _atomic_write(out_dir / "LICENSE-musicnn.txt", lambda f: f.write(
        ("The MSD_musicnn weights in msd_musicnn.npz come from the musicnn 0.1.0 package\n"
         "(https://github.com/jordipons/musicnn), under this licence:\n\n" + licence + "\n").encode("utf-8")))
    print(f"wrote {out_dir}/msd_musicnn.npz ({len(arrays)} arrays as float16, largest rounding {worst:.1e}), "
          "msd_musicnn.json, LICENSE-musicnn.txt")


def reference_fixture(unpacked: Path, data_dir: Path, out_path: Path, *, n_penultimate: int = 3) -> None:
    """Run the original musicnn graph on our float32 log-mel patches of real clips; store its outputs."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf.compat.v1.layers comes from tf-keras
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from genre_id.audio import load
    from genre_id.musicnn import SAMPLE_RATE, log_mel_spectrogram, split_patches

    tf.compat.v1.disable_eager_execution()
    sys.path.insert(0, str(unpacked))
    from musicnn import models  # the wheel's own graph code

    x = tf.compat.v1.placeholder(tf.float32, [None, 187, 96])
    is_training = tf.compat.v1.placeholder(tf.bool)
    with tf.name_scope("model"):
        out = models.define_model(x, is_training, "MSD_musicnn", 50)
    logits, penultimate = out[0], out[-1]
    probs = tf.nn.sigmoid(logits)
    result = {}
    with tf.compat.v1.Session() as sess:
        tf.compat.v1.train.Saver().restore(sess, _prefix(unpacked))
        for i, clip in enumerate(FIXTURE_CLIPS):
            patches = split_patches(log_mel_spectrogram(load(data_dir / clip, sample_rate=SAMPLE_RATE)[0],
                                                        sr=SAMPLE_RATE))
            tags, pen = sess.run([probs, penultimate], feed_dict={x: patches, is_training: False})
            result[f"tags_{i}"] = tags.astype(np.float32)
            result[f"penultimate_{i}"] = pen[:n_penultimate].astype(np.float32)
    result["clips"] = np.array(FIXTURE_CLIPS)
    _atomic_write(out_path, lambda f: np.savez_compressed(f, **result))
    print(f"wrote {out_path} ({out_path.stat().st_size} bytes)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wheel", type=Path, help=f"use this {WHEEL_NAME} instead of downloading it")
    p.add_argument("--out", type=Path, default=ROOT / "genre_id" / "weights", help="output folder")
    p.add_argument("--reference-fixture", action="store_true",
                   help="also run the original graph on real clips (needs tf-keras) and write the test fixture")
    p.add_argument("--data", type=Path, default=None, help="shared data folder (default: genre-id's)")
    p.add_argument("--fixture", type=Path, default=ROOT / "tests" / "data" / "musicnn_reference.npz")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wheel = args.wheel or fetch_wheel(tmp)
        digest = _sha256(wheel)
        if digest != WHEEL_SHA256:
            raise SystemExit(f"{wheel}: sha256 {digest} is not that of {WHEEL_NAME} ({WHEEL_SHA256})")
        unpacked = tmp / "unpacked"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(unpacked)
        import_weights(wheel, unpacked, args.out)
        if args.reference_fixture:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from shared_data import shared_data_dir

            data = (args.data or shared_data_dir()) / "gtzan_mini"
            reference_fixture(unpacked, data, args.fixture)
    return 0


if __name__ == "__main__":
    sys.exit(main())
