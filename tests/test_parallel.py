"""The parallel seam: ordered, streaming, and one failing item never stops the batch."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys

import pytest

from conftest import ROOT
from genre_id.errors import AudioError
from genre_id.parallel import (
    CtrlCHeld,
    Executor,
    FileFailure,
    LocalExecutor,
    WorkerDiedError,
    call_isolated,
    default_workers,
    map_ahead,
    map_files,
)


def _work(item: str) -> str:
    """Module-level, so that worker processes can run it."""
    if item.startswith("bad"):
        raise AudioError(f"{item}: not audio")
    if item.startswith("bug"):
        raise ZeroDivisionError("planted bug")
    if item.startswith("crash"):
        os.kill(os.getpid(), signal.SIGKILL)  # as a decoder crash would
    if item == "threads":
        return os.environ.get("OMP_NUM_THREADS", "")
    if item == "sigblk":  # the signals this worker blocks, from the kernel's view
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1], 16) for line in fh if line.startswith("SigBlk:"))
    return item.upper()


ITEMS = ["a", "bad.wav", "b", "bug.wav", "c", "d"]


def _check(results: list) -> None:
    assert [r for r in results if isinstance(r, str)] == ["A", "B", "C", "D"]
    bad, bug = results[1], results[3]
    assert bad == FileFailure("bad.wav", "bad.wav: not audio", internal=False)
    assert isinstance(bug, FileFailure) and bug.internal and bug.path == "bug.wav"
    assert bug.message == "bug.wav: internal error (ZeroDivisionError: planted bug)"


def test_in_process_results_are_in_order_with_failures_in_place():
    _check(list(map_files(_work, ITEMS, workers=1)))


@pytest.mark.slow
def test_worker_processes_give_the_same_results_and_one_blas_thread_each():
    _check(list(map_files(_work, ITEMS, workers=2)))
    assert list(map_files(_work, ["threads", "threads"], workers=2)) == ["1", "1"]


@pytest.mark.slow
def test_a_dying_worker_costs_only_its_item():
    items = ["a", "b", "crash-me.wav", "c", "bug.wav", "d", "e"]
    results = list(map_files(_work, items, workers=2))
    assert results[:2] == ["A", "B"] and results[3] == "C" and results[5:] == ["D", "E"]
    assert results[2] == FileFailure("crash-me.wav", "crash-me.wav: the process decoding this file died "
                                                     "(a crash in the decoder, or out of memory)")
    assert isinstance(results[4], FileFailure) and results[4].internal


@pytest.mark.slow
def test_a_reader_that_stops_after_the_last_result_leaves_no_pool_behind():
    # zip(names, map_files(...)) stops after the last result without resuming the generator; the
    # pool must still be shut down and joined, or CPython 3.11 prints "Bad file descriptor" at exit.
    import threading

    names = ["a", "b", "c"]
    it = map_files(_work, names, workers=2)
    assert [r for _, r in zip(names, it)] == ["A", "B", "C"]
    it.close()
    managers = [t for t in threading.enumerate() if type(t).__name__ == "_ExecutorManagerThread"]
    assert managers == []


_FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "init":
    from genre_id.parallel import _worker_init
    _worker_init(1)
np.ones(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    block = np.ones(1 << 18)  # 2 MiB, the size of an STFT
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_workers_keep_arrays_on_the_heap_even_under_dasks_malloc_setting():
    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which pins glibc's mmap threshold at
    # 128 kB: every array is then mapped and faulted in afresh (about 512 page faults per 2 MiB array).
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}

    def faults(mode):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], env=env, capture_output=True, text=True, check=True)
        return int(out.stdout)

    assert faults("plain") > 100 * 400  # the setting's cost is real here
    assert faults("init") < 100 * 40  # a worker reuses its heap


def test_results_stream_before_the_batch_is_done():
    seen = []

    def record(item):
        seen.append(item)
        return item

    it = map_files(record, ["x", "y", "z"], workers=1)
    assert next(it) == "x" and seen == ["x"]


def test_another_executor_stands_behind_the_same_call():
    class Reversing(Executor):  # e.g. a cluster that finishes out of order, and puts results back in order
        def map(self, fn, items):
            done = {i: call_isolated(fn, item) for i, item in reversed(list(enumerate(items)))}
            return (done[i] for i in range(len(items)))

    _check(list(map_files(_work, ITEMS, executor=Reversing())))
    assert isinstance(LocalExecutor(3), Executor)


def test_default_workers():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_workers(None, 1) == 1, "a single item runs in this process"
    assert default_workers(None, 50) == cores
    assert default_workers(8, 3) == 3 and default_workers(3, 50) == 3 and default_workers(0, 5) == 1


@pytest.mark.slow
def test_the_parts_of_one_input_are_drawn_lazily_and_come_back_in_order():
    drawn = []

    def parts():
        for i in range(12):
            drawn.append(i)
            yield f"part{i:02d}"

    it = map_ahead(_work, parts(), workers=2, ahead=3)
    assert next(it) == "PART00"
    assert len(drawn) <= 4  # never more than `ahead` out at once (plus the one being submitted)
    assert list(it) == [f"PART{i:02d}" for i in range(1, 12)]


@pytest.mark.slow
def test_a_failing_part_fails_the_input_and_a_dead_worker_is_named():
    with pytest.raises(AudioError, match="bad.wav: not audio"):
        list(map_ahead(_work, ["a", "b", "bad.wav", "c"], workers=2))
    with pytest.raises(WorkerDiedError, match="worker process died"):
        list(map_ahead(_work, ["a", "crash-me.wav", "b"], workers=2))


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_ctrl_c_reaches_only_this_process_never_a_starting_worker():
    # A terminal sends Ctrl-C to the whole process group; a worker still importing would print a traceback.
    sigint = 1 << (signal.SIGINT - 1)
    assert all(mask & sigint for mask in map_files(_work, ["sigblk", "sigblk"], workers=2))
    assert all(mask & sigint for mask in map_ahead(_work, ["sigblk", "sigblk"], workers=2))
    assert not signal.pthread_sigmask(signal.SIG_BLOCK, set()) & {signal.SIGINT}  # this process still hears it


_HELD_MODULE = """
import os, signal, sys
from genre_id.parallel import CtrlCHeld

signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    with CtrlCHeld() as held:
        # as an import does when dataclasses builds a class: code run by exec, where the Ctrl-C lands
        exec("import os, signal; os.kill(os.getpid(), signal.SIGINT); inside = 'finished'")
        print("held", held.pressed, signal.getsignal(signal.SIGINT) is signal.default_int_handler)
except KeyboardInterrupt:
    print("interrupted", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    sys.exit(130)
"""


def test_a_ctrl_c_held_is_raised_after_the_block_and_python_m_exits_130(tmp_path):
    # A KeyboardInterrupt that escapes code run by exec makes CPython 3.11's 'python -m' end by SIGINT
    # (returncode -2) even when it is caught; held, it is raised after the block, where it is handled.
    (tmp_path / "held_probe.py").write_text(_HELD_MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    r = subprocess.run([sys.executable, "-m", "held_probe", "hold"], capture_output=True, text=True,
                       timeout=60, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert (r.returncode, r.stdout, r.stderr) == (130, "held True False\ninterrupted True\n", "")


def test_a_ctrl_c_held_leaves_an_ignored_sigint_alone():
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with CtrlCHeld() as held:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
        assert not held.pressed
    finally:
        signal.signal(signal.SIGINT, old)


def test_a_script_without_a_main_guard_gets_its_answers_in_one_process_and_is_told_why(tmp_path, mini_dir):
    """`spawn` imports the main script in every worker: without the guard each would rerun it and die."""
    script = tmp_path / "no_guard.py"
    clips = sorted(str(p) for p in mini_dir.glob("*/*.flac"))[:3]
    script.write_text("from genre_id import Analyzer\n"
                      f"for r in Analyzer.load(workers=2).analyze_many({clips!r}):\n"
                      "    print(type(r.prediction).__name__, r.prediction.genre if r.ok else r.error)\n")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert [line.split()[0] for line in res.stdout.splitlines()] == ["Prediction"] * 3
    assert "RuntimeWarning" in res.stderr and "__main__" in res.stderr and "died" not in res.stderr


def test_the_command_run_as_a_package_main_uses_its_worker_processes(mini_dir):
    """`python -m genre_id.cli`: spawn never imports a package's __main__ again, so processes may start."""
    clips = sorted(str(p) for p in mini_dir.glob("*/*.flac"))[:3]
    res = subprocess.run([sys.executable, "-m", "genre_id.cli", "identify", "--workers", "2", "--no-timeline", *clips],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0 and res.stderr == "" and len(res.stdout.splitlines()) == 3
    from genre_id.parallel import processes_can_start

    assert processes_can_start()  # pytest's own main module has the guard
