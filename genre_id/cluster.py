"""Per-file work on a Dask distributed cluster: :class:`DaskExecutor` behind :func:`genre_id.parallel.map_files`.

>>> from genre_id.cluster import connect
>>> from genre_id.parallel import use_executor
>>> with connect("tcp://scheduler:8786") as cluster:  # doctest: +SKIP
...     for report in Analyzer.load(executor=cluster).analyze_many(paths):
...         print(report.source, report.prediction.genre if report.ok else report.error)
...     with use_executor(cluster):  # every map_files call in the block runs there
...         data = load_folder("/shared/music/gtzan")

Dask distributed is the engine (scheduler, workers, rescheduling, dashboard);
this module only submits ``call_isolated(fn, item)`` for each item and reads
the results back in the order of the items, each as soon as it and all
before it are done.  Only this module imports Dask, and only
:mod:`genre_id.parallel` users that ask for a cluster import this module.

The rules a cluster adds:

* Workers read the files by path: paths are sent as absolute paths, and the
  files must be on storage every worker sees under the same path.  Before any
  work is submitted, the workers are asked which of the paths that exist here
  they cannot see; if any, :class:`FilesNotOnWorkersError` (one line) and
  nothing runs.  A path that exists nowhere is that file's error, as locally.
* A worker that dies (killed, out of memory, a decoder crash) is replaced by
  its nanny and its task rescheduled by Dask; a file whose task kills workers
  ``distributed.scheduler.allowed-failures`` + 1 times (Dask's
  ``KilledWorker``) gets a second task of its own (a task merely waiting on
  a worker that another file killed is counted too), and when that kills
  workers as often, the file becomes its :class:`~genre_id.parallel.FileFailure`.
* Each task limits BLAS/OpenMP to one thread; start workers with
  ``--nthreads 1`` and as many ``--nworkers`` as the machine has cores.
* Feature caches follow the same content-keyed rules on the workers.  A
  worker's cache folder is the environment variable ``GENRE_ID_CACHE_DIR``
  on that worker when set (when the caller asked for a cache at all), else
  the caller's ``cache_dir`` as seen from the worker's working folder.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import PurePath
from typing import Any

from .errors import GenreIdError
from .parallel import CtrlCHeld, Executor, FileFailure, _name, _worker_init, call_isolated

__all__ = ["ClusterError", "SchedulerUnreachableError", "FilesNotOnWorkersError", "DaskExecutor", "connect",
           "CACHE_DIR_VARIABLE", "DEFAULT_CONNECT_TIMEOUT"]

#: Environment variable naming a worker's feature-cache folder (read on the worker).
CACHE_DIR_VARIABLE = "GENRE_ID_CACHE_DIR"

#: Seconds to wait for the scheduler (and for its first worker) before giving up.
DEFAULT_CONNECT_TIMEOUT = 5.0


class ClusterError(GenreIdError):
    """The Dask cluster cannot be used (the message is one line)."""


class SchedulerUnreachableError(ClusterError):
    """No Dask scheduler answers at the address, or it has no workers."""


class FilesNotOnWorkersError(ClusterError):
    """Files that exist here but that the cluster's workers cannot see (not on shared storage)."""


# -- on the workers --------------------------------------------------------------

_THREADS_LIMITED = False


