"""The one place that runs work in other processes: an ordered, streaming map over files.

>>> from functools import partial
>>> from genre_id.parallel import FileFailure, map_files
>>> extract = partial(extract_file, feature_set="levelfree")  # doctest: +SKIP
>>> for path, result in zip(paths, map_files(extract, paths), strict=True):  # doctest: +SKIP
...     print(path, result.message if isinstance(result, FileFailure) else result.duration)

:func:`map_files` calls ``fn(item)`` for every item and yields the results in
the order of the items, each as soon as it and all before it are done.  An
item whose call fails becomes one :class:`FileFailure` in its place and the
others go on: a :class:`~genre_id.errors.GenreIdError` is the input's fault,
any other exception is a bug (``internal``), and a worker process that dies
(a decoder crash, the system killing it) costs only the item it was working
on.  Each worker process uses one BLAS/OpenMP thread, so that N workers use N
cores, and (with glibc) keeps arrays up to 32 MiB on its heap (see
:func:`keep_arrays_on_the_heap`).

The function to run is an argument: this module imports nothing of the
pipeline.  ``fn`` and the items must be picklable (a module-level function,
or a :func:`functools.partial` of one) when more than one worker is used.

Where the work runs is an :class:`Executor`: :class:`LocalExecutor` (a pool of
processes on this machine, or this process for one worker) is the default;
another executor (a cluster) can stand behind the same call, passed as
``executor=`` or set for a block of code with :func:`use_executor`, without
changing its callers:

>>> from genre_id.cluster import connect
>>> with connect("tcp://host:8786") as cluster, use_executor(cluster):  # doctest: +SKIP
...     data = load_folder("music/")  # its per-file work runs on the Dask cluster

:func:`map_ahead` is the other shape of work: the parts of one input (the
windows of an hour-long file) drawn lazily from an iterator, a few in flight,
on local processes; they make one answer, so a failure fails the input.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import GenreIdError

__all__ = ["FileFailure", "Executor", "LocalExecutor", "map_files", "call_isolated", "default_workers",
           "use_executor", "current_executor", "keep_arrays_on_the_heap", "map_ahead", "WorkerDiedError", "CtrlCHeld",
           "forked_pool", "can_fork"]

R = TypeVar("R")

#: Environment variables that bound the threads of numeric libraries, set in every worker process.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


@dataclass(frozen=True)
class FileFailure:
    """An item (a file) that could not be used, and why (one line naming it)."""

    path: str
    message: str
    internal: bool = False  #: a bug met on this item (an unexpected exception), not a fault of the input


def _name(item: Any) -> str:
    return os.fsdecode(item) if isinstance(item, (str, bytes, os.PathLike)) else str(item)


def call_isolated(fn: Callable[[Any], R], item: Any, *, name: str | None = None) -> R | FileFailure:
    """``fn(item)``, or a :class:`FileFailure` naming ``item`` when it raises an ``Exception``."""
    name = _name(item) if name is None else name
    try:
        return fn(item)
    except GenreIdError as exc:  # already one line naming the file and the problem
        return FileFailure(name, str(exc))
    except Exception as exc:  # a bug: one line, and the batch goes on
        return FileFailure(name, f"{name}: internal error ({type(exc).__name__}: {exc})", internal=True)


def default_workers(requested: int | None, n_items: int) -> int:
    """Worker processes for ``n_items``: as ``requested``, else one per usable core; never more than items."""
    if requested is None:
        requested = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(requested, n_items))


#: glibc ``mallopt`` parameters (``malloc.h``).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_arrays_on_the_heap() -> None:
    """glibc only: serve allocations up to 32 MiB from the heap, and give it back above 64 MiB free.

    These are the limits glibc's own dynamic threshold grows to, fixed from the
    start.  It matters on Dask: the nanny starts every worker with
    ``MALLOC_TRIM_THRESHOLD_=65536``, which also freezes the mmap threshold at
    128 kB, so every STFT-sized array is mapped, faulted in page by page and
    unmapped again.  That doubled the CPU time per file on a Dask worker
    (1.3 s against 0.65 s for the default model on a 30 s clip); with these
    limits it is 0.45 s.  In a plain process it saves about 13% of the time
    of one long file (a page fault per 4 kB of every large array otherwise).
    Worker processes call it; so does the ``genre-id`` command.  A library
    user's own process is left as it is.  Elsewhere than glibc, a no-op.
    """
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import platform

        if platform.libc_ver()[0] != "glibc":
            return
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, ValueError):  # pragma: no cover - not glibc after all
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 64 << 20)


def _worker_init(threads: int) -> None:
    """In each worker process, before the work imports numpy: ``threads`` threads for BLAS and OpenMP."""
    for var in _THREAD_VARIABLES:
        os.environ[var] = str(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)  # for any library already loaded
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    keep_arrays_on_the_heap()


class Executor:
    """Where :func:`map_files` runs its calls.

    A subclass implements :meth:`map`: ``call_isolated(fn, item)`` for every
    item, yielded in the order of ``items`` as they complete, with a
    :class:`FileFailure` for an item whose worker was lost.
    """

    def map(self, fn: Callable[[Any], R], items: Sequence[Any]) -> Iterator[R | FileFailure]:
        raise NotImplementedError


class LocalExecutor(Executor):
    """A pool of ``workers`` processes on this machine (``spawn``); one worker runs in this process."""

    def __init__(self, workers: int = 1, *, threads_per_worker: int = 1) -> None:
        self.workers = max(1, int(workers))
        self.threads_per_worker = threads_per_worker

    def map(self, fn: Callable[[Any], R], items: Sequence[Any]) -> Iterator[R | FileFailure]:
        if self.workers == 1 or not processes_can_start():
            for item in items:
                yield call_isolated(fn, item)
            return
        done: dict[int, R | FileFailure] = {}  # finished, not yet yielded
        out = 0  # the next index to yield; every index below it has been yielded
        todo = list(range(len(items)))
        while todo:
            left, out = yield from self._run(fn, items, todo, self.workers, done, out)
            if left:
                # A worker died.  Run the items that may have been under way one at a time: the first
                # that breaks a one-process pool is the culprit; then go on in parallel.
                rest, out = yield from self._run(fn, items, left[: 2 * self.workers + 2], 1, done, out)
                if rest:
                    name = _name(items[rest[0]])
                    done[rest[0]] = FileFailure(name, f"{name}: the process decoding this file died "
                                                      "(a crash in the decoder, or out of memory)")
                    while out in done:
                        yield done.pop(out)
                        out += 1
            todo = [i for i in left if i >= out and i not in done]

    def _run(self, fn, items, indices: list[int], workers: int, done: dict, out: int):
        """Run ``items[indices]`` in a fresh pool; yield the results from index ``out`` on, in order.

        Returns the indices left unfinished because a worker process died
        (empty when all finished) and the next index to yield.
        """
        from concurrent.futures.process import BrokenProcessPool

        pool = _new_pool(min(workers, len(indices)), threads=self.threads_per_worker)
        futures: dict = {}
        finished = False
        try:
            with _ctrl_c_stays_here():  # the pool starts its processes as work is submitted
                futures = {i: pool.submit(call_isolated, fn, items[i]) for i in indices}
            for i in indices:
                try:
                    done[i] = futures[i].result()
                except BrokenProcessPool:
                    for j, fut in futures.items():  # keep what finished before the pool broke
                        if j not in done and fut.done() and not fut.cancelled() and fut.exception() is None:
                            done[j] = fut.result()
                    break
                except Exception as exc:  # e.g. a result that cannot be sent back: a bug, met on this item
                    name = _name(items[i])
                    done[i] = FileFailure(name, f"{name}: internal error ({type(exc).__name__}: {exc})", internal=True)
                while out in done:
                    yield done.pop(out)
                    out += 1
            finished = True
        finally:
            # A reader that stops after the last result (zip over the names) closes this generator
            # at its final yield: that is not an interruption when every item has finished.
            _close_pool(pool, finished or all(f.done() for f in futures.values()))
            del pool
            gc.collect()
        return [i for i in indices if i >= out and i not in done], out


_MAIN_GUARD_WARNING = (
    "genre-id works in one process: worker processes start by importing the main script ({path}) "
    "afresh, and it has no 'if __name__ == \"__main__\":' guard, so each would run the script again; put the "
    "script's work under that guard to use every core"
)


def processes_can_start() -> bool:
    """Whether worker processes can be started (``spawn``) from this program.

    ``spawn`` starts a worker by importing the main script again; a script
    without an ``if __name__ == "__main__":`` guard would run its work again
    in every worker (they die, and every file would be reported as a dead
    worker).  Such a script, told once by a :class:`RuntimeWarning`, gets its
    work done in its own process instead.  Interactive sessions, ``-c`` and
    programs whose main module cannot be read are left to start processes.
    """
    import sys
    import warnings

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name.split(".")[-1] == "__main__":
        return True  # 'python -m package': spawn never imports a package's __main__ again
    if not path or path in _GUARDED:
        return True
    if path not in _UNGUARDED:
        try:
            with open(path, "rb") as fh:
                text = fh.read(1 << 22)
        except OSError:
            _GUARDED.add(path)
            return True
        if b"__main__" in text:
            _GUARDED.add(path)
            return True
        _UNGUARDED.add(path)
        warnings.warn(_MAIN_GUARD_WARNING.format(path=path), RuntimeWarning, stacklevel=3)
    return False


_GUARDED: set[str] = set()
_UNGUARDED: set[str] = set()


def _new_pool(workers: int, *, threads: int) -> Any:
    """A ``spawn`` process pool of ``workers`` processes, each set up by :func:`_worker_init`."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(threads,))


