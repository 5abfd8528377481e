"""Export-time evidence of every engine x precision, and the golden set the runtime replays.

Each engine x precision of contract.CANDIDATES available on the exporting machine
(onnxruntime on the int8 twin, OpenVINO at f32 and bf16 on the model and on the twin;
cifar10_runtime.engines.runners, so what is measured is what serves) runs the check images
and meets the int8 gate (checks.agreement): top-1 agreement with the float32 ONNX model >=
config.int8_min_agreement on the dataset images and accuracy drop <=
config.int8_max_accuracy_drop on the labelled ones. A precision is allowed when one
engine passed it. The result goes into the metadata (contract.PRECISIONS_KEY: allowed
precisions, each one's tolerance, the rows; contract.GOLDEN_KEY: a few check images and the
float32 outputs), into `.parity.json` (`engines`) and the model card.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cifar10_exporter.checks.agreement import agreement, agrees, keeps_accuracy
from cifar10_exporter.checks.samples import Samples
from cifar10_exporter.config import ExportConfig
from cifar10_exporter.outputs.evidence_table import table
from cifar10_runtime.contract import (
    CANDIDATES,
    FP32_TOLERANCE,
    GOLDEN_KEY,
    INPUT_NAME,
    OUTPUT_NAME,
    PRECISIONS_KEY,
)
from cifar10_runtime.engines.cpu import cpu_features
from cifar10_runtime.engines.golden import encode_golden
from cifar10_runtime.engines.runners import (
    Runner,
    bf16_missing,
    openvino_backend,
    openvino_runner,
    ort_file_runner,
)
from cifar10_runtime.engines.timing import best_seconds
from cifar10_runtime.errors import CifarError, first_line

GOLDEN_IMAGES = 8  # a few: enough to catch a changed weight, small in the metadata
TOLERANCE_MARGIN = 3.0  # recorded tolerance: this x the largest |diff| seen on the check images
TOLERANCE_FLOOR = 0.02  # ... and never below: another CPU's bf16/int8 kernels round otherwise
EVIDENCE_BATCH = 64  # the batch each engine's images/s is measured at (the card's column)
REFERENCE = ("onnxruntime", "fp32")  # the float32 model in onnxruntime: what all are compared to
Log = Callable[[str], None]


def _probs(runner: Runner, images: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([runner.run(images[i : i + batch]) for i in range(0, len(images), batch)])


def _speed(runner: Runner, images: np.ndarray) -> float:
    """Best-of-3 images/s at EVIDENCE_BATCH, after one warm-up call."""
    feed = np.ascontiguousarray(np.resize(images, (EVIDENCE_BATCH, *images.shape[1:])))
    runner.run(feed)
    return EVIDENCE_BATCH / best_seconds(lambda: runner.run(feed), runs=3)


def evidence_figures(fp32: np.ndarray, other: np.ndarray, samples: Samples) -> dict[str, Any]:
    """The evidence row's figures (checks.agreement's metric)."""
    a = agreement(fp32, other, samples)
    out: dict[str, Any] = {"top1_agreement": a.top1_agreement, "max_abs_diff": a.max_abs_diff}
    if a.accuracy is not None:
        out["accuracy"] = a.accuracy
        out["accuracy_drop"] = a.accuracy_drop
    return out


def pick_golden(probs: np.ndarray, samples: Samples, k: int = GOLDEN_IMAGES) -> np.ndarray:
    """Indices of k dataset images, one class after another, each the most confident of its
    predicted class: far from a decision boundary, so a faithful bf16 or int8 engine never
    flips them and the check stays about the numbers."""
    n = int(samples.n_dataset) or len(probs)
    top, margin = probs[:n].argmax(axis=1), np.sort(probs[:n], axis=1)
    margin = margin[:, -1] - margin[:, -2]
    order = sorted(range(n), key=lambda i: -margin[i])
    chosen, seen = [], set()
    for i in order:  # distinct predicted classes first, then the most confident of the rest
        if top[i] not in seen:
            chosen.append(i)
            seen.add(top[i])
        if len(chosen) == k:
            break
    chosen += [i for i in order if i not in chosen][: k - len(chosen)]
    return np.asarray(sorted(chosen), dtype=np.int64)


def evidence_candidates(
    fp32: bytes, int8: bytes | None
) -> list[tuple[str, str, bytes | None, str]]:
    """(engine, precision, model, why it cannot run here or "") for every candidate but the
    reference, in contract.CANDIDATES' order."""
    backend, ov_missing = openvino_backend()
    bf16_why = bf16_missing()
    rows = []
    for engine, precision in CANDIDATES:
        if (engine, precision) == REFERENCE:
            continue
        model = int8 if precision == "int8" else fp32
        why = ""
        if model is None:
            why = "no int8 twin (none passed its gate, or --quantize none)"
        elif engine == "openvino" and backend is None:
            why = ov_missing
        elif precision == "bf16" and bf16_why:
            why = bf16_why
        rows.append((engine, precision, model, why))
    return rows


