"""The Starlette application of ``genre-id serve``: the page, and ``/api/identify``, ``/api/model``, ``/api/health``.

Every upload is streamed into a file in a private temporary folder while its
size is counted (413 as soon as the limit is passed, the file removed), then
judged by decoding it (422 with one line for text, truncated, empty, too
short or silent audio).  Requests are admitted up to ``workers`` running
analyses plus ``queue_size`` waiting ones (503 with ``Retry-After`` past
that); analyses run in a pool of ``workers`` threads or processes so the event loop
keeps answering, each with a time limit (504; in a worker process the
analysis itself is stopped then, so it frees its place).  A worker process
that dies (killed, out of memory) is replaced: the request it held gets a
500, the next ones are served.  Every response is JSON or one
of the page's three files; no response carries a traceback or a server path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import tempfile
import unicodedata
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from importlib import resources
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..analysis import Analyzer
from ..audio import AudioStream
from ..parallel import can_fork, forked_pool

__all__ = ["create_app", "DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_QUEUE_SIZE", "DEFAULT_TIMEOUT_SECONDS"]

log = logging.getLogger("genre_id.web")

DEFAULT_MAX_UPLOAD_BYTES = 200 << 20
DEFAULT_QUEUE_SIZE = 8
DEFAULT_TIMEOUT_SECONDS = 120.0
#: What a multipart body may hold besides the file (boundaries, part headers, small fields).
MULTIPART_SLACK = 64 << 10
#: Seconds a client asked to retry after when the server is busy.
RETRY_AFTER = 2

#: Raw bodies of these types are taken as audio; whether they are is judged by decoding.
_RAW_TYPES = ("audio/", "video/", "application/octet-stream", "application/ogg")
_STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
           "/style.css": ("style.css", "text/css; charset=utf-8")}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _Refused(Exception):
    """A request answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={**_SECURITY_HEADERS, **(headers or {})})


def safe_name(name: str | None) -> str:
    """A shown name from a client's file name: its last component, printable, at most 100 characters; else ``upload``."""
    text = unicodedata.normalize("NFC", str(name or "")).replace("\\", "/").rsplit("/", 1)[-1]
    text = re.sub(r"[^\w .()+,-]", "_", text).strip(" .")[:100]
    return text or "upload"


def _mb(n: int) -> str:
    return f"{n / (1 << 20):g} MB"


class _Upload:
    """One request's body written into ``folder`` (the file part of a multipart body, or the raw body)."""

    def __init__(self, folder: str, limit: int) -> None:
        self.limit = limit
        fd, self.path = tempfile.mkstemp(prefix="upload-", dir=folder)
        self.file = os.fdopen(fd, "wb")
        self.size = 0
        self.filename: str | None = None
        self.found = False

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise _Refused(413, f"the upload is larger than the limit of {_mb(self.limit)}")
        self.file.write(data)

    def remove(self) -> None:
        self.file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class _MultipartFile:
    """Feeds a multipart body to ``upload``: only the field named ``file`` is kept."""

    def __init__(self, boundary: bytes, upload: _Upload) -> None:
        self.upload = upload
        self._field = self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._keep = False
        self.parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._begin, "on_header_field": self._on_field, "on_header_value": self._on_value,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_done,
            "on_part_data": self._data})

    def _begin(self) -> None:
        self._headers, self._keep = {}, False

    def _on_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if len(self._headers) < 16:
            self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._keep = options.get(b"name") == b"file" and not self.upload.found
        if self._keep:
            self.upload.found = True
            raw = options.get(b"filename")
            self.upload.filename = raw.decode("utf-8", "replace") if raw is not None else None

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._keep:
            self.upload.write(data[start:end])

    def write(self, chunk: bytes) -> None:
        try:
            self.parser.write(chunk)
        except _Refused:
            raise
        except Exception:
            raise _Refused(400, "the multipart body is malformed") from None

    def finish(self) -> None:
        try:
            self.parser.finalize()
        except Exception:
            raise _Refused(400, "the multipart body is malformed") from None


def _top_k(d: dict[str, Any], k: int) -> None:
    """Cut ``top`` (and each segment's) to the best ``k`` genres of ``probabilities``."""
    for item in (d, *d.get("segments", ())):
        best = sorted(item["probabilities"].items(), key=lambda kv: -kv[1])[:k]
        item["top"] = [{"genre": g, "probability": p} for g, p in best]


def _analyze(analyzer: Analyzer, path: str, size: int, name: str, folder: str) -> dict[str, Any] | tuple[int, str]:
    """In a worker thread or process: the report's JSON for the upload at ``path``, or (status, message)."""
    if size == 0:
        return 422, f"{name}: the upload is empty"
    try:
        with open(path, "rb") as fh:
            report = analyzer.analyze(AudioStream(fh, name=name, size=size), name=name)
    except Exception as exc:  # a bug: logged here, said in one line without details there
        log.exception("analysing %s failed", name)
        return 500, f"{name}: internal error ({type(exc).__name__})"
    if report.internal:
        log.error("analysing %s: %s", name, report.error)
        return 500, f"{name}: internal error"
    if not report.ok:
        return 422, str(report.error).replace(folder, "")
    return report.to_dict()