def _forked_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    _drop_inherited_sockets()


def _drop_inherited_sockets() -> None:
    """Let go of the sockets a forked worker inherited (a server's listening socket and client connections).

    A connection stays open while any process holds it: without this, a
    connection the server closes after forking its workers is never closed
    for the client, whose next request on it waits for ever.  Each socket's
    descriptor is pointed at ``/dev/null`` (not closed), so a stale socket
    object closing its number later closes nothing that matters.  The pool's
    own channels are pipes and stay.
    """
    import stat

    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: try the usual range
        fds = list(range(3, 1024))
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in fds:
            if fd <= 2 or fd == null:
                continue
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.dup2(null, fd)
            except OSError:
                pass
    finally:
        os.close(null)


def forked_pool(workers: int) -> Any:
    """A pool of ``workers`` processes forked from this one now, for a long-running server.

    Forking shares what this process has loaded (a model, its weights) page
    by page instead of loading it again in each worker; the processes are
    started before this returns, while the server has no open uploads.
    Needs the ``fork`` start method (not on Windows or macOS by default):
    :class:`ValueError` otherwise.  Workers ignore Ctrl-C; the parent stops
    them with ``shutdown``.  Workers hold none of this process's sockets, so
    a server's connections close when it closes them, also when the pool is
    forked while clients are connected.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if "fork" not in multiprocessing.get_all_start_methods():
        raise ValueError("worker processes need the 'fork' start method here")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_forked_init)
    for started in [pool.submit(os.getpid) for _ in range(workers)]:
        started.result()
    return pool


def can_fork() -> bool:
    """Whether :func:`forked_pool` can start processes on this system."""
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


@contextmanager
def _ctrl_c_stays_here() -> Iterator[None]:
    """Block SIGINT in this thread while the block may start worker processes.

    Children inherit the blocked signal, so a Ctrl-C (which a terminal sends to
    the whole process group) reaches only this process, which stops them: it
    can never interrupt a worker's start-up with a traceback.  A Ctrl-C that
    arrives meanwhile is delivered here as the block ends.
    """
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class CtrlCHeld:
    """Within the block, a Ctrl-C is noted, not raised; it is raised as ``KeyboardInterrupt`` when the block ends.

    For code that a ``KeyboardInterrupt`` must not land in: Dask's client calls
    (one raised inside Dask's ``sync`` makes it schedule a cancel on its event
    loop, which can fail while the client closes and print a tornado traceback
    after ``error: interrupted``), and imports (one escaping the code that
    ``dataclasses`` builds with ``exec`` makes ``python -m`` end by SIGINT even
    when the interrupt was handled).  Long waits inside the block poll
    :attr:`pressed`.  Only Python's own handler, in the main thread, is
    replaced; a program's own SIGINT handler (or an ignored SIGINT) is left alone.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._old: Any = None

    def __enter__(self) -> CtrlCHeld:
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._old = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum: int, frame: object) -> None:
        self.pressed = True

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        if self.pressed and exc_type is None:
            raise KeyboardInterrupt


