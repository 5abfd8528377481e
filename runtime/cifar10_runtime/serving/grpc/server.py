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
one-line message (codec.GRPC_CODE). Every method is registered as a client stream so that
its one message is read under a deadline (calls.py: receive deadline, calls in progress,
drain). Big ModelInfer messages are split by wire.py (tensor bytes without a copy, typed
contents as numpy) and checked in a worker thread, a few at a time, off the event loop.

The connections (channel_options): gRPC core refuses a message over --max-body-mb before
buffering it whole (RESOURCE_EXHAUSTED); a connection must send its HTTP/2 settings within
--header-timeout, an idle one is closed after --timeout-keep-alive, any one after
limits.GRPC_CONNECTION_AGE_SECONDS (with --body-timeout of grace); connections are capped so
that REST keeps its share of the process's file descriptors; one connection may open
--limit-concurrency streams, so a burst within the limit is answered.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np

from cifar10_runtime import limits
from cifar10_runtime.errors import CifarError, ConfigError
from cifar10_runtime.serving.grpc.calls import (
    DEFAULT_DEADLINES,
    Calls,
    Deadlines,
    channel_options,
)
from cifar10_runtime.serving.grpc.codec import RAW_SIZE, Aborted, status_of, to_v2_header
from cifar10_runtime.serving.grpc.protocol import OPEN_INFERENCE, SERVICE, protocol
from cifar10_runtime.serving.grpc.wire import read_infer
from cifar10_runtime.serving.metrics import Metrics
from cifar10_runtime.serving.v2.dataplane import V2Dataplane

log = logging.getLogger("cifar10_runtime.grpc")


class GrpcInference:
    """The servicer: one method per RPC, each taking the parsed request to the dataplane."""

    def __init__(self, dataplane: V2Dataplane, metrics: Metrics, max_message_bytes: int) -> None:
        self.dataplane = dataplane
        self.metrics = metrics
        self.calls_metric = metrics.grpc()  # on the app's registry, beside the HTTP counters
        self.max_message_bytes = max_message_bytes
        self.proto = protocol()
        self.calls = Calls(limits.LIMIT_CONCURRENCY, limits.BODY_TIMEOUT)  # GrpcServer sets
        self._pool: ThreadPoolExecutor | None = None
        self._decodes: asyncio.Semaphore | None = None

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
    async def ModelInfer(self, data: bytes) -> Any:
        """The serialized request (ModelInfer alone takes its bytes: wire.py splits them)."""
        if len(data) <= limits.INLINE_BINARY_BYTES:
            request, images = self._decode(data)
        else:  # off the event loop, JSON_DECODES at a time (as v2's big JSON bodies)
            if self._pool is None or self._decodes is None:
                self._pool = ThreadPoolExecutor(limits.JSON_DECODES, "cifar-grpc-decode")
                self._decodes = asyncio.Semaphore(limits.JSON_DECODES)
            async with self._decodes:
                loop = asyncio.get_running_loop()
                request, images = await loop.run_in_executor(self._pool, self._decode, data)
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

    def _decode(self, data: bytes) -> tuple[Any, np.ndarray]:
        """The request (without its big fields) and its images, checked."""
        message = self.proto.ModelInferRequest
        try:
            wire = read_infer(data)
            request = message.FromString(wire.rest)
        except Exception:  # wire.WireError or protobuf's DecodeError: not this message
            raise _not_a(message, "ModelInfer") from None
        self._check_model(request.model_name, request.model_version)
        header, raw = to_v2_header(request, wire)
        images = self.dataplane.tensor_images(header["inputs"], raw, RAW_SIZE)
        self.dataplane.requested_outputs(header["outputs"])  # checked; always raw bytes back
        return request, images

    def _check_model(self, name: str, version: str) -> None:
        self.dataplane.check_model(name, version or None)  # "" is "not given" in proto3

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # --- the RPC plumbing ----------------------------------------------------------------
    def handler(self) -> grpc.GenericRpcHandler:
        """The Open Inference Protocol's six, each guarded by `_call` (others: UNIMPLEMENTED).

        Registered as client streams: a unary client's call is the same on the wire, and the
        handler reads its one message itself, under the receive deadline."""
        methods = [self.proto.methods[name] for name in OPEN_INFERENCE]
        handlers = {
            m.name: grpc.stream_unary_rpc_method_handler(
                self._call(m.name, m.request, getattr(self, m.name)),
                request_deserializer=None,  # raw bytes: parsed by the method
                response_serializer=m.response.SerializeToString,
            )
            for m in methods
        }
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _call(
        self, name: str, message: Any, method: Callable[[Any], Awaitable[Any]]
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        inference = name == "ModelInfer"

        async def call(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                data = await self.calls.receive(name, context)
                with self.calls.admit():
                    request = data if inference else _parse(message, name, data)
                    response = await method(request)
            except Exception as exc:  # every outcome becomes a status with one line
                code, text = status_of(exc)
                # Counted before the answer leaves: a client that reads /metrics next sees it.
                self._record(name, code, started, inference)
                await context.abort(code, text)
            self._record(name, grpc.StatusCode.OK, started, inference)
            return response

        return call

    def _record(self, method: str, code: grpc.StatusCode, started: float, inference: bool) -> None:
        self.calls_metric.record(method, code.name, time.perf_counter() - started)
        if inference:
            self.metrics.inference_outcome("grpc", 200 if code is grpc.StatusCode.OK else code.name)


def _parse(message: Any, name: str, data: bytes) -> Any:
    try:
        return message.FromString(data)
    except Exception:  # protobuf's DecodeError: bytes that are not this message
        raise _not_a(message, name) from None


def _not_a(message: Any, name: str) -> Aborted:
    return Aborted(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the {name} request is not a valid {message.DESCRIPTOR.full_name}.",
    )


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
    deadlines: Deadlines = DEFAULT_DEADLINES,
) -> GrpcServer:
    """The gRPC server over an app's dataplane (app.py starts and stops it in its lifespan)."""
    servicer = GrpcInference(dataplane, metrics, max_message_bytes)
    return GrpcServer(servicer, host, port, max_rpcs, max_rpcs, reuse_port, deadlines)


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
        deadlines: Deadlines = DEFAULT_DEADLINES,
    ) -> None:
        self.servicer = servicer
        servicer.calls = Calls(max_rpcs, deadlines.receive)
        self.host = host
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 too
        self.max_streams = max_streams
        self.reuse_port = reuse_port
        self.deadlines = deadlines
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        options = channel_options(
            self.servicer.max_message_bytes, self.max_streams, self.deadlines, self.reuse_port
        )
        server = grpc.aio.server(options=options)  # calls.py bounds the calls in progress
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
        """Refuse new calls (UNAVAILABLE), let those in progress finish for up to `grace`
        seconds, then close the connections."""
        if self._server is None:
            return
        calls = self.servicer.calls
        calls.drain()
        quiet, linger = limits.SHUTDOWN_QUIET_SECONDS, limits.SHUTDOWN_LINGER_SECONDS
        if not await calls.settle(grace, quiet, linger):
            log.warning(
                "gRPC: %d calls still in progress after %g s; cancelled", calls.active, grace
            )
        await self._server.stop(limits.GRPC_CLOSE_SECONDS)
        self._server = None
        self.servicer.close()
