"""The Open Inference Protocol's gRPC messages and methods: Triton's generated stubs.

`tritonclient.grpc.service_pb2` (the tritonclient wheel, serve extra) is protoc's output for
Triton's `grpc_service.proto`, the protocol's reference implementation: package `inference`,
service `GRPCInferenceService`, the KServe v2 messages with the field numbers its clients
speak, plus Triton's extensions (model repository, statistics, shared memory, streaming...).
The message classes are that module's and the method table is built from its service
descriptor, so nothing is retyped by hand. The server answers OPEN_INFERENCE only and leaves
the rest to gRPC's UNIMPLEMENTED (server.py). Imported on first use: only
`cifar-serve --grpc-port` needs it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from cifar10_runtime.errors import ConfigError

PACKAGE = "inference"
SERVICE = f"{PACKAGE}.GRPCInferenceService"
STUBS = "tritonclient.grpc.service_pb2"
# The Open Inference Protocol's own methods (the KServe v2 spec), in its order; the rest of
# Triton's service are Triton's extensions.
OPEN_INFERENCE = (
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
)


@dataclass(frozen=True)
class Method:
    name: str  # e.g. "ModelInfer"
    path: str  # "/inference.GRPCInferenceService/ModelInfer", what a client calls
    request: Any  # the request message class
    response: Any  # the response message class
    streaming: bool  # a client or server stream (Triton's ModelStreamInfer)


@dataclass(frozen=True)
class Protocol:
    messages: dict[str, Any]  # "ModelInferRequest" -> its class (nested types via attributes)
    methods: dict[str, Method]  # the service's methods, in the .proto's order

    def __getattr__(self, name: str) -> Any:
        try:
            return self.messages[name]
        except KeyError:
            raise AttributeError(name) from None


def _stubs() -> Any:
    try:
        # tritonclient.grpc's __init__ raises RuntimeError when grpcio or protobuf is absent.
        from tritonclient.grpc import service_pb2
    except (ImportError, RuntimeError) as exc:
        raise ConfigError(
            f"--grpc-port needs Triton's gRPC stubs ({STUBS}) from the serve extra; install "
            f'it with: pip install "cifar10-runtime[serve]". Received: {type(exc).__name__}: '
            f"{exc}"
        ) from None
    return service_pb2


@functools.cache
def protocol() -> Protocol:
    """The messages and methods (built once per process)."""
    stubs = _stubs()
    file = stubs.DESCRIPTOR
    messages = {name: getattr(stubs, name) for name in file.message_types_by_name}
    service = file.services_by_name.get(SERVICE.rsplit(".", 1)[1])
    offered = set(service.methods_by_name) if service is not None else set()
    missing = [name for name in OPEN_INFERENCE if name not in offered]
    if service is None or missing:
        raise ConfigError(
            f"{STUBS} lacks the Open Inference Protocol's {SERVICE} methods {missing}; "
            f'reinstall the serve extra: pip install "cifar10-runtime[serve]". '
            f"Received: {file.name} of package {file.package!r}"
        )
    _check_wire(messages)
    methods = {
        m.name: Method(
            m.name,
            f"/{SERVICE}/{m.name}",
            messages[m.input_type.name],  # every one of them is grpc_service.proto's own
            messages[m.output_type.name],
            m.client_streaming or m.server_streaming,
        )
        for m in service.methods
    }
    return Protocol(messages, methods)


def _check_wire(messages: dict[str, Any]) -> None:
    """wire.py reads a ModelInferRequest's big fields by number: the stubs must agree."""
    from cifar10_runtime.serving.grpc import wire

    request = messages["ModelInferRequest"].DESCRIPTOR
    contents = messages["InferTensorContents"].DESCRIPTOR
    numbers = {
        "inputs": (request, wire.INPUTS),
        "raw_input_contents": (request, wire.RAW_INPUT_CONTENTS),
        "contents": (request.fields_by_name["inputs"].message_type, wire.TENSOR_CONTENTS),
        "uint_contents": (contents, wire.UINT_CONTENTS),
        "fp32_contents": (contents, wire.FP32_CONTENTS),
    }
    wrong = {
        name: getattr(message.fields_by_name.get(name), "number", None)
        for name, (message, number) in numbers.items()
        if getattr(message.fields_by_name.get(name), "number", None) != number
    }
    if wrong:
        raise ConfigError(
            f"{STUBS} numbers ModelInferRequest's fields unlike grpc_service.proto; reinstall "
            f'the serve extra: pip install "cifar10-runtime[serve]". Received: {wrong}'
        )
