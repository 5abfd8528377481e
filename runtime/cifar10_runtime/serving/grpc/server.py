"""The Open Inference Protocol over gRPC (`cifar-serve --grpc-port`), beside the REST API.

A `grpc.aio` server on the same asyncio event loop as uvicorn, started and stopped by the
app's lifespan (server.py): it shares the app's Predictor, MicroBatcher and Metrics, so
gRPC and REST requests are batched together into the same runs. The methods are the Open
Inference Protocol's six of `inference.GRPCInferenceService` (grpc_protocol.py, Triton's
generated stubs): ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and
ModelInfer, with tensors in `raw_input_contents` / `raw_output_contents` (as tritonclient
sends them) or in typed `contents`. Triton's extensions of that service (repository,
statistics, shared memory, ModelStreamInfer...) are not registered: gRPC answers them
UNIMPLEMENTED.

Validation is v2.py's (one home; grpc_wire.py maps onto it): a gRPC request becomes the
same header dict the REST handler parses, and its errors become status codes carrying the
same one-line message: 400 -> INVALID_ARGUMENT, 404 -> NOT_FOUND, 413 ->
RESOURCE_EXHAUSTED, queue full / not started / shutting down -> UNAVAILABLE. Messages over
`max_message_bytes` (--max-body-mb) get RESOURCE_EXHAUSTED with our message before they
are parsed; gRPC's own limit, at twice that, drops anything larger unread.
`maximum_concurrent_rpcs` bounds RPCs in progress (the rest get RESOURCE_EXHAUSTED from
gRPC) and `grpc.max_concurrent_streams` the streams one connection may open.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np
from prometheus_client import Counter, Histogram

from cifar10_runtime import __version__
from cifar10_runtime.errors import CifarError, ConfigError
from cifar10_runtime.limits import GRPC_MAX_STREAMS
from cifar10_runtime.serving.grpc.codec import Aborted, status_of, to_v2_header
from cifar10_runtime.serving.grpc.protocol import OPEN_INFERENCE, SERVICE, protocol
from cifar10_runtime.serving.metrics import PREFIX, SECONDS, Metrics
from cifar10_runtime.serving.v2.rest import SERVER_NAME, V2Api

log = logging.getLogger("cifar10_runtime.grpc")


class GrpcInference:
    """The servicer: one method per RPC, each taking the parsed request."""

    def __init__(self, v2: V2Api, metrics: Metrics, max_message_bytes: int) -> None:
        self.v2 = v2
        self.batcher = v2.batcher
        self.metrics = metrics
        self.max_message_bytes = max_message_bytes
        self.proto = protocol()
        # On the app's registry, beside the HTTP counters: one /metrics for both protocols.
        self.requests = Counter(
            f"{PREFIX}_grpc_requests",
            "gRPC requests by method and status code.",
            ["method", "code"],
            registry=metrics.registry,
        )
        self.seconds = Histogram(
            f"{PREFIX}_grpc_request_duration_seconds",
            "Time from a gRPC request's arrival to its answer, by method.",
            ["method"],
            buckets=SECONDS,
            registry=metrics.registry,
        )

    # --- health and metadata -------------------------------------------------------------
    async def ServerLive(self, request: Any) -> Any:
        return self.proto.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any) -> Any:
        return self.proto.ServerReadyResponse(ready=self.batcher.running)

    async def ModelReady(self, request: Any) -> Any:
        # As Triton answers: an unknown model or version is not ready (OK, ready=false), so
        # tritonclient's is_model_ready returns False over gRPC as it does over REST.
        known = request.name == self.v2.name and request.version in ("", self.v2.version)
        return self.proto.ModelReadyResponse(ready=known and self.batcher.running)

    async def ServerMetadata(self, request: Any) -> Any:
        # binary_tensor_data is REST's extension; gRPC carries raw bytes natively.
        return self.proto.ServerMetadataResponse(name=SERVER_NAME, version=__version__)

    async def ModelMetadata(self, request: Any) -> Any:
        self._check_model(request.name, request.version)
        meta = self.v2.metadata()
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
        header, binary = to_v2_header(request)
        images = self.v2._images(header, binary)
        self.v2._requested_outputs(header)  # names and parameters checked as over REST
        probs, _ = await self.batcher.submit(images)
        output = self.proto.ModelInferResponse.InferOutputTensor(
            name=self.v2.output_name, datatype="FP32", shape=list(probs.shape)
        )
        return self.proto.ModelInferResponse(
            model_name=self.v2.name,
            model_version=self.v2.version,
            id=request.id,
            outputs=[output],
            raw_output_contents=[np.ascontiguousarray(probs, dtype="<f4").tobytes()],
        )

    def _check_model(self, name: str, version: str) -> None:
        self.v2.check_model(name, version or None)  # "" is "not given" in proto3

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
            raise Aborted(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
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
        self.requests.labels(method, code.name).inc()
        self.seconds.labels(method).observe(time.perf_counter() - started)
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
    v2: V2Api,
    metrics: Metrics,
    host: str,
    port: int,
    max_message_bytes: int,
    max_rpcs: int,
    reuse_port: bool = False,
) -> GrpcServer:
    """The gRPC server for an app's V2Api (server.py starts and stops it in its lifespan)."""
    servicer = GrpcInference(v2, metrics, max_message_bytes)
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
