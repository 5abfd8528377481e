"""The baseline for the server benchmark: the same model behind the simplest possible server.

POST /v1/predict decodes the PNG (the runtime's own `load_image`) and calls
`InferenceSession.run` for that request alone, in Starlette's thread pool: no batcher,
no queue, no limits. Same uvicorn, same HTTP parser, same thread count as `cifar-serve`.
Run as a script with the runtime venv's python: naive_server.py MODEL PORT THREADS.
"""

from __future__ import annotations

import sys

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cifar10_runtime.engines.sessions import cpu_session
from cifar10_runtime.images import load_image


def main(model: str, port: int, threads: int) -> None:
    session = cpu_session(model, threads)
    name = session.get_inputs()[0].name

    def predict_one(body: bytes) -> int:
        x = load_image(body)[None]
        return int(np.argmax(session.run(None, {name: x})[0][0]))

    async def predict(request: Request) -> JSONResponse:
        index = await run_in_threadpool(predict_one, await request.body())
        return JSONResponse({"index": index})

    async def readyz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ready"})

    app = Starlette(
        routes=[
            Route("/v1/predict", predict, methods=["POST"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
