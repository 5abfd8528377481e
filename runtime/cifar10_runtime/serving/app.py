"""The HTTP app: one Predictor and one MicroBatcher behind three APIs.

    /v1/predict, /v1/metadata, /healthz, /readyz   the friendly API (v1.py)
    /v2/...                                        the Open Inference Protocol (v2.py)
    GET /metrics                                   Prometheus text (metrics.py)
    GET /openapi.json                              the API description (openapi.py)
    GET /                                          the try-it page (ui.py; ui=False leaves it out)

Every error is JSON `{"error": "..."}`: 400 broken image, bad tensor or parameter, 404/405
unknown route, 408 body too slow, 413 body over the limit (bodies.py), 415 unsupported
Content-Type, 503 queue full, shutting down or over --limit-concurrency (connections.py),
500 a bug (logged once); even the HTTP parser's own 400 for bytes that are not HTTP is JSON
(answers.py). No redirects (e.g. `/readyz/` is a 404, never a `Location` built from the
client's Host header).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cifar10_runtime import limits
from cifar10_runtime.batcher import MicroBatcher, UnavailableError
from cifar10_runtime.errors import CifarError, ConfigError, ImageError
from cifar10_runtime.predictor import Predictor
from cifar10_runtime.serving.http.bodies import BodyReader
from cifar10_runtime.serving.http.guards import BodyTimeout, InFlight, limit_accept_errors
from cifar10_runtime.serving.http.headers import NoSniffMiddleware
from cifar10_runtime.serving.metrics import INFERENCE_APIS, Metrics, MetricsMiddleware
from cifar10_runtime.serving.openapi import openapi_document
from cifar10_runtime.serving.page import page_routes
from cifar10_runtime.serving.v1 import V1Api
from cifar10_runtime.serving.v2.rest import V2Api

log = logging.getLogger("cifar10_runtime.serving.app")
ENDPOINTS = (
    "POST /v1/predict, GET /v1/metadata, GET /healthz, GET /readyz, /v2/..., GET /metrics, "
    "GET /openapi.json"
)


# Something started with the app and stopped with it (e.g. a gRPC server beside HTTP):
# called with the app once the batcher runs, exited before the batcher drains.
Service = Callable[[Starlette], AbstractAsyncContextManager[Any]]


@asynccontextmanager
async def _serving(grpc: Any) -> AsyncIterator[None]:
    """The gRPC server as a service: started with the app, stopped before the batcher drains,
    giving RPCs in progress limits.GRPC_GRACE_SECONDS."""
    await grpc.start()
    try:
        yield
    finally:
        await grpc.stop(limits.GRPC_GRACE_SECONDS)


def serving_predictor(
    model: str | os.PathLike[str],
    providers: str = "auto",
    threads: int | None = None,
    engine: str = "auto",
    precision: str = "auto",
) -> Predictor:
    """The Predictor a server runs (create_app and cifar-serve): onnxruntime's workers stop
    spinning when a run returns (limits.ORT_SPINNING), leaving the event loop its core."""
    return Predictor(
        model,
        providers=providers,
        threads=threads,
        engine=engine,
        precision=precision,
        spinning=limits.ORT_SPINNING,
    )


def create_app(
    predictor_or_path: Predictor | str | os.PathLike[str],
    max_batch_size: int = limits.MAX_BATCH_SIZE,
    max_delay_ms: float = limits.MAX_DELAY_MS,
    max_body_mb: float = limits.MAX_BODY_MB,
    max_queue: int = limits.MAX_QUEUE,
    providers: str = "auto",
    threads: int | None = None,
    model_name: str = limits.MODEL_NAME,
    max_pixels: int | None = limits.MAX_PIXELS,
    large_decodes: int = limits.LARGE_DECODES,
    body_timeout: float = limits.BODY_TIMEOUT,
    ui: bool = True,
    max_request_pixels: int | None = limits.MAX_REQUEST_PIXELS,
    grpc_port: int | None = None,
    grpc_host: str = "127.0.0.1",
    grpc_reuse_port: bool = False,
    limit_concurrency: int = limits.LIMIT_CONCURRENCY,
    engine: str = "auto",
    precision: str = "auto",
    inline_ms: float = limits.INLINE_RUN_MS,
    decode_threads: int | None = limits.DECODE_THREADS,
    services: Sequence[Service] = (),
) -> Starlette:
    """Build the app. Pass a loaded Predictor, or a model path (loaded here, before serving).

    max_batch_size=1 turns micro-batching off. The batcher starts and drains with the app's
    lifespan, so use `with TestClient(app)` (or a real server) to serve requests.
    grpc_port (0: any free port) also serves the Open Inference Protocol over gRPC, on the
    same event loop, batcher and metrics (grpc_server.py), started and stopped with them.
    `services` start in the lifespan after the batcher and stop before it drains.
    """
    if isinstance(predictor_or_path, Predictor):
        predictor = predictor_or_path
    else:
        predictor = serving_predictor(predictor_or_path, providers, threads, engine, precision)
    if not max_body_mb > 0:
        raise ConfigError(f"max_body_mb must be more than 0. Received: {max_body_mb!r}.")
    if max_pixels is not None and max_pixels < 1024:
        raise ConfigError(f"max_pixels must be at least 1024 (32x32). Received: {max_pixels}.")
    if not model_name or "/" in model_name:
        raise ConfigError(
            f"model_name must be a non-empty name without '/'. Received: {model_name!r}."
        )
    metrics = Metrics(model_name, predictor.model_version, predictor.engine, predictor.precision)
    in_flight = InFlight()
    batcher = MicroBatcher(
        predictor.predict_array,
        max_batch_size,
        max_delay_ms,
        max_queue,
        observer=metrics,
        inline_ms=inline_ms,
        crowd=in_flight.__len__,
    )
    reader = BodyReader(int(max_body_mb * 2**20))
    api = V1Api(predictor, batcher, reader, max_pixels, large_decodes, max_request_pixels)
    v2 = V2Api(predictor, batcher, reader, model_name)
    grpc = None
    services = list(services)
    if grpc_port is not None:
        from cifar10_runtime.serving.grpc.server import grpc_server

        grpc = grpc_server(
            v2, metrics, grpc_host, grpc_port, reader.max_body, limit_concurrency, grpc_reuse_port
        )
        services.insert(0, lambda app: _serving(grpc))
    decoders = decode_threads or _usable_cores()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limit_accept_errors(asyncio.get_running_loop())
        # /v1 uploads decode here, beside the batcher's thread, never more than `decoders`
        # at once (the pixel budget and images.py's large-decode gate bound each one).
        api.decode_pool = ThreadPoolExecutor(decoders, thread_name_prefix="cifar-decode")
        await batcher.start()
        try:
            async with AsyncExitStack() as started:
                for service in services:
                    await started.enter_async_context(service(app))
                log.info("ready: %r as %r, batching %s", predictor, model_name, batcher.stats())
                yield
        finally:
            # uvicorn has already let in-flight requests finish, the services have stopped
            # (gRPC's in-progress calls got their grace while the batcher ran): drain the queue.
            await batcher.close()
            api.decode_pool.shutdown(wait=True)

    routes = [
        Route("/v1/predict", api.predict, methods=["POST"]),
        Route("/v1/metadata", api.metadata, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        *v2.routes(),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
    ]
    # Inference first: Starlette tries routes in order, and these carry the load.
    routes.sort(key=lambda route: getattr(route, "path", "") not in INFERENCE_APIS)
    if ui:
        routes += page_routes()
    document = openapi_document(routes, model_name, predictor.model_version)
    routes.append(Route("/openapi.json", _static_json(document), methods=["GET"]))
    handlers: dict[Any, Any] = {
        HTTPException: _http_error,
        CifarError: _cifar_error,
        ClientDisconnect: _client_gone,
        Exception: _internal_error,
    }
    middleware = [
        Middleware(NoSniffMiddleware),
        Middleware(MetricsMiddleware, metrics=metrics),
        Middleware(BodyTimeout, seconds=body_timeout, in_flight=in_flight),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers=handlers, middleware=middleware
    )
    # Starlette would answer /readyz/ with a redirect to a URL built from the Host header.
    app.router.redirect_slashes = False
    app.state.predictor = predictor
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.grpc = grpc
    return app


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _static_json(document: dict[str, Any]) -> Any:
    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(document)

    return endpoint


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail
    if exc.status_code == 404 and not request.scope.get("route"):
        detail = f"no such endpoint: {request.method} {request.url.path}. Endpoints: {ENDPOINTS}."
    elif exc.status_code == 405:
        detail = f"method {request.method} not allowed on {request.url.path}. "
        detail += f"Endpoints: {ENDPOINTS}."
    return JSONResponse({"error": detail}, exc.status_code, headers=exc.headers)


async def _cifar_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, UnavailableError):
        return JSONResponse({"error": str(exc)}, 503, headers={"Retry-After": "1"})
    status = 400 if isinstance(exc, ImageError | ConfigError) else 500
    return JSONResponse({"error": str(exc)}, status)


async def _client_gone(request: Request, exc: Exception) -> Response:
    # One line, no traceback: nobody is left to read an answer.
    client = request.client
    who = f"{client.host}:{client.port}" if client else "client"
    log.info(
        "%s - %s %s: client disconnected before the body was read",
        who,
        request.method,
        request.url.path,
    )
    return Response(status_code=499)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this response, so the server logs the traceback once.
    return JSONResponse({"error": "internal server error; see the server log."}, 500)
