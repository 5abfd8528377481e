"""The HTTP app: one Predictor and one MicroBatcher behind three APIs.

    /v1/predict, /v1/metadata, /healthz, /readyz   the friendly API (v1.py)
    /v2/...                                        the Open Inference Protocol (v2/)
    GET /metrics                                   Prometheus text (metrics.py)
    GET /openapi.json                              the API description (openapi.py)
    GET /                                          the try-it page (page.py; --no-ui leaves it out)

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
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cifar10_runtime import limits
from cifar10_runtime.batcher import MicroBatcher, UnavailableError
from cifar10_runtime.engines.batch_sizes import BatchTuning
from cifar10_runtime.engines.cpu import usable_cpus
from cifar10_runtime.engines.warmup import sizes_text
from cifar10_runtime.errors import CifarError, ConfigError, ImageError
from cifar10_runtime.predictor import Predictor
from cifar10_runtime.serving.config import ServeConfig
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
    """The gRPC server as a service: started with the app, stopped before the batcher drains
    (new calls refused UNAVAILABLE while those in progress get limits.GRPC_GRACE_SECONDS)."""
    await grpc.start()
    try:
        yield
    finally:
        await grpc.stop(limits.GRPC_GRACE_SECONDS)


def serving_predictor(model: str | os.PathLike[str], config: ServeConfig) -> Predictor:
    """The Predictor a server runs (create_app and cifar-serve), as `config` says: its
    onnxruntime workers stop spinning when a run returns (limits.ORT_SPINNING), leaving the
    event loop its core."""
    return Predictor(
        model,
        providers=config.providers,
        threads=config.threads,
        engine=config.engine,
        precision=config.precision,
        spinning=limits.ORT_SPINNING,
    )


def create_app(
    predictor_or_path: Predictor | str | os.PathLike[str],
    config: ServeConfig | None = None,
    services: Sequence[Service] = (),
    tuning: BatchTuning | None = None,
) -> Starlette:
    """Build the app for a loaded Predictor, or a model path (loaded here, as `config` says;
    config None: the defaults). The batcher starts and drains with the app's lifespan: serve
    through `with TestClient(app)` or a real server. config.grpc_port also serves the Open
    Inference Protocol over gRPC beside HTTP (same loop, batcher and metrics). `services`
    start in the lifespan after the batcher and stop before it drains. `tuning`: how the
    caller chose config.max_batch_size (cifar-serve measures once, before any worker starts),
    reported under /v1/metadata's server.max_batch_size_choice."""
    config = (config or ServeConfig()).resolved()
    if isinstance(predictor_or_path, Predictor):
        predictor = predictor_or_path
    else:
        predictor = serving_predictor(predictor_or_path, config)
    config, measured = config.with_batch_size(predictor)
    if tuning is None or tuning.size != config.max_batch_size:
        tuning = measured
    metrics = Metrics(
        config.model_name, predictor.model_version, predictor.engine, predictor.precision
    )
    in_flight = InFlight()
    batcher = MicroBatcher(
        predictor.predict_array,
        config.max_batch_size,
        config.max_delay_ms,
        config.max_queue,
        observer=metrics,
        inline_ms=config.inline_ms,
        crowd=in_flight.__len__,
    )
    reader = BodyReader(int(config.max_body_mb * 2**20))
    api = V1Api(
        predictor,
        batcher,
        reader,
        config.max_pixels,
        limits.LARGE_DECODES,
        config.max_request_pixels,
        tuning.to_dict(),
    )
    v2 = V2Api(predictor, batcher, reader, config.model_name)
    grpc = _grpc_server(v2, metrics, reader.max_body, config)
    if grpc is not None:
        services = [lambda app: _serving(grpc), *services]
    app = Starlette(
        routes=_routes(api, v2, metrics, config, predictor.model_version),
        lifespan=_lifespan(api, batcher, services, predictor, config.model_name),
        exception_handlers=_HANDLERS,
        middleware=[
            Middleware(NoSniffMiddleware),
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(BodyTimeout, seconds=config.body_timeout, in_flight=in_flight),
        ],
    )
    # Starlette would answer /readyz/ with a redirect to a URL built from the Host header.
    app.router.redirect_slashes = False
    app.state.predictor = predictor
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.grpc = grpc
    app.state.config = config
    app.state.batch_tuning = tuning
    return app


