"""The Open Inference Protocol's gRPC wire format, between protobuf and the dataplane.

A ModelInferRequest becomes the protocol's JSON-form `inputs` and `outputs` the dataplane
checks (serving.v2.tensors), plus the raw bytes of its one input; the dataplane's error kinds
become gRPC status codes (GRPC_CODE) with the dataplane's one-line message, bounded to
MAX_MESSAGE_CHARS (a status travels in an HTTP/2 trailer, where an oversize one fails the
whole call). The problems only protobuf can have (data sent twice, or not at all) are
`Aborted` here. Big messages arrive split by wire.py: their tensors' bytes and typed contents
beside the parsed rest.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from cifar10_runtime.errors import CifarError
from cifar10_runtime.serving.grpc.wire import InferWire
from cifar10_runtime.serving.v2.errors import DataplaneError, ErrorKind, short

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
# Characters of a status message: room for any of ours, far below HTTP/2's header limits.
MAX_MESSAGE_CHARS = 1000


class Aborted(Exception):
    """A request refused with a gRPC status and our one-line message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def to_v2_header(
    request: Any, wire: InferWire | None = None
) -> tuple[dict[str, Any], memoryview | None]:
    """A ModelInferRequest as the protocol's JSON-form `inputs` and `outputs`, plus the raw
    bytes of its one input (None when its data came typed, in `contents`). `wire`: the big
    fields wire.read_infer took out of `request` (None: all of it is in `request`)."""
    raw: list[Any] = wire.raw if wire is not None else list(request.raw_input_contents)
    typed = wire.typed if wire is not None else {}
    inputs = []
    for index, tensor in enumerate(request.inputs):
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if index in typed or tensor.HasField("contents"):
            if raw:
                raise Aborted(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input {short(tensor.name)}: send its data in raw_input_contents or in "
                    "contents, not both.",
                )
            field = CONTENTS.get(tensor.datatype, "uint_contents")
            entry["data"] = typed.get(index)
            if entry["data"] is None:
                entry["data"] = list(getattr(tensor.contents, field))
        elif not raw:
            raise Aborted(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input {short(tensor.name)} has no data: send raw_input_contents (as "
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
    """The gRPC status and one-line message a failed call answers (at most MAX_MESSAGE_CHARS)."""
    if isinstance(exc, Aborted):
        return exc.code, bounded(str(exc))
    if isinstance(exc, DataplaneError):
        return GRPC_CODE[exc.kind], bounded(exc.message)
    if isinstance(exc, CifarError):
        return grpc.StatusCode.INVALID_ARGUMENT, bounded(str(exc))
    log.exception("gRPC request failed")
    return GRPC_CODE[ErrorKind.INTERNAL], INTERNAL_MESSAGE


def bounded(text: str) -> str:
    """A status message cut to MAX_MESSAGE_CHARS, on one line."""
    text = text.replace("\r", " ").replace("\n", " ")
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def _value(parameter: Any) -> Any:
    kind = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, kind) if kind else None
