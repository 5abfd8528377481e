"""What an export run concludes about its model: accuracy, the gate, and the one-line verdict.

Shared by `export` (pipeline.py) and `verify` (verify.py): both score the Keras reference and
the ONNX outputs on the labelled check images, apply the accuracy gate, log the figures, and
end with one ParityError line naming every failure and what to try.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifar10_exporter.checks.accuracy import Gate, gate, measure
from cifar10_exporter.checks.parity import Report
from cifar10_exporter.checks.samples import Samples
from cifar10_exporter.checks.thresholds import accuracy_floor
from cifar10_exporter.config import ExportConfig
from cifar10_exporter.errors import ParityError
from cifar10_exporter.outputs.files import ArtifactPaths
from cifar10_exporter.wrapper import WrapperSpec
from cifar10_runtime.errors import ModelError, first_line
from cifar10_trainer.run import Run

Log = Callable[[str], None]


@dataclass
class ExportResult:
    paths: ArtifactPaths
    spec: WrapperSpec
    parity: Report
    written: bool  # OUTPUT was (re)written by this run
    gate: Gate = field(default_factory=lambda: Gate(False))
    int8: Report | None = None
    int8_written: bool = False
    int8_proto: Any = None  # the checked int8 onnx.ModelProto waiting to be written
    reports: dict[str, Path] = field(default_factory=dict)  # report file per check kind

    @property
    def passed(self) -> bool:
        int8_ok = self.int8 is None or self.int8.passed
        return self.parity.passed and self.gate.passed and int8_ok

    @property
    def accuracy(self) -> dict[str, Any]:
        return self.parity.stats.get("accuracy", {})


def check_model(proto_or_bytes, what: str) -> None:
    """onnx.checker with full_check (shape inference included); ModelError if it fails.
    `what`: the file checked, or a phrase for a model still in memory."""
    import onnx

    proto = proto_or_bytes
    if isinstance(proto_or_bytes, bytes):
        proto = onnx.load_model_from_string(proto_or_bytes)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = first_line(exc, default="invalid model")
        raise ModelError(
            f"{what} fails onnx.checker (full check): {first}; re-export it with cifar-export "
            f"(another --opset if this export made it). Received: {what}"
        ) from exc


def score(
    config: ExportConfig,
    samples: Samples,
    reference: np.ndarray,
    report: Report,
    run: Run | None,
    log: Log,
) -> Gate:
    """Accuracy of Keras and ONNX into report.stats["accuracy"], the gate's verdict beside it."""
    accuracy = measure(samples, reference, report.outputs, config.class_names)
    verdict = gate(
        accuracy,
        samples,
        run,
        min_accuracy=config.min_accuracy,
        max_drop=config.max_drop_vs_trainer,
    )
    report.stats["accuracy"] = accuracy
    report.stats["accuracy_gate"] = verdict.to_dict()
    if accuracy.get("measured"):
        onnx = accuracy.get("onnx", {})
        log(
            f"accuracy on {accuracy['n']} labelled images ({accuracy['dataset']} "
            f"{accuracy['split']} split, {accuracy['data']}): Keras "
            f"{accuracy['keras']['overall']:.3f}, ONNX {onnx.get('overall', float('nan')):.3f}"
        )
        per_class = onnx.get("per_class_accuracy", accuracy["keras"]["per_class_accuracy"])
        log(
            "  per class: "
            + ", ".join(f"{k} {'n/a' if v is None else f'{v:.2f}'}" for k, v in per_class.items())
        )
    else:
        log(accuracy["note"])
    if verdict.applied:
        state = "passed" if verdict.passed else "FAILED"
        log(f"accuracy gate {state}: " + "; ".join(verdict.checks + verdict.failures))
    else:
        log(verdict.note)
    return verdict


def _gate_hint(result: ExportResult) -> str:
    pre = result.parity.stats.get("preprocessing", {})
    best = max(pre.get("candidates", []), key=lambda c: c["accuracy"], default=None)
    measured = ""
    if best and best["name"] != result.spec.preprocessing:
        measured = f"; best measured {best['name']} {best['accuracy']:.3f}"
    return (
        f"Try the preprocessing (built in: {result.spec.preprocessing}{measured}): "
        "--input-scale unit|raw|standardize, --channel-order rgb|bgr, --input-mean/--input-std; "
        "or the class order: --class-names in the order of the model's outputs."
    )


def raise_failures(result: ExportResult, config: ExportConfig) -> None:
    """One ParityError line for the first failing check (parity, accuracy gate, int8)."""
    failed: list[str] = []
    if not result.parity.passed:
        failed.append("parity")
    if not result.gate.passed:
        failed.append("accuracy")
    if result.int8 is not None and not result.int8.passed:
        failed.append("int8")
    if not failed:
        return
    kind = failed[0]
    if kind == "int8":
        subject, written = result.paths.int8, result.int8_written
        details = result.reports.get("int8", result.paths.int8_parity)
    else:
        subject, written = result.paths.onnx, result.written
        details = result.reports.get("parity", result.paths.parity)
    if config.verify_only:
        fix = "Re-export it with cifar-export (without --verify-only)."
        if result.parity.stats.get("source_sha256_matches") is False:
            fix = (
                f"Note: its source_sha256 is not the SHA-256 of {config.model}: it was "
                f"exported from another Keras file. {fix}"
            )
    else:
        state = "written anyway (--force)" if written else "not written"
        fix = f"{subject} was {state}; details in {details}."
    names = {"accuracy": "the accuracy gate", "int8": "the int8 check"}
    if failed[1:]:
        named = " and ".join(names[k] for k in failed[1:])
        fix += f" {named[0].upper()}{named[1:]} failed too."
    received = {
        "parity": f"--atol={config.atol:g}",
        "accuracy": f"--min-accuracy={accuracy_floor(config.min_accuracy):g}",
        "int8": f"int8_min_agreement={config.int8_min_agreement:g} "
        f"int8_max_accuracy_drop={config.int8_max_accuracy_drop:g}",
    }[kind]
    fix += f" Received: --model={config.model} {received}"
    if kind == "accuracy":
        listed = "; ".join(result.gate.failures)
        raise ParityError(
            f"accuracy gate failed for {subject}: {listed}. {_gate_hint(result)} {fix}"
        )
    report = result.parity if kind == "parity" else result.int8
    raise report.error(f"{subject} against {config.model}", fix)
