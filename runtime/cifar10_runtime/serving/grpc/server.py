"""The Open Inference Protocol over gRPC (`cifar-serve --grpc-port`), beside the REST API.

A `grpc.aio` server on the same asyncio event loop as uvicorn, started and stopped by the
app's lifespan (app.py): it shares the app's V2Dataplane (so its Predictor and
MicroBatcher) and Metrics, so gRPC and REST requests are batched together into the same
runs. The methods are the Open Inference Protocol's six of `inference.GRPCInferenceService`
(protocol.py, Triton's generated stubs): ServerLive, ServerReady, ModelReady,
ServerMetadata, ModelMetadata and ModelInfer, with tensors in `raw_input_contents` /
`raw_output_contents` (as tritonclient sends them) or in typed `contents`. Triton's
extensions of that service (repository, statistics, shared memory, ModelStreamInfer...) are
not registered: gRPC answers them UNIMPLEMENTED.

A thin codec: each method turns protobuf into dataplane calls (codec.py) and the answer
back; validation is the dataplane's, and its error kinds become status codes carrying its
one-line message (codec.GRPC_CODE). Messages over `max_message_bytes` (--max-body-mb) get
RESOURCE_EXHAUSTED with our message before they are parsed; gRPC's own limit, at twice
that, drops anything larger unread. `maximum_concurrent_rpcs` bounds RPCs in progress (the
rest get RESOURCE_EXHAUSTED from gRPC) and `grpc.max_concurrent_streams` the streams one
connection may open.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np

from cifar10_runtime.errors import CifarError, ConfigError
from cifar10_runtime.limits import GRPC_MAX_STREAMS
from cifar10_runtime.serving.grpc.codec import RAW_SIZE, Aborted, status_of, to_v2_header
from cifar10_runtime.serving.grpc.protocol import OPEN_INFERENCE, SERVICE, protocol
from cifar10_runtime.serving.metrics import Metrics
from cifar10_runtime.serving.v2.dataplane import V2Dataplane
from cifar10_runtime.serving.v2.errors import DataplaneError, ErrorKind

log = logging.getLogger("cifar10_runtime.grpc")


class GrpcInference:
    """The servicer: one method per RPC, each taking the parsed request to the dataplane."""

    def __init__(self, dataplane: V2Dataplane, metrics: Metrics, max_message_bytes: int) -> None:
        self.dataplane = dataplane
        self.metrics = metrics
        self.calls = metrics.grpc()  # on the app's registry, beside the HTTP counters
        self.max_message_bytes = max_message_bytes
        self.proto = protocol()

    # --- health and metadata -------------------------------------------------------------
    async def ServerLive(self, request: Any) -> Any:
        return self.proto.ServerLiveResponse(live=self.dataplane.live())

    async def ServerReady(self, request: Any) -> Any:
        return self.proto.ServerReadyResponse(ready=self.dataplane.ready())

    async def ModelReady(self, request: Any) -> Any:
        # As Triton answers: an unknown model or version is not ready (OK, ready=false), so
        # tritonclient's is_model_ready returns False over gRPC as it does over REST.
        known = self.dataplane.serves(request.name, request.version or None)
        return self.proto.ModelReadyResponse(ready=known and self.dataplane.ready())

    async def ServerMetadata(self, request: Any) -> Any:
        # No extensions: binary_tensor_data is REST's; gRPC carries raw bytes natively.
        return self.proto.ServerMetadataResponse(**self.dataplane.server_metadata())

    async def ModelMetadata(self, request: Any) -> Any:
        self._check_model(request.name, request.version)
        meta = self.dataplane.model_metadata()
        tensor = self.proto.ModelMetadataResponse.TensorMetadata
        return self.proto.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )

    # --- inference -----------------------------------------------------------------------
    async def ModelInfer(self, request: Any) -> Any:
        self._check_model(request.model_name, request.model_version)
        header, raw = to_v2_header(request)
        images = self.dataplane.tensor_images(header["inputs"], raw, RAW_SIZE)
        self.dataplane.requested_outputs(header["outputs"])  # checked; always raw bytes back
        probs, _ = await self.dataplane.infer(images)
        output = self.proto.ModelInferResponse.InferOutputTensor(
            name=self.dataplane.output_name, datatype="FP32", shape=list(probs.shape)
        )
        return self.proto.ModelInferResponse(
            model_name=self.dataplane.name,
            model_version=self.dataplane.version,
            id=request.id,
            outputs=[output],
            raw_output_contents=[np.ascontiguousarray(probs, dtype="<f4").tobytes()],
        )

    def _check_model(self, name: str, version: str) -> None:
        self.dataplane.check_model(name, version or None)  # "" is "not given" in proto3

    # --- the RPC plumbing ----------------------------------------------------------------
    def handler(self) -> grpc.GenericRpcHandler:
        """The Open Inference Protocol's six, each guarded by `_call` (others: UNIMPLEMENTED)."""
        methods = [self.proto.methods[name] for name in OPEN_INFERENCE]
        handlers = {
            m.name: grpc.unary_unary_rpc_method_handler(
                self._call(m.name, m.request, getattr(self, m.name)),
                request_deserializer=None,  # raw bytes: the size is checked before parsing
                response_serializer=m.response.SerializeToString,
            )
            for m in methods
        }
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _call(
        self, name: str, message: Any, method: Callable[[Any], Awaitable[Any]]
    ) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[Any]]:
        inference = name == "ModelInfer"

        async def call(data: bytes, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                response = await self._answer(name, message, method, data)
            except Exception as exc:  # every outcome becomes a status with one line
                code, text = status_of(exc)
                # Counted before the answer leaves: a client that reads /metrics next sees it.
                self._record(name, code, started, inference)
                await context.abort(code, text)
            self._record(name, grpc.StatusCode.OK, started, inference)
            return response

        return call

    async def _answer(
        self, name: str, message: Any, method: Callable[[Any], Awaitable[Any]], data: bytes
    ) -> Any:
        if len(data) > self.max_message_bytes:
            raise DataplaneError(
                ErrorKind.TOO_LARGE,
                f"the {name} request is larger than the limit of {self.max_message_bytes} "
                f"bytes (--max-body-mb); send fewer images per request. "
                f"Received: {len(data)} bytes.",
            )
        try:
            request = message.FromString(data)
        except Exception:  # protobuf's DecodeError: bytes that are not this message
            raise Aborted(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the {name} request is not a valid {message.DESCRIPTOR.full_name}.",
            ) from None
        return await method(request)

    def _record(self, method: str, code: grpc.StatusCode, started: float, inference: bool) -> None:
        self.calls.record(method, code.name, time.perf_counter() - started)
        if inference:
            self.metrics.inference_outcome("grpc", 200 if code is grpc.StatusCode.OK else code.name)


def check_port(host: str, port: int) -> None:
    """One `error:` line before serving when the gRPC port is taken (port 0 always binds)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gRPC binds: a port left in TIME_WAIT is free, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen for gRPC on {host}:{port} ({exc.strerror}); choose another "
                f"--grpc-port. Received: --grpc-port={port}"
            ) from None


def grpc_server(
    dataplane: V2Dataplane,
    metrics: Metrics,
    host: str,
    port: int,
    max_message_bytes: int,
    max_rpcs: int,
    reuse_port: bool = False,
) -> GrpcServer:
    """The gRPC server over an app's dataplane (app.py starts and stops it in its lifespan)."""
    servicer = GrpcInference(dataplane, metrics, max_message_bytes)
    return GrpcServer(servicer, host, port, max_rpcs, GRPC_MAX_STREAMS, reuse_port)


class GrpcServer:
    """A grpc.aio server for one GrpcInference, bound on `start` (port 0: any free port)."""

    def __init__(
        self,
        servicer: GrpcInference,
        host: str,
        port: int,
        max_rpcs: int,
        max_streams: int,
        reuse_port: bool = False,
    ) -> None:
        self.servicer = servicer
        self.host = host
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 too
        self.max_rpcs = max_rpcs
        self.max_streams = max_streams
        self.reuse_port = reuse_port
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        limit = self.servicer.max_message_bytes * 2  # ours answers first (see the docstring)
        options = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.max_concurrent_streams", self.max_streams),
            # --workers N share the port (the kernel spreads connections); else a port in use
            # is an error, never silently shared with another server.
            ("grpc.so_reuseport", int(self.reuse_port)),
        ]
        server = grpc.aio.server(options=options, maximum_concurrent_rpcs=self.max_rpcs)
        server.add_generic_rpc_handlers((self.servicer.handler(),))
        try:
            self.port = server.add_insecure_port(self.address)
        except RuntimeError as exc:
            raise CifarError(
                f"cannot listen for gRPC on {self.address} ({exc}); choose another "
                f"--grpc-port. Received: --grpc-port={self.address.rsplit(':', 1)[1]}"
            ) from None
        await server.start()
        self._server = server
        log.info("gRPC (Open Inference Protocol) on %s:%d", self.host, self.port)

    async def stop(self, grace: float) -> None:
        """Refuse new RPCs, let those in progress finish for up to `grace` seconds."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