def _close_pool(pool: Any, finished: bool) -> None:
    """Shut ``pool`` down: wait for it when its work is done; else terminate its workers first."""
    manager = getattr(pool, "_executor_manager_thread", None)
    if not finished:  # a dead worker, an interrupt, or the reader went away: stop the others now
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
    pool.shutdown(wait=finished, cancel_futures=True)
    if not finished and manager is not None:
        # CPython 3.11 wakes every pool's manager thread at exit without its lock; one still
        # closing its pipe then prints "Exception ignored ... Bad file descriptor".  With the
        # workers terminated it ends at once; wait for it (bounded).
        manager.join(timeout=10)


class WorkerDiedError(GenreIdError):
    """A worker process of :func:`map_ahead` died (a crash in native code, or out of memory)."""


def map_ahead(fn: Callable[[Any], R], items: Iterable[Any], *, workers: int, ahead: int | None = None) -> Iterator[R]:
    """``fn(item)`` for the parts of one input (the windows of a long file) on ``workers`` local processes.

    Items are drawn from ``items`` lazily, at most ``ahead`` (default: two per
    worker) out at once, so memory stays bounded however long the input is;
    results are yielded in order, each as soon as it and all before it are
    done.  Unlike :func:`map_files` a failure is not isolated: the parts make
    one answer, so an exception raised by ``fn`` is raised here (the rest is
    cancelled), and a worker that dies raises :class:`WorkerDiedError`.
    """
    from collections import deque
    from concurrent.futures.process import BrokenProcessPool

    if not processes_can_start():
        yield from map(fn, items)
        return
    ahead = max(1, ahead if ahead is not None else 2 * workers)
    pool = _new_pool(max(1, workers), threads=1)
    pending: deque = deque()
    finished = False

    def first() -> R:
        try:
            return pending.popleft().result()
        except BrokenProcessPool:
            raise WorkerDiedError("a worker process died (a crash in native code, or out of memory)") from None

    try:
        for item in items:
            with _ctrl_c_stays_here():  # the pool starts its processes as work is submitted
                pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield first()
        while pending:
            yield first()
        finished = True
    finally:
        _close_pool(pool, finished)
        del pool
        gc.collect()


