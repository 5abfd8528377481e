"""wire.py against protobuf itself: the big fields read from a ModelInferRequest's bytes equal
what protobuf parses (raw bytes without a copy, packed typed contents as numpy), the rest
parses to the same message, malformed bytes are refused, and a big ModelInfer message is
decoded in a worker thread, off the event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from cifar10_runtime import Predictor
from cifar10_runtime.batcher import MicroBatcher
from cifar10_runtime.limits import INLINE_BINARY_BYTES
from cifar10_runtime.serving.grpc.codec import to_v2_header
from cifar10_runtime.serving.grpc.protocol import protocol
from cifar10_runtime.serving.grpc.server import GrpcInference
from cifar10_runtime.serving.grpc.wire import WireError, packed_varints, read_infer
from cifar10_runtime.serving.metrics import Metrics
from cifar10_runtime.serving.v2.dataplane import V2Dataplane


def _typed(values: np.ndarray, datatype: str = "UINT8") -> Any:
    request = protocol().ModelInferRequest(model_name="cifar10", id="r1")
    tensor = request.inputs.add(
        name="image", datatype=datatype, shape=[len(values) // 3072, 32, 32, 3]
    )
    field = tensor.contents.uint_contents if datatype == "UINT8" else tensor.contents.fp32_contents
    field.extend(values.tolist())
    request.outputs.add(name="probabilities")
    return request


def test_packed_uint_contents_equal_protobufs_values() -> None:
    rng = np.random.default_rng(0)
    # every varint length of a uint32, across many numpy steps
    values = np.concatenate(
        [rng.integers(0, 256, 3072 * 100), [0, 127, 128, 16383, 16384, 2**21, 2**28, 2**32 - 1]]
    ).astype(np.uint64)
    values = np.concatenate([values, np.zeros(3072 - len(values) % 3072, np.uint64)])
    request = _typed(values)
    wire = read_infer(request.SerializeToString())
    assert np.array_equal(wire.typed[0], np.array(request.inputs[0].contents.uint_contents))
    rest = protocol().ModelInferRequest.FromString(wire.rest)
    assert not rest.inputs[0].HasField("contents") and rest.id == "r1"
    assert rest.inputs[0].shape == request.inputs[0].shape and rest.outputs[0].name
    header, raw = to_v2_header(rest, wire)
    assert raw is None and np.array_equal(header["inputs"][0]["data"], values)


def test_fp32_contents_and_raw_bytes_are_views_of_the_message() -> None:
    floats = np.linspace(0, 1, 3072, dtype=np.float32)
    wire = read_infer(_typed(floats, "FP32").SerializeToString())
    assert np.array_equal(wire.typed[0], floats)
    x = np.arange(2 * 3072, dtype=np.uint8)
    p = protocol()
    request = p.ModelInferRequest(model_name="cifar10", raw_input_contents=[x.tobytes()])
    request.inputs.add(name="image", datatype="UINT8", shape=[2, 32, 32, 3])
    data = request.SerializeToString()
    wire = read_infer(data)
    assert len(wire.raw) == 1 and wire.raw[0].obj is data  # no copy: a view of the message
    assert bytes(wire.raw[0]) == x.tobytes()
    assert p.ModelInferRequest.FromString(wire.rest).inputs[0].name == "image"


def test_unpacked_contents_are_left_to_protobuf() -> None:
    """A repeated field sent unpacked (legal protobuf) stays in the rest, read as before."""
    p = protocol()
    tensor = b"\x0a\x05image" + b"\x2a\x06" + b"\x20\x01\x20\x02\x20\x03"  # name, contents{4:1,2,3}
    data = b"\x0a\x07cifar10" + b"\x2a" + bytes([len(tensor)]) + tensor
    wire = read_infer(data)
    assert wire.typed == {}
    rest = p.ModelInferRequest.FromString(wire.rest)
    assert list(rest.inputs[0].contents.uint_contents) == [1, 2, 3]


@pytest.mark.parametrize(
    "data",
    [b"\x0a\x50abc", b"\x3a\xff\xff\xff\xff\x0f", b"\x0f", b"\x2a\x03\x2a\x01\x80"],
    ids=["past-end", "huge-length", "wire-type-7", "varint-cut"],
)
def test_malformed_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(WireError):
        request = read_infer(data)
        protocol().ModelInferRequest.FromString(request.rest)  # pragma: no cover


def test_varints_longer_than_uint32_are_refused() -> None:
    with pytest.raises(WireError):
        packed_varints(np.frombuffer(b"\x80\x80\x80\x80\x80\x01", np.uint8))


def test_a_big_message_is_decoded_off_the_event_loop(predictor: Predictor) -> None:
    images = np.random.default_rng(1).integers(0, 256, (400, 32, 32, 3), dtype=np.uint8)
    data = _typed(images.ravel()).SerializeToString()
    assert len(data) > INLINE_BINARY_BYTES
    metrics = Metrics("cifar10", predictor.model_version)
    batcher = MicroBatcher(predictor.predict_array)
    servicer = GrpcInference(V2Dataplane(predictor, batcher, "cifar10"), metrics, 2**24)
    threads = []
    decode = servicer._decode

    def recording(data: bytes) -> Any:
        threads.append(threading.current_thread())
        return decode(data)

    servicer._decode = recording  # type: ignore[method-assign]

    async def scenario() -> Any:
        await batcher.start()
        try:
            return await servicer.ModelInfer(data)
        finally:
            await batcher.close()
            servicer.close()

    answer = asyncio.run(scenario())
    assert threads and threads[0] is not threading.main_thread()
    got = np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(400, 10)
    assert np.array_equal(got, predictor.predict_array(images))
