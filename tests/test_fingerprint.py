"""Tests of song identification by fingerprint (genre_id.fingerprint, issue 7).

Unit tests run on synthetic "songs" (random note sequences with harmonics and
percussion); the real-audio tests use the shared GTZAN clips and are skipped,
with the reason, when those are absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from genre_id.errors import AudioError, GenreIdError
from genre_id.fingerprint import (
    DEFAULT_PARAMS,
    FileResult,
    FingerprintDBError,
    FingerprintIndex,
    FingerprintParams,
    Match,
    MatchThreshold,
    RecordingNotFoundError,
    SQLiteStore,
    fingerprint,
)
from conftest import SHARED_DATA
from genre_id.perturb import add_noise, mp3_round_trip
from genre_id.analysis import Analyzer
from genre_id.cli.index import add_parser as add_index_parser
from genre_id.formats import format_match
from genre_id.fingerprint.landmarks import find_peaks, pair_peaks
from genre_id.fingerprint.matching import decide, join_hits, rank_candidates
from genre_id.fingerprint.metadata import find_audio_files, title_and_artist, title_and_artist_from_name

REPO = Path(__file__).resolve().parents[1]
SHARED = SHARED_DATA
GTZAN = SHARED / "gtzan_mini"
SR = 22050
FRAME = DEFAULT_PARAMS.frame_seconds


# -- synthetic audio ----------------------------------------------------------------


def synth_song(seed: int, *, seconds: float = 20.0, sr: int = SR) -> np.ndarray:
    """A reproducible 'song': random notes with harmonics, a decaying envelope and noise-burst drums."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    y = np.zeros(n, dtype=np.float64)
    t = 0
    while t < n:
        dur = int(rng.uniform(0.1, 0.4) * sr)
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        tt = np.arange(min(dur, n - t)) / sr
        env = np.exp(-tt * rng.uniform(2, 8))
        note = sum(np.sin(2 * np.pi * f0 * k * tt + rng.uniform(0, 6)) / k for k in (1, 2, 3, 4))
        y[t : t + tt.size] += 0.3 * env * note
        if rng.random() < 0.5:
            hit = min(int(0.05 * sr), n - t)
            y[t : t + hit] += 0.2 * rng.normal(size=hit) * np.exp(-np.arange(hit) / (0.01 * sr))
        t += dur
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


@pytest.fixture(scope="module")
def songs() -> dict[int, np.ndarray]:
    return {seed: synth_song(seed) for seed in range(1, 6)}


SONG_FILES = {1: "Alpha Band - First Song.wav", 2: "second.flac", 3: "sub/03 - Third Song.flac", 4: "sub/fourth.ogg"}


@pytest.fixture()
def library(tmp_path: Path, songs: dict[int, np.ndarray]) -> Path:
    """Four synthetic songs as files (two named 'Artist - Title'), song 5 is left out."""
    lib = tmp_path / "music"
    (lib / "sub").mkdir(parents=True)
    for seed, name in SONG_FILES.items():
        sf.write(lib / name, songs[seed], SR)
    (lib / "notes.txt").write_text("not audio, not an audio extension either")
    return lib


@pytest.fixture()
def index(tmp_path: Path, library: Path):
    with FingerprintIndex.open(tmp_path / "db" / "fp.sqlite") as ix:
        report = ix.add_folder(library)
        assert report.ok and len(report.added) == 4
        yield ix


# -- landmarks ------------------------------------------------------------------------


def test_find_peaks_finds_an_isolated_bump_and_nothing_in_silence() -> None:
    spec = np.full((200, 300), -60.0, dtype=np.float32)
    spec[50, 100] = 0.0
    frames, bins = find_peaks(spec)
    assert frames.tolist() == [100] and bins.tolist() == [50]
    silent = np.full((200, 300), -120.0, dtype=np.float32)
    assert find_peaks(silent)[0].size == 0