def _with_worker_cache(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``fn`` with its ``cache_dir`` replaced by this worker's ``GENRE_ID_CACHE_DIR`` (when both are set)."""
    folder = os.environ.get(CACHE_DIR_VARIABLE)
    if folder and isinstance(fn, partial) and fn.keywords.get("cache_dir") is not None:
        return partial(fn.func, *fn.args, **{**fn.keywords, "cache_dir": folder})
    return fn


def _run_task(fn: Callable[[Any], Any], item: Any, name: str) -> Any:
    """One item on a worker: one BLAS thread, the worker's cache folder, failures as :class:`FileFailure`."""
    global _THREADS_LIMITED
    if not _THREADS_LIMITED:
        _worker_init(1)
        _THREADS_LIMITED = True
    return call_isolated(_with_worker_cache(fn), item, name=name)


def _allowed_failures(dask_scheduler: Any) -> int:
    """The scheduler's ``distributed.scheduler.allowed-failures`` (runs on the scheduler)."""
    return int(dask_scheduler.allowed_failures)


def _unseen(paths: Sequence[str]) -> list[str]:
    """Of ``paths``, those this worker cannot see (runs on every worker through ``Client.run``)."""
    return [p for p in paths if not os.path.exists(p)]


# -- on the client ----------------------------------------------------------------


def _finished(future: Any, held: CtrlCHeld) -> Any:
    """``future`` once it has finished; a Ctrl-C noted by ``held`` meanwhile raises ``KeyboardInterrupt`` here."""
    import threading

    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    while not done.wait(0.05):
        if held.pressed:
            raise KeyboardInterrupt
    return future


def _for_workers(item: Any) -> Any:
    """``item`` as the workers get it: a relative path to a file here made absolute (same type), else as is."""
    if isinstance(item, (str, bytes, PurePath)) and not os.path.isabs(item) and os.path.exists(item):
        return type(item)(os.path.abspath(item))
    return item


class DaskExecutor(Executor):
    """Runs :func:`~genre_id.parallel.map_files` calls on a Dask distributed ``Client``'s cluster.

    Parameters
    ----------
    client
        A connected ``distributed.Client`` (see :func:`connect`).
    window
        Tasks in flight at most, per worker thread (at least 16 in all): results
        stream back in order without holding a whole collection's futures.
    check_paths
        Ask the workers, before submitting, which paths they cannot see.
    """

    def __init__(self, client: Any, *, window: int = 4, check_paths: bool = True) -> None:
        self.client = client
        self.window = max(1, int(window))
        self.check_paths = check_paths

    # context manager: closes the client
    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect from the scheduler (the cluster goes on)."""
        with CtrlCHeld():
            self.client.close()

    @property
    def address(self) -> str:
        return str(self.client.scheduler.address)

    def threads(self) -> int:
        """Worker threads of the cluster now (tasks it runs at once)."""
        return sum(self.client.nthreads().values()) or 1

    def unseen(self, paths: Sequence[str]) -> list[str]:
        """Of ``paths`` (absolute), those that at least one worker cannot see, in their order."""
        if not paths:
            return []
        try:
            per_worker = self.client.run(_unseen, list(paths))
        except Exception as exc:
            raise ClusterError(f"{self.address}: the Dask workers cannot run genre-id "
                               f"({type(exc).__name__}: {exc}); install it on every worker") from None
        missing = set().union(*per_worker.values()) if per_worker else set()
        return [p for p in paths if p in missing]

    def refuse_unseen(self, names: Sequence[str], sent: Sequence[Any]) -> None:
        """Raise :class:`FilesNotOnWorkersError` for files that exist here but not on every worker."""
        here = {os.fsdecode(s): n for n, s in zip(names, sent)
                if isinstance(s, (str, bytes, os.PathLike)) and os.path.exists(s)}
        missing = [here[p] for p in self.unseen(list(here))]
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise FilesNotOnWorkersError(
                f"{shown}: {'this file is' if len(missing) == 1 else f'{len(missing)} files are'} not visible to "
                f"the workers of {self.address}; put the music on storage every worker sees, under the same path")

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Any]:
        items = list(items)
        names = [_name(i) for i in items]
        sent = [_for_workers(i) for i in items]
        pending: deque[tuple[int, Any]] = deque()
        submitted = 0
        asked = -math.inf
        try:
            if self.check_paths:
                with CtrlCHeld():
                    self.refuse_unseen(names, sent)
            while submitted < len(items) or pending:
                with CtrlCHeld() as held:  # a Ctrl-C is raised here, never inside a Dask call
                    if time.monotonic() - asked > 2.0:  # workers come and go: ask now and then
                        limit, asked = max(16, self.window * self.threads()), time.monotonic()
                    room = limit - len(pending)
                    while submitted < len(items) and room > 0:
                        i = submitted
                        pending.append((i, self._submit(fn, sent[i], names[i])))
                        submitted += 1
                        room -= 1
                    i, future = pending.popleft()
                    result = self._result(future, names[i], sent[i], fn, held)
                yield result
        finally:  # an interrupt, an error, or the reader went away: cancel what has not been read
            if pending:
                with CtrlCHeld():
                    self.client.cancel([f for _, f in pending])
                    for _, f in pending:  # now, while the client is open (a Future released later finds it gone)
                        f.release()
                    pending.clear()

    def _submit(self, fn: Callable[[Any], Any], item: Any, name: str) -> Any:
        return self.client.submit(_run_task, fn, item, name, pure=False, retries=0)

    def _result(self, future: Any, name: str, sent: Any, fn: Callable[[Any], Any], held: CtrlCHeld) -> Any:
        from distributed import KilledWorker

        try:
            try:
                result = _finished(future, held).result()
            except KilledWorker:
                # A task waiting on a worker that another file killed counts that death too: give the
                # file a second task of its own before blaming it.
                future.release()
                future = self._submit(fn, sent, name)
                result = _finished(future, held).result()
        except KilledWorker:
            try:
                times = f" {2 * (int(self.client.run_on_scheduler(_allowed_failures)) + 1)} times"
            except Exception:  # pragma: no cover - the scheduler went away meanwhile
                times = " again and again"
            return FileFailure(name, f"{name}: the workers processing this file died{times} "
                                     "(a crash in the decoder, or out of memory)")
        except Exception as exc:
            if self.client.status not in ("running", "connecting"):
                raise ClusterError(f"{self.address}: lost the connection to the Dask scheduler") from None
            return FileFailure(name, f"{name}: internal error ({type(exc).__name__}: {exc})", internal=True)
        finally:
            future.release()
        if isinstance(result, FileFailure):  # name the file as the caller did, not as the workers got it
            absolute = _name(sent)
            if absolute != name and result.message.startswith(absolute):
                result = FileFailure(name, name + result.message[len(absolute):], result.internal)
        return result


def connect(address: str, *, timeout: float = DEFAULT_CONNECT_TIMEOUT, check_paths: bool = True) -> DaskExecutor:
    """A :class:`DaskExecutor` on the Dask scheduler at ``address`` (e.g. ``tcp://host:8786``).

    Raises :class:`SchedulerUnreachableError` (one line) when no scheduler
    answers within ``timeout`` seconds or it has no worker by then, and
    :class:`ClusterError` when Dask distributed is not installed.
    """
    with CtrlCHeld() as held:  # a Ctrl-C while importing or connecting is raised once the client is closed again
        try:
            from distributed import Client
        except ImportError:
            raise ClusterError("--scheduler needs Dask distributed: pip install 'genre-id[cluster]'") from None
        from distributed.comm import get_address_host_port

        if address.startswith("tls://"):  # a Client that fails on TLS is half made, and its clean-up stalls 10 s
            from distributed.security import Security

            if Security().get_connection_args("client").get("ssl_context") is None:
                raise SchedulerUnreachableError(
                    f"{address}: a tls:// scheduler needs TLS certificates in Dask's configuration "
                    "(distributed.comm.tls.ca-file and distributed.comm.tls.client.cert); none are set")
        try:
            get_address_host_port(address)  # a malformed address fails here, before a Client is half made
            client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SchedulerUnreachableError(f"{address}: cannot reach the Dask scheduler ({reason})") from None
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            client.close()
            raise SchedulerUnreachableError(f"{address}: the Dask scheduler has no workers "
                                            f"(start some with 'dask worker {address} --nthreads 1')") from None
        if held.pressed:
            client.close()
    return DaskExecutor(client, check_paths=check_paths)
