"""CIFAR-10 from the official python format (folder, .tar.gz or Keras cache) and a synthetic twin.

Every loader returns the same `Dataset`: uint8 NHWC RGB images and int64 labels in 0..9.
The pickles are read with a restricted unpickler, so a hostile batch file cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar10_runtime.contract import CIFAR10_CLASS_NAMES as CLASS_NAMES
from cifar10_runtime.contract import valid_class_names
from cifar10_runtime.files import sha256_hex

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


class _NumpyOnlyUnpickler(pickle.Unpickler):
    # CIFAR batches hold dicts of bytes, lists and numpy arrays; nothing else may be built.
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def _unpickle(raw: bytes, name: str) -> dict:
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # truncated, not a pickle, forbidden global: all one user error
        raise DataError(
            f"{name} is not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}); "
            f"re-download the official cifar-10-python.tar.gz. Received: {name}"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(
            f"{name} is not a CIFAR-10 batch (a dict of data and labels); re-download the "
            f"official cifar-10-python.tar.gz. Received: {type(obj).__name__}"
        )
    return obj


def parse_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one batch file's bytes into (uint8 [N,32,32,3], int64 [N]), validating everything."""
    obj = _unpickle(raw, name)
    if b"data" not in obj or b"labels" not in obj:
        found = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in obj)
        raise DataError(
            f"{name} is not a CIFAR-10 batch: needs keys 'data' and 'labels'; re-download the "
            f"official cifar-10-python.tar.gz. Received: keys {found}"
        )
    data = np.asarray(obj[b"data"])
    labels = np.asarray(obj[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{name} has images of shape {data.shape} and dtype {data.dtype}; "
            "CIFAR-10 needs uint8 rows of 3072 values (3x32x32); re-download the official "
            f"cifar-10-python.tar.gz. Received: {name}"
        )
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(
            f"{name} has {labels.size} labels for {len(data)} images; re-download the official "
            f"cifar-10-python.tar.gz. Received: {name}"
        )
    labels = _integer_labels(labels, name)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(
            f"{name} has labels outside 0..9; re-download the official cifar-10-python.tar.gz. "
            f"Received: labels {int(labels.min())}..{int(labels.max())}"
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # stored CHW, we serve HWC
    return np.ascontiguousarray(images), labels


def _integer_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """Labels as int64, refusing anything that is not a whole number (never truncating 3.7)."""
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    bad = None
    if labels.dtype.kind == "f":
        wrong = ~np.isfinite(labels) | (labels != np.round(labels))
        if wrong.any():
            bad = int(np.argmax(wrong))
    else:  # strings, bools, objects: one element at a time, to name the first bad one
        for i, v in enumerate(labels.tolist()):
            whole = isinstance(v, int) or (isinstance(v, float) and v.is_integer())
            if isinstance(v, bool) or not whole:
                bad = i
                break
    if bad is not None:
        raise DataError(
            f"{name} has a label that is not a class number 0..9: {labels[bad].item()!r} at index "
            f"{bad} (dtype {labels.dtype}); re-download the official cifar-10-python.tar.gz. "
            f"Received: {name}"
        )
    return labels.astype(np.int64)


def _class_names(meta: bytes | None, name: str) -> tuple[str, ...]:
    if meta is None:
        return CLASS_NAMES
    obj = _unpickle(meta, name)
    raw = obj.get(b"label_names")
    names = (
        [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
        if isinstance(raw, list)
        else None
    )
    if not valid_class_names(names):
        raise DataError(
            f"{name} has no list of 10 distinct label_names; re-download the official "
            f"cifar-10-python.tar.gz. Received: {name}"
        )
    return tuple(names)


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
        class_names=_class_names(read(META_FILE), f"{source}/{META_FILE}"),
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
