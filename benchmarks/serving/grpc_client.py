"""The gRPC benchmark's client: one ModelInfer request built once as bytes, the grpc.aio
caller loadgen's driver runs in each client slot, and a check of one answer before a server
is measured.

Every gRPC server of the benchmark (cifar-serve's and KServe's) gets these same bytes from
this same code: the model is registered as `cifar10` by both, so nothing differs but the
server. The answer check is what makes an errorless cell mean "served the model": a server
that answered OK with no probabilities would otherwise be timed as a fast one.
"""

from __future__ import annotations

import time

import numpy as np

from cifar10_runtime.contract import INPUT_NAME, MODEL_NAME, NUM_CLASSES

INFER = "/inference.GRPCInferenceService/ModelInfer"


def grpc_request(image: np.ndarray) -> bytes:
    """A serialized ModelInferRequest for one uint8 image (raw contents, as tritonclient)."""
    from cifar10_runtime.serving.grpc.protocol import protocol

    p = protocol()
    x = np.ascontiguousarray(image[None], dtype=np.uint8)
    tensor = p.ModelInferRequest.InferInputTensor(name=INPUT_NAME, datatype="UINT8", shape=x.shape)
    request = p.ModelInferRequest(model_name=MODEL_NAME, inputs=[tensor])
    request.raw_input_contents.append(x.tobytes())
    return request.SerializeToString()


async def grpc_client(
    address: str, request: bytes, stop_at: float, quota: int, out: list[float], errors: list[str]
) -> None:
    """One client slot of loadgen's driver: `request` back to back until `quota` answers or
    `stop_at` (time.monotonic), each latency into `out`, each failed call into `errors`."""
    import grpc

    # A channel of its own (own connection): 16 clients are 16 connections, as over REST.
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        call = channel.unary_unary(INFER)  # bytes in, bytes out: no per-call serialization
        while len(out) < quota and time.monotonic() < stop_at:
            t0 = time.perf_counter_ns()
            try:
                await call(request, timeout=30)
            except grpc.aio.AioRpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")
                continue
            out.append((time.perf_counter_ns() - t0) / 1e9)


def probabilities(answer: bytes) -> np.ndarray:
    """The [1, 10] float32 probabilities of a serialized ModelInferResponse to one image in
    raw contents; ValueError saying what came back instead."""
    from cifar10_runtime.serving.grpc.protocol import protocol

    response = protocol().ModelInferResponse.FromString(answer)
    shapes = [(o.name, o.datatype, list(o.shape)) for o in response.outputs]
    raw = list(response.raw_output_contents)
    if len(shapes) != 1 or shapes[0][1:] != ("FP32", [1, NUM_CLASSES]) or len(raw) != 1:
        raise ValueError(f"expected one FP32 [1, {NUM_CLASSES}] output in raw contents: {shapes}")
    if len(raw[0]) != 4 * NUM_CLASSES:
        raise ValueError(f"raw output of {len(raw[0])} bytes, expected {4 * NUM_CLASSES}")
    probs = np.frombuffer(raw[0], np.float32).reshape(1, NUM_CLASSES)
    if not (np.isfinite(probs).all() and abs(float(probs.sum()) - 1.0) < 1e-3):
        raise ValueError(f"the output is not a probability vector: {probs.ravel().tolist()}")
    return probs


def check_answer(address: str, request: bytes, timeout: float = 30.0) -> np.ndarray:
    """One ModelInfer once the server accepts connections (within `timeout` s): its
    probabilities, or RuntimeError naming the server's status or what it answered."""
    import grpc

    with grpc.insecure_channel(address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
            answer = channel.unary_unary(INFER)(request, timeout=timeout)
        except grpc.FutureTimeoutError:
            raise RuntimeError(f"no gRPC server at {address} after {timeout:.0f} s") from None
        except grpc.RpcError as exc:
            raise RuntimeError(
                f"ModelInfer at {address}: {exc.code().name}: {exc.details()}"
            ) from None
    try:
        return probabilities(answer)
    except ValueError as exc:
        raise RuntimeError(f"ModelInfer at {address}: {exc}") from None
