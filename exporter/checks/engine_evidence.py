"""Export-time evidence of every engine x precision, and the golden set the runtime replays.

Each engine x precision available on the exporting machine (onnxruntime on the int8 twin,
OpenVINO at f32 and bf16 on the model and on the twin; cifar10_runtime.engines.runners, so what is
measured is what serves) runs the check images and meets the int8 gate: top-1 agreement
with the float32 ONNX model >= config.int8_min_agreement on the dataset images and accuracy
drop <= config.int8_max_accuracy_drop on the labelled ones. A precision is allowed when one
engine passed it. The result goes into the metadata (contract.PRECISIONS_KEY: allowed
precisions, each one's tolerance, the rows; contract.GOLDEN_KEY: a few check images and the
float32 outputs), into `.parity.json` (`engines`) and the model card.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cifar10_exporter.checks.samples import Samples
from cifar10_exporter.config import ExportConfig
from cifar10_runtime.contract import (
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
from cifar10_runtime.errors import CifarError, first_line

GOLDEN_IMAGES = 8  # a few: enough to catch a changed weight, small in the metadata (~33 KB)
TOLERANCE_MARGIN = 3.0  # recorded tolerance: this x the largest |diff| seen on the check images
TOLERANCE_FLOOR = 0.02  # ... and never below: another CPU's bf16/int8 kernels round otherwise
SPEED_BATCH = 64
Log = Callable[[str], None]


def _probs(runner: Runner, images: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([runner.run(images[i : i + batch]) for i in range(0, len(images), batch)])


def _speed(runner: Runner, images: np.ndarray) -> float:
    feed = np.ascontiguousarray(np.resize(images, (SPEED_BATCH, *images.shape[1:])))
    runner.run(feed)
    best = min(_timed(runner, feed) for _ in range(3))
    return SPEED_BATCH / best


def _timed(runner: Runner, feed: np.ndarray) -> float:
    t0 = time.perf_counter()
    runner.run(feed)
    return time.perf_counter() - t0


def _compare(fp32: np.ndarray, other: np.ndarray, samples: Samples) -> dict[str, Any]:
    n = int(samples.n_dataset)
    p32, p = fp32[:n].argmax(axis=1), other[:n].argmax(axis=1)
    labelled = samples.labelled[:n]
    out: dict[str, Any] = {
        "top1_agreement": float((p32 == p).mean()) if n else None,
        "max_abs_diff": float(np.abs(other - fp32).max()),
    }
    if labelled.any():
        truth = samples.labels[:n][labelled]
        out["accuracy"] = float((p[labelled] == truth).mean())
        out["accuracy_drop"] = float((p32[labelled] == truth).mean()) - out["accuracy"]
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


def _candidates(fp32: bytes, int8: bytes | None) -> list[tuple[str, str, bytes | None, str]]:
    backend, ov_missing = openvino_backend()
    bf16_why = bf16_missing()
    rows = []
    for engine, precision, model in (
        ("onnxruntime", "int8", int8),
        ("openvino", "fp32", fp32),
        ("openvino", "bf16", fp32),
        ("openvino", "int8", int8),
    ):
        why = ""
        if model is None:
            why = "no int8 twin (export with --quantize int8)"
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
    min_agreement, max_drop = config.int8_min_agreement, config.int8_max_accuracy_drop
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
            **_compare(fp32_probs, fp32_probs, samples),  # its own accuracy, for the table
        }
    ]
    for engine, precision, model, why in _candidates(fp32, int8):
        row: dict[str, Any] = {"engine": engine, "precision": precision}
        if why:
            rows.append({**row, "passed": False, "measured": False, "note": why})
            continue
        try:
            if engine == "openvino":
                runner = openvino_runner(model, precision, config.threads)
            else:
                runner = ort_file_runner(model, precision, config.threads, INPUT_NAME, OUTPUT_NAME)
            probs = _probs(runner, samples.images)
            row.update(_compare(fp32_probs, probs, samples), backend=runner.backend)
            row["golden_max_abs_diff"] = float(
                np.abs(probs[golden_idx] - fp32_probs[golden_idx]).max()
            )
            row["images_per_s_batch64"] = round(_speed(runner, samples.images), 1)
        except Exception as exc:  # noqa: BLE001 - an engine failing on this graph is evidence
            note = str(exc) if isinstance(exc, CifarError) else first_line(exc)
            rows.append({**row, "passed": False, "measured": False, "note": note})
            continue
        agree = row["top1_agreement"]
        checks = [agree is not None and agree >= min_agreement]
        if "accuracy_drop" in row:
            checks.append(row["accuracy_drop"] <= max_drop + 1e-12)
        if precision == "fp32":  # a float32 engine must match float32, not just agree
            checks.append(row["max_abs_diff"] <= FP32_TOLERANCE)
        row.update(measured=True, passed=all(checks))
        rows.append(row)
    allowed = ["fp32"] + [
        p for p in ("bf16", "int8") if any(r["passed"] and r["precision"] == p for r in rows)
    ]
    tolerances = {"fp32": FP32_TOLERANCE}
    for p in allowed[1:]:
        seen = max(r["max_abs_diff"] for r in rows if r["passed"] and r["precision"] == p)
        tolerances[p] = round(max(TOLERANCE_FLOOR, TOLERANCE_MARGIN * seen), 4)
    cpu = cpu_features()
    precisions = {
        "allowed": allowed,
        "tolerances": tolerances,
        "gate": {"min_top1_agreement": min_agreement, "max_accuracy_drop": max_drop},
        "measured_on": {"cpu": cpu["cpu"], "features": cpu["summary"]},
        "evidence": rows,
    }
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


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def table_rows(precisions: dict[str, Any]) -> list[list[str]]:
    """Rows of the engine x precision table (log and model card share them)."""
    out = []
    for r in precisions["evidence"]:
        if r.get("measured") is False:
            verdict = f"not measured: {r['note']}"
        elif r.get("note") == "the reference":
            verdict = "reference"
        else:
            verdict = "passed" if r["passed"] else "FAILED the gate"
        out.append(
            [
                f"{r['engine']}/{r['precision']}",
                _pct(r.get("top1_agreement")) if "top1_agreement" in r else "-",
                _pct(r.get("accuracy")) if "accuracy" in r else "-",
                f"{r['max_abs_diff']:.2g}" if "max_abs_diff" in r else "-",
                f"{r['images_per_s_batch64']:.0f}" if "images_per_s_batch64" in r else "-",
                verdict,
            ]
        )
    return out


HEADER = ["engine/precision", "top-1 agreement", "accuracy", "max |diff|", "img/s b=64", "verdict"]


def table(precisions: dict[str, Any]) -> str:
    gate = precisions["gate"]
    lines = [
        f"engines x precisions on {precisions['measured_on']['cpu']} "
        f"({precisions['measured_on']['features']}); gate: top-1 agreement >= "
        f"{100 * gate['min_top1_agreement']:g}%, accuracy drop <= "
        f"{100 * gate['max_accuracy_drop']:g} points:"
    ]
    for row in table_rows(precisions):
        lines.append(
            "  "
            + "  ".join(f"{c:<18}" if i == 0 else f"{c:>10}" for i, c in enumerate(row[:-1]))
            + "  "
            + row[-1]
        )
    lines.append(
        f"  allowed: {', '.join(precisions['allowed'])}; tolerances "
        + ", ".join(f"{k} {v:g}" for k, v in precisions["tolerances"].items())
    )
    return "\n".join(lines)


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
