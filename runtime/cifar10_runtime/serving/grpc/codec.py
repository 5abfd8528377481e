"""The Open Inference Protocol's gRPC wire format, between protobuf and the dataplane.

A ModelInferRequest becomes the protocol's JSON-form `inputs` and `outputs` the dataplane
checks (serving.v2.tensors), plus the raw bytes of its one input; the dataplane's error kinds
become gRPC status codes (GRPC_CODE) with the dataplane's one-line message as it is. The
problems only protobuf can have (data sent twice, or not at all) are `Aborted` here.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from cifar10_runtime.errors import CifarError
from cifar10_runtime.serving.v2.errors import DataplaneError, ErrorKind

log = logging.getLogger("cifar10_runtime.grpc")
GRPC_CODE = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}
INTERNAL_MESSAGE = "internal server error; see the server log."
RAW_SIZE = "the size of raw_input_contents[0]"  # what gRPC calls an input's byte count
CONTENTS = {"UINT8": "uint_contents", "FP32": "fp32_contents"}  # typed contents per datatype


class Aborted(Exception):
    """A request refused with a gRPC status and our one-line message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def to_v2_header(request: Any) -> tuple[dict[str, Any], memoryview | None]:
    """A ModelInferRequest as the protocol's JSON-form `inputs` and `outputs`, plus the raw
    bytes of its one input (None when its data came typed, in `contents`)."""
    raw = list(request.raw_input_contents)
    inputs = []
    for tensor in request.inputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if tensor.HasField("contents"):
            if raw:
                raise Aborted(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input {tensor.name!r}: send its data in raw_input_contents or in "
                    "contents, not both.",
                )
            field = CONTENTS.get(tensor.datatype, "uint_contents")
            entry["data"] = list(getattr(tensor.contents, field))
        elif not raw:
            raise Aborted(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input {tensor.name!r} has no data: send raw_input_contents (as "
                "tritonclient does) or contents.uint_contents.",
            )
        inputs.append(entry)
    if raw and len(raw) != len(inputs):
        raise Aborted(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs; send one "
            "per input, in the order of 'inputs'.",
        )
    binary = memoryview(raw[0]) if raw and len(inputs) == 1 else None
    outputs = [
        {"name": o.name, "parameters": {k: _value(p) for k, p in o.parameters.items()}}
        for o in request.outputs
    ]
    return {"inputs": inputs, "outputs": outputs}, binary


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and one-line message a failed call answers."""
    if isinstance(exc, Aborted):
        return exc.code, str(exc)
    if isinstance(exc, DataplaneError):
        return GRPC_CODE[exc.kind], exc.message
    if isinstance(exc, CifarError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    log.exception("gRPC request failed")
    return GRPC_CODE[ErrorKind.INTERNAL], INTERNAL_MESSAGE


def _value(parameter: Any) -> Any:
    kind = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, kind) if kind else None