def engine_evidence(
    fp32: bytes,
    int8: bytes | None,
    samples: Samples,
    fp32_probs: np.ndarray,
    config: ExportConfig,
    log: Log = print,
) -> dict[str, Any]:
    """{"metadata": {PRECISIONS_KEY, GOLDEN_KEY}, "summary": for .parity.json and the card}."""
    golden_idx = pick_golden(fp32_probs, samples)
    reference = ort_file_runner(fp32, "fp32", config.threads, INPUT_NAME, OUTPUT_NAME)
    rows: list[dict[str, Any]] = [
        {
            "engine": "onnxruntime",
            "precision": "fp32",
            "passed": True,
            "note": "the reference",
            "backend": reference.backend,
            "images_per_s_batch64": round(_speed(reference, samples.images), 1),
            **evidence_figures(fp32_probs, fp32_probs, samples),  # its own accuracy, for the table
        }
    ]
    for engine, precision, model, why in evidence_candidates(fp32, int8):
        if why:
            row = {"engine": engine, "precision": precision, "passed": False, "measured": False}
            rows.append({**row, "note": why})
            continue
        rows.append(_measure(engine, precision, model, samples, fp32_probs, golden_idx, config))
    precisions = _precisions(rows, config)
    labels = samples.labels[golden_idx]
    golden = encode_golden(samples.images[golden_idx], fp32_probs[golden_idx], labels)
    log(table(precisions))
    return {
        "metadata": {
            PRECISIONS_KEY: precisions,
            GOLDEN_KEY: golden,
        },
        "summary": {**precisions, "golden_images": len(golden_idx)},
    }


def _measure(
    engine: str,
    precision: str,
    model: bytes,
    samples: Samples,
    fp32_probs: np.ndarray,
    golden_idx: np.ndarray,
    config: ExportConfig,
) -> dict[str, Any]:
    """One candidate's evidence row: its figures on the check images and the gate's verdict."""
    row: dict[str, Any] = {"engine": engine, "precision": precision}
    try:
        if engine == "openvino":
            runner = openvino_runner(model, precision, config.threads)
        else:
            runner = ort_file_runner(model, precision, config.threads, INPUT_NAME, OUTPUT_NAME)
        probs = _probs(runner, samples.images)
        row.update(evidence_figures(fp32_probs, probs, samples), backend=runner.backend)
        row["golden_max_abs_diff"] = float(np.abs(probs[golden_idx] - fp32_probs[golden_idx]).max())
        row["images_per_s_batch64"] = round(_speed(runner, samples.images), 1)
    except Exception as exc:  # noqa: BLE001 - an engine failing on this graph is evidence
        note = str(exc) if isinstance(exc, CifarError) else first_line(exc)
        return {**row, "passed": False, "measured": False, "note": note}
    checks = [agrees(row["top1_agreement"], config.int8_min_agreement)]
    if "accuracy_drop" in row:
        checks.append(keeps_accuracy(row["accuracy_drop"], config.int8_max_accuracy_drop))
    if precision == "fp32":  # a float32 engine must match float32, not just agree
        checks.append(row["max_abs_diff"] <= FP32_TOLERANCE)
    row.update(measured=True, passed=all(checks))
    return row


def _precisions(rows: list[dict[str, Any]], config: ExportConfig) -> dict[str, Any]:
    """The PRECISIONS_KEY record: allowed precisions (one engine passed), their tolerances,
    the gate and the rows."""
    allowed = ["fp32"] + [
        p for p in ("bf16", "int8") if any(r["passed"] and r["precision"] == p for r in rows)
    ]
    tolerances = {"fp32": FP32_TOLERANCE}
    for p in allowed[1:]:
        seen = max(r["max_abs_diff"] for r in rows if r["passed"] and r["precision"] == p)
        tolerances[p] = round(max(TOLERANCE_FLOOR, TOLERANCE_MARGIN * seen), 4)
    cpu = cpu_features()
    gate = {
        "min_top1_agreement": config.int8_min_agreement,
        "max_accuracy_drop": config.int8_max_accuracy_drop,
    }
    return {
        "allowed": allowed,
        "tolerances": tolerances,
        "gate": gate,
        "measured_on": {"cpu": cpu["cpu"], "features": cpu["summary"]},
        "evidence": rows,
    }


def engines_step(config: ExportConfig, proto, result, samples: Samples, report, log: Log) -> None:
    """The pipeline's one call: measure, then record in the metadata of OUTPUT (through
    metadata.set_metadata) and under `engines` in .parity.json; the card reads it there."""
    from cifar10_exporter.outputs.metadata import set_metadata

    twin = result.int8_proto if result.int8 is not None and result.int8.passed else None
    evidence = engine_evidence(
        proto.SerializeToString(),
        twin.SerializeToString() if twin is not None else None,
        samples,
        report.outputs,
        config,
        log,
    )
    set_metadata(proto, evidence["metadata"])
    report.stats["engines"] = evidence["summary"]
