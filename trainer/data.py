"""CIFAR-10 from the official python format (folder, .tar.gz or Keras cache) and a synthetic twin.

Every loader returns the same `Dataset`: uint8 NHWC RGB images and int64 labels in 0..9.
Each batch file is decoded and checked by cifar10_trainer.batches.
"""

from __future__ import annotations

import os
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar10_runtime.contract import CIFAR10_CLASS_NAMES as CLASS_NAMES
from cifar10_runtime.files import sha256_hex

from .batches import parse_batch, read_class_names
from .errors import DataError
from .synthetic import synthetic_images

BATCH_DIR = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# Pinned like keras.datasets.cifar10: a tampered or truncated download is refused.
ARCHIVE_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
OFFLINE_HINT = "pass --data-dir DIR (holding cifar-10-batches-py/ or cifar-10-python.tar.gz) "
OFFLINE_HINT += "or use --dataset synthetic"


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray  # uint8 [N, 32, 32, 3]
    y_train: np.ndarray  # int64 [N]
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str  # where it came from, recorded in config.json and metrics.json
    synthetic: bool = False


def _assemble(read, source: str) -> Dataset:
    """Build a Dataset from `read(filename) -> bytes | None` (None: file absent)."""
    parts = []
    for fname in TRAIN_FILES:
        raw = read(fname)
        if raw is None:
            raise DataError(f"{source} is missing {fname}; {OFFLINE_HINT}. Received: {source}")
        parts.append(parse_batch(raw, f"{source}/{fname}"))
    test_raw = read(TEST_FILE)
    if test_raw is None:
        raise DataError(f"{source} is missing {TEST_FILE}; {OFFLINE_HINT}. Received: {source}")
    x_test, y_test = parse_batch(test_raw, f"{source}/{TEST_FILE}")
    return Dataset(
        x_train=np.concatenate([p[0] for p in parts]),
        y_train=np.concatenate([p[1] for p in parts]),
        x_test=x_test,
        y_test=y_test,
        class_names=read_class_names(read(META_FILE), f"{source}/{META_FILE}"),
        source=source,
    )


def _from_folder(folder: Path) -> Dataset:
    def read(fname: str) -> bytes | None:
        path = folder / fname
        return path.read_bytes() if path.is_file() else None

    return _assemble(read, str(folder))


def _from_archive(archive: Path) -> Dataset:
    # Members are read in memory, never extracted, so a crafted path ("../x") cannot escape.
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {
                m.name: m
                for m in tar.getmembers()
                if m.isfile() and m.name.startswith(f"{BATCH_DIR}/")
            }

            def read(fname: str) -> bytes | None:
                member = members.get(f"{BATCH_DIR}/{fname}")
                if member is None:
                    return None
                handle = tar.extractfile(member)
                return handle.read() if handle else None

            return _assemble(read, str(archive))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(
            f"{archive} is not a readable cifar-10-python.tar.gz ({type(exc).__name__}: {exc}); "
            f"re-download it or pass the extracted folder. Received: {archive}"
        ) from None


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def download_archive(cache: Path | None = None, origin: str = ORIGIN) -> Path:
    """Download the official archive once into the Keras cache and verify its SHA-256."""
    cache = cache or keras_cache_dir()
    target = cache / ARCHIVE
    if target.is_file() and sha256_hex(target) == ARCHIVE_SHA256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(origin, timeout=30) as resp, open(partial, "wb") as out:
            while block := resp.read(1 << 20):
                out.write(block)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"cannot download CIFAR-10 from {origin} ({exc}); {OFFLINE_HINT}. Received: {origin}"
        ) from None
    got = sha256_hex(partial)
    if got != ARCHIVE_SHA256:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"downloaded {origin} has SHA-256 {got}, expected {ARCHIVE_SHA256}; {OFFLINE_HINT}. "
            f"Received: {origin}"
        )
    os.replace(partial, target)
    return target


def load_cifar10(data_dir: str | Path | None = None) -> Dataset:
    """Load real CIFAR-10: DIR holds cifar-10-batches-py/ or the .tar.gz, or is the batch folder.

    With no data_dir: the Keras cache, downloading once (checksum checked) when online.
    """
    if data_dir is None:
        cache = keras_cache_dir()
        if (cache / BATCH_DIR / TEST_FILE).is_file():
            return _from_folder(cache / BATCH_DIR)
        return _from_archive(download_archive(cache))
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DataError(f"--data-dir {root} does not exist; {OFFLINE_HINT}. Received: {root}")
    if root.is_file():
        return _from_archive(root)
    if (root / BATCH_DIR).is_dir():
        return _from_folder(root / BATCH_DIR)
    if (root / ARCHIVE).is_file():
        return _from_archive(root / ARCHIVE)
    if (root / TEST_FILE).exists() or (root / TRAIN_FILES[0]).exists():
        return _from_folder(root)
    raise DataError(
        f"--data-dir {root} holds neither {BATCH_DIR}/ nor {ARCHIVE}; {OFFLINE_HINT}. "
        f"Received: --data-dir={root}"
    )


def load_synthetic(n_train: int = 5000, n_test: int = 1000, seed: int = 0) -> Dataset:
    """Deterministic images with 10 learnable classes (cifar10_trainer.synthetic)."""
    rng = np.random.default_rng(seed)
    x_train, y_train = synthetic_images(n_train, rng)
    x_test, y_test = synthetic_images(n_test, rng)
    return Dataset(
        x_train,
        y_train,
        x_test,
        y_test,
        CLASS_NAMES,
        source=f"synthetic(seed={seed})",
        synthetic=True,
    )


def load_dataset(
    name: str = "cifar10", data_dir: str | Path | None = None, seed: int = 0
) -> Dataset:
    """The one entry point the CLIs use: `cifar10` (real) or `synthetic`."""
    if name == "synthetic":
        return load_synthetic(seed=seed)
    if name == "cifar10":
        return load_cifar10(data_dir)
    raise DataError(f"unknown dataset. Received: dataset={name!r}; use 'cifar10' or 'synthetic'")


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Carve a validation set out of the training data (the test batch stays untouched)."""
    if not 0.0 < fraction < 1.0:
        raise DataError(
            f"validation split must be in (0, 1). Received: validation_split={fraction}"
        )
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, int(round(len(x) * fraction)))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]
