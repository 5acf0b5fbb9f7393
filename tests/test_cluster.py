"""Per-file work on a Dask distributed cluster (``--scheduler``): same answers as locally, and its faults.

One 2-worker LocalCluster (separate processes, one thread each) serves the
whole module.  Its scheduler tolerates one worker death per task
(``allowed-failures`` 1), so a task that kills two workers is Dask's
``KilledWorker``; the executor then gives the file a second task.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed "
                                                        "(pip install -e '.[cluster]')")

from conftest import CONFIG  # noqa: E402
from genre_id.cli import main  # noqa: E402
from genre_id.parallel import FileFailure, map_files, use_executor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    import cloudpickle
    import dask
    from distributed import LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cl = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        yield cl
    finally:
        cl.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def executor(cluster):
    from genre_id.cluster import connect

    with connect(cluster.scheduler_address) as ex:
        yield ex


@pytest.fixture(scope="module")
def clips(mini_dir) -> list[Path]:
    """Six real clips in an order that is not sorted (the command line's order must be kept)."""
    files = sorted(mini_dir.glob("*/*.flac"))
    return [files[i] for i in (57, 3, 91, 28, 44, 70)]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# -- same answers ---------------------------------------------------------------------------------


def test_identify_on_the_cluster_equals_the_local_run(cluster, clips, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("broken.flac").write_bytes(b"fLaC" + bytes(range(256)) * 8)  # named relatively, as typed
    files = [str(c) for c in clips[:3]] + ["broken.flac"] + [str(c) for c in clips[3:]]
    local = _run(["identify", "--json", "--workers", "1", *files], capsys)
    remote = _run(["identify", "--json", "--scheduler", cluster.scheduler_address, *files], capsys)
    assert remote == local  # exit code, every JSON line in command-line order, the broken file's one line
    code, out, err = remote
    assert code == 2 and [json.loads(line)["file"] for line in out.splitlines()] == [str(c) for c in clips]
    assert err.count("\n") == 1 and err.startswith("error: broken.flac: ")


def test_identify_probabilities_match_within_1e6(executor, clips):
    from genre_id.analysis import Analyzer

    local = [(r.source, r.prediction) for r in Analyzer.load(workers=1).analyze_many(clips)]
    remote = [(r.source, r.prediction) for r in Analyzer.load(executor=executor).analyze_many(clips)]
    assert [name for name, _ in remote] == [str(c) for c in clips]
    for (_, a), (_, b) in zip(local, remote):
        assert a.genre == b.genre and list(a.probabilities) == list(b.probabilities)
        np.testing.assert_allclose(list(b.probabilities.values()), list(a.probabilities.values()), atol=1e-6, rtol=0)


def _set_env(name: str, value: str | None) -> None:
    """Set (or with None, remove) an environment variable of a worker process."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def test_training_extraction_equals_local_and_uses_the_worker_cache(executor, clips, tmp_path):
    from genre_id.dataset import load_folder

    data_dir = tmp_path / "music"
    for clip in clips[:4]:
        (data_dir / clip.parent.name).mkdir(parents=True, exist_ok=True)
        (data_dir / clip.parent.name / clip.name).symlink_to(clip)
    local = load_folder(data_dir, config=CONFIG, cache_dir=None, workers=1, progress=False)
    worker_cache, client_cache = tmp_path / "worker-cache", tmp_path / "client-cache"
    executor.client.run(_set_env, "GENRE_ID_CACHE_DIR", str(worker_cache))
    try:
        with use_executor(executor):
            remote = load_folder(data_dir, config=CONFIG, cache_dir=client_cache, progress=False)
    finally:
        executor.client.run(_set_env, "GENRE_ID_CACHE_DIR", None)
    assert not remote.failures and list(remote.groups) == list(local.groups)
    np.testing.assert_array_equal(remote.y, local.y)
    np.testing.assert_allclose(remote.x, local.x, rtol=1e-6)  # float32 features; BLAS threads may differ
    assert len(list(worker_cache.rglob("*.npz"))) == 4 and not client_cache.exists()


def _db_contents(db: Path) -> tuple[list, list]:
    with sqlite3.connect(db) as con:
        recs = con.execute("SELECT sha256, title, artist, path, duration, n_hashes FROM recordings ORDER BY id").fetchall()
        hashes = con.execute("SELECT r.sha256, h.hash, h.t FROM hashes h JOIN recordings r ON r.id = h.recording_id "
                             "ORDER BY 1, 2, 3").fetchall()
    return recs, hashes


def test_index_add_through_the_cluster_equals_local(cluster, clips, tmp_path, capsys):
    music = tmp_path / "music"
    music.mkdir()
    for clip in clips[:3]:
        (music / clip.name).symlink_to(clip)
    (music / "zz-broken.flac").write_bytes(b"not audio at all" * 64)
    local = _run(["index", "add", str(music), "--db", str(tmp_path / "local.db")], capsys)
    remote = _run(["index", "add", str(music), "--db", str(tmp_path / "remote.db"),
                   "--scheduler", cluster.scheduler_address], capsys)
    assert remote[0] == local[0] == 2
    assert remote[2] == local[2] and remote[2].startswith(f"error: {music / 'zz-broken.flac'}: ")
    recs, hashes = _db_contents(tmp_path / "remote.db")
    assert (recs, hashes) == _db_contents(tmp_path / "local.db") and len(recs) == 3 and len(hashes) > 1000


# -- faults ----------------------------------------------------------------------------------------


def _fragile(item: str) -> str:
    """Kills its worker process on ``kill-once:MARKER`` (the first time only) and on ``kill-always``."""
    if item.startswith("kill-once:"):
        marker = Path(item.split(":", 1)[1])
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    if item == "kill-always":
        os.kill(os.getpid(), signal.SIGKILL)
    if item == "bad":
        from genre_id.errors import AudioError

        raise AudioError("bad: not audio")
    return item.upper() if ":" not in item else "SURVIVED"


def test_a_worker_killed_mid_batch_is_rescheduled_and_the_batch_completes(executor, tmp_path):
    marker = tmp_path / "killed-once"
    items = ["a", "b", f"kill-once:{marker}", "c", "bad", "d"]
    results = list(map_files(_fragile, items, executor=executor))
    assert marker.exists()  # a worker did die
    assert results == ["A", "B", "SURVIVED", "C", FileFailure("bad", "bad: not audio"), "D"]


def test_a_file_that_kills_workers_repeatedly_is_that_files_error(executor):
    results = list(map_files(_fragile, ["a", "kill-always", "b"], executor=executor))
    assert results[0] == "A" and results[2] == "B"
    assert results[1] == FileFailure("kill-always", "kill-always: the workers processing this file died 4 times "
                                                    "(a crash in the decoder, or out of memory)")


def test_workers_report_the_paths_they_cannot_see(executor, clips):
    assert executor.unseen([str(clips[0]), "/no/such/folder/x.flac"]) == ["/no/such/folder/x.flac"]


def test_files_the_workers_cannot_see_are_refused_before_any_work(cluster, clips, monkeypatch, capsys):
    from genre_id.cluster import DaskExecutor

    submitted = []
    monkeypatch.setattr(DaskExecutor, "unseen", lambda self, paths: [p for p in paths if p.endswith(clips[1].name)])
    monkeypatch.setattr(DaskExecutor, "_result", lambda self, *a: submitted.append(a))
    code, out, err = _run(["identify", "--scheduler", cluster.scheduler_address, *map(str, clips[:3])], capsys)
    assert (code, out, submitted) == (2, "", [])
    assert err == (f"error: {clips[1]}: this file is not visible to the workers of {cluster.scheduler_address}; "
                   "put the music on storage every worker sees, under the same path\n")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_an_unreachable_scheduler_is_one_line_and_exit_2(clips):
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "genre_id.cli", "identify", "--scheduler", f"tcp://127.0.0.1:{port}",
                        str(clips[0])], capture_output=True, text=True, env=_env(), timeout=60)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.startswith(f"error: tcp://127.0.0.1:{port}: cannot reach the Dask scheduler (")
    assert r.stderr.count("\n") == 1


def test_ctrl_c_cancels_the_remaining_work_and_exits_130(cluster, mini_dir):
    files = sorted(mini_dir.glob("*/*.flac"))[::2]  # fifty clips: far more than the workers finish before Ctrl-C
    proc = subprocess.Popen([sys.executable, "-m", "genre_id.cli", "identify", "--json",
                             "--scheduler", cluster.scheduler_address, *map(str, files)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    first = proc.stdout.readline()  # the stream starts before the batch is done
    assert json.loads(first)["file"] == str(files[0])
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "error: interrupted\n"
    assert len(out.splitlines()) < len(files) - 1
    from distributed import Client

    with Client(cluster.scheduler_address, set_as_default=False) as client:
        deadline = time.monotonic() + 20
        while client.run_on_scheduler(_tasks) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.run_on_scheduler(_tasks) == 0


def _tasks(dask_scheduler) -> int:
    return len(dask_scheduler.tasks)


@pytest.fixture
def python_ctrl_c():
    """Python's own Ctrl-C handler for the test, however pytest was started (a background job ignores SIGINT)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_every_dask_call_of_a_batch_runs_with_ctrl_c_held(executor, monkeypatch, python_ctrl_c):
    # A KeyboardInterrupt raised inside Dask's own blocking sync makes it schedule a cancel that can
    # fail as the client closes (a tornado traceback after 'error: interrupted', seen in CI).
    handlers = []
    real_sync = executor.client.sync

    def sync(*args, **kwargs):
        handlers.append(signal.getsignal(signal.SIGINT))
        return real_sync(*args, **kwargs)

    monkeypatch.setattr(executor.client, "sync", sync)
    assert list(map_files(_nap, [0.0, 0.1, 0.0], executor=executor)) == [0.0, 0.1, 0.0]
    assert handlers and signal.default_int_handler not in handlers
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_a_ctrl_c_while_a_batch_waits_is_a_keyboard_interrupt_and_cancels_the_rest(executor, python_ctrl_c):
    import threading

    from distributed import Client

    results = []
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for r in map_files(_nap, [0.0] + [3.0] * 6, executor=executor):
                results.append(r)
    finally:
        timer.cancel()
    assert results == [0.0]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with Client(executor.address, set_as_default=False) as client:
        deadline = time.monotonic() + 20
        while client.run_on_scheduler(_tasks) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.run_on_scheduler(_tasks) == 0


def test_without_scheduler_nothing_of_dask_is_imported(clips):
    code = ("import sys; from genre_id.cli import build_parser, main; build_parser(); "
            f"code = main(['identify', '--json', {str(clips[0])!r}]); "
            "assert code == 0, code; "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'genre_id.cluster')"
            " or m == 'genre_id.cluster'); "
            "assert not loaded, loaded")
    env = {k: v for k, v in _env().items() if k != "GENRE_ID_SCHEDULER"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["file"] == str(clips[0])


def test_a_tls_scheduler_without_certificates_is_one_line_at_once(clips):
    """No half-made Client whose clean-up stalls 10 s and prints Dask's 'Exception ignored in Client.__del__'."""
    r = subprocess.run([sys.executable, "-m", "genre_id.cli", "identify", "--scheduler", "tls://127.0.0.1:8786",
                        str(clips[0])], capture_output=True, text=True, env=_env(), timeout=60)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.startswith("error: tls://127.0.0.1:8786: a tls:// scheduler needs TLS certificates")
    assert r.stderr.count("\n") == 1
