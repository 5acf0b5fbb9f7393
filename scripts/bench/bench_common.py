"""What the benchmarks share: the development data (looked up as the tests do), a table cell, and measuring.

The development data (``gtzan_mini/`` real clips, ``gtzan_features_30_sec.csv``
and ``gtzan_split/``) is found by ``tests/shared_data.py``: ``$GENRE_ID_SHARED_DATA``,
else ``../shared/data`` beside the repository; where it is absent benchmarks skip, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[2]

if str(ROOT) not in sys.path:  # run from a checkout: use its genre_id
    sys.path.insert(0, str(ROOT))
if str(ROOT / "tests") not in sys.path:  # the development-data lookup the tests use
    sys.path.append(str(ROOT / "tests"))

from shared_data import shared_data_dir  # noqa: E402

__all__ = ["ROOT", "shared_data_dir", "verdict", "Measured", "run_measured", "env_with_checkout"]


def verdict(ok: bool | None, *, passed: str = "pass", failed: str = "FAIL", info: str = "-") -> str:
    """The result cell of a row: ``info`` when the row has no target."""
    return info if ok is None else passed if ok else failed



#: Runs one command and prints, as JSON, its wall time, exit code, CPU times and peak RSS
#: (``RUSAGE_CHILDREN``: the largest of the command and the processes it waited for).
_WRAPPER = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as fh:
    json.dump({"wall": wall, "returncode": p.returncode, "maxrss_kb": ru.ru_maxrss,
               "cpu": ru.ru_utime + ru.ru_stime,
               "stdout": p.stdout.decode("utf-8", "replace"), "stderr": p.stderr.decode("utf-8", "replace")}, fh)
"""


@dataclass(frozen=True)
class Measured:
    """What one run of a command cost."""

    wall: float  #: seconds
    rss_mb: float  #: peak resident memory, MB (10^6 bytes)
    cpu: float  #: user + system CPU seconds
    returncode: int
    stdout: str
    stderr: str


def env_with_checkout(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment, with the checkout first on ``PYTHONPATH`` and ``extra`` on top."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(extra or {})
    return env


def run_measured(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 900,
                 cwd: str | os.PathLike[str] | None = None) -> Measured:
    """Run ``cmd`` in a fresh wrapper process; its wall time, peak RSS, CPU time and output."""
    with tempfile.TemporaryDirectory(prefix="genre-id-rss-") as tmp:
        out = Path(tmp) / "m.json"
        subprocess.run([sys.executable, "-c", _WRAPPER, str(out), *map(str, cmd)], env=env_with_checkout(env),
                       timeout=timeout, check=True, cwd=cwd)
        m = json.loads(out.read_text())
    return Measured(wall=m["wall"], rss_mb=m["maxrss_kb"] * 1024 / 1e6, cpu=m["cpu"],
                    returncode=m["returncode"], stdout=m["stdout"], stderr=m["stderr"])
