"""Formats read through FFmpeg (PyAV) when libsndfile cannot: m4a (AAC, ALAC), .aac, .wma, webm, video tracks.

Every file is encoded by the test itself with PyAV, from real GTZAN clips
where the content matters (does the decoded audio match what was encoded?)
and from synthetic audio where only the length does (memory, truncation).
"""

from __future__ import annotations

import fractions
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st

from genre_id import audio
from genre_id.dataset import scan_folder
from genre_id.errors import AudioError
from test_fuzz import _decode_everything, _fuzz_settings, _mutate, _mutation

av = pytest.importorskip("av")

SR = 22050


def encode(path: Path, channels: np.ndarray, sr: int, *, fmt: str, codec: str, rate: int | None = None,
           video: bool = False, bit_rate: int | None = None, options: dict | None = None) -> Path:
    """Write ``channels`` (shape ``(channels, n)``, float32 at ``sr`` Hz) with FFmpeg's ``codec`` in ``fmt``."""
    rate = rate or sr
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels.shape[0]]
    with av.open(str(path), "w", format=fmt, options=options or {}) as out:
        if video:  # a tiny moving picture at 10 frames per second, before the audio track
            vs = out.add_stream("mpeg4", rate=10)
            vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        st = out.add_stream(codec, rate=rate)
        st.layout = layout
        if bit_rate:
            st.bit_rate = bit_rate
        sample_format = st.codec_context.codec.audio_formats[0].name
        st.format = sample_format
        resampler = av.AudioResampler(format=sample_format, layout=layout, rate=rate)
        frames_done = 0

        def mux(frames):
            for rf in frames:
                for packet in st.encode(rf):
                    out.mux(packet)

        for i in range(0, channels.shape[1], 4096):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(channels[:, i:i + 4096], dtype=np.float32),
                                               format="fltp", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = sr, i, fractions.Fraction(1, sr)
            mux(resampler.resample(frame))
            while video and frames_done / 10 <= (i + 4096) / sr:
                picture = np.full((48, 64, 3), frames_done % 255, np.uint8)
                vf = av.VideoFrame.from_ndarray(picture, format="rgb24")
                vf.pts = frames_done
                for packet in vs.encode(vf):
                    out.mux(packet)
                frames_done += 1
        mux(resampler.resample(None))
        mux([None])
        if video:
            for packet in vs.encode(None):
                out.mux(packet)
    return path


@pytest.fixture(scope="module")
def two_clips(mini_dir) -> tuple[np.ndarray, np.ndarray]:
    """10 s of two real GTZAN clips (jazz, rock) at 22050 Hz and the same level: the channels of the test files."""
    left, sr1 = sf.read(mini_dir / "jazz" / "jazz.00000.flac", dtype="float32", frames=10 * SR)
    right, sr2 = sf.read(mini_dir / "rock" / "rock.00003.flac", dtype="float32", frames=10 * SR)
    assert sr1 == sr2 == SR
    left, right = left / np.sqrt(np.mean(left ** 2)), right / np.sqrt(np.mean(right ** 2))
    peak = max(np.abs(left).max(), np.abs(right).max())
    return 0.9 * left / peak, 0.9 * right / peak  # no clipping in 16-bit codecs


def _aligned(got: np.ndarray, want: np.ndarray, *, max_lag: int = 4096) -> tuple[np.ndarray, np.ndarray, int]:
    """``got`` and ``want`` over their common part, after the lag (encoder delay) that best lines them up."""
    probe = want[SR:3 * SR]
    scores = np.correlate(got[SR - max_lag:3 * SR + max_lag], probe, mode="valid")
    lag = int(np.argmax(scores)) - max_lag
    start = max(0, -lag)
    n = min(got.size - lag, want.size) - start
    return got[start + lag:start + lag + n], want[start:start + n], lag


