"""The model's tensors under the Open Inference Protocol, whatever carried them.

The request's tensors come in the protocol's JSON form (a list of objects with `name`,
`datatype`, `shape`, `data`, `parameters`), as REST sends them and as the gRPC codec builds
them from protobuf; raw bytes, when the transport carries them apart (REST's binary
extension, gRPC's `raw_input_contents`), come beside it. Checked here: the one input's name,
datatype and shape, its data or bytes (-> uint8 images), and the requested outputs. Every
problem is a DataplaneError (INVALID_ARGUMENT) whose message names the fix; nothing here
knows HTTP or gRPC. The words that differ by transport (what the bytes' size is called)
come from the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cifar10_runtime.contract import IMAGE_SHAPE
from cifar10_runtime.serving.v2.errors import invalid, short

DATATYPES = {"UINT8": np.dtype("<u1"), "FP32": np.dtype("<f4")}


@dataclass(frozen=True)
class InputSpec:
    """The one input tensor with its name, datatype and shape checked (not yet its data)."""

    tensor: dict[str, Any]  # the tensor as sent: `data` and `parameters` unchecked
    name: str
    datatype: str
    shape: list[int]

    @property
    def dtype(self) -> np.dtype:
        return DATATYPES[self.datatype]

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize


def input_spec(inputs: Any, input_name: str) -> InputSpec:
    """`inputs` must be one tensor named `input_name`, UINT8 or FP32, [N, 32, 32, 3]."""
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise invalid(
            f"'inputs' must be a list of exactly one tensor, {input_name!r}. "
            f"Received: {short(inputs)}."
        )
    tensor = inputs[0]
    name = tensor.get("name")
    if name != input_name:
        raise invalid(f"unknown input {name!r}. The model's input is {input_name!r}.")
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise invalid(
            f"input {name!r}: datatype must be UINT8 (or FP32 in [0,1]). Received: {datatype!r}."
        )
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 4
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[0] < 1
        or tuple(shape[1:]) != IMAGE_SHAPE
    ):
        raise invalid(
            f"input {name!r}: shape must be [N, 32, 32, 3] with N >= 1 (NHWC RGB). "
            f"Received: {short(shape)}."
        )
    return InputSpec(tensor, name, datatype, shape)


def check_byte_size(spec: InputSpec, size: int, label: str) -> None:
    """`size` bytes (`label`: what the transport calls it) must be what the shape needs."""
    if size != spec.nbytes:
        raise invalid(
            f"input {spec.name!r}: {label} is {size} bytes, but shape {spec.shape} of "
            f"{spec.datatype} needs {spec.nbytes}."
        )


def from_bytes(spec: InputSpec, raw: memoryview, label: str) -> np.ndarray:
    """The tensor from its raw little-endian bytes (row-major)."""
    check_byte_size(spec, len(raw), label)
    return np.frombuffer(raw, dtype=spec.dtype, count=spec.count).reshape(spec.shape)


def from_data(spec: InputSpec, data: list | np.ndarray) -> np.ndarray:
    """The tensor from its `data`: a flat row-major list (or an array parsed from one)."""
    name, datatype = spec.name, spec.datatype
    try:
        values = np.asarray(data)
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise invalid(
            f"input {name!r}: 'data' is ragged or nested too deeply; send a flat row-major list."
        ) from None
    allowed = "iub" if datatype == "UINT8" else "iuf"
    if values.size and values.dtype.kind not in allowed:
        kind = "integers 0..255" if datatype == "UINT8" else "numbers"
        raise invalid(f"input {name!r}: {datatype} 'data' must hold {kind} only.")
    if values.size != spec.count:
        raise invalid(
            f"input {name!r}: 'data' has {values.size} values, but shape {spec.shape} "
            f"needs {spec.count}."
        )
    if datatype == "UINT8" and values.size and (values.min() < 0 or values.max() > 255):
        raise invalid(f"input {name!r}: UINT8 values must be 0..255.")
    return values.astype(spec.dtype).reshape(spec.shape)


def to_uint8(spec: InputSpec, x: np.ndarray) -> np.ndarray:
    """The images as the model takes them: FP32 in [0, 1] becomes round(x * 255)."""
    if spec.datatype != "FP32":
        return x
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise invalid(
            f"input {spec.name!r}: FP32 pixels must be in [0, 1] (they become round(x * 255)); "
            "or send UINT8 0..255."
        )
    return np.rint(x * np.float32(255)).astype(np.uint8)


def requested_outputs(outputs: Any, output_name: str, default_binary: bool) -> list[bool]:
    """One entry per output to return: whether it goes out as binary data.

    `outputs` is the request's list (None or []: the model's one output); `default_binary`
    is what an output without its own `binary_data` parameter gets.
    """
    if outputs is None or outputs == []:
        return [default_binary]
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise invalid(f"'outputs' must be a list of objects. Received: {short(outputs)}.")
    wanted = []
    for output in outputs:
        if output.get("name") != output_name:
            raise invalid(
                f"unknown output {output.get('name')!r}. The model's output is {output_name!r}."
            )
        params = output.get("parameters") or {}
        if not isinstance(params, dict):
            raise invalid(f"output {output_name!r}: 'parameters' must be an object.")
        if params.get("classification"):
            raise invalid(
                "the classification extension is not supported: request the probabilities "
                "(or use POST /v1/predict?top_k=K for labels)."
            )
        binary = params.get("binary_data", default_binary)
        if not isinstance(binary, bool):
            raise invalid(f"binary_data must be true or false. Received: {binary!r}.")
        wanted.append(binary)
    return wanted[:1]  # the same output asked twice is returned once
