"""Parity check: does the ONNX model reproduce the Keras model on the same uint8 images?

The ONNX side runs through the runtime's `Predictor.predict_array`, the code path that serves.
Checks, in order, every failure collected (Optimum-style): input/output names; input/output
dtypes and shapes (graph and actual arrays); at each batch size, max |diff| <= atol and top-1
agreement of 100%, where a disagreement on an image whose Keras top-2 margin is below atol
counts as "ambiguous", not as a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifar10_exporter.errors import ParityError
from cifar10_exporter.outputs.metadata import producer_versions
from cifar10_runtime.contract import (
    FP32_TOLERANCE,
    IMAGE_SHAPE,
    INPUT_NAME,
    NUM_CLASSES,
    OUTPUT_NAME,
)
from cifar10_runtime.errors import CifarError
from cifar10_runtime.versions import python_version

ModelSource = bytes | str | Path


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Report:
    """The outcome of one check run (fp32 parity or the int8 check); JSON via to_dict()."""

    kind: str  # "parity" (Keras vs ONNX) or "int8" (int8 vs fp32 ONNX)
    source: str  # where the images came from
    n: int
    tolerances: dict[str, float]
    checks: list[Check] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    # The candidate's outputs on the images (the last batch size run), for accuracy; not JSON.
    outputs: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def add(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append(Check(name, bool(passed), detail))
        return bool(passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "passed": self.passed,
            "n": self.n,
            "source": self.source,
            "tolerances": self.tolerances,
            **self.stats,
            "checks": [asdict(c) for c in self.checks],
            "failures": [f"{c.name}: {c.detail}" for c in self.failures],
            "files": self.files,
            "versions": self.versions,
        }

    def summary(self) -> dict[str, Any]:
        """The compact form stored in the ONNX metadata (`parity` key)."""
        keep = (
            "max_abs_diff",
            "mean_abs_diff",
            "top1_agreement",
            "ambiguous",
            "batch_sizes",
            "accuracy_drop",
            "accuracy_fp32",
            "accuracy_int8",
        )
        return {
            "passed": self.passed,
            "n": self.n,
            "source": self.source,
            **self.tolerances,
            **{k: self.stats[k] for k in keep if k in self.stats},
        }

    def table(self) -> str:
        title = "parity (Keras vs ONNX)" if self.kind == "parity" else "int8 check (vs fp32 ONNX)"
        lines = [f"{title}: {self.n} images from {self.source}"]
        width = max((len(c.name) for c in self.checks), default=10)
        for c in self.checks:
            lines.append(f"  {'ok  ' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.detail}")
        lines.append(f"  => {'PASSED' if self.passed else 'FAILED'}")
        return "\n".join(lines)

    def error(self, subject: str, fix: str) -> ParityError:
        """One-line ParityError naming every failing check with its numbers; `.report` = self."""
        listed = "; ".join(f"{c.name}: {c.detail}" for c in self.failures)
        what = "parity check" if self.kind == "parity" else "int8 check"
        err = ParityError(
            f"{what} failed for {subject} ({len(self.failures)} of {len(self.checks)} checks): "
            f"{listed}. {fix}"
        )
        err.report = self  # type: ignore[attr-defined]
        return err


def check_versions() -> dict[str, Any]:
    versions = producer_versions(None)
    versions.update(numpy=np.__version__, python=python_version())
    return versions


def contract_checks(report: Report, model_bytes: bytes) -> bool:
    """Names, then dtypes and shapes, read from the ONNX graph; True if all hold."""
    import onnx

    graph = onnx.load_model_from_string(model_bytes).graph
    init = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in init]
    in_names, out_names = [v.name for v in inputs], [v.name for v in graph.output]
    ok = report.add(
        "input/output names",
        in_names == [INPUT_NAME] and out_names == [OUTPUT_NAME],
        f"{in_names} -> {out_names} (need ['{INPUT_NAME}'] -> ['{OUTPUT_NAME}'])",
    )

    def describe(value) -> tuple[str, list[Any]]:
        t = value.type.tensor_type
        dims = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim
        ]
        try:
            return onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, dims
        except (KeyError, ValueError):
            return f"type {t.elem_type}", dims

    for role, values, dtype, tail in (
        ("input", inputs, "uint8", list(IMAGE_SHAPE)),
        ("output", graph.output, "float32", [NUM_CLASSES]),
    ):
        if len(values) != 1:
            ok = report.add(f"{role} dtype/shape", False, f"{len(values)} {role}s, need 1")
            continue
        got_dtype, dims = describe(values[0])
        dynamic = bool(dims) and isinstance(dims[0], str)
        good = got_dtype == dtype and dynamic and dims[1:] == tail
        need = f"{dtype} {['N', *tail]} with a dynamic batch"
        ok = report.add(f"{role} dtype/shape", good, f"{got_dtype} {dims} (need {need})") and ok
    return ok


def make_runner(model_bytes: bytes, threads: int | None = None):
    """The serving code path: cifar10_runtime.Predictor over the model bytes."""
    from cifar10_runtime import Predictor

    # The float32 reference engine, without the runtime's golden-set replay: these checks
    # measure the file against Keras themselves, and report a changed file with its figures.
    return Predictor(
        model_bytes, providers="auto", threads=threads, engine="onnxruntime", self_check=False
    )


def run_batched(runner, images: np.ndarray, batch_size: int) -> np.ndarray:
    size = batch_size or max(len(images), 1)
    outs = [
        np.asarray(runner.predict_array(images[i : i + size])) for i in range(0, len(images), size)
    ]
    return np.concatenate(outs) if outs else np.zeros((0, NUM_CLASSES), np.float32)


def compare(reference: np.ndarray, candidate: np.ndarray, atol: float) -> dict[str, Any]:
    """Max/mean |diff|, top-1 agreement, and disagreements excused by a Keras margin < atol."""
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    diff = np.abs(cand - ref)
    diff[~np.isfinite(diff)] = np.inf
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    differ = ref.argmax(axis=1) != cand.argmax(axis=1)
    ambiguous = differ & (margin < atol)
    worst = int(diff.max(axis=1).argmax()) if len(diff) else -1
    return {
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "worst_image": worst,
        "top1_agreement": float(1.0 - differ.mean()) if len(differ) else 1.0,
        "top1_disagreements": int(differ.sum()),
        "ambiguous": int(ambiguous.sum()),
        "hard_disagreements": int((differ & ~ambiguous).sum()),
    }


def check_parity(
    onnx_model: ModelSource,
    reference: np.ndarray,
    images: np.ndarray,
    *,
    atol: float = FP32_TOLERANCE,
    batch_sizes: Sequence[int] = (1, 0),
    source: str = "given images",
    threads: int | None = None,
) -> Report:
    """Compare the ONNX model (run by the runtime) with Keras' `reference` outputs on `images`.

    `reference`: float32 [N, 10] what the Keras model (wrapped as the exporter wraps it) gives
    for uint8 `images` [N, 32, 32, 3]. Batch size 0 means all images in one batch.
    Returns a Report; never raises for a mismatch (call `report.error(...)` to raise).
    """
    model_bytes = onnx_model if isinstance(onnx_model, bytes) else Path(onnx_model).read_bytes()
    n = max(len(images), 1)
    sizes = [min(int(b) or n, n) for b in batch_sizes]  # a batch is never larger than N
    report = Report(
        "parity", source, int(len(images)), {"atol": float(atol)}, versions=check_versions()
    )
    report.stats["batch_sizes"] = sizes
    contract_checks(report, model_bytes)
    try:
        runner = make_runner(model_bytes, threads)
    except CifarError as exc:
        report.add("runtime loads the model", False, str(exc))
        return report
    report.versions["providers"] = list(runner.providers)
    per_batch: dict[str, Any] = {}
    for size in sizes:
        stats = _check_batch(report, runner, images, reference, size, atol)
        if stats is not None:
            per_batch[str(size)] = stats
    report.stats["per_batch"] = per_batch
    if per_batch:
        report.stats["max_abs_diff"] = max(s["max_abs_diff"] for s in per_batch.values())
        report.stats["mean_abs_diff"] = max(s["mean_abs_diff"] for s in per_batch.values())
        report.stats["top1_agreement"] = min(s["top1_agreement"] for s in per_batch.values())
        report.stats["ambiguous"] = max(s["ambiguous"] for s in per_batch.values())
    return report


def _check_batch(
    report: Report,
    runner: Any,
    images: np.ndarray,
    reference: np.ndarray,
    size: int,
    atol: float,
) -> dict[str, Any] | None:
    """Run the model `size` images at a time and add that batch size's checks to `report`;
    the comparison's figures, None when the model did not give an array to compare."""
    try:
        out = run_batched(runner, images, size)
    except CifarError as exc:  # the runtime refuses what the graph returns
        report.add(f"batch {size}: runtime runs the model", False, str(exc))
        return None
    shape_ok = out.shape == reference.shape and out.dtype == np.float32
    if not report.add(
        f"batch {size}: output array",
        shape_ok,
        f"{out.dtype} {list(out.shape)} (need float32 {list(reference.shape)})",
    ):
        return None
    stats = compare(reference, out, atol)
    report.outputs = out
    close = stats["max_abs_diff"] <= atol
    report.add(
        f"batch {size}: max |diff|",
        close,
        f"{stats['max_abs_diff']:.3g} {'<=' if close else '>'} atol {atol:g} "
        f"(mean {stats['mean_abs_diff']:.3g}, worst image #{stats['worst_image']})",
    )
    report.add(
        f"batch {size}: top-1 agreement",
        stats["hard_disagreements"] == 0,
        f"{100 * stats['top1_agreement']:.2f}% ({stats['top1_disagreements']} of "
        f"{len(images)} differ, {stats['ambiguous']} of them ambiguous: Keras top-2 "
        f"margin < atol; need 100% of the others)",
    )
    return stats
