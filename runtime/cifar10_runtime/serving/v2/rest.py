"""The Open Inference Protocol (KServe v2) over REST, with Triton's binary tensor extension.

    GET  /v2                                      server metadata (extensions: binary_tensor_data)
    GET  /v2/health/live, /v2/health/ready        200 or 503
    GET  /v2/models/{name}[/versions/{version}]   model metadata
    GET  /v2/models/{name}[/versions/{version}]/ready
    POST /v2/models/{name}[/versions/{version}]/infer

The model has one input, `image` UINT8 [-1,32,32,3] (NHWC RGB, as the ONNX contract), and
one output, `probabilities` FP32 [-1,10]. An FP32 input in [0,1] is accepted too and turned
into uint8 the contract's way, round(x * 255); values outside [0,1] are refused. Tensor data
comes as a flat row-major JSON `data` list, or as raw little-endian bytes after the JSON
header (`Inference-Header-Content-Length` header, `parameters.binary_data_size` per input).
Outputs come back as JSON `data`, or as bytes after the JSON when asked for
(`parameters.binary_data` per output, or `parameters.binary_data_output` for all).
Infer requests go through the same micro-batcher as /v1/predict. Every failure is a
non-200 `{"error": "..."}` that names what to fix.

Parsing stays off the event loop: a body with a JSON header over limits.INLINE_JSON_BYTES,
binary data over limits.INLINE_BINARY_BYTES, or any Content-Encoding is inflated, parsed,
converted (and its answer rendered) in a worker thread, at most limits.JSON_DECODES at a
time, so a 10 MB JSON tensor or a gzip bomb never holds up /readyz or anyone else (and
v2_json parses such bodies in short steps, so the thread does not hold the GIL for long).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, NamedTuple

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cifar10_runtime import __version__
from cifar10_runtime.batcher import MicroBatcher
from cifar10_runtime.contract import IMAGE_SHAPE
from cifar10_runtime.limits import INLINE_BINARY_BYTES, INLINE_JSON_BYTES, JSON_DECODES
from cifar10_runtime.predictor import Predictor
from cifar10_runtime.serving.http.bodies import BodyReader
from cifar10_runtime.serving.v2.rest_codec import (
    HEADER_LENGTH,
    bad_request,
    content_encoding,
    decompress,
    from_json_data,
    header_size,
    short,
    split_body,
    unit_floats_to_uint8,
)

SERVER_NAME = "cifar10-runtime"
EXTENSIONS = ["binary_tensor_data"]
PLATFORM = "onnxruntime_onnx"
DATATYPES = {"UINT8": np.dtype("<u1"), "FP32": np.dtype("<f4")}


class _Parsed(NamedTuple):
    header: dict[str, Any]
    images: np.ndarray
    outputs: list[bool]  # per requested output: binary or not


class V2Api:
    """Handlers for one model served under `model_name`."""

    def __init__(
        self, predictor: Predictor, batcher: MicroBatcher, reader: BodyReader, model_name: str
    ) -> None:
        self.predictor = predictor
        self.batcher = batcher
        self.reader = reader
        self.name = model_name
        self.version = predictor.model_version
        self.input_name = predictor.input_name
        self.output_name = predictor.output_name
        self.num_classes = predictor.num_classes
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
        return JSONResponse({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})

    async def live(self, request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> JSONResponse:
        if self.batcher.running:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "error": "the prediction queue is not running"}, 503)

    async def model_metadata(self, request: Request) -> JSONResponse:
        self._check_model(request)
        return JSONResponse(self.metadata())

    def metadata(self) -> dict[str, Any]:
        """The model's metadata, for REST and gRPC (grpc_server.py) alike."""
        shape = [-1, *IMAGE_SHAPE]
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": PLATFORM,
            "inputs": [{"name": self.input_name, "datatype": "UINT8", "shape": shape}],
            "outputs": [
                {"name": self.output_name, "datatype": "FP32", "shape": [-1, self.num_classes]}
            ],
            # What runs the model (issue 16): the engine chosen at load and its precision.
            "parameters": {
                "engine": self.predictor.engine,
                "precision": self.predictor.precision,
            },
        }

    async def model_ready(self, request: Request) -> JSONResponse:
        self._check_model(request)
        ready = self.batcher.running
        body = {"name": self.name, "ready": ready}
        if not ready:
            body["error"] = "the prediction queue is not running"
        return JSONResponse(body, 200 if ready else 503)

    def _check_model(self, request: Request) -> None:
        self.check_model(request.path_params["name"], request.path_params.get("version"))

    def check_model(self, name: str, version: str | None) -> None:
        """404 unless `name` (and `version`, when given) is the served model's."""
        if name != self.name:
            raise HTTPException(
                404,
                f"unknown model {name!r}. This server serves {self.name!r} "
                f"(GET /v2/models/{self.name}).",
            )
        if version is not None and version != self.version:
            raise HTTPException(
                404,
                f"unknown version {version!r} of model {self.name!r}. Available: {self.version!r}.",
            )

    # --- inference -----------------------------------------------------------------------
    async def infer(self, request: Request) -> Response:
        self._check_model(request)
        body = await self.reader.read(request)
        encoding = content_encoding(request.headers.get("content-encoding"))
        raw_length = request.headers.get(HEADER_LENGTH)
        if encoding == "identity" and _small(header_size(raw_length, len(body)), len(body)):
            parsed = self._parse(encoding, raw_length, body)
            probs, run_size = await self.batcher.submit(parsed.images)
            return self._response(parsed.header, parsed.outputs, probs, run_size)
        async with self._parse_gate():
            parsed = await run_in_threadpool(self._parse, encoding, raw_length, body)
        del body  # the parsed arrays are all that is needed from here on
        probs, run_size = await self.batcher.submit(parsed.images)
        return await run_in_threadpool(
            self._response, parsed.header, parsed.outputs, probs, run_size
        )

    def _parse_gate(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate[0] is not loop:
            self._gate = (loop, asyncio.Semaphore(JSON_DECODES))
        return self._gate[1]

    def _parse(self, encoding: str, raw_length: str | None, body: bytes) -> _Parsed:
        """Inflate, split, parse and check one infer body (any thread)."""
        header, binary = split_body(raw_length, decompress(encoding, body, self.reader.max_body))
        images = self._images(header, binary)
        return _Parsed(header, images, self._requested_outputs(header))

    def _images(self, header: dict[str, Any], binary: memoryview) -> np.ndarray:
        inputs = header.get("inputs")
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise bad_request(
                f"'inputs' must be a list of exactly one tensor, {self.input_name!r}. "
                f"Received: {short(inputs)}."
            )
        tensor = inputs[0]
        name = tensor.get("name")
        if name != self.input_name:
            raise bad_request(f"unknown input {name!r}. The model's input is {self.input_name!r}.")
        datatype = tensor.get("datatype")
        if datatype not in DATATYPES:
            raise bad_request(
                f"input {name!r}: datatype must be UINT8 (or FP32 in [0,1]). "
                f"Received: {datatype!r}."
            )
        shape = tensor.get("shape")
        if (
            not isinstance(shape, list)
            or len(shape) != 4
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
            or shape[0] < 1
            or tuple(shape[1:]) != IMAGE_SHAPE
        ):
            raise bad_request(
                f"input {name!r}: shape must be [N, 32, 32, 3] with N >= 1 (NHWC RGB). "
                f"Received: {short(shape)}."
            )
        count = math.prod(shape)
        dtype = DATATYPES[datatype]
        params = tensor.get("parameters") or {}
        if not isinstance(params, dict):
            raise bad_request(f"input {name!r}: 'parameters' must be an object.")
        size = params.get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise bad_request(
                    f"input {name!r}: binary_data_size must be a byte count. Received: {size!r}."
                )
            if size != count * dtype.itemsize:
                raise bad_request(
                    f"input {name!r}: binary_data_size is {size} bytes, but shape {shape} of "
                    f"{datatype} needs {count * dtype.itemsize}."
                )
            if size != len(binary):
                raise bad_request(
                    f"binary data after the JSON header is {len(binary)} bytes, but the inputs' "
                    f"binary_data_size add up to {size}. Check {HEADER_LENGTH}."
                )
            array = np.frombuffer(binary, dtype=dtype, count=count).reshape(shape)
        else:
            if len(binary):
                raise bad_request(
                    f"{len(binary)} bytes follow the JSON header but no input has "
                    "parameters.binary_data_size."
                )
            array = from_json_data(tensor.get("data"), name, shape, datatype, dtype, count)
        if datatype == "FP32":
            array = unit_floats_to_uint8(array, name)
        return array

    def _requested_outputs(self, header: dict[str, Any]) -> list[bool]:
        """One entry per output to return: whether it goes out as binary data."""
        params = header.get("parameters") or {}
        if not isinstance(params, dict):
            raise bad_request("'parameters' must be an object.")
        default_binary = params.get("binary_data_output", False)
        if not isinstance(default_binary, bool):
            raise bad_request(
                f"binary_data_output must be true or false. Received: {default_binary!r}."
            )
        outputs = header.get("outputs")
        if outputs is None or outputs == []:
            return [default_binary]
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            raise bad_request(f"'outputs' must be a list of objects. Received: {short(outputs)}.")
        wanted = []
        for output in outputs:
            if output.get("name") != self.output_name:
                raise bad_request(
                    f"unknown output {output.get('name')!r}. The model's output is "
                    f"{self.output_name!r}."
                )
            out_params = output.get("parameters") or {}
            if not isinstance(out_params, dict):
                raise bad_request(f"output {self.output_name!r}: 'parameters' must be an object.")
            if out_params.get("classification"):
                raise bad_request(
                    "the classification extension is not supported: request the probabilities "
                    "(or use POST /v1/predict?top_k=K for labels)."
                )
            binary = out_params.get("binary_data", default_binary)
            if not isinstance(binary, bool):
                raise bad_request(f"binary_data must be true or false. Received: {binary!r}.")
            wanted.append(binary)
        return wanted[:1]  # the same output asked twice is returned once

    def _response(
        self, header: dict[str, Any], outputs: list[bool], probs: np.ndarray, run_size: int
    ) -> Response:
        answer: dict[str, Any] = {"model_name": self.name, "model_version": self.version}
        request_id = header.get("id")
        if request_id is not None:
            answer["id"] = request_id
        tensor: dict[str, Any] = {
            "name": self.output_name,
            "datatype": "FP32",
            "shape": list(probs.shape),
        }
        headers = {"X-Batch-Size": str(run_size)}
        if outputs[0]:
            raw = np.ascontiguousarray(probs, dtype="<f4").tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            answer["outputs"] = [tensor]
            head = json.dumps(answer, separators=(",", ":")).encode()
            headers[HEADER_LENGTH] = str(len(head))
            return Response(head + raw, media_type="application/octet-stream", headers=headers)
        tensor["data"] = probs.ravel().tolist()
        answer["outputs"] = [tensor]
        return JSONResponse(answer, headers=headers)


def _small(head: int, total: int) -> bool:
    """Whether parsing this body costs less than handing it to a thread."""
    return head <= INLINE_JSON_BYTES and total - head <= INLINE_BINARY_BYTES
