"""KServe's Python ModelServer serving the CIFAR-10 ONNX model with onnxruntime.

What a KServe user writes: a `kserve.Model` whose `predict` takes the Open Inference
Protocol request (`InferRequest`, JSON `data` or Triton's binary tensors, both of which
KServe's REST server parses) and returns an `InferResponse`; binary outputs when the
request asks for them (`binary_data_output`). gRPC is off (HTTP only is measured), and
so are the per-request latency and access log lines (cifar-serve runs --no-access-log).

    python kserve_server.py MODEL PORT THREADS      (with build/venv-peers/bin/python)
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class OnnxCifar(Model):
    def __init__(self, name: str, path: str, threads: int) -> None:
        super().__init__(name)
        self.path, self.threads = path, threads
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.ready = True
        return True

    async def predict(
        self,
        payload: InferRequest,
        headers: dict | None = None,
        response_headers: dict | None = None,
    ) -> InferResponse:
        x = payload.inputs[0].as_numpy().astype(np.uint8, copy=False)
        probs = self.session.run(None, {self.input_name: x})[0]
        binary = payload.use_binary_outputs
        output = InferOutput(name=self.output_name, shape=list(probs.shape), datatype="FP32")
        output.set_data_from_numpy(probs, binary_data=binary)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=binary,
        )


def _loopback_only() -> None:
    # KServe's REST server hard-codes host 0.0.0.0; the benchmark never listens beyond
    # 127.0.0.1, so its uvicorn.Config gets the loopback address instead.
    import kserve.protocol.rest.server as rest
    import uvicorn

    def config(*args: object, **kwargs: object) -> uvicorn.Config:
        kwargs["host"] = "127.0.0.1"
        return uvicorn.Config(*args, **kwargs)  # type: ignore[arg-type]

    rest.uvicorn = type("uvicorn", (), {"Config": staticmethod(config), "Server": uvicorn.Server})


def main(path: str, port: int, threads: int) -> None:
    _loopback_only()
    model = OnnxCifar("cifar10", path, threads)
    server = ModelServer(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False)
    # As cifar-serve is measured: no line per request (KServe's logging is set up above).
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
