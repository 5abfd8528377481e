"""Seldon MLServer serving the CIFAR-10 ONNX model: a custom onnxruntime runtime with
MLServer's adaptive batching (requests merged along the first axis, up to
MAX_BATCH_SIZE images or MAX_BATCH_TIME seconds), MLServer's other settings at their
defaults (its inference runs in a separate worker process). MLServer's REST speaks the
Open Inference Protocol with JSON tensors only: it has no binary tensor extension.

    python mlserver_runtime.py MODEL PORT THREADS GRPC_PORT METRICS_PORT
(with build/venv-peers/bin/python; every port on 127.0.0.1)
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

MAX_BATCH_SIZE = 32  # as cifar-serve's default
MAX_BATCH_TIME = 0.001  # seconds a batch may wait to fill; MLServer has no "idle: run now"


class OnnxCifar(MLModel):
    async def load(self) -> bool:
        import onnxruntime as ort

        extra = self.settings.parameters.extra
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(extra["threads"])
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            extra["path"], options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.uint8, copy=False)
        probs = self.session.run(None, {self.input_name: x})[0]
        output = NumpyCodec.encode_output(self.output_name, probs)
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=[output])


def main(path: str, port: int, threads: int, grpc_port: int, metrics_port: int) -> None:
    from mlserver.server import MLServer
    from mlserver.settings import ModelParameters, ModelSettings, Settings

    # The inference worker process imports this module by name.
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, here)
    settings = Settings(
        host="127.0.0.1",
        http_port=port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        debug=False,
        load_models_at_startup=True,
    )
    model = ModelSettings(
        name="cifar10",
        implementation="mlserver_runtime.OnnxCifar",
        max_batch_size=MAX_BATCH_SIZE,
        max_batch_time=MAX_BATCH_TIME,
        parameters=ModelParameters(extra={"path": path, "threads": threads}),
    )

    async def serve() -> None:  # MLServer must be built inside the running loop
        await MLServer(settings).start([model])

    asyncio.run(serve())


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]))
