"""The golden set: a few check images and their float32 reference outputs, inside the model.

`cifar-export` stores it in the `golden_set` metadata (contract.GOLDEN_KEY) with the
precisions the model allows and each one's tolerance (contract.PRECISIONS_KEY). At load the
runtime replays the images on every engine it may use: an engine whose outputs differ from the
reference by more than its precision's tolerance is not used, and a file whose float32 outputs
no longer match (weights changed after export) is refused. Arrays travel as base64 of their
little-endian bytes, so the key stays a small JSON string.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cifar10_runtime.contract import FP32_TOLERANCE, IMAGE_SHAPE, NUM_CLASSES, PRECISIONS

FORMAT = 1


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A JSON-ready record of a uint8 or float32 array."""
    dtype = np.dtype(array.dtype).newbyteorder("<")
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return {
        "dtype": dtype.name,
        "shape": list(array.shape),
        "base64": base64.b64encode(data).decode(),
    }


def decode_array(record: dict[str, Any], dtype: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    if record.get("dtype") != dtype:
        raise ValueError(f"dtype {record.get('dtype')!r}, expected {dtype}")
    shape = tuple(int(d) for d in record["shape"])
    if len(shape) != 1 + len(shape_tail) or shape[1:] != shape_tail or shape[0] < 1:
        raise ValueError(f"shape {list(shape)}, expected [k, {', '.join(map(str, shape_tail))}]")
    raw = base64.b64decode(record["base64"], validate=True)
    array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    return array.reshape(shape).astype(dtype)


def encode_golden(images: np.ndarray, probabilities: np.ndarray, labels=None) -> dict[str, Any]:
    """The `golden_set` value: uint8 images [k,32,32,3], float32 reference outputs [k,10]."""
    out: dict[str, Any] = {
        "format": FORMAT,
        "reference": "onnxruntime/fp32",
        "images": encode_array(np.asarray(images, np.uint8)),
        "probabilities": encode_array(np.asarray(probabilities, np.float32)),
    }
    if labels is not None:
        out["labels"] = [int(v) for v in labels]
    return out


@dataclass(frozen=True)
class Golden:
    """The decoded golden set and the model's allowed precisions with their tolerances."""

    images: np.ndarray  # uint8 [k, 32, 32, 3]
    probabilities: np.ndarray  # float32 [k, 10], onnxruntime float32 at export
    allowed: tuple[str, ...] = ("fp32",)
    tolerances: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)

    def tolerance(self, precision: str) -> float:
        if precision == "fp32":
            return FP32_TOLERANCE
        return float(self.tolerances[precision])

    def max_diff(self, probabilities: np.ndarray) -> float:
        """Largest |output - reference| (inf for a wrong shape or a non-finite output)."""
        got = np.asarray(probabilities)
        if got.shape != self.probabilities.shape or not np.all(np.isfinite(got)):
            return math.inf
        return float(np.abs(got.astype(np.float32) - self.probabilities).max())


def read_golden(metadata: dict[str, Any]) -> tuple[Golden | None, str]:
    """(Golden, "") from a model's parsed metadata, or (None, why there is none)."""
    from cifar10_runtime.contract import GOLDEN_KEY, PRECISIONS_KEY

    record = metadata.get(GOLDEN_KEY)
    if record is None:
        return None, "the model has no golden set (not made by cifar-export, or an older one)"
    try:
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError(f"format {record.get('format') if isinstance(record, dict) else '?'}")
        images = decode_array(record["images"], "uint8", IMAGE_SHAPE)
        probs = decode_array(record["probabilities"], "float32", (NUM_CLASSES,))
        if len(images) != len(probs):
            raise ValueError(f"{len(images)} images but {len(probs)} reference rows")
    except (KeyError, TypeError, ValueError) as exc:
        return None, f"its golden set cannot be read ({exc})"
    precisions = metadata.get(PRECISIONS_KEY)
    allowed, tolerances = ("fp32",), {}
    if isinstance(precisions, dict):
        allowed = tuple(p for p in precisions.get("allowed", ()) if p in PRECISIONS) or allowed
        raw = precisions.get("tolerances") or {}
        tolerances = {k: float(v) for k, v in raw.items() if k in PRECISIONS}
        allowed = tuple(p for p in allowed if p == "fp32" or p in tolerances)
    evidence = precisions if isinstance(precisions, dict) else {}
    return Golden(images, probs, allowed, tolerances, evidence), ""
