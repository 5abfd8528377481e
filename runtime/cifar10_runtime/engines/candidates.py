"""Which candidates (contract.CANDIDATES) a load tries for a request, and why not the others.

A forced engine or precision that cannot run here is a ConfigError naming what is missing and
how to get it; under `auto`, a candidate that cannot run here (no int8 twin, no OpenVINO, no
bf16 instructions, not allowed by the export) is skipped with the reason in the logged table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar10_runtime.contract import CANDIDATES, INT8_TWIN_SUFFIX
from cifar10_runtime.engines.cpu import cpu_features
from cifar10_runtime.engines.golden import Golden
from cifar10_runtime.engines.runners import bf16_missing, openvino_backend
from cifar10_runtime.errors import ConfigError

# (engine, precision, the model file it runs: the model or its int8 twin)
Candidate = tuple[str, str, Any]


@dataclass(frozen=True)
class Request:
    """What the caller asked for, and what this machine and this model offer."""

    engine: str
    precision: str
    asked: str  # "Received: engine=..., precision=..." for error messages
    gpu: bool  # a GPU provider is active: CPU engines are not compared with it
    twin: Path | None
    openvino: str | None  # openvino_backend()'s backend, None when absent
    openvino_missing: str
    bf16_missing: str
    int8_first: bool  # the twin is allowed and this CPU has int8 dot products


def twin_of(model: Any) -> Path | None:
    """The int8 twin beside a model file (contract.INT8_TWIN_SUFFIX), None if there is none."""
    if isinstance(model, bytes | bytearray | memoryview):
        return None
    path = Path(model)
    twin = path.with_name(path.name.removesuffix(".onnx") + INT8_TWIN_SUFFIX)
    return twin if twin.is_file() and twin != path else None


def evidence_note(golden: Golden, precision: str) -> str:
    """Why the export did not allow `precision`, from the evidence it recorded."""
    for row in golden.evidence.get("evidence", []):
        if row.get("precision") == precision and row.get("note"):
            return f"did not allow it ({str(row['note'])[:200]})"
    rows = [r for r in golden.evidence.get("evidence", []) if r.get("precision") == precision]
    if rows:
        return "measured it and it failed the gate"
    return "did not measure it (no such engine on the exporting machine)"


def candidates(
    model: Any, golden: Golden, engine: str, precision: str, gpu: bool, asked: str
) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """(candidates to open and check, skipped rows) for this request."""
    request = _request(model, golden, engine, precision, gpu, asked)
    _check_forced(model, golden, request)
    chosen, skipped = [], []
    for eng, prec in CANDIDATES:
        if engine not in ("auto", eng) or precision not in ("auto", prec):
            continue
        reason = _skip_reason(eng, prec, golden, request)
        if reason:
            skipped.append({"candidate": f"{eng}/{prec}", "status": "skipped", "note": reason})
        else:
            chosen.append((eng, prec, request.twin if prec == "int8" else model))
    return chosen, skipped


def _request(
    model: Any, golden: Golden, engine: str, precision: str, gpu: bool, asked: str
) -> Request:
    twin = twin_of(model)
    backend, missing = openvino_backend() if engine != "onnxruntime" else (None, "")
    cpu = cpu_features()
    int8_dots = bool(cpu["vnni"] or cpu["amx"])
    int8_first = "int8" in golden.allowed and twin is not None and int8_dots and not gpu
    return Request(
        engine, precision, asked, gpu, twin, backend, missing, bf16_missing(), int8_first
    )


def _check_forced(model: Any, golden: Golden, request: Request) -> None:
    """Raise ConfigError when the forced engine or precision cannot run here."""
    precision, asked = request.precision, request.asked
    if precision in ("bf16", "int8") and precision not in golden.allowed:
        raise ConfigError(
            f"precision {precision} is not allowed for this model: its export "
            f"{evidence_note(golden, precision)}. Use precision auto or fp32. {asked}"
        )
    if precision == "int8" and request.twin is None:
        where = (
            "an in-memory model has none"
            if isinstance(model, bytes | bytearray | memoryview)
            else f"{Path(model).stem}{INT8_TWIN_SUFFIX}"
        )
        raise ConfigError(
            f"precision int8 needs the int8 twin beside the model ({where}); export with "
            f"--quantize int8, or use precision auto. {asked}"
        )
    if precision == "bf16" and request.bf16_missing:
        raise ConfigError(f"precision bf16 cannot run here: {request.bf16_missing}. {asked}")
    if request.engine == "openvino" and request.openvino is None:
        raise ConfigError(
            f"engine openvino is not available here: {request.openvino_missing}. {asked}"
        )


def _skip_reason(eng: str, prec: str, golden: Golden, request: Request) -> str:
    """Why candidate eng/prec is not tried for this request ("" when it is)."""
    auto = request.engine == "auto" and request.precision == "auto"
    if request.gpu and (eng, prec) != ("onnxruntime", "fp32"):
        return "a GPU provider is active; CPU engines are not compared with it"
    if prec != "fp32" and prec not in golden.allowed:
        return f"not allowed: the export {evidence_note(golden, prec)}"
    if prec == "int8" and request.twin is None:
        return f"no int8 twin (*{INT8_TWIN_SUFFIX}) beside the model"
    if eng == "openvino" and request.openvino is None:
        return request.openvino_missing
    if prec == "bf16" and request.bf16_missing:
        return request.bf16_missing
    if (eng, prec) == ("openvino", "fp32") and auto:
        return "not timed: onnxruntime/fp32 is the float32 engine for auto"
    if (eng, prec) == ("openvino", "bf16") and request.precision == "auto" and request.int8_first:
        # Each OpenVINO candidate costs a compile at load, and with int8 dot products the
        # twin runs ahead of bf16, so bf16 is not worth that compile.
        return "not timed: the int8 twin is allowed and this CPU has int8 dot products"
    return ""