#: The analyzer of a worker process (forked with it: shared pages, no second load).
_PROCESS_ANALYZER: Analyzer | None = None


class _TimeLimit(BaseException):
    """Raised in a worker process by its alarm: a BaseException, so no ``except Exception`` on the way keeps it."""


def _time_limit(signum: int, frame: Any) -> None:
    raise _TimeLimit


def _process_analyze(path: str, size: int, name: str, folder: str,
                     timeout: float) -> dict[str, Any] | tuple[int, str]:
    """:func:`_analyze` in a worker process, stopped by an alarm after ``timeout`` seconds."""
    assert _PROCESS_ANALYZER is not None
    previous = signal.signal(signal.SIGALRM, _time_limit)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return _analyze(_PROCESS_ANALYZER, path, size, name, folder)
    except _TimeLimit:
        return 504, _too_long(name, timeout)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _too_long(name: str, timeout: float) -> str:
    return f"{name}: the analysis took longer than {timeout:g} s"


class _Service:
    """The state behind the routes: the analyzer, the admission count, the thread pool, the temporary folder."""

    def __init__(self, analyzer: Analyzer, *, max_upload_bytes: int, queue_size: int, timeout_seconds: float,
                 workers: int, processes: bool) -> None:
        self.analyzer = analyzer
        self.processes = processes
        self.max_upload_bytes = int(max_upload_bytes)
        self.capacity = int(workers) + int(queue_size)
        self.timeout = float(timeout_seconds)
        self.workers = int(workers)
        self.admitted = 0
        self.pool: Executor | None = None
        self.folder: str | None = None

    def start(self) -> None:
        global _PROCESS_ANALYZER
        if self.processes:
            _PROCESS_ANALYZER = self.analyzer
            self.pool = forked_pool(self.workers)  # forked now, with the loaded model, before any upload
        else:
            self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="genre-id-analysis")
        self.folder = tempfile.mkdtemp(prefix="genre-id-web-")  # private: mode 0700

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    async def identify(self, request: Request) -> Response:
        if self.admitted >= self.capacity:
            return _error(503, "the server is busy; try again in a moment", {"Retry-After": str(RETRY_AFTER)})
        self.admitted += 1
        handed_over = False
        upload: _Upload | None = None
        try:
            top, timeline = self._options(request)
            upload = _Upload(self.folder or tempfile.gettempdir(), self.max_upload_bytes)
            await self._receive(request, upload)
            name = safe_name(upload.filename if upload.filename is not None else request.query_params.get("name"))
            pool, job = self._submit(upload, name)
            handed_over = True
            job.add_done_callback(lambda _f, u=upload: self._release(u))  # the file is the worker's until it ends
            try:
                result = await asyncio.wait_for(asyncio.shield(job), self.timeout)
            except asyncio.TimeoutError:
                return _error(504, _too_long(name, self.timeout))
            except BrokenProcessPool:
                self._replace_pool(pool)
                return _error(500, f"{name}: the worker process analysing it stopped; try again")
            if isinstance(result, tuple):
                return _error(*result)
            if top is not None:
                _top_k(result, top)
            if not timeline:
                result.pop("segments", None)
            return JSONResponse(result, headers=_SECURITY_HEADERS)
        except _Refused as exc:
            return _error(exc.status, exc.message, exc.headers)
        except ClientDisconnect:
            log.info("client went away during the upload")
            return Response(status_code=400)
        except Exception:
            log.exception("/api/identify failed")
            return _error(500, "internal error")
        finally:
            if not handed_over:
                if upload is not None:
                    upload.remove()
                self.admitted -= 1

    def _submit(self, upload: _Upload, name: str) -> tuple[Executor | None, asyncio.Future]:
        """Hand the analysis of ``upload`` to the pool: (that pool, the job); a pool found broken is replaced first."""
        folder = self.folder or "\0"
        if self.processes:
            job: tuple[Any, ...] = (_process_analyze, upload.path, upload.size, name, folder, self.timeout)
        else:
            job = (partial(_analyze, self.analyzer), upload.path, upload.size, name, folder)
        loop = asyncio.get_running_loop()
        pool = self.pool
        try:
            return pool, loop.run_in_executor(pool, *job)
        except BrokenProcessPool:  # a worker died since the last request: nothing of this one was lost
            self._replace_pool(pool)
            return self.pool, loop.run_in_executor(self.pool, *job)

    def _replace_pool(self, broken: Executor | None) -> None:
        """Fork a new pool of worker processes in place of ``broken`` (once, however many requests saw it break)."""
        if broken is not self.pool or not self.processes:
            return
        log.error("a worker process stopped; starting new ones")
        broken.shutdown(wait=False, cancel_futures=True)
        self.pool = forked_pool(self.workers)

    def _release(self, upload: _Upload) -> None:
        upload.remove()
        self.admitted -= 1

    def _options(self, request: Request) -> tuple[int | None, bool]:
        q = request.query_params
        top = None
        if "top" in q:
            n = len(self.analyzer.labels)
            if not re.fullmatch(r"\d{1,4}", q["top"]) or not 1 <= int(q["top"]) <= n:
                raise _Refused(400, f"top must be a whole number from 1 to {n}")
            top = int(q["top"])
        timeline = q.get("timeline", "1")
        if timeline not in ("0", "1"):
            raise _Refused(400, "timeline must be 0 or 1")
        return top, timeline == "1"

    async def _receive(self, request: Request, upload: _Upload) -> None:
        """Stream the body into ``upload``, refusing a wrong type or a size past the limit as soon as it is seen."""
        ctype, options = parse_options_header(request.headers.get("content-type"))
        kind = ctype.decode("latin-1").lower()
        multipart: _MultipartFile | None = None
        limit = self.max_upload_bytes
        if kind == "multipart/form-data":
            boundary = options.get(b"boundary")
            if not boundary or len(boundary) > 200:
                raise _Refused(400, "the multipart body has no boundary")
            multipart, limit = _MultipartFile(boundary, upload), limit + MULTIPART_SLACK
        elif kind and not kind.startswith(_RAW_TYPES):
            raise _Refused(415, f"cannot take a body of type {kind[:60]}; send audio, or a multipart form "
                                "with a field named file")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _Refused(413, f"the upload is larger than the limit of {_mb(self.max_upload_bytes)}")
        total = 0
        stream = request.stream().__aiter__()
        while True:
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), self.timeout)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise _Refused(408, f"no data came for {self.timeout:g} s") from None
            total += len(chunk)
            if total > limit:
                raise _Refused(413, f"the upload is larger than the limit of {_mb(self.max_upload_bytes)}")
            if multipart is not None:
                multipart.write(chunk)
            else:
                upload.write(chunk)
        if multipart is not None:
            multipart.finish()
            if not upload.found:
                raise _Refused(400, "the multipart form has no field named file")
        upload.file.close()

    async def model(self, request: Request) -> Response:
        m = self.analyzer.model
        return JSONResponse({"name": m.name, "version": m.version, "labels": list(m.labels),
                             "members": list(m.members), "match": self.analyzer.index is not None,
                             "max_upload_bytes": self.max_upload_bytes}, headers=_SECURITY_HEADERS)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "busy": self.admitted, "capacity": self.capacity},
                            headers=_SECURITY_HEADERS)

    async def static(self, request: Request) -> Response:
        filename, media_type = _STATIC[request.url.path]
        body = resources.files(__package__).joinpath("static", filename).read_bytes()
        return Response(body, media_type=media_type, headers=_SECURITY_HEADERS)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error(404, "not found")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return _error(405, "method not allowed")


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s", request.url.path, exc_info=exc)
    return _error(500, "internal error")


