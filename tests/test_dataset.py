"""Datasets from a folder of labelled audio: broken files are skipped and listed, never fatal."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import CONFIG, ROOT, tone
from genre_id.features import get_feature_set
from test_audio import _truncated, _write

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

    data = load_folder(root, config=CONFIG, workers=2, progress=False)

    assert sorted(set(data.groups.tolist())) == ["high/high.00000", "high/high.00001", "low/low.00000", "low/low.00001"]
    assert data.x.shape == (4, get_feature_set().n_features) and np.isfinite(data.x).all()
    failed = {f.path: f.message for f in data.failures}
    assert sorted(failed) == sorted(str(p) for p in broken)
    for path, words in broken.items():
        message = failed[str(path)]
        assert message.startswith(str(path)) and words in message and "\n" not in message, message
    assert sorted(data.summary()["skipped_files"]) == sorted(failed.values())


def _labelled_folder(root, rows, header="path,genre,accept,group,weight", *, bom=False):
    """A folder of short tones with a labels CSV (``rows`` of the header's columns; the path's file is made)."""
    for i, row in enumerate(rows):
        path = root / row[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, tone(3.5, freq=220.0 * (1 + i % 5), seed=i), 22050)
    text = header + "\n" + "".join(",".join(r) + "\n" for r in rows)
    (root / "labels.csv").write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return root


def test_a_labels_file_gives_accept_group_and_weight_and_a_bom_is_fine(tmp_path):
    from genre_id.dataset import labelled_set

    root = _labelled_folder(tmp_path / "set", [
        ("a/one.wav", "rock", "rock|metal", "artist-1", "2"),
        ("a/two.wav", "pop", "", "artist-1", ""),
        ("three.wav", "pop", "disco", "", "0.5"),
    ], bom=True)
    got_root, clips = labelled_set(root)  # a folder holding labels.csv is read through it
    assert got_root == root
    assert [(c.path.name, c.genre, c.accept, c.group, c.weight) for c in clips] == [
        ("one.wav", "rock", ("rock", "metal"), "group:artist-1", 2.0),
        ("two.wav", "pop", ("pop",), "group:artist-1", 1.0),
        ("three.wav", "pop", ("pop", "disco"), "", 0.5),
    ]
    assert labelled_set(root / "labels.csv")[1] == clips  # the CSV itself names the same set


def test_group_by_picks_the_first_column_a_file_has(tmp_path):
    from genre_id.dataset import read_labels

    root = _labelled_folder(tmp_path / "set", [("x.wav", "rock", "src-a"), ("y.wav", "jazz", "src-b")],
                            header="path,genre,source_repo")
    assert [c.group for c in read_labels(root, group_by=("group", "source_repo"))] == ["source_repo:src-a",
                                                                                     "source_repo:src-b"]
    assert [c.group for c in read_labels(root)] == ["", ""]


@pytest.mark.parametrize("row, problem", [
    (("x.wav", "rock", "", "", "-1"), "weight that is not a positive number"),
    (("x.wav", "", "", "", ""), "lacks its path or genre"),
])
def test_a_bad_labels_row_is_one_line_naming_the_file_and_line(tmp_path, row, problem):
    from genre_id.dataset import read_labels
    from genre_id.errors import DatasetError

    root = _labelled_folder(tmp_path / "set", [("ok.wav", "pop", "", "", ""), row])
    with pytest.raises(DatasetError, match=rf"labels.csv: line 3 .*{problem}"):
        read_labels(root)


def test_a_labels_file_that_is_not_a_regular_file_is_refused_without_reading(tmp_path):
    from genre_id.dataset import read_labels
    from genre_id.errors import DatasetError

    fifo = tmp_path / "labels.csv"
    os.mkfifo(fifo)  # no writer: reading it would hang
    with pytest.raises(DatasetError, match="not a regular file"):
        read_labels(tmp_path, fifo)


@pytest.mark.parametrize("other", ["./blues/x.wav", "blues//x.wav", "blues/../blues/x.wav"])
def test_one_file_under_two_spellings_is_a_repeated_path(tmp_path, other):
    from genre_id.dataset import read_labels
    from genre_id.errors import DatasetError

    (tmp_path / "labels.csv").write_text(f"path,genre\nblues/x.wav,blues\n{other},jazz\n")
    with pytest.raises(DatasetError, match="line 3 repeats the path"):
        read_labels(tmp_path)


def test_one_file_under_two_hard_links_is_a_repeated_path(tmp_path):
    from genre_id.dataset import read_labels
    from genre_id.errors import DatasetError

    (tmp_path / "blues").mkdir()
    (tmp_path / "jazz").mkdir()
    (tmp_path / "blues" / "x.wav").write_bytes(b"RIFF")
    os.link(tmp_path / "blues" / "x.wav", tmp_path / "jazz" / "y.wav")
    (tmp_path / "labels.csv").write_text("path,genre\nblues/x.wav,blues\njazz/y.wav,jazz\n")
    with pytest.raises(DatasetError, match="line 3 repeats the path"):
        read_labels(tmp_path)


def test_a_quoted_field_keeps_its_unicode_line_breaks(tmp_path):
    from genre_id.dataset import read_labels

    (tmp_path / "labels.csv").write_text('path,genre,group\r\n"a\u2028b.wav",rock,"x\x85y\x0cz"\r\nc.wav,pop,\r\n',
                                         encoding="utf-8", newline="")
    clips = read_labels(tmp_path)
    assert [(c.path.name, c.genre, c.group) for c in clips] == [("a\u2028b.wav", "rock", "group:x\x85y\x0cz"),
                                                               ("c.wav", "pop", "")]


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_labels_csv_link_to_a_fifo_or_device_is_refused_not_passed_over(tmp_path, kind):
    import stat

    from genre_id.dataset import read_labels
    from genre_id.errors import DatasetError

    for genre in ("rock", "pop"):
        (tmp_path / genre).mkdir()
        _write(tmp_path / genre / "a.wav", tone(1.0), 22050)
    special = tmp_path / "special"
    os.mkfifo(special) if kind == "fifo" else os.mknod(special, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    (tmp_path / "labels.csv").symlink_to(special)
    with pytest.raises(DatasetError, match="labels.csv: not a regular file"):
        read_labels(tmp_path)


def test_hidden_files_and_folders_never_reach_a_training_set(tmp_path):
    from genre_id.dataset import scan_folder

    for name in ("rock/a.wav", "rock/._a.wav", "rock/.Trash/b.wav", "jazz/c.wav", ".hidden/d.wav"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, tone(3.5), 22050)
    assert sorted(p.relative_to(tmp_path).as_posix() for p, _ in scan_folder(tmp_path)) == ["jazz/c.wav", "rock/a.wav"]


def test_several_sets_become_one_dataset_with_their_origin_and_no_colliding_tracks(tmp_path):
    from genre_id.dataset import load_sets

    first = _labelled_folder(tmp_path / "first", [("rock/x.wav", "rock", "", "band", ""),
                                                  ("pop/y.wav", "pop", "disco", "", "")])
    second = _labelled_folder(tmp_path / "second", [("rock/x.wav", "rock", "", "band", ""),
                                                    ("pop/z.wav", "pop", "", "", "")])
    data = load_sets([first, second / "labels.csv"], feature_set="levelfree", config=CONFIG, cache_dir=None,
                     workers=1, progress=False)
    assert data.groups.tolist() == ["first/rock/x", "first/pop/y", "second/rock/x", "second/pop/z"]
    assert data.origin.tolist() == ["first", "first", "second", "second"]
    # the labels file's group is shared across sets; a track without one is its own unit, named by its set
    assert data.units.tolist() == ["group:band", "first/pop/y", "group:band", "second/pop/z"]
    assert data.accept.tolist() == ["rock", "pop|disco", "rock", "pop"]


@pytest.mark.parametrize("reader", ["table", "split", "labels"])
@pytest.mark.parametrize("kind", ["fifo", "zero device", "folder"])
def test_text_inputs_that_are_not_regular_files_are_refused_before_a_byte_is_read(tmp_path, reader, kind):
    """A FIFO without a writer would hang, a /dev/zero-like device would fill memory: both are one line."""
    from genre_id.dataset import read_labels, read_split_list, read_table
    from genre_id.errors import DatasetError

    node = tmp_path / "input.csv"
    if kind == "fifo":
        os.mkfifo(node)
    elif kind == "zero device":
        os.mknod(node, 0o600 | __import__("stat").S_IFCHR, os.makedev(1, 5))  # the char device /dev/zero is
    else:
        node.mkdir()
    call = {"table": lambda: read_table(node), "split": lambda: read_split_list(node),
            "labels": lambda: read_labels(tmp_path, node)}[reader]
    with pytest.raises(DatasetError, match="not a regular file|cannot open"):
        call()


def test_an_oversized_split_list_is_refused(tmp_path, monkeypatch):
    import genre_id.dataset as ds
    from genre_id.errors import DatasetError

    big = tmp_path / "list.txt"
    big.write_text("blues/blues.00000.wav\n" * 100)
    monkeypatch.setattr(ds, "MAX_SPLIT_BYTES", 1000)
    with pytest.raises(DatasetError, match="more than the 1000"):
        ds.read_split_list(big)


def _music_with_junk(root):
    """Four tones in two label folders, among files and folders no command may use, and a link loop."""
    real = {"low/a.wav": 220.0, "low/sub/b.wav": 247.0, "high/c.wav": 1760.0, "high/d.wav": 1975.0}
    junk = ["low/._a.wav", "low/.Trash/x.wav", "high/__MACOSX/._c.wav", "high/$RECYCLE.BIN/y.wav",
            "high/@eaDir/c.wav", ".hidden/z.wav", "low/System Volume Information/w.wav"]
    for name in [*real, *junk]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
    for name, freq in real.items():
        _write(root / name, tone(4.0, freq=freq), 22050)
    for name in junk:
        _write(root / name, tone(4.0, freq=3000.0), 22050)
    (root / "low" / "sub" / "loop").symlink_to(root / "low", target_is_directory=True)  # a link back up the tree
    return sorted(str(root / n) for n in real)


def test_one_folder_walker_skips_hidden_and_system_files_everywhere_and_ends_link_loops(tmp_path):
    """Training, identify and index see the same files: no ``._x`` resource forks, ``.Trash``, ``__MACOSX`` ..."""
    from genre_id.cli.common import expand_inputs
    from genre_id.config import AnalysisConfig
    from genre_id.dataset import load_folder
    from genre_id.fingerprint.metadata import find_audio_files

    root = tmp_path / "music"
    want = _music_with_junk(root)
    assert sorted(str(p) for p in find_audio_files(root)) == want
    files, empty = expand_inputs([str(root)])
    assert sorted(files) == want and not empty
    data = load_folder(root, config=AnalysisConfig.for_window(sample_rate=22050, window_seconds=30.0),
                       cache_dir=None, workers=1, progress=False)
    assert sorted(set(data.groups.tolist())) == ["high/c", "high/d", "low/a", "low/sub/b"]


@pytest.mark.train
def test_a_model_trained_on_a_folder_with_hidden_and_system_files_learns_only_the_music(tmp_path):
    from genre_id.cli import main

    _music_with_junk(tmp_path / "music")
    assert main(["train", str(tmp_path / "music"), "--out", str(tmp_path / "model"), "--max-epochs", "2", "-q",
                 "--no-cache"]) == 0
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["training"]["data"]["tracks"] == 4 and meta["labels"] == ["high", "low"]
