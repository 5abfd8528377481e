"""KServe's Python ModelServer serving the CIFAR-10 ONNX model with onnxruntime.

What a KServe user writes: a `kserve.Model` whose `predict` takes the Open Inference
Protocol request (`InferRequest`, JSON `data` or Triton's binary tensors, both of which
KServe's REST server parses) and returns an `InferResponse`; binary outputs when the
request asks for them (`binary_data_output`); over gRPC, KServe reads `raw_input_contents`
into the same `InferInput` (`as_numpy` then decodes the raw bytes) and answers a raw-input
request with `raw_output_contents`, so the same `predict` serves both protocols. gRPC is off
unless GRPC_PORT is given (the REST cells measure HTTP alone; grpc_bench.py turns it on), and
so are the per-request latency and access log lines (cifar-serve runs --no-access-log).
Both listen on 127.0.0.1 only.

    python kserve_server.py MODEL PORT THREADS [GRPC_PORT]    (with build/venv-peers/bin/python)
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
    # KServe's REST server hard-codes host 0.0.0.0 and its gRPC server [::]; the benchmark
    # never listens beyond 127.0.0.1, so both get the loopback address instead.
    import kserve.protocol.grpc.server as grpc_server
    import kserve.protocol.rest.server as rest
    import uvicorn
    from grpc import aio

    def config(*args: object, **kwargs: object) -> uvicorn.Config:
        kwargs["host"] = "127.0.0.1"
        return uvicorn.Config(*args, **kwargs)  # type: ignore[arg-type]

    rest.uvicorn = type("uvicorn", (), {"Config": staticmethod(config), "Server": uvicorn.Server})

    def server(*args: object, **kwargs: object) -> aio.Server:
        made = aio.server(*args, **kwargs)  # type: ignore[arg-type]
        bind = made.add_insecure_port
        made.add_insecure_port = lambda address: bind(address.replace("[::]", "127.0.0.1", 1))
        return made

    grpc_server.aio = type("aio", (), {"server": staticmethod(server)})


class _NoPerCallLine(logging.Filter):
    """Drops the line KServe's gRPC LoggingInterceptor writes for every call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("grpc method:")


def main(path: str, port: int, threads: int, grpc_port: int | None = None) -> None:
    _loopback_only()
    model = OnnxCifar("cifar10", path, threads)
    server = ModelServer(
        http_port=port,
        grpc_port=grpc_port or 0,
        enable_grpc=grpc_port is not None,
        workers=1,
        enable_latency_logging=False,
    )
    # As cifar-serve is measured: no line per request, REST or gRPC (KServe's logging is set
    # up above); its other lines, start-up and errors, stay.
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("kserve").addFilter(_NoPerCallLine())
    server.start([model])


if __name__ == "__main__":
    grpc = int(sys.argv[4]) if len(sys.argv) > 4 else None
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), grpc)
