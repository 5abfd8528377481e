"""Decoding one CIFAR-10 python batch file: a restricted unpickler and checks of every field.

The pickles are read with an unpickler that builds numpy arrays and nothing else, so a hostile
batch file cannot run code; shapes, dtypes, labels and class names are checked before use.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from cifar10_runtime.contract import CIFAR10_CLASS_NAMES, valid_class_names

from .errors import DataError


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


def read_class_names(meta: bytes | None, name: str) -> tuple[str, ...]:
    """The batches.meta label names (the standard ones when the file is absent)."""
    if meta is None:
        return CIFAR10_CLASS_NAMES
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