def create_app(analyzer: Analyzer, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               queue_size: int = DEFAULT_QUEUE_SIZE, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
               workers: int = 1, processes: bool = False) -> Starlette:
    """The application serving ``analyzer``: ``workers`` analyses at once, ``queue_size`` more waiting.

    The analyses run in ``workers`` threads, or with ``processes`` (POSIX)
    in ``workers`` processes forked with the loaded analyzer when the
    application starts: the numpy model holds Python's lock for much of its
    work, so only processes use several cores.  Processes also let a time
    limit stop an analysis and a dead worker be replaced; a thread that
    passes the limit gets its 504 but runs to its end.

    The thread pool and the private temporary folder live from the
    application's startup to its shutdown (its lifespan).
    """
    if max_upload_bytes < 1 or queue_size < 0 or timeout_seconds <= 0 or workers < 1:
        raise ValueError("max_upload_bytes, workers and timeout_seconds must be positive, queue_size not negative")
    service = _Service(analyzer, max_upload_bytes=max_upload_bytes, queue_size=queue_size,
                       timeout_seconds=timeout_seconds, workers=workers,
                       processes=processes and can_fork())
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette):
        service.start()
        try:
            yield
        finally:
            service.stop()

    routes = [Route("/api/identify", service.identify, methods=["POST"]),
              Route("/api/model", service.model, methods=["GET"]),
              Route("/api/health", service.health, methods=["GET"]),
              *(Route(path, service.static, methods=["GET"]) for path in _STATIC)]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: _not_found, 405: _not_allowed, 500: _internal, Exception: _internal})
    app.state.service = service
    return app
