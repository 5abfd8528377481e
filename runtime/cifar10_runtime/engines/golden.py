"""The golden set: a few check images and their float32 reference outputs, inside the model.

`cifar-export` stores it in the `golden_set` metadata (contract.GOLDEN_KEY) with the
precisions the model allows and each one's tolerance (contract.PRECISIONS_KEY). At load the
runtime replays the images on every engine it may use: an engine whose outputs differ from the
reference by more than its precision's tolerance is not used, and a file whose float32 outputs
no longer match (weights changed after export) is refused. Arrays travel as base64 of their
little-endian bytes, so the key stays a small JSON string.

A golden set is bounded (`golden_problem`: at most MAX_IMAGES, each array's base64 exactly as
long as its shape says, checked before anything is decoded) and replayed REPLAY_BATCH images
at a time, so a model that carries a huge one cannot make a load allocate gigabytes.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cifar10_runtime.contract import FP32_TOLERANCE, IMAGE_SHAPE, NUM_CLASSES, PRECISIONS

FORMAT = 1
MAX_IMAGES = 1024  # the exporter stores 8; far more only slows every load
REPLAY_BATCH = 32
_DTYPES = {"uint8": (1, IMAGE_SHAPE), "float32": (4, (NUM_CLASSES,))}


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


def _array_problem(record: Any, dtype: str) -> str | None:
    itemsize, tail = _DTYPES[dtype]
    if not isinstance(record, dict):
        return f"is a JSON {type(record).__name__}, not an object"
    shape, data = record.get("shape"), record.get("base64")
    if record.get("dtype") != dtype:
        return f"has dtype {str(record.get('dtype'))[:20]!r}, not {dtype}"
    if (
        not isinstance(shape, list)
        or len(shape) != 1 + len(tail)
        or not all(type(d) is int for d in shape)
        or tuple(shape[1:]) != tail
        or not 1 <= shape[0] <= MAX_IMAGES
    ):
        dims = ", ".join(map(str, tail))
        return f"has shape {str(shape)[:40]}, not [k, {dims}] with 1 <= k <= {MAX_IMAGES}"
    expected = 4 * -(-shape[0] * math.prod(tail) * itemsize // 3)  # base64 of that many bytes
    if not isinstance(data, str) or len(data) != expected:
        size = len(data) if isinstance(data, str) else type(data).__name__
        return f"has base64 of length {size}; its shape needs {expected}"
    return None


def golden_problem(record: Any) -> str | None:
    """Why `record` cannot be a golden set (type, size, shapes), or None; decodes nothing."""
    if not isinstance(record, dict):
        return f"is a JSON {type(record).__name__}, not an object"
    if record.get("format") != FORMAT:
        return f"has format {str(record.get('format'))[:20]}, not {FORMAT}"
    for name, dtype in (("images", "uint8"), ("probabilities", "float32")):
        problem = _array_problem(record.get(name), dtype)
        if problem is not None:
            return f"{name} {problem}"
    if record["images"]["shape"][0] != record["probabilities"]["shape"][0]:
        return "has a different number of images and reference rows"
    labels = record.get("labels")
    if labels is not None and (
        not isinstance(labels, list)
        or len(labels) != record["images"]["shape"][0]
        or not all(type(v) is int and 0 <= v < NUM_CLASSES for v in labels)
    ):
        return "labels is not one class index per image"
    return None


MAX_PRECISION_NAMES = 16
MAX_EVIDENCE_ROWS = 256


def _short_strings(value: Any, most: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= most
        and all(isinstance(v, str) and len(v) <= 64 for v in value)
    )


def precisions_problem(record: Any) -> str | None:
    """Why `record` cannot be the precisions record (allowed, tolerances, evidence), or None."""
    if not isinstance(record, dict):
        return f"is a JSON {type(record).__name__}, not an object"
    if "allowed" in record and not _short_strings(record["allowed"], MAX_PRECISION_NAMES):
        return f"allowed is not a list of at most {MAX_PRECISION_NAMES} precision names"
    tolerances = record.get("tolerances", {})
    if (
        not isinstance(tolerances, dict)
        or len(tolerances) > MAX_PRECISION_NAMES
        or not _short_strings(list(tolerances), MAX_PRECISION_NAMES)
        or not all(
            type(v) in (int, float) and math.isfinite(v) and v >= 0 for v in tolerances.values()
        )
    ):
        return (
            f"tolerances is not an object of at most {MAX_PRECISION_NAMES} precision names to "
            "non-negative numbers"
        )
    evidence = record.get("evidence", [])
    if (
        not isinstance(evidence, list)
        or len(evidence) > MAX_EVIDENCE_ROWS
        or not all(isinstance(row, dict) for row in evidence)
    ):
        return f"evidence is not a list of at most {MAX_EVIDENCE_ROWS} objects"
    return None


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

    def replay(self, run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """`run`'s outputs for the images, REPLAY_BATCH at a time (a wrong-shaped part is
        returned as it is, for max_diff to report)."""
        parts = []
        for start in range(0, len(self.images), REPLAY_BATCH):
            chunk = self.images[start : start + REPLAY_BATCH]
            out = np.asarray(run(chunk))
            if out.shape != (len(chunk), NUM_CLASSES):
                return out
            parts.append(out)
        return np.concatenate(parts)

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
    problem = golden_problem(record)
    if problem is not None:
        return None, f"its golden set cannot be read (it {problem})"
    try:
        images = decode_array(record["images"], "uint8", IMAGE_SHAPE)
        probs = decode_array(record["probabilities"], "float32", (NUM_CLASSES,))
        if len(images) != len(probs):
            raise ValueError(f"{len(images)} images but {len(probs)} reference rows")
    except (KeyError, TypeError, ValueError) as exc:
        return None, f"its golden set cannot be read ({exc})"
    precisions = metadata.get(PRECISIONS_KEY)
    allowed, tolerances, evidence = ("fp32",), {}, {}
    if precisions_problem(precisions) is None:  # a load refused a bad one already
        evidence = precisions
        allowed = tuple(p for p in precisions.get("allowed", ()) if p in PRECISIONS) or allowed
        raw = precisions.get("tolerances") or {}
        tolerances = {k: float(v) for k, v in raw.items() if k in PRECISIONS}
        allowed = tuple(p for p in allowed if p == "fp32" or p in tolerances)
    return Golden(images, probs, allowed, tolerances, evidence), ""
