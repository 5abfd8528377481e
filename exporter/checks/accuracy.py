"""Top-1 accuracy on the labelled check images, and the gate that refuses a useless export.

Parity proves ONNX reproduces Keras; only labels prove the pair is right. `measure` gives the
accuracy of Keras and of the ONNX model (overall, per class, confusion matrix) with where the
images came from; `gate` fails an export whose ONNX accuracy is not clearly above chance, or
far below the test accuracy its trainer run recorded on the same split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifar10_exporter.checks.samples import Samples
from cifar10_exporter.checks.thresholds import accuracy_floor
from cifar10_trainer.outputs import classification_report
from cifar10_trainer.run import Run

NOT_MEASURED = "accuracy not measured"


def scores(probs: np.ndarray, labels: np.ndarray, class_names) -> dict[str, Any]:
    """Overall and per-class top-1 accuracy and the confusion matrix (rows: true class)."""
    predicted = probs.argmax(axis=1)
    report = classification_report(labels, predicted, class_names)
    return {"overall": float((predicted == labels).mean()), **report}


def measure(
    samples: Samples,
    keras_probs: np.ndarray,
    onnx_probs: np.ndarray | None,
    class_names,
) -> dict[str, Any]:
    """The accuracy record of .parity.json: how many images, which split, which data."""
    if samples.n_dataset == 0:
        return {"measured": False, "note": f"{NOT_MEASURED}: no labelled check images"}
    keep = samples.labelled
    labels = samples.labels[keep]
    record: dict[str, Any] = {
        "measured": True,
        "n": int(keep.sum()),
        "split": samples.split,
        "dataset": "synthetic" if samples.synthetic else "cifar10",
        "data": samples.data_source,
        "keras": scores(keras_probs[keep], labels, class_names),
    }
    if onnx_probs is not None:
        record["onnx"] = scores(onnx_probs[keep], labels, class_names)
    return record


@dataclass
class Gate:
    applied: bool
    passed: bool = True
    checks: list[str] = field(default_factory=list)  # what was checked, with numbers
    failures: list[str] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "passed": self.passed,
            "checks": self.checks,
            "failures": self.failures,
            "note": self.note,
        }


def same_data(run: Run, samples: Samples) -> bool:
    """Did the run's test metrics come from the split these check images are taken from?"""
    source = run.data_source
    if not source or not samples.data_source:
        return False
    if source == samples.data_source:
        return True
    try:
        return Path(source).resolve() == Path(samples.data_source).resolve()
    except (OSError, ValueError):
        return False


def drop_allowance(run: Run, n: int, max_drop: float) -> tuple[float, str]:
    """max_drop when the check images are the run's whole test split (the same images: any
    drop is real); on a subsample, widened by 3 standard errors of its accuracy, so that
    sampling alone does not fail a good export."""
    total = (run.metrics or {}).get("test_images")
    if isinstance(total, int) and n >= total:
        return max_drop, ""
    p = min(max(run.test_accuracy or 0.0, 0.0), 1.0)
    widen = 3 * (p * (1 - p) / max(n, 1)) ** 0.5
    return max_drop + widen, f" ({n} of its test images: +{100 * widen:.2g} points for sampling)"


def gate(
    accuracy: dict[str, Any],
    samples: Samples,
    run: Run | None,
    *,
    min_accuracy: float | None,
    max_drop: float,
) -> Gate:
    """Refuse ONNX accuracy below min_accuracy (default 2x chance), or max_drop below the run's.

    Synthetic check images say nothing about a CIFAR-10 model: there the gate applies only to
    a model whose run trained on synthetic data, or when --min-accuracy is given.
    """
    if not accuracy.get("measured") or "onnx" not in accuracy:
        return Gate(False, note=f"{NOT_MEASURED}: the accuracy gate was not applied")
    trained_on_synthetic = run is not None and run.dataset == "synthetic"
    if samples.synthetic and not trained_on_synthetic and min_accuracy is None:
        return Gate(
            False,
            note="synthetic check images say nothing about a CIFAR-10 model: the accuracy "
            "gate was not applied (pass --data-dir, or --min-accuracy to apply it)",
        )
    floor = accuracy_floor(min_accuracy)
    got, n = accuracy["onnx"]["overall"], accuracy["n"]
    result = Gate(True)
    where = f"{n} labelled images of the {accuracy['dataset']} {accuracy['split']} split"
    line = f"ONNX accuracy {got:.3f} on {where}"
    if got < floor:
        what = "2x chance" if min_accuracy is None else "--min-accuracy"
        result.failures.append(f"{line} is below {floor:.2f} ({what})")
    else:
        result.checks.append(f"{line} >= {floor:.2f}")
    if run is not None and run.test_accuracy is not None and same_data(run, samples):
        allowed, why = drop_allowance(run, n, max_drop)
        vs = f"the run {run.name}'s recorded test accuracy {run.test_accuracy:.3f}"
        if got < run.test_accuracy - allowed - 1e-12:
            result.failures.append(
                f"{line} is more than {100 * allowed:.3g} points below {vs} on the same split{why}"
            )
        else:
            result.checks.append(f"within {100 * allowed:.3g} points of {vs}{why}")
    result.passed = not result.failures
    return result
