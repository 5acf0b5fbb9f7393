"""Shared fixtures: where the real GTZAN clips are, synthetic audio, the default model; and the ``train`` marker."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

# Numba (librosa's compiler) keeps compiled functions in a cache on disk. Test processes that run side by
# side (the pytest-xdist workers, and the processes a test starts) must not write the same cache at once:
# in a fresh install, where every process compiles, a spawned worker crashed (a jump to address 0) while
# the other test process compiled the same functions. Each xdist worker gets its own cache folder, set
# before anything imports numba; the processes a test starts inherit it.
if os.environ.get("PYTEST_XDIST_WORKER") and "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(
        tempfile.gettempdir(), f"genre-id-tests-numba-{os.getuid()}-{os.environ['PYTEST_XDIST_WORKER']}")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from genre_id.config import AnalysisConfig  # noqa: E402
from shared_data import ROOT, shared_data_dir  # noqa: F401  (ROOT: the tests import it from here)

SHARED_DATA = shared_data_dir()
#: The shipped models' analysis: 30 s windows at 22050 Hz, at least 3 s of audio.
CONFIG = AnalysisConfig.for_window(sample_rate=22050, window_seconds=30.0)
MINI = SHARED_DATA / "gtzan_mini"
TABLE = SHARED_DATA / "gtzan_features_30_sec.csv"
SPLIT = SHARED_DATA / "gtzan_split"

#: The modules of the ``train`` extra (pyproject.toml), by import name.
TRAIN_EXTRA = ("tensorflow", "keras", "librosa", "sklearn")


def missing_train_extra() -> list[str]:
    """The modules of the ``train`` extra that are not installed (none on a full install)."""
    return [m for m in TRAIN_EXTRA if importlib.util.find_spec(m) is None]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``train`` skip, saying why, where the ``train`` extra is not installed (a base + test install)."""
    missing = missing_train_extra()
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"needs the 'train' extra (pip install -e '.[train]'): "
                                   f"{', '.join(missing)} not installed")
    for item in items:
        if item.get_closest_marker("train") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _private_locations(tmp_path_factory):
    """The feature cache and the default fingerprint database of every test (and its subprocesses) in a temporary
    folder, never in the user's own."""
    import os

    root = tmp_path_factory.mktemp("locations")
    saved = {k: os.environ.get(k) for k in ("GENRE_ID_CACHE_DIR", "GENRE_ID_DB")}
    os.environ["GENRE_ID_CACHE_DIR"] = str(root / "cache")
    os.environ["GENRE_ID_DB"] = str(root / "fingerprints.sqlite")
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set GENRE_ID_SHARED_DATA to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def mini_dir() -> Path:
    """The 100 real GTZAN clips (10 per genre)."""
    return _need(MINI, "the real GTZAN clips (gtzan_mini)")


@pytest.fixture(scope="session")
def table_path() -> Path:
    return _need(TABLE, "the GTZAN feature table")


@pytest.fixture(scope="session")
def split_dir() -> Path:
    return _need(SPLIT, "the fault-filtered GTZAN split lists")


@pytest.fixture(scope="session")
def mini_files(mini_dir: Path) -> list[Path]:
    files = sorted(mini_dir.glob("*/*.flac"))
    assert len(files) == 100, f"expected 100 clips in {mini_dir}, found {len(files)}"
    return files


@pytest.fixture(scope="session")
def mini_features(mini_files, default_recognizer):
    """The shipped model's feature rows of the 100 real clips, computed once per test session on all cores."""
    from genre_id.extraction import extract_files

    results = extract_files(mini_files, feature_set=default_recognizer.feature_set, config=CONFIG, progress=False)
    return dict(zip(mini_files, results))


def tone(seconds: float, sr: int = 22050, *, freq: float = 440.0, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A tone with a little noise, mono float32."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    return (amp * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="session")
def default_recognizer():
    from genre_id import Recognizer

    return Recognizer.load()
