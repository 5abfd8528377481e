"""The gRPC side of the Open Inference Protocol's wire format, mapped onto v2.py's.

A ModelInferRequest becomes the header dict (and binary part) v2.py's REST handler parses, so
validation has one home; v2.py's errors (HTTPException with a 4xx) and the runtime's become
gRPC status codes with the same one-line message, its REST wording turned into gRPC's.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import grpc
from starlette.exceptions import HTTPException

from cifar10_runtime.batcher import UnavailableError
from cifar10_runtime.errors import CifarError

log = logging.getLogger("cifar10_runtime.grpc")
STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
}
CONTENTS = {"UINT8": "uint_contents", "FP32": "fp32_contents"}  # typed contents per datatype
# v2.py's messages name the REST body's parts; over gRPC the same part has another name,
# and REST's pointers to a route mean nothing.
WIRE_WORDS = {
    re.compile(r"binary_data_size"): "the size of raw_input_contents[0]",
    re.compile(r" \(GET /v2/models/[^)]*\)"): "",
}


class Aborted(Exception):
    """A request refused with a gRPC status and our one-line message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def to_v2_header(request: Any) -> tuple[dict[str, Any], memoryview]:
    """A ModelInferRequest as v2.py's header dict, plus the raw bytes of its one input."""
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
    binary = memoryview(b"")
    if raw and len(inputs) == 1:
        inputs[0]["parameters"] = {"binary_data_size": len(raw[0])}
        binary = memoryview(raw[0])
    outputs = [
        {"name": o.name, "parameters": {k: _value(p) for k, p in o.parameters.items()}}
        for o in request.outputs
    ]
    return {"inputs": inputs, "outputs": outputs}, binary


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, Aborted):
        return exc.code, str(exc)
    if isinstance(exc, HTTPException):
        text = str(exc.detail)
        for rest, grpc_words in WIRE_WORDS.items():
            text = rest.sub(grpc_words, text)
        return STATUS.get(exc.status_code, grpc.StatusCode.INVALID_ARGUMENT), text
    if isinstance(exc, UnavailableError):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, CifarError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    log.exception("gRPC request failed")
    return grpc.StatusCode.INTERNAL, "internal server error; see the server log."


def _value(parameter: Any) -> Any:
    kind = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, kind) if kind else None