CASES = {
    # name: (extension, container, codec, encode options); all stereo at 22050 Hz unless said
    "m4a AAC": (".m4a", "ipod", "aac", {}),
    "m4a ALAC (lossless)": (".m4a", "ipod", "alac", {}),
    "aac ADTS (no container)": (".aac", "adts", "aac", {}),
    "wma": (".wma", "asf", "wmav2", {"bit_rate": 128000}),
    "webm opus at 48 kHz": (".webm", "webm", "libopus", {"rate": 48000}),
    "opus (read by libsndfile)": (".opus", "ogg", "libopus", {"rate": 48000}),
    "mp4 video with AAC": (".mp4", "mp4", "aac", {"video": True}),
    "mkv video with mp3": (".mkv", "matroska", "libmp3lame", {"video": True}),
}


@pytest.mark.parametrize("case", CASES)
def test_each_format_decodes_to_the_average_of_its_channels(tmp_path, two_clips, case):
    ext, fmt, codec, kw = CASES[case]
    left, right = two_clips
    if codec == "wmav2":
        try:
            av.codec.Codec("wmav2", "w")
        except av.codec.codec.UnknownCodecError:
            pytest.skip("this FFmpeg build has no WMA encoder")
    path = encode(tmp_path / f"clip{ext}", np.stack([left, right]), SR, fmt=fmt, codec=codec, **kw)
    head = audio.info(path)
    assert (head.sample_rate, head.channels) == (kw.get("rate", SR), 2)
    assert abs(head.duration - 10.0) < 0.15 or ext == ".aac"  # ADTS states no length; FFmpeg guesses
    got, _ = audio.load(path, sample_rate=SR)
    assert got.dtype == np.float32 and got.ndim == 1
    assert abs(got.size - left.size) < 0.15 * SR, got.size
    mono = (left + right) / 2
    g, w, lag = _aligned(got, mono)
    assert abs(lag) <= 2048 and g.size > 9 * SR
    r = np.corrcoef(g, w)[0, 1]
    level = np.sqrt(np.mean(g ** 2) / np.mean(w ** 2))
    if "lossless" in case:
        assert lag == 0 and np.max(np.abs(g - w)) < 1e-4  # 16-bit rounding only
    else:
        assert r > 0.98 and 0.9 < level < 1.1, (r, level)
    # Both channels count: the decoded audio is clearly closer to their mean than to either one.
    for one in (left, right):
        g1, w1, _ = _aligned(got, one)
        assert np.corrcoef(g1, w1)[0, 1] < r - 0.1


def test_any_channel_count_is_averaged(tmp_path, two_clips):
    left, _ = two_clips
    six = np.zeros((6, left.size), np.float32)
    six[0] = left  # front left only: the mean of six channels is a sixth of it
    path = encode(tmp_path / "surround.m4a", six, SR, fmt="ipod", codec="aac")
    assert audio.info(path).channels == 6
    g, w, _ = _aligned(audio.load(path)[0], left / 6)
    assert np.corrcoef(g, w)[0, 1] > 0.98
    assert 0.9 < np.sqrt(np.mean(g ** 2) / np.mean(w ** 2)) < 1.1


def test_ffmpeg_windows_match_the_whole_decode_and_stay_bounded(tmp_path):
    """iter_windows over a 4-minute m4a: the same samples as load, never more than about two windows held."""
    rng = np.random.default_rng(0)
    seconds, window = 240, 10
    y = (0.1 * rng.standard_normal(seconds * SR)).astype(np.float32)
    path = encode(tmp_path / "long.m4a", y[None, :], SR, fmt="ipod", codec="aac")
    whole, _ = audio.load(path)
    del y
    tracemalloc.start()
    try:
        starts, total, peak_between = [], 0, 0
        for start, x in audio.iter_windows(path, sample_rate=SR, window_seconds=window, min_seconds=3.0):
            starts.append(start)
            i = round(start * SR)
            assert np.array_equal(x, whole[i:i + x.size])
            total += x.size
            peak_between = max(peak_between, tracemalloc.get_traced_memory()[1])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [round(s * SR) for s in starts] == [a for a, _ in audio.window_spans(whole.size, window * SR)]
    # Two windows are held (the one yielded, the one read after it), a third while a block is joined;
    # decoding the whole file at once would need 24.
    one_window = window * SR * 4
    assert whole.nbytes >= 24 * one_window
    assert max(peak, peak_between) < 6 * one_window, (peak, one_window)