def test_pair_peaks_packs_bin_gap_and_time_gap() -> None:
    frames = np.array([0, 3, 10], dtype=np.int64)
    bins = np.array([100, 90, 130], dtype=np.int64)
    hashes, times = pair_peaks(frames, bins)
    expected = [
        (100 << 13) | ((-10 & 0x7F) << 6) | 3,
        (100 << 13) | ((30 & 0x7F) << 6) | 10,
        (90 << 13) | ((40 & 0x7F) << 6) | 7,
    ]
    assert sorted(hashes.tolist()) == sorted(expected)
    assert sorted(times.tolist()) == [0, 0, 3]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 459)), min_size=0, max_size=120, unique=True))
def test_pair_peaks_respects_the_target_zone_and_fan_out(peaks: list[tuple[int, int]]) -> None:
    peaks.sort()
    frames = np.array([p[0] for p in peaks], dtype=np.int64)
    bins = np.array([p[1] for p in peaks], dtype=np.int64)
    hashes, times = pair_peaks(frames, bins)
    p = DEFAULT_PARAMS
    dt = hashes & 0x3F
    df = ((hashes >> 6) & 0x7F).astype(np.int64)
    df = np.where(df >= 64, df - 128, df)
    f1 = hashes >> 13
    assert np.all((dt >= p.min_dt) & (dt <= p.max_dt))
    assert np.all(np.abs(df) <= p.max_df)
    anchors = set(zip(frames.tolist(), bins.tolist()))
    partners = set(anchors)
    for f, b, d, g in zip(times.tolist(), f1.tolist(), dt.tolist(), df.tolist()):
        assert (f, b) in anchors and (f + d, b + g) in partners
    if times.size:
        _, per_anchor = np.unique(np.stack([times, f1]), axis=1, return_counts=True)
        assert per_anchor.max() <= p.fan_out


def test_fingerprint_is_deterministic_and_ignores_level(songs: dict[int, np.ndarray]) -> None:
    a = fingerprint(songs[1], sample_rate=SR)
    b = fingerprint(songs[1], sample_rate=SR)
    assert np.array_equal(a.hashes, b.hashes) and np.array_equal(a.times, b.times)
    assert 50 < len(a) / a.duration < 1000  # hashes per second of audio
    quiet = fingerprint(songs[1] * 0.05, sample_rate=SR)
    shared = set(zip(a.hashes.tolist(), a.times.tolist())) & set(zip(quiet.hashes.tolist(), quiet.times.tolist()))
    assert len(shared) >= 0.95 * len(a)


