"""The Open Inference Protocol (KServe v2) over REST: routes onto the dataplane.

    GET  /v2                                      server metadata (extensions: binary_tensor_data)
    GET  /v2/health/live, /v2/health/ready        200 or 503
    GET  /v2/models/{name}[/versions/{version}]   model metadata
    GET  /v2/models/{name}[/versions/{version}]/ready
    POST /v2/models/{name}[/versions/{version}]/infer

A thin codec: each handler turns the HTTP request into dataplane.py's calls (which check
the tensors and run them through the same micro-batcher as /v1/predict) and the answer into
HTTP; the wire format (JSON `data` or Triton's binary tensor extension, gzip/deflate, the
answer's rendering) is rest_codec.py's, and the dataplane's error kinds become HTTP
statuses there. Every failure is a non-200 `{"error": "..."}` that names what to fix.

Parsing stays off the event loop: a body with a JSON header over limits.INLINE_JSON_BYTES,
binary data over limits.INLINE_BINARY_BYTES, or any Content-Encoding is inflated, parsed,
converted (and its answer rendered) in a worker thread, at most limits.JSON_DECODES at a
time, so a 10 MB JSON tensor or a gzip bomb never holds up /readyz or anyone else (and
big_json parses such bodies in short steps, so the thread does not hold the GIL for long).
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cifar10_runtime.batcher import MicroBatcher
from cifar10_runtime.limits import INLINE_BINARY_BYTES, INLINE_JSON_BYTES, JSON_DECODES
from cifar10_runtime.predictor import Predictor
from cifar10_runtime.serving.http.bodies import BodyReader
from cifar10_runtime.serving.v2 import rest_codec
from cifar10_runtime.serving.v2.dataplane import NOT_RUNNING, V2Dataplane
from cifar10_runtime.serving.v2.rest_codec import (
    HEADER_LENGTH,
    content_encoding,
    decompress,
    header_size,
    http_errors,
    infer_answer,
    split_body,
)

EXTENSIONS = ["binary_tensor_data"]


class _Parsed(NamedTuple):
    header: dict[str, Any]
    images: np.ndarray
    outputs: list[bool]  # per requested output: binary or not


class V2Api:
    """REST handlers for one model served under `model_name`, over its V2Dataplane."""

    def __init__(
        self, predictor: Predictor, batcher: MicroBatcher, reader: BodyReader, model_name: str
    ) -> None:
        self.dataplane = V2Dataplane(predictor, batcher, model_name)
        self.reader = reader
        self.name = model_name
        # Big bodies parsing at once, per event loop (an app can outlive a test's loop).
        self._gate: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def routes(self) -> list[Route]:
        model = "/v2/models/{name}"
        versioned = "/v2/models/{name}/versions/{version}"
        return [
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route(model, self.model_metadata, methods=["GET"]),
            Route(versioned, self.model_metadata, methods=["GET"]),
            Route(f"{model}/ready", self.model_ready, methods=["GET"]),
            Route(f"{versioned}/ready", self.model_ready, methods=["GET"]),
            Route(f"{model}/infer", self.infer, methods=["POST"]),
            Route(f"{versioned}/infer", self.infer, methods=["POST"]),
        ]

    # --- health and metadata -------------------------------------------------------------
    async def server_metadata(self, request: Request) -> JSONResponse:
        return JSONResponse({**self.dataplane.server_metadata(), "extensions": EXTENSIONS})

    async def live(self, request: Request) -> JSONResponse:
        return JSONResponse({"live": self.dataplane.live()})

    async def ready(self, request: Request) -> JSONResponse:
        if self.dataplane.ready():
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "error": NOT_RUNNING}, 503)

    async def model_metadata(self, request: Request) -> JSONResponse:
        self._check_model(request)
        return JSONResponse(self.dataplane.model_metadata())

    async def model_ready(self, request: Request) -> JSONResponse:
        self._check_model(request)
        ready = self.dataplane.ready()
        body = {"name": self.name, "ready": ready}
        if not ready:
            body["error"] = NOT_RUNNING
        return JSONResponse(body, 200 if ready else 503)

    def _check_model(self, request: Request) -> None:
        """404 unless the path names the served model (and version, when it has one)."""
        name, version = request.path_params["name"], request.path_params.get("version")
        with http_errors():
            self.dataplane.check_model(name, version, where=f"GET /v2/models/{self.name}")

    # --- inference -----------------------------------------------------------------------
    async def infer(self, request: Request) -> Response:
        self._check_model(request)
        body = await self.reader.read(request)
        encoding = content_encoding(request.headers.get("content-encoding"))
        raw_length = request.headers.get(HEADER_LENGTH)
        with http_errors():
            if encoding == "identity" and _small(header_size(raw_length, len(body)), len(body)):
                parsed = self._parse(encoding, raw_length, body)
                probs, run_size = await self.dataplane.infer(parsed.images)
                return self._answer(parsed, probs, run_size)
            async with self._parse_gate():
                parsed = await run_in_threadpool(self._parse, encoding, raw_length, body)
            del body  # the parsed arrays are all that is needed from here on
            probs, run_size = await self.dataplane.infer(parsed.images)
            return await run_in_threadpool(self._answer, parsed, probs, run_size)

    def _parse_gate(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate[0] is not loop:
            self._gate = (loop, asyncio.Semaphore(JSON_DECODES))
        return self._gate[1]

    def _parse(self, encoding: str, raw_length: str | None, body: bytes) -> _Parsed:
        """Inflate, split, parse and check one infer body (any thread)."""
        header, binary = split_body(raw_length, decompress(encoding, body, self.reader.max_body))
        images = rest_codec.images(self.dataplane, header, binary)
        return _Parsed(header, images, rest_codec.requested_outputs(self.dataplane, header))

    def _answer(self, parsed: _Parsed, probs: np.ndarray, run_size: int) -> Response:
        return infer_answer(self.dataplane, parsed.header, parsed.outputs, probs, run_size)


def _small(head: int, total: int) -> bool:
    """Whether parsing this body costs less than handing it to a thread."""
    return head <= INLINE_JSON_BYTES and total - head <= INLINE_BINARY_BYTES
