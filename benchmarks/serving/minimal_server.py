"""The HTTP stack's own cost: a minimal Starlette handler for the Open Inference Protocol.

POST /v2/models/cifar10/infer with binary tensors (Triton's extension) or JSON `data`, one
`InferenceSession.run` per request called right in the async handler (no thread hop, no
batcher, no guards, no metrics, no validation beyond what the arrays need). What a user
would write in 30 lines (onnxruntime's defaults otherwise, its threads' spinning
included), and the floor `cifar-serve` is measured against: anything `cifar-serve` adds
per request shows up as the distance to this.

    python minimal_server.py MODEL PORT THREADS h11|httptools
(h11 runs on asyncio's loop, httptools on uvloop, as uvicorn's own `auto` would pick.)
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HEADER = "inference-header-content-length"


def make_app(model: str, threads: int) -> Starlette:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name, output = session.get_inputs()[0].name, session.get_outputs()[0].name

    async def infer(request: Request) -> Response:
        body = await request.body()
        length = request.headers.get(HEADER)
        head = json.loads(body[: int(length)] if length else body)
        tensor = head["inputs"][0]
        if length:
            x = np.frombuffer(body, np.uint8, offset=int(length)).reshape(tensor["shape"])
        else:
            x = np.asarray(tensor["data"], np.uint8).reshape(tensor["shape"])
        probs = session.run(None, {name: x})[0]
        out = {"name": output, "datatype": "FP32", "shape": list(probs.shape)}
        if head.get("parameters", {}).get("binary_data_output"):
            raw = probs.astype("<f4").tobytes()
            out["parameters"] = {"binary_data_size": len(raw)}
            answer = json.dumps({"model_name": "cifar10", "outputs": [out]}).encode()
            headers = {HEADER: str(len(answer))}
            return Response(answer + raw, media_type="application/octet-stream", headers=headers)
        out["data"] = probs.ravel().tolist()
        return JSONResponse({"model_name": "cifar10", "outputs": [out]})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ready"})

    routes = [
        Route("/v2/models/cifar10/infer", infer, methods=["POST"]),
        Route("/readyz", ready, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def main(model: str, port: int, threads: int, http: str) -> None:
    loop = "uvloop" if http == "httptools" else "asyncio"
    app = make_app(model, threads)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        http=http,
        loop=loop,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
