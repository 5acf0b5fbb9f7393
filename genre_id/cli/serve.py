"""``genre-id serve``: the web page and JSON API (:mod:`genre_id.web`) on 127.0.0.1:8000 by default."""

from __future__ import annotations

import argparse
import importlib.util
import socket
import sys

from ..errors import GenreIdError
from .common import EXIT_BAD_INPUT, EXIT_OK, fail, int_at_least, positive_int

__all__ = ["add_parser", "cmd_serve", "WEB_EXTRA"]

WEB_EXTRA = "pip install 'genre-id[web]'"
_WEB_MODULES = ("starlette", "uvicorn", "python_multipart")


def _port(text: str) -> int:
    port = int_at_least(0)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535, not {port}")
    return port


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", parents=parents, help="serve the web page and JSON API (the web extra)",
                       description="Serve a web page that names the genre of a recording (from the microphone or a "
                                   "file) and its JSON API, until Ctrl-C. See docs/web.md.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--model", metavar="PATH", help="model folder (default: the shipped model)")
    p.add_argument("--db", metavar="PATH", help="fingerprint database: also name the song")
    p.add_argument("--max-upload-mb", type=positive_int, default=200, metavar="MB",
                   help="largest upload accepted, in MB (default 200)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="analyses run at once (default: one per core)")
    p.add_argument("--queue", type=int_at_least(0), default=8, metavar="N",
                   help="requests that may wait for an analysis; more are answered 503 (default 8)")
    p.add_argument("--timeout", type=positive_int, default=120, metavar="S",
                   help="seconds one request may wait and be analysed before a 504 (default 120)")
    p.set_defaults(func=cmd_serve)


def _missing_web_extra() -> bool:
    for module in _WEB_MODULES:
        try:
            if importlib.util.find_spec(module) is None:
                return True
        except (ImportError, ValueError):
            return True
    return False


def cmd_serve(args: argparse.Namespace) -> int:
    if _missing_web_extra():
        fail(f"genre-id serve needs the web extra: {WEB_EXTRA}")
        return EXIT_BAD_INPUT
    import uvicorn

    from ..analysis import Analyzer
    from ..parallel import default_workers
    from ..web.app import create_app

    try:
        analyzer = Analyzer.load(args.model, db=args.db)
    except GenreIdError as exc:
        fail(str(exc))
        return EXIT_BAD_INPUT
    with analyzer:
        app = create_app(analyzer, max_upload_bytes=args.max_upload_mb << 20, queue_size=args.queue,
                         timeout_seconds=args.timeout, workers=default_workers(args.workers, 1 << 30),
                         processes=True)  # where the system can fork: a time limit can stop an analysis
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info",
                                access_log=args.verbose, server_header=False)
        server = uvicorn.Server(config)
        try:
            config.load()
            # bound here, not by uvicorn (which logs and exits): a bad host or port is our one line
            sock = socket.create_server((args.host, args.port), backlog=config.backlog,
                                        family=socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        except (OSError, OverflowError, SystemExit) as exc:
            fail(f"cannot listen on {args.host}:{args.port} ({getattr(exc, 'strerror', None) or exc})")
            return EXIT_BAD_INPUT
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"genre-id serve: http://{shown}:{port}/  (Ctrl-C stops)", flush=True)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) after uvicorn's own graceful shutdown: a clean stop
            pass
        finally:
            sock.close()
    if not args.quiet:
        print("stopped", file=sys.stderr)
    return EXIT_OK