def test_fingerprint_of_silence_is_empty_and_nan_is_refused() -> None:
    assert len(fingerprint(np.zeros(SR * 3, dtype=np.float32), sample_rate=SR)) == 0
    assert len(fingerprint(np.zeros(0, dtype=np.float32), sample_rate=SR)) == 0
    bad = np.zeros(SR, dtype=np.float32)
    bad[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        fingerprint(bad, sample_rate=SR)


# -- matching -------------------------------------------------------------------------


def test_join_hits_pairs_every_equal_hash() -> None:
    query = np.array([5, 7, 5, 9])
    hits = np.array([7, 5, 11])
    qi, hi = join_hits(query, hits)
    pairs = sorted(zip(qi.tolist(), hi.tolist()))
    assert pairs == [(0, 1), (1, 0), (2, 1)]


def test_rank_candidates_finds_the_consistent_offset() -> None:
    rng = np.random.default_rng(0)
    query_times = np.arange(100)
    # recording 7: 40 hits at offset 250 (±1 jitter); recording 3: 60 hits scattered.
    qi_true = rng.choice(100, 40, replace=False)
    t_true = query_times[qi_true] + 250 + rng.integers(-1, 2, 40)
    qi_noise = rng.integers(0, 100, 60)
    t_noise = rng.integers(0, 5000, 60)
    qi = np.concatenate([qi_true, qi_noise])
    recs = np.concatenate([np.full(40, 7), np.full(60, 3)])
    times = np.concatenate([t_true, t_noise])
    cands = rank_candidates(query_times, qi, recs, times, top=2)
    assert cands[0].recording_id == 7 and abs(cands[0].offset_frames - 250) <= 1
    assert cands[0].score >= 35 and cands[1].recording_id == 3 and cands[1].score <= 5
    assert decide(cands, threshold=MatchThreshold(min_score=15, min_ratio=3)) == cands[0]
    assert decide(cands, threshold=MatchThreshold(min_score=50, min_ratio=3)) is None
    assert decide([], threshold=MatchThreshold()) is None


def test_threshold_needs_both_absolute_score_and_ratio() -> None:
    th = MatchThreshold(min_score=15, min_ratio=3.0)
    assert th.accepts(30, 10) and th.accepts(15, 0)
    assert not th.accepts(14, 0)  # too few aligned hashes
    assert not th.accepts(60, 21)  # too close to the runner-up


# -- the index ------------------------------------------------------------------------


def test_excerpt_with_noise_matches_right_song_at_right_offset(index: FingerprintIndex, library: Path, songs) -> None:
    rng = np.random.default_rng(3)
    for seed, start in ((2, 7.3), (3, 12.05), (4, 0.5), (1, 14.9)):
        q = add_noise(songs[seed][int(start * SR) : int((start + 5) * SR)], snr_db=10, rng=rng)
        m = index.match(q, SR)
        assert m is not None and Path(m.file) == (library / SONG_FILES[seed]).resolve()
        assert abs(m.offset - start) <= 0.1
        assert m.score >= index.threshold.min_score


def _db_path(index: FingerprintIndex) -> Path:
    assert isinstance(index.store, SQLiteStore)
    return index.store.path


def test_match_names_title_and_artist_from_the_file_name(index: FingerprintIndex, songs) -> None:
    m = index.match(songs[1][SR * 4 : SR * 9], SR)
    assert m is not None and (m.title, m.artist) == ("First Song", "Alpha Band")
    assert abs(m.offset - 4.0) <= 0.1
    d = m.to_dict()
    assert json.loads(json.dumps(d)) == d and d["title"] == "First Song" and d["offset"] == pytest.approx(4.0, abs=0.1)
    m3 = index.match(songs[3][SR * 2 : SR * 7], SR)
    assert m3 is not None and (m3.title, m3.artist) == ("Third Song", None)


def test_unknown_song_and_silence_give_no_match(index: FingerprintIndex, songs) -> None:
    assert index.match(songs[5][SR * 3 : SR * 8], SR) is None
    assert index.match(songs[5], SR) is None
    assert index.match(np.zeros(SR * 5, dtype=np.float32), SR) is None
    assert index.match(np.zeros(0, dtype=np.float32), SR) is None


def test_readding_unchanged_files_does_nothing(index: FingerprintIndex, library: Path) -> None:
    before = index.list()
    hashes_before = index.store.stats().hashes
    report = index.add_folder(library)
    assert report.added == [] and len(report.unchanged) == 4 and report.ok
    assert index.add(library / "second.flac") is False
    # The same bytes under another name are the same recording.
    copy = library.parent / "copy.flac"
    copy.write_bytes((library / "second.flac").read_bytes())
    assert index.add(copy) is False
    assert index.list() == before and index.store.stats().hashes == hashes_before


def test_changed_file_replaces_its_old_entry(index: FingerprintIndex, library: Path, songs) -> None:
    path = library / "second.flac"
    sf.write(path, songs[5], SR)
    assert index.add(path) is True
    recs = [r for r in index.list() if Path(r.path) == path.resolve()]
    assert len(recs) == 1 and len(index.list()) == 4
    m = index.match(songs[5][SR * 5 : SR * 10], SR)
    assert m is not None and Path(m.file) == path.resolve()
    assert index.match(songs[2][SR * 5 : SR * 10], SR) is None


def test_remove_by_id_and_by_path(index: FingerprintIndex, library: Path, songs) -> None:
    by_path = index.remove(library / "second.flac")
    assert by_path.title == "second"
    assert index.match(songs[2][SR * 3 : SR * 8], SR) is None
    first = next(r for r in index.list() if r.title == "First Song")
    assert index.remove(str(first.id)).id == first.id
    assert index.match(songs[1][SR * 3 : SR * 8], SR) is None
    assert len(index.list()) == 2
    # Their hashes are gone, the others' remain.
    assert index.store.stats().hashes == sum(r.n_hashes for r in index.list())
    con = sqlite3.connect(_db_path(index))
    assert con.execute("SELECT COUNT(*) FROM hashes").fetchone()[0] == sum(r.n_hashes for r in index.list())
    with pytest.raises(RecordingNotFoundError, match="no such recording"):
        index.remove(first.id)
    with pytest.raises(RecordingNotFoundError):
        index.remove(library / "nothing.wav")
    with pytest.raises(RecordingNotFoundError, match="^99999999999999999999: no such recording"):
        index.remove("99999999999999999999")  # past SQLite's 64-bit ids: not found, not a damaged database
    assert index.add(library / "second.flac") is True  # can come back


def test_broken_files_are_reported_and_skipped(tmp_path: Path, library: Path) -> None:
    (library / "broken.mp3").write_bytes(b"this is not an mp3 at all" * 10)
    (library / "empty.wav").write_bytes(b"")
    sf.write(library / "silent.wav", np.zeros(SR * 3, dtype=np.float32), SR)
    with FingerprintIndex.open(tmp_path / "fp.sqlite") as ix:
        seen: list[FileResult] = []
        report = ix.add_folder(library, on_file=seen.append)
        assert len(report.added) == 4 and not report.ok
        failed = {p.name: msg for p, msg in report.failed}
        assert set(failed) == {"broken.mp3", "empty.wav", "silent.wav"}
        for name, msg in failed.items():
            assert name in msg and "\n" not in msg
        assert "empty" in failed["empty.wav"]
        assert len(seen) == 7 and len(ix.list()) == 4


def test_find_audio_files_recurses_by_extension(library: Path) -> None:
    names = [p.name for p in find_audio_files(library)]
    assert sorted(names) == sorted(["Alpha Band - First Song.wav", "second.flac", "03 - Third Song.flac", "fourth.ogg"])
    with pytest.raises(AudioError, match="no such folder"):
        find_audio_files(library / "missing")


def test_titles_from_tags_else_file_name(tmp_path: Path, songs) -> None:
    assert title_and_artist_from_name("Nina Simone - Sinnerman.mp3") == ("Sinnerman", "Nina Simone")
    assert title_and_artist_from_name("07 - Sinnerman.flac") == ("Sinnerman", None)
    assert title_and_artist_from_name("07. Sinnerman.flac") == ("Sinnerman", None)
    assert title_and_artist_from_name("blues.00001.wav") == ("blues.00001", None)
    assert title_and_artist_from_name("Cab_Calloway_-_Jumpin_Jive.flac") == ("Jumpin Jive", "Cab Calloway")
    assert title_and_artist_from_name("my_song.flac") == ("my_song", None)  # underscores alone are left as they are
    tagged = tmp_path / "x - y.flac"
    sf.write(tagged, songs[1][: SR * 2], SR)
    import mutagen

    f = mutagen.File(tagged, easy=True)
    f["title"], f["artist"] = "Real Title", "Real Artist"
    f.save()
    assert title_and_artist(tagged) == ("Real Title", "Real Artist")
    (tmp_path / "A - B.mp3").write_bytes(b"garbage")
    assert title_and_artist(tmp_path / "A - B.mp3") == ("B", "A")


def test_long_file_is_fingerprinted_in_blocks(tmp_path: Path, songs, monkeypatch) -> None:
    """A file longer than one decoding block still matches at offsets past the block boundaries."""
    from genre_id.fingerprint import index as index_module

    monkeypatch.setattr(index_module, "BLOCK_SECONDS", 30.0)
    y = np.concatenate([songs[1], songs[2], songs[3], songs[4]])  # 80 s: blocks 0-30, 30-60, 50-80
    path = tmp_path / "long.flac"
    sf.write(path, y, SR)
    with FingerprintIndex.open(tmp_path / "fp.sqlite") as ix:
        assert ix.add(path)
        assert ix.list()[0].duration == pytest.approx(80.0, abs=0.01)
        for start in (10.0, 33.0, 71.5):
            m = ix.match(y[int(start * SR) : int((start + 5) * SR)], SR)
            assert m is not None and abs(m.offset - start) <= 0.1
        # and a long query is judged in segments: the whole file matches at offset 0.
        whole = ix.match_file(path)
        assert whole is not None and abs(whole.offset) <= 0.1


# -- the store ------------------------------------------------------------------------


def test_database_is_wal_and_refuses_other_parameters(tmp_path: Path) -> None:
    db = tmp_path / "fp.sqlite"
    SQLiteStore.open(db).close()
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other = FingerprintParams(fan_out=3)
    with pytest.raises(FingerprintDBError, match=str(db.name)):
        SQLiteStore.open(db, params=other)
    with pytest.raises(FingerprintDBError, match="no such fingerprint database"):
        FingerprintIndex.open(tmp_path / "missing.sqlite", create=False)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(FingerprintDBError, match="junk.sqlite"):
        FingerprintIndex.open(junk)


def test_interrupted_add_leaves_database_unchanged(index: FingerprintIndex, songs, tmp_path: Path) -> None:
    before = index.list()
    n_hashes = index.store.stats().hashes
    path = tmp_path / "new.flac"
    sf.write(path, songs[5], SR)
    calls = {"n": 0}

    def abort_midway() -> int:
        calls["n"] += 1
        return 1 if calls["n"] == 50 else 0  # let some rows in, then abort the statement once

    conn: sqlite3.Connection = index.store._conn  # type: ignore[attr-defined]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    conn.set_progress_handler(abort_midway, 100)
    with pytest.raises(FingerprintDBError, match="interrupted"):
        index.add(path)
    conn.set_progress_handler(None, 0)
    conn.set_trace_callback(None)
    # The abort came while hashes were being written, after the recording's row.
    assert any(s.startswith("INSERT INTO recordings") for s in statements)
    assert sum(s.startswith("INSERT OR IGNORE INTO hashes") for s in statements) > 1
    assert "COMMIT" not in statements
    assert index.list() == before
    assert conn.execute("SELECT COUNT(*) FROM hashes").fetchone()[0] == n_hashes
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert index.add(path) is True  # and it works afterwards


_ADDER = textwrap.dedent(
    """
    import sys
    from genre_id.fingerprint import FingerprintIndex
    with FingerprintIndex.open(sys.argv[1]) as ix:
        for f in sys.argv[2:]:
            ix.add(f)
    """
)


def test_two_processes_can_add_at_once(tmp_path: Path, songs) -> None:
    files = []
    for seed in range(1, 6):
        for k in range(2):  # ten distinct files (two levels of each song)
            p = tmp_path / f"s{seed}_{k}.wav"
            sf.write(p, songs[seed] * (0.5 + 0.4 * k), SR)
            files.append(str(p))
    db = tmp_path / "shared.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Overlapping halves: both processes try files 4-5; each must be stored once.
    procs = [
        subprocess.Popen([sys.executable, "-c", _ADDER, str(db), *part], env=env, stderr=subprocess.PIPE, text=True)
        for part in (files[:6], files[4:])
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with FingerprintIndex.open(db, create=False) as ix:
        recs = ix.list()
        assert sorted(r.path for r in recs) == sorted(str(Path(f).resolve()) for f in files)
        con = sqlite3.connect(db)
        assert con.execute("SELECT COUNT(*) FROM hashes").fetchone()[0] == sum(r.n_hashes for r in recs)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- command line ---------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genre-id")
    add_index_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return int(args.func(args))


def test_cli_add_list_remove(tmp_path: Path, library: Path, capsys) -> None:
    db = str(tmp_path / "cli.sqlite")
    (library / "broken.flac").write_bytes(b"fLaC but not really")
    assert _run(["index", "add", str(library), "--db", db]) == 2
    out, err = capsys.readouterr()
    assert "added 4" in out and "failed 1" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "broken.flac" in lines[0]
    assert "Traceback" not in err
    (library / "broken.flac").unlink()
    assert _run(["index", "add", str(library), "--db", db]) == 0
    assert "added 0, unchanged 4" in capsys.readouterr().out
    assert _run(["index", "list", "--db", db, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 4 and {"First Song", "second", "Third Song", "fourth"} == {r["title"] for r in listed}
    assert _run(["index", "list", "--db", db]) == 0
    assert "Alpha Band" in capsys.readouterr().out
    assert _run(["index", "remove", str(listed[0]["id"]), "--db", db]) == 0
    assert "removed" in capsys.readouterr().out
    assert _run(["index", "remove", "999", "--db", db]) == 2
    assert capsys.readouterr().err.startswith("error: 999: no such recording")
    assert _run(["index", "add", str(tmp_path / "nowhere"), "--db", db]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    assert _run(["index", "list", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no such fingerprint database" in capsys.readouterr().err


def test_identify_match_and_format(tmp_path: Path, index: FingerprintIndex, songs) -> None:
    query = tmp_path / "query.wav"
    sf.write(query, songs[4][SR * 6 : SR * 12], SR)
    db = str(_db_path(index))
    with Analyzer.load(db=db) as analyzer:
        report = analyzer.analyze(query)
    assert report.ok and report.searched and report.prediction is not None
    m = report.match.to_dict()
    assert m["title"] == "fourth" and report.to_dict()["match"] == m
    assert isinstance(m["offset"], float) and abs(m["offset"] - 6.0) <= 0.1
    line = format_match(m)
    assert line.startswith('match: "fourth" by unknown artist (') and "at 6.0 s" in line
    sf.write(query, songs[5][SR * 6 : SR * 12], SR)
    with Analyzer.load(db=db) as analyzer:
        report = analyzer.analyze(query)
    assert report.ok and report.match is None and report.to_dict()["match"] is None
    assert format_match(None) == "match: no match"
    medley = format_match({**m, "offset": -150.0})  # the recording starts 150 s into the clip
    assert "starting 150.0 s into the clip" in medley and "-150" not in medley
    query.write_bytes(b"junk")
    with Analyzer.load(db=db) as analyzer:
        report = analyzer.analyze(query)
    assert not report.ok and report.error.startswith(f"{query}: ") and report.to_dict() == {
        "file": str(query), "error": report.error}


def test_identify_opens_the_db_once_and_reports_each_bad_file(
    tmp_path: Path, index: FingerprintIndex, songs, monkeypatch, capsys
) -> None:
    """``identify --db``: one open for every file, closed at the end; a file that fails is one line naming it."""
    from genre_id.cli import main

    queries = {name: tmp_path / f"{name}.wav" for name in ("q4", "nofp", "q1")}
    sf.write(queries["q4"], songs[4][SR * 6 : SR * 12], SR)
    sf.write(queries["nofp"], songs[2][SR * 2 : SR * 8], SR)
    sf.write(queries["q1"], songs[1][SR * 3 : SR * 9], SR)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF and nothing else")
    opened, closed = [], []
    open_db = FingerprintIndex.__dict__["open"].__func__
    close_db = FingerprintIndex.close
    match_landmarks = FingerprintIndex.match_landmarks
    calls = []

    def counting_open(cls, *args, **kwargs):
        ix = open_db(cls, *args, **kwargs)
        opened.append(ix)
        return ix

    def the_second_lookup_fails(self, landmarks):  # nofp's: the database fails while reading
        calls.append(len(landmarks))
        if len(calls) == 2:
            raise FingerprintDBError("fp.sqlite: planted read failure")
        return match_landmarks(self, landmarks)

    monkeypatch.setattr(FingerprintIndex, "open", classmethod(counting_open))
    monkeypatch.setattr(FingerprintIndex, "close", lambda self: (closed.append(self), close_db(self)))
    monkeypatch.setattr(FingerprintIndex, "match_landmarks", the_second_lookup_fails)
    argv = ["identify", "--workers", "1", "--db", str(_db_path(index)),
            str(queries["q4"]), str(broken), str(queries["nofp"]), str(queries["q1"])]

    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert len(opened) == 1 and closed == opened, "one database connection for all the files, closed at the end"
    lines = out.splitlines()
    assert [line.split("  ")[0] for line in lines[0::2]] == [str(queries["q4"]), str(queries["q1"])], out
    assert lines[1].startswith('  match: "fourth"') and lines[3].startswith('  match: "First Song" by Alpha Band')
    errors = err.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in err, err
    assert errors[0].startswith(f"error: {broken}: ")
    assert errors[1] == f"error: {queries['nofp']}: fp.sqlite: planted read failure"


def test_file_sha256_is_the_cache_digest_with_one_line_errors(tmp_path: Path) -> None:
    from genre_id.cache import file_digest
    from genre_id.fingerprint.metadata import file_sha256

    f = tmp_path / "a.bin"
    f.write_bytes(os.urandom(3 << 20))
    assert file_sha256(f) == file_digest(f) and len(file_sha256(f)) == 64
    with pytest.raises(AudioError, match="missing.bin: no such file"):
        file_sha256(tmp_path / "missing.bin")
    with pytest.raises(AudioError, match="is a directory"):
        file_sha256(tmp_path)


def test_hashing_refuses_a_fifo_a_device_and_a_huge_file_before_reading(tmp_path: Path) -> None:
    """index add/remove and the cache digest: a FIFO never blocks, a device or a 100 GB sparse file is never read."""
    import stat

    os.mkfifo(tmp_path / "pipe.wav")
    os.mknod(tmp_path / "zero.wav", 0o666 | stat.S_IFCHR, os.makedev(1, 5))  # a /dev/zero of our own
    with open(tmp_path / "big.wav", "wb") as fh:
        fh.truncate(100 << 30)
    code = textwrap.dedent("""
        import sys
        from genre_id.errors import AudioError
        from genre_id.fingerprint.metadata import file_sha256
        try:
            file_sha256(sys.argv[1])
        except AudioError as exc:
            print(exc)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for name, problem in (("pipe.wav", "not a regular file"), ("zero.wav", "not a regular file"),
                          ("big.wav", "more than the")):
        path = tmp_path / name
        r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=30,
                           env=env)
        assert r.stdout.startswith(f"{path}: ") and problem in r.stdout and r.stdout.count("\n") == 1, r
        res = subprocess.run([sys.executable, "-m", "genre_id.cli", "index", "add", "--db",
                              str(tmp_path / "f.sqlite"), str(path)], capture_output=True, text=True, timeout=30,
                             env=env)
        assert res.returncode == 2 and problem in res.stderr and "Traceback" not in res.stderr, res


def test_a_file_without_samples_is_refused_naming_it(tmp_path: Path, index: FingerprintIndex) -> None:
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(AudioError, match="empty.wav: no audio samples"):
        index.match_file(empty)
    with pytest.raises(AudioError, match="empty.wav"):
        index.add(empty)


def test_match_to_dict_is_json_with_the_promised_keys() -> None:
    m = Match(
        recording_id=3,
        title="T",
        artist=None,
        file="/x.flac",
        offset=12.345,
        score=40,
        second_score=2,
        query_hashes=800,
    )
    d = m.to_dict()
    assert {"title", "artist", "file", "offset", "score"} <= set(d) and d["artist"] is None and d["offset"] == 12.35
    assert format_match(d) == 'match: "T" by unknown artist (/x.flac, at 12.3 s, score 40)'


# -- real audio -----------------------------------------------------------------------


def _real_clips(n: int) -> list[Path]:
    if not GTZAN.is_dir():
        pytest.skip(f"real clips absent: {GTZAN} does not exist (set GENRE_ID_SHARED_DATA)")
    clips = [sorted(d.glob("*.flac"))[:2] for d in sorted(GTZAN.iterdir()) if d.is_dir()]
    flat = [c for pair in clips for c in pair]
    if len(flat) < n:
        pytest.skip(f"real clips absent: fewer than {n} clips under {GTZAN}")
    return flat[:n]


@pytest.fixture(scope="module")
def real_index(tmp_path_factory):
    clips = _real_clips(8)  # 2 clips of each of 4 genres: 7 indexed, the last one not
    db = tmp_path_factory.mktemp("real") / "fp.sqlite"
    with FingerprintIndex.open(db) as ix:
        for c in clips[:7]:
            assert ix.add(c)
        yield ix, clips[:7], clips[7:]


def test_real_excerpt_with_noise_matches_clip_and_offset(real_index) -> None:
    ix, indexed, _ = real_index
    rng = np.random.default_rng(7)
    for clip in indexed[:4]:
        y, sr = sf.read(clip, dtype="float32")
        start = float(rng.uniform(0, 24))
        q = add_noise(y[int(start * sr) : int((start + 5) * sr)], snr_db=10, rng=rng)
        m = ix.match(q, sr)
        assert m is not None and Path(m.file) == clip.resolve(), clip
        assert abs(m.offset - start) <= 0.1


def test_real_excerpt_after_mp3_and_gain_matches(real_index) -> None:
    ix, indexed, _ = real_index
    y, sr = sf.read(indexed[1], dtype="float32")
    q, _ = mp3_round_trip(y[sr * 11 : sr * 16], sr, kbps=128)
    m = ix.match(q * 0.3, sr)
    assert m is not None and Path(m.file) == indexed[1].resolve() and abs(m.offset - 11.0) <= 0.1


def test_real_unindexed_clip_gives_no_match(real_index) -> None:
    ix, _, unindexed = real_index
    y, sr = sf.read(unindexed[0], dtype="float32")
    assert ix.match(y, sr) is None
    for start in (0, 12, 24):
        assert ix.match(y[sr * start : sr * (start + 5)], sr) is None


def test_the_package_exports_the_fingerprint_api_lazily():
    import subprocess
    import sys

    code = ("import sys, genre_id; assert 'genre_id.fingerprint' not in sys.modules; "
            "from genre_id import FingerprintIndex, Match; "
            "from genre_id.fingerprint import FingerprintIndex as F; assert FingerprintIndex is F; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "ok", out.stderr


_COUNT_DECODES = '''
import os
import genre_id.audio as _audio
import genre_id.fingerprint.index as _index

_log = os.environ["GENRE_ID_TEST_DECODES"]


def _counting(inner):
    def iter_windows(path, **kw):
        with open(_log, "a") as f:
            f.write(os.fsdecode(str(path)) + "\\n")
        return inner(path, **kw)
    return iter_windows


_index.iter_windows = _counting(_audio.iter_windows)
_audio.iter_windows = _counting(_audio.iter_windows)
'''


@pytest.mark.slow
def test_identify_with_a_database_decodes_each_file_once_in_the_workers(tmp_path, real_index) -> None:
    """``identify --db --workers 2``: the genre windows and the fingerprint come from one decode, in the workers."""
    import json
    import os
    import subprocess
    import sys

    ix, indexed, _ = real_index
    clips = _real_clips(20)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_COUNT_DECODES)
    log = tmp_path / "decodes.txt"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "GENRE_ID_TEST_DECODES": str(log),
           "PYTHONPATH": os.pathsep.join([str(hook), str(root), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "genre_id.cli", "identify", "--db", str(_db_path(ix)), "--workers",
                          "2", "--json", *map(str, clips)], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr
    reports = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["file"] for r in reports] == [str(c) for c in clips]
    assert [Path(r["match"]["file"]) if r["match"] else None for r in reports[:7]] == [c.resolve() for c in indexed]
    decoded = log.read_text().splitlines()
    assert sorted(decoded) == sorted(str(c) for c in clips), "each file decoded once, for the genre and the song"
