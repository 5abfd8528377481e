"""The friendly API: image files in, labels out.

    POST /v1/predict    one image (Content-Type: image/*) or multipart/form-data files; ?top_k=
    GET  /v1/metadata   class names, input spec, versions, metrics, batching settings
    GET  /healthz       the process is alive
    GET  /readyz        the model is loaded and the batcher is taking requests (200 / 503)

Every prediction names the file it belongs to (`file`: the multipart filename, else the
field name; "request body" for a single raw image). Answers carry
`Server-Timing: predict;dur=<ms>` (time spent in the handler), and with ?include_input=1
each prediction's decoded 32x32 image (`input_rgb`, see ui.add_inputs). Decoding runs in
the app's bounded decode pool under the pixel budgets (per image, 400; per request, 413;
a single small image right on the loop: the hop would cost more), inference on the batcher's
thread.

`X-Model-Version` (untrusted.version_header: percent-encoded where a header cannot carry
the version as it is) is built once, at start-up, and /readyz sends it too: a server that
is ready can answer every route with it. /v1/metadata cuts absolute paths in the model's
metadata to their last name.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Executor
from typing import Any

import numpy as np
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from cifar10_runtime import limits
from cifar10_runtime.batcher import MicroBatcher
from cifar10_runtime.errors import ConfigError, ImageError, ModelError
from cifar10_runtime.images import DecodeBudgetError, load_image, load_images
from cifar10_runtime.predictor import Predictor, check_top_k, make_prediction
from cifar10_runtime.serving.http.bodies import BodyReader
from cifar10_runtime.serving.page import add_inputs, wants_input
from cifar10_runtime.untrusted import (
    MAX_VERSION_HEADER,
    parse_decimal,
    version_header,
    without_server_paths,
)

SINGLE_IMAGE_TYPES = ("image/", "application/octet-stream")
ACCEPTED = "image/* (one image in the body) or multipart/form-data (one or more image files)"
RAW_BODY = "request body"


class V1Api:
    def __init__(
        self,
        predictor: Predictor,
        batcher: MicroBatcher,
        reader: BodyReader,
        max_pixels: int | None,
        large_decodes: int,
        max_request_pixels: int | None = None,
        batch_choice: dict[str, Any] | None = None,
    ) -> None:
        self.predictor = predictor
        self.batch_choice = batch_choice  # how max_batch_size was chosen (engines.batch_sizes)
        self.batcher = batcher
        self.reader = reader
        self.max_pixels = max_pixels
        self.max_request_pixels = max_request_pixels
        # Images of images.LARGE_PIXELS or more decode at most this many at a time.
        self.large_gate = threading.BoundedSemaphore(large_decodes)
        self.headers = {"X-Model-Version": _version_header(predictor)}
        self.ready_body = {"status": "ready", "model_version": predictor.model_version}
        self.decode_pool: Executor | None = None  # set by the app's lifespan (server.py)

    async def predict(self, request: Request) -> JSONResponse:
        started = time.perf_counter()
        top_k = _query_top_k(request, self.predictor.num_classes)
        content_type = request.headers.get("content-type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media.startswith(SINGLE_IMAGE_TYPES):
            named = [(RAW_BODY, await self.reader.read(request))]
        elif media == "multipart/form-data":
            named = await self.reader.read_files(request)
        else:
            raise HTTPException(
                415,
                f"unsupported Content-Type. Received: {content_type or '(none)'}. Send {ACCEPTED}.",
            )
        images = self._decode_small(named)
        if images is None:
            loop = asyncio.get_running_loop()
            try:
                images = await loop.run_in_executor(self.decode_pool, self._decode_all, named)
            except DecodeBudgetError as exc:
                raise HTTPException(413, str(exc)) from None
        probs, run_size = await self.batcher.submit(images)
        names = self.predictor.class_names
        answer = {
            "predictions": [
                {"file": file, **make_prediction(row, names, top_k).to_dict()}
                for (file, _), row in zip(named, probs, strict=True)
            ],
            "model_version": self.predictor.model_version,
        }
        if wants_input(request):
            add_inputs(answer["predictions"], images)
        timing = f"predict;dur={(time.perf_counter() - started) * 1000:.3f}"
        headers = {**self.headers, "X-Batch-Size": str(run_size), "Server-Timing": timing}
        return JSONResponse(answer, headers=headers)

    def _decode_small(self, named: list[tuple[str, bytes]]) -> np.ndarray | None:
        """One small image decoded right here (see limits.INLINE_DECODE_PIXELS), else None."""
        if len(named) != 1:
            return None
        name, data = named[0]
        budget = min(limits.INLINE_DECODE_PIXELS, self.max_pixels or limits.INLINE_DECODE_PIXELS)
        try:  # refused from its header when over the small budget: then the pool decodes it
            return load_image(data, name, budget)[None]
        except ImageError:
            return None  # too big for here, or broken: the pool's full decode says which

    def _decode_all(self, named: list[tuple[str, bytes]]) -> np.ndarray:
        return load_images(named, self.max_pixels, self.large_gate, self.max_request_pixels)

    async def metadata(self, request: Request) -> JSONResponse:
        info = without_server_paths(self.predictor.describe())
        info["server"] = {
            **self.batcher.stats(),
            "max_body_bytes": self.reader.max_body,
            "max_pixels": self.max_pixels,
            "max_request_pixels": self.max_request_pixels,
        }
        if self.batch_choice is not None:
            info["server"]["max_batch_size_choice"] = self.batch_choice
        return JSONResponse(info, headers=self.headers)

    async def healthz(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> JSONResponse:
        if self.batcher.running:
            return JSONResponse(self.ready_body, headers=self.headers)
        return JSONResponse(
            {"status": "not ready", "error": "the prediction queue is not running"}, 503
        )


def _query_top_k(request: Request, num_classes: int) -> int:
    raw = request.query_params.get("top_k")
    if raw is None:
        return 1
    value = parse_decimal(raw)
    if value is None:
        raise HTTPException(
            400, f"top_k must be an integer from 1 to {num_classes}. Received: {raw[:40]!r}."
        )
    try:
        return check_top_k(value, num_classes)
    except ConfigError as exc:
        raise HTTPException(400, str(exc)) from None


def _version_header(predictor: Predictor) -> str:
    header = version_header(predictor.model_version)
    if len(header) > MAX_VERSION_HEADER:
        raise ModelError(
            f"{predictor.source}: its model_version is {len(predictor.model_version)} "
            f"characters, {len(header)} bytes as an X-Model-Version header (at most "
            f"{MAX_VERSION_HEADER}). Re-export it with a shorter --model-version."
        )
    return header
