"""The HTTP API: a Starlette app around one Predictor and one MicroBatcher.

    POST /v1/predict    one image (Content-Type: image/*) or multipart/form-data files; ?top_k=
    GET  /v1/metadata   class names, input spec, versions, metrics, batching settings
    GET  /healthz       the process is alive
    GET  /readyz        the model is loaded and the batcher is taking requests (200 / 503)
    GET  /              the try-it page (cifar10_runtime.ui; create_app(ui=False) leaves it out)

/v1/predict answers carry `Server-Timing: predict;dur=<ms>` (time spent in the handler), and
with ?include_input=1 each prediction's decoded 32x32 image (`input_rgb`, see ui.add_inputs).

Every error is JSON `{"error": "..."}`: 400 broken image or bad parameter, 404/405 unknown
route, 413 body over the limit (Content-Length checked before reading, and counted while
streaming so a chunked body cannot pass it), 415 unsupported Content-Type, 503 queue full
or shutting down. Decoding runs in Starlette's thread pool and inference on the batcher's
thread, so the event loop only moves bytes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .batcher import MicroBatcher, UnavailableError
from .errors import CifarError, ConfigError, ImageError
from .images import load_image
from .predictor import Predictor, check_top_k, make_prediction
from .ui import add_inputs, page_routes, wants_input

log = logging.getLogger("cifar10_runtime.server")
SINGLE_IMAGE_TYPES = ("image/", "application/octet-stream")
ACCEPTED = "image/* (one image in the body) or multipart/form-data (one or more image files)"
ENDPOINTS = "POST /v1/predict, GET /v1/metadata, GET /healthz, GET /readyz"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int, received: str) -> None:
        super().__init__(
            413,
            f"request body is larger than the limit of {limit} bytes "
            f"({limit / 2**20:g} MB). Received: {received}. Send a smaller image "
            "(the model only needs 32x32) or raise --max-body-mb.",
        )


def create_app(
    predictor_or_path: Predictor | str | os.PathLike[str],
    max_batch_size: int = 32,
    max_delay_ms: float = 2.0,
    max_body_mb: float = 10,
    max_queue: int = 256,
    providers: str = "auto",
    threads: int | None = None,
    ui: bool = True,
) -> Starlette:
    """Build the app. Pass a loaded Predictor, or a model path (loaded here, before serving).

    max_batch_size=1 turns micro-batching off. The batcher starts and drains with the app's
    lifespan, so use `with TestClient(app)` (or a real server) to serve requests.
    """
    if isinstance(predictor_or_path, Predictor):
        predictor = predictor_or_path
    else:
        predictor = Predictor(predictor_or_path, providers=providers, threads=threads)
    if not max_body_mb > 0:
        raise ConfigError(f"max_body_mb must be more than 0. Received: {max_body_mb!r}.")
    batcher = MicroBatcher(predictor.predict_array, max_batch_size, max_delay_ms, max_queue)
    api = _Api(predictor, batcher, int(max_body_mb * 2**20))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await batcher.start()
        log.info("ready: %r, batching %s", predictor, batcher.stats())
        try:
            yield
        finally:
            # uvicorn has already let in-flight requests finish; this drains the queue.
            await batcher.close()

    routes = [
        Route("/v1/predict", api.predict, methods=["POST"]),
        Route("/v1/metadata", api.metadata, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
    ]
    if ui:
        routes += page_routes()
    handlers: dict[Any, Any] = {
        HTTPException: _http_error,
        CifarError: _cifar_error,
        Exception: _internal_error,
    }
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.state.predictor = predictor
    app.state.batcher = batcher
    return app


class _Api:
    def __init__(self, predictor: Predictor, batcher: MicroBatcher, max_body: int) -> None:
        self.predictor = predictor
        self.batcher = batcher
        self.max_body = max_body
        self.headers = {"X-Model-Version": predictor.model_version}

    async def predict(self, request: Request) -> JSONResponse:
        started = time.perf_counter()
        top_k = _query_top_k(request, self.predictor.num_classes)
        content_type = request.headers.get("content-type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media.startswith(SINGLE_IMAGE_TYPES):
            multipart = False
        elif media == "multipart/form-data":
            multipart = True
        else:
            raise HTTPException(
                415,
                f"unsupported Content-Type. Received: {content_type or '(none)'}. Send {ACCEPTED}.",
            )
        self._check_length(request)
        if multipart:
            named = await self._read_multipart(request)
        else:
            body = b"".join([chunk async for chunk in self._limited(request)])
            named = [("request body", body)]
        images = await run_in_threadpool(_decode_all, named)
        probs, run_size = await self.batcher.submit(images)
        names = self.predictor.class_names
        answer = {
            "predictions": [make_prediction(row, names, top_k).to_dict() for row in probs],
            "model_version": self.predictor.model_version,
        }
        if wants_input(request):
            add_inputs(answer["predictions"], images)
        timing = f"predict;dur={(time.perf_counter() - started) * 1000:.3f}"
        headers = {**self.headers, "X-Batch-Size": str(run_size), "Server-Timing": timing}
        return JSONResponse(answer, headers=headers)

    def _check_length(self, request: Request) -> None:
        declared = request.headers.get("content-length")
        if declared is None:
            return
        if not declared.strip().isdigit():
            raise HTTPException(400, f"invalid Content-Length. Received: {declared!r}.")
        if int(declared) > self.max_body:
            raise BodyTooLarge(self.max_body, f"Content-Length {declared}")

    async def _limited(self, request: Request) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > self.max_body:
                raise BodyTooLarge(self.max_body, f"more than {self.max_body} bytes streamed")
            yield chunk

    async def _read_multipart(self, request: Request) -> list[tuple[str, bytes]]:
        parser = MultiPartParser(request.headers, self._limited(request), max_fields=100)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise HTTPException(400, f"malformed multipart body: {exc.message}") from None
        try:
            files = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
            if not files:
                raise HTTPException(
                    400, "the multipart body has no file part. Send images as file fields."
                )
            return [(upload.filename or key, await upload.read()) for key, upload in files]
        finally:
            await form.close()

    async def metadata(self, request: Request) -> JSONResponse:
        info = self.predictor.describe()
        info["server"] = {**self.batcher.stats(), "max_body_bytes": self.max_body}
        return JSONResponse(info, headers=self.headers)

    async def healthz(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> JSONResponse:
        if self.batcher.running:
            return JSONResponse({"status": "ready", "model_version": self.predictor.model_version})
        return JSONResponse(
            {"status": "not ready", "error": "the prediction queue is not running"}, 503
        )


def _query_top_k(request: Request, num_classes: int) -> int:
    raw = request.query_params.get("top_k")
    if raw is None:
        return 1
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(
            400, f"top_k must be an integer from 1 to {num_classes}. Received: {raw!r}."
        ) from None
    try:
        return check_top_k(value, num_classes)
    except ConfigError as exc:
        raise HTTPException(400, str(exc)) from None


def _decode_all(named: list[tuple[str, bytes]]) -> np.ndarray:
    batch = np.empty((len(named), 32, 32, 3), dtype=np.uint8)
    for i, (name, data) in enumerate(named):
        batch[i] = load_image(data, name=name)
    return batch


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail
    if exc.status_code == 404:
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


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this response, so the server logs the traceback once.
    return JSONResponse({"error": "internal server error; see the server log."}, 500)
