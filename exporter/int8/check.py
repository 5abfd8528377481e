"""The int8 gate: does a twin keep the float32 model's answers?

Top-1 agreement with the fp32 ONNX model >= the export's --int8-min-agreement on the dataset
images, accuracy drop <= --int8-max-accuracy-drop on the labelled ones (checks.agreement
computes both), and the contract's names, dtypes and shapes. The recipe search
(int8.quantize) and --verify-only check a twin the same way.
"""

from __future__ import annotations

import numpy as np

from cifar10_exporter.checks.agreement import Agreement, agreement, agrees, keeps_accuracy
from cifar10_exporter.checks.parity import (
    Report,
    check_versions,
    contract_checks,
    make_runner,
    run_batched,
)
from cifar10_exporter.checks.samples import Samples
from cifar10_exporter.checks.thresholds import INT8_MAX_ACCURACY_DROP, INT8_MIN_AGREEMENT
from cifar10_exporter.config import ExportConfig
from cifar10_runtime.errors import CifarError


def int8_stats(a: Agreement) -> dict:
    """The int8 check's figures as .parity.json records them."""
    out = {
        "top1_agreement": a.top1_agreement if a.top1_agreement is not None else float("nan"),
        "differ": a.differ,
        "max_abs_diff": a.max_abs_diff,
        "mean_abs_diff": a.mean_abs_diff,
        "n_labelled": a.n_labelled,
    }
    if a.accuracy_drop is not None:
        out["accuracy_fp32"], out["accuracy_int8"] = a.accuracy_reference, a.accuracy
        out["accuracy_drop"] = a.accuracy_drop
    return out


def _gate(report: Report, m: dict, n: int, min_agreement: float, max_drop: float) -> None:
    report.add(
        "top-1 agreement with fp32",
        agrees(m["top1_agreement"], min_agreement),
        f"{100 * m['top1_agreement']:.2f}% ({m['differ']} of {n} differ; "
        f"need >= {100 * min_agreement:g}%)",
    )
    if "accuracy_drop" not in m:
        report.add("accuracy drop", True, "accuracy not measured (no labelled images)")
        return
    report.add(
        "accuracy drop",
        keeps_accuracy(m["accuracy_drop"], max_drop),
        f"{100 * m['accuracy_drop']:.2f} points (fp32 {100 * m['accuracy_fp32']:.2f}%, "
        f"int8 {100 * m['accuracy_int8']:.2f}%; need <= {100 * max_drop:g})",
    )


def check_int8(
    fp32_model: bytes,
    int8_model: bytes,
    samples: Samples,
    *,
    min_agreement: float = INT8_MIN_AGREEMENT,
    max_accuracy_drop: float = INT8_MAX_ACCURACY_DROP,
    threads: int | None = None,
    fp32_probs: np.ndarray | None = None,
) -> Report:
    """Top-1 agreement with fp32 and accuracy drop on `samples`; a Report, never raises."""
    tolerances = {"min_top1_agreement": min_agreement, "max_accuracy_drop": max_accuracy_drop}
    n = int(samples.n_dataset)
    report = Report("int8", samples.dataset_source, n, tolerances, versions=check_versions())
    contract_checks(report, int8_model)
    if fp32_probs is None:
        fp32_probs = run_batched(make_runner(fp32_model, threads), samples.images, 0)
    try:
        int8 = run_batched(make_runner(int8_model, threads), samples.images, 0)
    except CifarError as exc:  # the runtime refuses the quantized graph
        report.add("runtime runs the int8 model", False, str(exc))
        return report
    m = int8_stats(agreement(fp32_probs, int8, samples))
    report.stats.update({k: v for k, v in m.items() if k != "differ"})
    report.stats["size_bytes"] = {"fp32": len(fp32_model), "int8": len(int8_model)}
    _gate(report, m, n, min_agreement, max_accuracy_drop)
    return report


def check_twin(
    fp32_model: bytes,
    int8_model: bytes,
    samples: Samples,
    config: ExportConfig,
    fp32_probs: np.ndarray | None = None,
) -> Report:
    """`check_int8` with the export's thresholds and threads (the recipe search and
    --verify-only check a twin the same way)."""
    return check_int8(
        fp32_model,
        int8_model,
        samples,
        min_agreement=config.int8_min_agreement,
        max_accuracy_drop=config.int8_max_accuracy_drop,
        threads=config.threads,
        fp32_probs=fp32_probs,
    )
