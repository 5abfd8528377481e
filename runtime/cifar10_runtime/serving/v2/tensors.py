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

import array
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
    if name != input_name:  # any JSON type compares; only the one string is equal
        raise invalid(f"unknown input {short(name)}. The model's input is {input_name!r}.")
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:  # a list is unhashable
        raise invalid(
            f"input {name!r}: datatype must be UINT8 (or FP32 in [0,1]). "
            f"Received: {short(datatype)}."
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
    if not isinstance(data, list | np.ndarray):
        raise invalid(
            f"input {name!r}: 'data' must be a flat row-major list of numbers. "
            f"Received: {short(data)}."
        )
    try:
        values = np.asarray(data)
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise invalid(
            f"input {name!r}: 'data' is ragged or nested too deeply; send a flat row-major list."
        ) from None
    allowed = "iu" if datatype == "UINT8" else "iuf"
    # true/false are no pixels, even where numpy turns them into 1/0 beside numbers
    if values.size and (values.dtype.kind not in allowed or _holds_bool(data)):
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


def flat_numbers(data: Any) -> Any:
    """`data` as one int64 (else float64) array when it is a flat list of plain numbers,
    else unchanged, for from_data's checks. One C pass instead of numpy's type discovery
    per item plus _holds_bool's: 3-4x less CPU on the common JSON body. The caller vouches
    that no true or false is in it (array.array reads them as 1 and 0)."""
    if not isinstance(data, list):
        return data
    for code, dtype in (("q", np.int64), ("d", np.float64)):
        try:  # TypeError: not all numbers (or nested); OverflowError: beyond this type
            return np.frombuffer(array.array(code, data), dtype=dtype)
        except (TypeError, OverflowError):
            continue
    return data


def _holds_bool(data: list | np.ndarray) -> bool:
    """Whether a JSON true or false is anywhere in `data` (nested lists and arrays)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray):
            if item.dtype.kind == "b":
                return True
            if item.dtype.kind == "O":
                stack.append(list(item.ravel()))
            continue
        kinds = set(map(type, item))  # one C-speed pass per list
        if bool in kinds or np.bool_ in kinds:
            return True
        if kinds & {list, np.ndarray}:
            stack.extend(v for v in item if isinstance(v, list | np.ndarray))
    return False


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


def parameters(value: Any, what: str) -> dict[str, Any]:
    """A `parameters` field: an object, or absent (None: no parameters)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"{what} must be an object. Received: {short(value)}.")
    return value


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
        if output.get("name") != output_name:  # any JSON type compares
            raise invalid(
                f"unknown output {short(output.get('name'))}. "
                f"The model's output is {output_name!r}."
            )
        params = parameters(output.get("parameters"), f"output {output_name!r}: 'parameters'")
        if params.get("classification"):
            raise invalid(
                "the classification extension is not supported: request the probabilities "
                "(or use POST /v1/predict?top_k=K for labels)."
            )
        binary = params.get("binary_data", default_binary)
        if not isinstance(binary, bool):
            raise invalid(f"binary_data must be true or false. Received: {short(binary)}.")
        wanted.append(binary)
    return wanted[:1]  # the same output asked twice is returned once