# --- truncated and damaged files -------------------------------------------------------------------


def _cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    cut = path.with_name(f"cut-{path.name}")
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


def _one_line_error(fn, path: Path, words: str) -> str:
    with pytest.raises(AudioError) as info:
        fn(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and words in message, message
    return message


@pytest.mark.parametrize("ext,fmt,codec,kw,words", [
    (".mkv", "matroska", "aac", {"video": True}, "file is truncated (its header promises 10.0"),
    (".webm", "webm", "libopus", {"rate": 48000}, "file is truncated (its header promises 10.0"),
    (".wma", "asf", "wmav2", {"bit_rate": 128000}, "truncated"),  # cut inside a packet: the decoder fails
    (".m4a", "ipod", "aac", {}, "truncated or incomplete (an MP4 file without its moov index)"),
    (".m4a", "ipod", "aac", {"options": {"movflags": "faststart"}}, "audio data is corrupt or truncated"),
    (".aac", "adts", "aac", {}, "audio data is corrupt or truncated"),
])
def test_truncated_files_are_refused_in_one_line(tmp_path, ext, fmt, codec, kw, words):
    rng = np.random.default_rng(1)
    y = (0.1 * rng.standard_normal(10 * SR)).astype(np.float32)
    whole = encode(tmp_path / f"whole{ext}", np.stack([y, y]), SR, fmt=fmt, codec=codec, **kw)
    assert abs(audio.load(whole, sample_rate=SR)[0].size - y.size) < 0.15 * SR  # the complete file is fine
    cut = _cut(whole, 0.6)
    _one_line_error(audio.load, cut, words)
    _one_line_error(lambda p: list(audio.iter_windows(p, sample_rate=SR, window_seconds=2.0, min_seconds=1.0)), cut, words)


def test_a_video_without_sound_says_so(tmp_path):
    path = tmp_path / "silent film.mp4"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=10)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            vf = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i, np.uint8), format="rgb24")
            vf.pts = i
            for packet in vs.encode(vf):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    _one_line_error(audio.load, path, "has no audio track")


def test_a_playlist_is_not_followed(tmp_path, monkeypatch):
    """FFmpeg demuxers that open other files or URLs (concat, HLS) are not allowed: a local file stays unread."""
    encode(tmp_path / "private.m4a", np.zeros((1, 5 * SR), np.float32), SR, fmt="ipod", codec="aac")
    monkeypatch.chdir(tmp_path)  # where FFmpeg's concat demuxer would look for the relative name
    concat = tmp_path / "list.mkv"
    concat.write_text("ffconcat version 1.0\nfile 'private.m4a'\n")
    _one_line_error(audio.load, concat, "not a readable audio file")
    playlist = tmp_path / "list.m4a"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nprivate.m4a\n#EXT-X-ENDLIST\n")
    _one_line_error(audio.load, playlist, "not a readable audio file")


