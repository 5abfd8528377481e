"""How far a candidate's outputs are from the float32 model's: the one agreement metric.

Top-1 agreement on the dataset images, the accuracy of both on the labelled ones, and the
|difference| of the probabilities everywhere: what the int8 gate checks (int8.check) and what
every engine x precision's evidence records (checks.engine_evidence), computed once here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cifar10_exporter.checks.samples import Samples

# An accuracy drop equal to the allowed one passes, whatever float rounding says.
DROP_SLACK = 1e-12


@dataclass(frozen=True)
class Agreement:
    """A candidate against the float32 reference on one set of samples."""

    n: int  # dataset images compared (the edge cases are not)
    top1_agreement: float | None  # None when there are no dataset images
    differ: int  # dataset images whose top-1 class differs
    max_abs_diff: float  # over every image, the edge cases included
    mean_abs_diff: float
    n_labelled: int
    accuracy_reference: float | None  # None when no image is labelled
    accuracy: float | None

    @property
    def accuracy_drop(self) -> float | None:
        if self.accuracy is None or self.accuracy_reference is None:
            return None
        return self.accuracy_reference - self.accuracy


def agreement(reference: np.ndarray, candidate: np.ndarray, samples: Samples) -> Agreement:
    """`candidate` ([N, 10] probabilities) against `reference` on `samples`."""
    n = int(samples.n_dataset)
    top_ref, top = reference[:n].argmax(axis=1), candidate[:n].argmax(axis=1)
    labelled = samples.labelled[:n]
    acc_ref = acc = None
    if labelled.any():
        truth = samples.labels[:n][labelled]
        acc_ref = float((top_ref[labelled] == truth).mean())
        acc = float((top[labelled] == truth).mean())
    diff = np.abs(candidate - reference)
    return Agreement(
        n=n,
        top1_agreement=float((top_ref == top).mean()) if n else None,
        differ=int((top_ref != top).sum()),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        n_labelled=int(labelled.sum()),
        accuracy_reference=acc_ref,
        accuracy=acc,
    )


def agrees(top1_agreement: float | None, min_agreement: float) -> bool:
    """The gate's agreement half (no dataset images, or NaN: not met)."""
    return top1_agreement is not None and top1_agreement >= min_agreement


def keeps_accuracy(accuracy_drop: float, max_drop: float) -> bool:
    """The gate's accuracy half."""
    return accuracy_drop <= max_drop + DROP_SLACK