def _grpc_server(v2: V2Api, metrics: Metrics, max_body: int, config: ServeConfig) -> Any:
    """The gRPC server beside HTTP when config.grpc_port is set (else None), on the same
    dataplane, metrics and body limit."""
    if config.grpc_port is None:
        return None
    from cifar10_runtime.serving.grpc.server import Deadlines, grpc_server

    return grpc_server(
        v2.dataplane,
        metrics,
        config.host,
        config.grpc_port,
        max_body,
        config.limit_concurrency,
        config.workers > 1,  # reuse_port: the workers share the gRPC port too
        Deadlines(config.header_timeout, config.body_timeout, config.timeout_keep_alive),
    )


def _lifespan(
    api: V1Api,
    batcher: MicroBatcher,
    services: Sequence[Service],
    predictor: Predictor,
    model_name: str,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Start the batcher (and its warm-up), then the services; stop them in the reverse order.
    Every readiness answer reads `batcher.running`, False until the warm-up is done; the
    "ready:" line is logged once both the services and the warm-up are."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limit_accept_errors(asyncio.get_running_loop())
        # /v1 uploads decode here, beside the batcher's thread, never more than one per
        # usable core at once (the pixel budget and images.py's large-decode gate bound each).
        api.decode_pool = ThreadPoolExecutor(usable_cpus(), thread_name_prefix="cifar-decode")
        warm = predictor.sizes_to_warm(batcher.max_batch_size)
        await batcher.start(partial(predictor.warm_up, batcher.max_batch_size) if warm else None)
        announced: asyncio.Task | None = None
        try:
            async with AsyncExitStack() as started:
                for service in services:
                    await started.enter_async_context(service(app))
                if warm:
                    log.info("warming up %s: not ready until done", sizes_text(warm))
                    announced = asyncio.ensure_future(_announce(batcher, predictor, model_name))
                else:
                    _log_ready(batcher, predictor, model_name, None)
                yield
        finally:
            if announced is not None:
                announced.cancel()
            # uvicorn has already let in-flight requests finish, the services have stopped
            # (gRPC's in-progress calls got their grace while the batcher ran): drain the queue.
            await batcher.close()
            api.decode_pool.shutdown(wait=True)

    return lifespan


async def _announce(batcher: MicroBatcher, predictor: Predictor, model_name: str) -> None:
    _log_ready(batcher, predictor, model_name, await batcher.warmed())


def _log_ready(batcher: MicroBatcher, predictor: Predictor, model_name: str, result: Any) -> None:
    """The one "ready:" line, naming the warm-up (what ran, how long)."""
    if result is None:
        warmed = "warm-up: none needed (no engine compiles per input shape)"
    elif isinstance(result, Exception):
        warmed = f"warm-up failed ({type(result).__name__}), first runs may compile"
    else:
        warmed = f"warm-up: {result.describe()}"
    log.info("ready: %r as %r, %s, batching %s", predictor, model_name, warmed, batcher.stats())


def _routes(
    api: V1Api, v2: V2Api, metrics: Metrics, config: ServeConfig, model_version: str
) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route("/v1/predict", api.predict, methods=["POST"]),
        Route("/v1/metadata", api.metadata, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        *v2.routes(),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
    ]
    # Inference first: Starlette tries routes in order, and these carry the load.
    routes.sort(key=lambda route: getattr(route, "path", "") not in INFERENCE_APIS)
    if not config.no_ui:
        routes += page_routes()
    document = openapi_document(routes, config.model_name, model_version)
    routes.append(Route("/openapi.json", _static_json(document), methods=["GET"]))
    return routes


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


_HANDLERS: dict[Any, Any] = {
    HTTPException: _http_error,
    CifarError: _cifar_error,
    ClientDisconnect: _client_gone,
    Exception: _internal_error,
}