def test_ffmpeg_prints_nothing_and_wav_never_imports_it(tmp_path, two_clips):
    left, right = two_clips
    m4a = encode(tmp_path / "a.m4a", np.stack([left, right]), SR, fmt="ipod", codec="aac",
                 options={"movflags": "faststart"})
    broken = m4a.with_name("broken.m4a")
    data = bytearray(m4a.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4000] = bytes(4000)  # zeros in the middle of the audio data
    broken.write_bytes(bytes(data))
    wav = tmp_path / "a.wav"
    sf.write(wav, left, SR)
    code = (
        "import sys\n"
        "from genre_id import audio, errors\n"
        f"audio.load({str(wav)!r})\n"
        "assert 'av' not in sys.modules, 'wav decoding imported PyAV'\n"
        f"for p in ({str(m4a)!r}, {str(broken)!r}, {str(_cut(m4a, 0.5))!r}):\n"
        "    try:\n"
        "        audio.load(p)\n"
        "    except errors.AudioError as exc:\n"
        "        print(exc)\n"
        "assert 'av' in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert all(line.count(": ") >= 1 for line in r.stdout.splitlines())


@pytest.fixture(scope="module")
def ffmpeg_seeds(tmp_path_factory) -> dict[str, tuple[str, bytes]]:
    """Small valid files (0.3 s) of each container read through FFmpeg."""
    folder = tmp_path_factory.mktemp("ffmpeg-seeds")
    y = np.sin(2 * np.pi * 440 * np.arange(int(0.3 * 8000)) / 8000).astype(np.float32) * 0.3
    stereo = np.stack([y, y[::-1]])
    seeds = {}
    for key, ext, fmt, codec, kw in [
        ("m4a", ".m4a", "ipod", "aac", {}),
        ("m4a-faststart", ".m4a", "ipod", "aac", {"options": {"movflags": "faststart"}}),
        ("alac", ".m4a", "ipod", "alac", {}),
        ("adts", ".aac", "adts", "aac", {}),
        ("wma", ".wma", "asf", "wmav2", {"bit_rate": 64000}),
        ("webm", ".webm", "webm", "libopus", {"rate": 48000}),
        ("mkv-video", ".mkv", "matroska", "aac", {"video": True}),
    ]:
        path = encode(folder / f"{key}{ext}", stereo, 8000, fmt=fmt, codec=codec, **kw)
        seeds[key] = (ext, path.read_bytes())
    return seeds


@_fuzz_settings(600)
@given(seed=st.sampled_from(["m4a", "m4a-faststart", "alac", "adts", "wma", "webm", "mkv-video"]),
       mutations=st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_ffmpeg_files_give_audio_or_one_line(tmp_path_factory, ffmpeg_seeds, seed, mutations):
    """Damaged m4a, aac, wma, webm and mkv files: decoded audio or a one-line AudioError, nothing else."""
    ext, data = ffmpeg_seeds[seed]
    path = tmp_path_factory.getbasetemp() / f"mutated{ext}"
    path.write_bytes(_mutate(data, mutations))
    _decode_everything(path)


def test_folder_scans_find_the_new_formats(tmp_path):
    for genre, ext in [("jazz", ".m4a"), ("rock", ".webm"), ("pop", ".wma"), ("metal", ".mkv")]:
        (tmp_path / genre).mkdir()
        (tmp_path / genre / f"song{ext.upper()}").write_bytes(b"x")
    assert sorted(g for _, g in scan_folder(tmp_path)) == ["jazz", "metal", "pop", "rock"]


def _mkv_tracks(path: Path, tracks: list[np.ndarray], sr: int) -> Path:
    """A Matroska file with one 16-bit PCM track per array of ``tracks`` (an empty array: a track without audio)."""
    with av.open(str(path), "w", format="matroska") as out:
        streams = [out.add_stream("pcm_s16le", rate=sr) for _ in tracks]
        for st, y in zip(streams, tracks):
            st.layout = "mono"
            pcm = (np.clip(y, -1, 1) * 32767).astype(np.int16)
            for i in range(0, pcm.size, 4096):
                frame = av.AudioFrame.from_ndarray(pcm[None, i:i + 4096], format="s16", layout="mono")
                frame.sample_rate, frame.pts = sr, i
                for packet in st.encode(frame):
                    out.mux(packet)
            for packet in st.encode(None):
                out.mux(packet)
    return path


def test_an_empty_first_audio_track_is_skipped_for_the_one_with_sound(tmp_path, mini_dir):
    y, _ = sf.read(sorted((mini_dir / "jazz").glob("*.flac"))[0], dtype="float32")
    path = _mkv_tracks(tmp_path / "two tracks.mkv", [np.zeros(0, np.float32), y[: 6 * SR]], SR)
    decoded, _ = audio.load(path)
    assert decoded.size == 6 * SR
    np.testing.assert_allclose(decoded, y[: 6 * SR], atol=1e-4)


def test_a_matroska_sample_rate_the_decoder_cannot_use_is_refused(tmp_path):
    """A header declaring 1e12 Hz: FFmpeg falls back to 8 kHz, so the samples' times would be wrong."""
    import struct

    y = (0.1 * np.sin(np.arange(5 * SR) * 0.05)).astype(np.float32)
    data = _mkv_tracks(tmp_path / "ok.mkv", [y], SR).read_bytes()
    at = data.find(bytes([0xB5, 0x88]) + struct.pack(">d", float(SR)))  # SamplingFrequency, an 8-byte float
    assert at > 0
    bad = tmp_path / "terahertz.mkv"
    bad.write_bytes(data[: at + 2] + struct.pack(">d", 1e12) + data[at + 10:])
    assert audio.load(tmp_path / "ok.mkv")[0].size == y.size
    _one_line_error(audio.load, bad, "sample rate is wrong or unusable")
    _one_line_error(lambda p: list(audio.iter_windows(p, sample_rate=SR, window_seconds=2.0, min_seconds=1.0)), bad, "sample rate is wrong")


@pytest.fixture(scope="module")
def three_minutes(tmp_path_factory, mini_dir) -> dict[str, Path]:
    """Three minutes of real music as AAC in MP4 (timestamps in samples) and FLAC in Matroska (in milliseconds)."""
    y, sr = sf.read(mini_dir / "jazz" / "jazz.00000.flac", dtype="float32")
    long = np.tile(y, int(np.ceil(180 * sr / len(y))))[: 180 * sr]
    folder = tmp_path_factory.mktemp("three")
    return {ext: encode(folder / f"long.{ext}", np.stack([long, long]), sr, fmt=fmt, codec=codec)
            for ext, fmt, codec in (("m4a", "ipod", "aac"), ("mka", "matroska", "flac"))}


@pytest.mark.parametrize("ext, seeks", [("m4a", True), ("mka", False)])
def test_a_long_skip_seeks_in_the_container_and_lands_on_the_same_samples(monkeypatch, three_minutes, ext, seeks):
    path = three_minutes[ext]
    whole, sr = audio.load(path)
    decoded = []
    mono = audio._FFmpegReader._mono
    monkeypatch.setattr(audio._FFmpegReader, "_mono", lambda self, frame: decoded.append(frame.samples)
                        or mono(self, frame))
    part, _ = audio.load(path, offset=150.25, duration=5.0)
    start = int(round(150.25 * sr))
    np.testing.assert_allclose(part, whole[start: start + 5 * sr], atol=1e-2 if ext == "m4a" else 0)
    assert part.size == 5 * sr
    if seeks:  # from 1 s before the target: a few seconds decoded, not two and a half minutes
        assert sum(decoded) < 8 * sr
    else:  # Matroska's timestamps count milliseconds: decoded to the target, sample-exact
        assert sum(decoded) > 150 * sr


def test_a_huge_file_of_zeros_with_an_audio_name_is_refused_after_a_bounded_read(tmp_path):
    """FFmpeg's FLAC demuxer would read all of it looking for a frame; it stops at audio.PROBE_LIMIT_BYTES."""
    path = tmp_path / "zeros.flac"
    with open(path, "wb") as fh:
        fh.truncate(audio.PROBE_LIMIT_BYTES * 8)  # a hole: no disk space used
    with pytest.raises(AudioError) as err:
        audio.load(path)
    assert str(err.value) == f"{path}: not a readable audio file (no audio track found in 32 MB of it)"
