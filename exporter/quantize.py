"""INT8: static QDQ quantization with onnxruntime's tooling, and its own check.

`quant_pre_process` (shape inference + graph optimisation), then `quantize_static` in QDQ
format, per-channel int8 weights and uint8 activations, MinMax calibration on a few hundred
training images fed as the graph takes them (uint8). The first Conv, the classifier head and
the Softmax stay float (see `float_nodes`). The uint8 `image` input feeds a Cast and
is never quantized, so the contract holds; the metadata of the fp32 model is copied over.

The check differs from fp32 parity: top-1 agreement with the fp32 ONNX model >= 98% on the
dataset images, and accuracy drop <= 1 point on the labelled ones.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from cifar10_runtime.errors import CifarError, ModelError

from .metadata import get_metadata, set_metadata
from .parity import Report, check_versions, contract_checks, make_runner, run_batched
from .samples import Samples

# Compute-heavy ops and the ones ORT fuses with them. Quantizing data-movement ops as well
# (Transpose, Reshape, ...) added error for no speed on the trainer's model: top-1 agreement
# with fp32 fell from 99.2% to 95.6% on a 67%-accurate model, at the same latency.
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "Relu", "MaxPool", "AveragePool"]
QUANT_SETTINGS = {
    "format": "QDQ",
    "weights": "int8 per-channel",
    "activations": "uint8",
    "calibration_method": "MinMax",
    "ops": ",".join(QUANTIZED_OPS),
    "float_nodes": "first Conv, classifier head, Softmax",
}


def float_nodes(model) -> list[str]:
    """Nodes kept in float: the first Conv, the classifier head (the MatMul/Gemm feeding the
    Softmax, through a bias Add) and the Softmax. The first and last layers are the usual
    precision-sensitive ones and cost little compute; a quantized softmax output would not
    even sum to 1, which the contract (and the runtime) refuses."""
    nodes = list(model.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    keep = [n.name for n in nodes if n.op_type == "Conv"][:1]
    for node in nodes:
        if node.op_type != "Softmax":
            continue
        keep.append(node.name)
        head = producer.get(node.input[0])
        while head is not None and head.op_type in ("Add", "Identity", "Reshape"):
            keep.append(head.name)
            head = producer.get(head.input[0])
        if head is not None and head.op_type in ("MatMul", "Gemm"):
            keep.append(head.name)
    return keep


class _Reader:
    """onnxruntime CalibrationDataReader over uint8 images, in small batches."""

    def __init__(self, images: np.ndarray, batch_size: int = 16) -> None:
        self._batches = iter(
            [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        )

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {"image": batch}

    def rewind(self) -> None:  # pragma: no cover - the MinMax calibrator reads once
        pass


def quantize_int8(fp32_model: bytes, calibration: np.ndarray, calibration_source: str) -> bytes:
    """Quantize serialized fp32 ONNX bytes; returns int8 ONNX bytes carrying the same metadata."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="cifar-int8-") as tmp:
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(fp32_model)
        try:
            # Static shapes but the batch: ONNX shape inference suffices (no sympy needed).
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(out),
                _Reader(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=QUANTIZED_OPS,
                nodes_to_exclude=float_nodes(onnx.load_model(str(pre))),
            )
        except Exception as exc:  # the quantizer raises many types for unsupported graphs
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ModelError(
                f"onnxruntime could not quantize the model: {first}; export without "
                "--quantize int8. Received: --quantize=int8"
            ) from exc
        proto = onnx.load_model(str(out))
    props = get_metadata(onnx.load_model_from_string(fp32_model))
    props.pop("parity", None)  # replaced by the int8 check's own summary
    props["model_version"] = props.get("model_version", "model") + "+int8"
    props["quantization"] = json.dumps(
        {**QUANT_SETTINGS, "calibration": calibration_source}, separators=(",", ":")
    )
    set_metadata(proto, props)
    return proto.SerializeToString()


def check_int8(
    fp32_model: bytes,
    int8_model: bytes,
    samples: Samples,
    *,
    min_agreement: float = 0.98,
    max_accuracy_drop: float = 0.01,
    threads: int | None = None,
) -> Report:
    """Top-1 agreement with fp32 and accuracy drop on `samples`; a Report, never raises."""
    tolerances = {"min_top1_agreement": min_agreement, "max_accuracy_drop": max_accuracy_drop}
    report = Report(
        "int8",
        samples.dataset_source,
        int(samples.n_dataset),
        tolerances,
        versions=check_versions(),
    )
    contract_checks(report, int8_model)
    fp32 = run_batched(make_runner(fp32_model, threads), samples.images, 0)
    try:
        int8 = run_batched(make_runner(int8_model, threads), samples.images, 0)
    except CifarError as exc:  # the runtime refuses the quantized graph
        report.add("runtime runs the int8 model", False, str(exc))
        return report
    labelled = samples.labelled
    p32, p8 = fp32.argmax(axis=1)[labelled], int8.argmax(axis=1)[labelled]
    truth = samples.labels[labelled]
    agreement = float((p32 == p8).mean())
    acc32, acc8 = float((p32 == truth).mean()), float((p8 == truth).mean())
    drop = acc32 - acc8
    report.stats.update(
        top1_agreement=agreement,
        accuracy_fp32=acc32,
        accuracy_int8=acc8,
        accuracy_drop=drop,
        max_abs_diff=float(np.abs(int8 - fp32).max()),
        mean_abs_diff=float(np.abs(int8 - fp32).mean()),
        size_bytes={"fp32": len(fp32_model), "int8": len(int8_model)},
    )
    n = int(labelled.sum())
    report.add(
        "top-1 agreement with fp32",
        agreement >= min_agreement,
        f"{100 * agreement:.2f}% ({int((p32 != p8).sum())} of {n} differ; "
        f"need >= {100 * min_agreement:g}%)",
    )
    report.add(
        "accuracy drop",
        drop <= max_accuracy_drop + 1e-12,
        f"{100 * drop:.2f} points (fp32 {100 * acc32:.2f}%, int8 {100 * acc8:.2f}%; "
        f"need <= {100 * max_accuracy_drop:g})",
    )
    return report
