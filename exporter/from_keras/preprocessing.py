"""`--input-scale auto` by evidence: score every preprocessing candidate on labelled images.

A float-input model that does not show its own scaling (no integer input, no rescaling first
layer) gives no hint of what it was trained on, and a wrong guess still passes parity: Keras
and ONNX agree on the same wrong input. So the Keras model is run on the labelled check images
under every candidate, unit (x/255), raw (x) and standardize ((x - mean) / std) each in RGB and
BGR order, and its top-1 accuracy decides.

"Clearly better" is a paired test on the same images (McNemar): with b images right under A
only and c right under B only, A beats B when (b - c) / sqrt(b + c) >= CLEAR_Z. The winner is
the best candidate when every other is clearly worse. Otherwise, among the candidates not
clearly worse than the best, today's rule (unit RGB) is kept when it is one of them; if it is
clearly worse, the RGB one (the contract's order) of them, else the most accurate, and the log
says so. With no labels, or when no candidate gets the model clearly above chance, today's rule
stays and the accuracy gate has the last word.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cifar10_exporter.checks.thresholds import ACCURACY_FLOOR
from cifar10_exporter.from_keras.model import keras_outputs
from cifar10_exporter.wrapper import CIFAR10_MEAN, CIFAR10_STD, WrapperSpec, with_preprocessing

SCALES = ("unit", "raw", "standardize")
ORDERS = ("RGB", "BGR")
TODAY = ("unit", "RGB")
CLEAR_Z = 3.0  # about p < 0.003 for one comparison: chance rarely crowns a wrong candidate


@dataclass(frozen=True)
class Decision:
    spec: WrapperSpec
    record: dict[str, Any]  # written to .parity.json, the metadata and the model card


def paired_z(a: np.ndarray, b: np.ndarray) -> float:
    """How clearly the boolean correctness vector `a` beats `b` on the same images."""
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return (only_a - only_b) / math.sqrt(only_a + only_b) if only_a + only_b else 0.0


def _candidate(spec: WrapperSpec, scale: str, order: str, mean, std) -> WrapperSpec:
    return with_preprocessing(spec, scale, order, mean, std, scaling_open=False)


@dataclass(frozen=True)
class _Scores:
    """Every candidate's name, spec, accuracy and paired z against the most accurate."""

    names: list[str]
    specs: list[WrapperSpec]
    acc: list[float]
    z: list[float]
    best: int
    n: int  # labelled images scored

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "name": self.names[i],
                "scale": self.specs[i].input_scale,
                "order": self.specs[i].channel_order,
                "accuracy": self.acc[i],
                "z_vs_best": round(self.z[i], 2),
            }
            for i in range(len(self.names))
        ]


def decide(
    model,
    spec: WrapperSpec,
    images: np.ndarray,
    labels: np.ndarray | None,
    *,
    input_scale: str = "auto",
    channel_order: str = "auto",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    min_accuracy: float = ACCURACY_FLOOR,
) -> Decision:
    """Pick the preprocessing of an open `spec` from labelled `images` (dataset images only)."""
    if labels is None or len(labels) == 0:
        why = "no labelled check images: kept today's rule, unit RGB (accuracy not measured)"
        chosen = spec.replace(scale_decided_by=why, scaling_open=False)
        return Decision(chosen, {"decided_by": "today's rule", "why": why, "candidates": []})
    scales = SCALES if input_scale == "auto" else (input_scale,)
    orders = ORDERS if channel_order == "auto" else (channel_order.upper(),)
    scores = _score(model, spec, images, labels, scales, orders, mean, std)
    today = f"{input_scale if input_scale != 'auto' else TODAY[0]}/{orders[0]}"
    pick, kind, why = _choose(scores, today, min_accuracy)
    chosen = scores.specs[pick].replace(scale_decided_by=f"auto: {why}")
    record = {
        "decided_by": kind,
        "chosen": scores.names[pick],
        "why": why,
        "n": scores.n,
        "clear_z": CLEAR_Z,
        "mean": list(mean or CIFAR10_MEAN),
        "std": list(std or CIFAR10_STD),
        "candidates": scores.table(),
    }
    return Decision(chosen, record)


def _score(  # noqa: PLR0913
    model,  # noqa: ANN001 - a keras.Model
    spec: WrapperSpec,
    images: np.ndarray,
    labels: np.ndarray,
    scales: tuple[str, ...],
    orders: tuple[str, ...],
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
) -> _Scores:
    """The Keras model's top-1 hits on `images` under every scale x order candidate."""
    names, specs, correct = [], [], []
    for scale in scales:
        for order in orders:
            cand = _candidate(spec, scale, order, mean, std)
            hits = keras_outputs(model, cand, images).argmax(axis=1) == labels
            names.append(f"{scale}/{order}")
            specs.append(cand)
            correct.append(hits)
    acc = [float(c.mean()) for c in correct]
    best = int(np.argmax(acc))
    z = [paired_z(correct[best], c) for c in correct]
    return _Scores(names, specs, acc, z, best, len(labels))


def _choose(s: _Scores, today: str, min_accuracy: float) -> tuple[int, str, str]:
    """(index of the chosen candidate, what decided, why) by the module docstring's rule."""
    names, acc, z, best, n = s.names, s.acc, s.z, s.best, s.n
    tied = [i for i in range(len(names)) if i == best or z[i] < CLEAR_Z]
    runner = max((i for i in range(len(names)) if i != best), key=lambda i: acc[i], default=None)
    if acc[best] < min_accuracy:
        why = (
            f"no candidate gets the model to {min_accuracy:.2f} accuracy (best {names[best]} "
            f"{acc[best]:.3f} on {n} images): kept today's rule, {today}"
        )
        return names.index(today), "today's rule", why
    if len(tied) == 1:
        versus = (
            f"; next {names[runner]} {acc[runner]:.3f}, z={z[runner]:.1f} >= {CLEAR_Z:g}"
            if runner is not None
            else ""
        )
        why = f"clear winner {names[best]}: accuracy {acc[best]:.3f} on {n} images{versus}"
        return best, "evidence", why
    tied_names = ", ".join(f"{names[i]} {acc[i]:.3f}" for i in tied)
    if today in [names[i] for i in tied]:
        pick, kind = names.index(today), "today's rule"
        rule = f"kept today's rule, {today}"
    else:
        rgb = [i for i in tied if s.specs[i].channel_order == "RGB"]
        pick = max(rgb or tied, key=lambda i: acc[i])
        kind = "evidence, tie broken"
        rule = (
            f"today's rule {today} is clearly worse ({acc[names.index(today)]:.3f}); "
            f"kept {names[pick]}" + (" (RGB preferred)" if rgb and len(rgb) < len(tied) else "")
        )
    why = f"no clear winner on {n} images (within z<{CLEAR_Z:g}: {tied_names}): {rule}"
    return pick, kind, why


def candidates_table(record: dict[str, Any]) -> str:
    """The log's view of the candidates, one line each, the chosen one marked."""
    lines = []
    for c in record.get("candidates", []):
        mark = "=>" if c["name"] == record.get("chosen") else "  "
        lines.append(f"  {mark} {c['name']:<16} accuracy {c['accuracy']:.3f}")
    return "\n".join(lines)
