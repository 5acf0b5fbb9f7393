#!/usr/bin/env python3
"""Benchmark ``genre-id serve``: a 30 s clip posted by 1, 4 and 16 concurrent clients.

    python scripts/bench/web.py [--seconds 60] [--clip PATH] [--workers N] [--queue N]

Starts ``genre-id serve`` on 127.0.0.1 (a free port) and, for each number of
clients, posts the clip to ``/api/identify`` from that many threads for
``--seconds`` seconds: requests per second, p50 and p95 latency, the server's
peak resident memory, and failures apart from 503 (busy).  The library's warm
``Analyzer.analyze`` time of the same clip, measured in this process, is the
yardstick of the 1-client p50.  Prints a table (measure, value, target,
pass/fail) and exits 1 if a target is missed; without the shared clips or the
web extra it is skipped (exit 0).  Traffic goes to 127.0.0.1 only, and the
server is stopped at the end.

Targets: p50 at 1 client at most 1.3 x the warm analysis; throughput at 4
clients at least 1.6 x that at 1 client; server RSS below 600 MB at 16
clients; no failures but 503.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_common import ROOT, shared_data_dir, verdict

DEFAULT_CLIP = "metal/metal.00002.flac"


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its child processes (the worker processes), MB; shared pages count twice."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    return _own_rss_mb(pid) + sum(_own_rss_mb(c) for c in children)


def _own_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS")), 0.0)
    except OSError:
        return 0.0


def start_server(workers: int | None, queue: int) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "genre_id.cli", "serve", "--host", "127.0.0.1", "--port", "0", "-q",
           "--queue", str(queue)] + (["--workers", str(workers)] if workers else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "http://127.0.0.1:" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, int(line.split("http://127.0.0.1:")[1].split("/")[0])


def run_clients(port: int, body: bytes, clients: int, seconds: float, pid: int) -> dict:
    """``clients`` threads posting ``body`` until ``seconds`` pass: latencies of the 200s, counts, peak RSS."""
    latencies: list[float] = []
    counts = {"ok": 0, "busy": 0, "failed": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    peak = [rss_mb(pid)]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while time.monotonic() < deadline:
            t = time.perf_counter()
            try:
                conn.request("POST", "/api/identify", body=body, headers={"Content-Type": "audio/flac"})
                r = conn.getresponse()
                r.read()
                status, retry = r.status, r.getheader("Retry-After")
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                status, retry = 0, None
            took = time.perf_counter() - t
            with lock:
                if status == 200:
                    counts["ok"] += 1
                    latencies.append(took)
                elif status == 503 and retry:
                    counts["busy"] += 1
                else:
                    counts["failed"] += 1
            if status == 503:
                time.sleep(min(float(retry or 1), 0.5))
        conn.close()

    def sample() -> None:
        while time.monotonic() < deadline + 1:
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.1)

    threads = [threading.Thread(target=client) for _ in range(clients)] + [threading.Thread(target=sample)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    latencies.sort()
    q = (lambda f: latencies[min(len(latencies) - 1, int(f * len(latencies)))] if latencies else float("nan"))
    return {"clients": clients, "rps": counts["ok"] / elapsed, "p50": q(0.5), "p95": q(0.95), "rss": peak[0],
            **counts}


def warm_analyze(path: Path, repeats: int = 5) -> float:
    from genre_id.analysis import Analyzer

    with Analyzer.load() as analyzer:
        analyzer.analyze(path)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            analyzer.analyze(path)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60, help="seconds per number of clients (default 60)")
    ap.add_argument("--clip", type=Path, default=None, help=f"the clip (default the shared {DEFAULT_CLIP})")
    ap.add_argument("--workers", type=int, default=None, help="the server's --workers (default: its own)")
    ap.add_argument("--queue", type=int, default=8, help="the server's --queue (default 8)")
    args = ap.parse_args(argv)
    clip = args.clip or shared_data_dir() / "gtzan_mini" / DEFAULT_CLIP
    if not clip.exists():
        print(f"skipped: {clip} not found")
        return 0
    if any(importlib.util.find_spec(m) is None for m in ("starlette", "uvicorn", "python_multipart")):
        print("skipped: the web extra is not installed (pip install 'genre-id[web]')")
        return 0
    warm = warm_analyze(clip)
    body = clip.read_bytes()
    proc, port = start_server(args.workers, args.queue)
    try:
        rows = [run_clients(port, body, n, args.seconds, proc.pid) for n in (1, 4, 16)]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(f"clip {clip.name}, {args.seconds:g} s per row; warm Analyzer.analyze {warm * 1000:.0f} ms\n")
    print("| clients | requests/s | p50 ms | p95 ms | server RSS MB | 200 | 503 | failed |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['clients']} | {r['rps']:.2f} | {r['p50'] * 1000:.0f} | {r['p95'] * 1000:.0f} | {r['rss']:.0f} "
              f"| {r['ok']} | {r['busy']} | {r['failed']} |")
    one, four, sixteen = rows
    checks = [
        ("p50 at 1 client / warm analyze", f"{one['p50'] / warm:.2f}", "<= 1.3", one["p50"] <= 1.3 * warm),
        ("throughput 4 clients / 1 client", f"{four['rps'] / one['rps']:.2f}" if one["rps"] else "-", ">= 1.6",
         one["rps"] > 0 and four["rps"] >= 1.6 * one["rps"]),
        ("server RSS at 16 clients (MB)", f"{sixteen['rss']:.0f}", "< 600", sixteen["rss"] < 600),
        ("failures other than 503", str(sum(r["failed"] for r in rows)), "0", not any(r["failed"] for r in rows)),
    ]
    print("\n| measure | value | target | result |\n| --- | ---: | --- | --- |")
    for name, value, target, ok in checks:
        print(f"| {name} | {value} | {target} | {verdict(ok)} |")
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
