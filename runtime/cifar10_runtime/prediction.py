"""A prediction and its parts: `Prediction`, `ClassScore`, how one row of probabilities
becomes one (`make_prediction`), and the `top_k` check (`check_top_k`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from cifar10_runtime.contract import NUM_CLASSES
from cifar10_runtime.errors import ConfigError


class ClassScore(NamedTuple):
    """One entry of a top-k list."""

    label: str
    index: int
    probability: float


@dataclass(frozen=True, slots=True, eq=False)
class Prediction:
    """The model's answer for one image."""

    label: str
    index: int
    probability: float
    probabilities: np.ndarray  # float32 [10], exactly as the session returned them
    top_k: tuple[ClassScore, ...]

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ would compare arrays elementwise and fail on `bool(array)`.
        if not isinstance(other, Prediction):
            return NotImplemented
        return (self.label, self.index, self.probability, self.top_k) == (
            other.label,
            other.index,
            other.probability,
            other.top_k,
        ) and np.array_equal(self.probabilities, other.probabilities)

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self, include_probabilities: bool = False) -> dict[str, Any]:
        """JSON-ready form: label, index, probability, top_k (and all probabilities)."""
        out: dict[str, Any] = {
            "label": self.label,
            "index": self.index,
            "probability": self.probability,
            "top_k": [s._asdict() for s in self.top_k],
        }
        if include_probabilities:
            out["probabilities"] = self.probabilities.tolist()
        return out


def make_prediction(row: np.ndarray, class_names: Sequence[str], top_k: int = 1) -> Prediction:
    """Build a Prediction from one row of probabilities (ties go to the lower index)."""
    if top_k == 1:
        index = int(row.argmax())
        probability = float(row[index])
        label = class_names[index]
        return Prediction(label, index, probability, row, (ClassScore(label, index, probability),))
    order = np.argsort(-row, kind="stable")[:top_k]
    scores = tuple(ClassScore(class_names[i], int(i), float(row[i])) for i in order)
    best = scores[0]
    return Prediction(best.label, best.index, best.probability, row, scores)


def check_top_k(top_k: Any, num_classes: int = NUM_CLASSES) -> int:
    """top_k must be an int in 1..num_classes; raise ConfigError otherwise."""
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer):
        raise ConfigError(f"top_k must be an integer from 1 to {num_classes}. Received: {top_k!r}.")
    if not 1 <= top_k <= num_classes:
        raise ConfigError(f"top_k must be from 1 to {num_classes}. Received: {top_k}.")
    return int(top_k)