_EXECUTOR: ContextVar[Executor | None] = ContextVar("genre_id_executor", default=None)


@contextmanager
def use_executor(executor: Executor | None) -> Iterator[Executor | None]:
    """Within the block, :func:`map_files` calls without ``executor=`` run on ``executor`` (None: locally)."""
    token = _EXECUTOR.set(executor)
    try:
        yield executor
    finally:
        _EXECUTOR.reset(token)


def current_executor() -> Executor | None:
    """The executor set by the innermost :func:`use_executor` block, or None (local processes)."""
    return _EXECUTOR.get()


def map_files(
    fn: Callable[[Any], R],
    items: Iterable[Any],
    *,
    workers: int | None = None,
    progress: str | None = None,
    executor: Executor | None = None,
) -> Iterator[R | FileFailure]:
    """``fn(item)`` for every item, in order, streaming; a failing item becomes a :class:`FileFailure`.

    ``workers`` processes (default: one per core, never more than items; one
    runs in this process) unless an ``executor`` is given or set by
    :func:`use_executor` (``workers`` is then not used).  ``progress`` is
    the description of a progress bar on stderr (none when ``None``).
    """
    items = list(items)
    if executor is None:
        executor = current_executor()
    if executor is None:
        executor = LocalExecutor(default_workers(workers, len(items)))
    bar = progress_bar(len(items), description=progress) if progress is not None else None
    try:
        for result in executor.map(fn, items):
            if bar is not None:
                bar.update()
            yield result
    finally:
        if bar is not None:
            bar.close()


#: A batch of more items than this shows a progress bar (on a terminal).
PROGRESS_MIN_ITEMS = 3


def progress_bar(total: int, *, description: str = "", unit: str = "file", disable: bool = False) -> Any:
    """A tqdm progress bar on stderr that disappears when done (``update()``, ``write()``, ``close()``).

    It is shown only when stderr is a terminal and the batch has more than
    :data:`PROGRESS_MIN_ITEMS` items (and not ``disable``); otherwise the bar
    is a silent one with the same methods, so piped output and logs never get
    progress-bar text.
    """
    import sys

    from tqdm.auto import tqdm

    isatty = getattr(sys.stderr, "isatty", None)
    shown = not disable and total > PROGRESS_MIN_ITEMS and callable(isatty) and isatty()
    return tqdm(total=total, desc=description or None, unit=unit, leave=False, disable=not shown)
