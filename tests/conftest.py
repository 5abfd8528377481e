"""Shared fixtures: where the real CIFAR-10 subset and the generated fixtures live."""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # cifar10_subset (no numpy) from any venv
from cifar10_runtime.engines import load  # noqa: E402
from cifar10_runtime.engines.timing_cache import ENV as ROUTE_CACHE_ENV  # noqa: E402
from cifar10_subset import DEFAULT_SUBSET as SHARED_SUBSET  # noqa: E402
from cifar10_subset import subset_available  # noqa: E402

# The runtime keeps its load-time engine timings in ~/.cache (route_cache.py): the suite uses
# a folder of its own, set before any test or the processes they start reads it.
os.environ[ROUTE_CACHE_ENV] = tempfile.mkdtemp(prefix="cifar10-route-cache-")

# Built by `make fixtures` (tests/make_fixtures.py) in the full venv, read by every venv.
FIXTURES = Path(os.environ.get("CIFAR10_FIXTURES", REPO / "build" / "fixtures"))


@pytest.fixture(autouse=True)
def _timings_kept_however_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process, a timing is cached however much other processes used the cores
    meanwhile: a test of the cache must not depend on the machine's load (CI shares its
    cores). The tests of the busy check itself set load.BUSY_SHARE back."""
    monkeypatch.setattr(load, "BUSY_SHARE", float("inf"))


@pytest.fixture(scope="session")
def subset_dir() -> Path:
    """The real CIFAR-10 subset (official python format) from ../shared."""
    if not subset_available(SHARED_SUBSET):
        pytest.skip(f"real CIFAR-10 subset not found at {SHARED_SUBSET} (set CIFAR10_SUBSET)")
    return SHARED_SUBSET


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Generated models and arrays; absent only when `make fixtures` has not run."""
    if not FIXTURES.is_dir():
        pytest.skip(f"no generated fixtures at {FIXTURES}: run `make fixtures` first")
    return FIXTURES


@pytest.fixture(scope="session")
def engines_dir(fixtures_dir: Path) -> Path:
    """The briefly trained model exported with --quantize int8: model.onnx + its int8 twin."""
    path = fixtures_dir / "engines"
    if not (path / "model.int8.onnx").is_file():
        pytest.skip(f"no int8-twin fixture in {path}: run `make fixtures`")
    return path


def write_slice(src: Path, dst: Path, per_batch: int = 80, test: int = 100) -> Path:
    """The first images of each official batch file, in the official format."""
    folder = dst / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(src / "cifar-10-batches-py" / name, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        n = test if name == "test_batch" else per_batch
        piece = {b"data": batch[b"data"][:n], b"labels": list(batch[b"labels"][:n])}
        (folder / name).write_bytes(pickle.dumps(piece))
    meta = (src / "cifar-10-batches-py" / "batches.meta").read_bytes()
    (folder / "batches.meta").write_bytes(meta)
    return dst


@pytest.fixture(scope="session")
def data_slice(tmp_path_factory: pytest.TempPathFactory, subset_dir: Path) -> Path:
    # 400 training images: 360 after the 10% validation split, 15 global batches of 24.
    return write_slice(subset_dir, tmp_path_factory.mktemp("slice"))
