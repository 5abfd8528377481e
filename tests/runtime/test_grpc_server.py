"""The gRPC server in-process: UNAVAILABLE before ready and after close, the bound on RPCs in
progress, Triton's extensions UNIMPLEMENTED, and the messages and methods taken from Triton's
generated stubs (tritonclient.grpc.service_pb2), or one error line when they are missing.

The calls use serving.grpc.protocol's message classes over a real grpc.aio channel on 127.0.0.1;
waits are events (a threading.Event the model run sets), never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from click.testing import CliRunner
from serve_samples import sample_images

from cifar10_runtime import Predictor
from cifar10_runtime.batcher import MicroBatcher
from cifar10_runtime.errors import ConfigError
from cifar10_runtime.serving.grpc.calls import SHUTTING_DOWN
from cifar10_runtime.serving.grpc.codec import Aborted, status_of, to_v2_header
from cifar10_runtime.serving.grpc.protocol import OPEN_INFERENCE, protocol
from cifar10_runtime.serving.grpc.server import GrpcInference, GrpcServer
from cifar10_runtime.serving.metrics import Metrics
from cifar10_runtime.serving.v2.dataplane import V2Dataplane

BOUND = 30.0


def test_the_protocol_is_tritons_service_with_the_six_methods_of_the_spec() -> None:
    from tritonclient.grpc import service_pb2

    p = protocol()
    assert OPEN_INFERENCE == (
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    )
    assert list(p.methods)[:6] == list(OPEN_INFERENCE)  # the spec's order, then Triton's
    assert {"ModelStreamInfer", "RepositoryIndex", "ModelStatistics"} <= set(p.methods)
    assert p.methods["ModelStreamInfer"].streaming and not p.methods["ModelInfer"].streaming
    infer = p.methods["ModelInfer"]
    assert infer.path == "/inference.GRPCInferenceService/ModelInfer"
    # Triton's own classes, not copies: a tritonclient stub in this process speaks them.
    assert infer.request is service_pb2.ModelInferRequest is p.ModelInferRequest
    assert infer.response is service_pb2.ModelInferResponse
    fields = infer.request.DESCRIPTOR.fields_by_name
    assert fields["raw_input_contents"].number == 7  # the wire contract Triton's clients use


def test_the_stubs_load_on_first_use_only() -> None:
    code = (
        "import sys\n"
        "import cifar10_runtime.cli.serve, cifar10_runtime.serving.app\n"
        "import cifar10_runtime.serving.grpc.server\n"
        "print('tritonclient' in sys.modules)\n"
        "cifar10_runtime.serving.grpc.server.protocol()\n"
        "print('tritonclient' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["False", "True"]


@pytest.fixture
def no_stubs(monkeypatch: pytest.MonkeyPatch) -> Any:
    """tritonclient.grpc as if not installed (None in sys.modules halts its import)."""
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)
    protocol.cache_clear()
    yield
    protocol.cache_clear()  # rebuilt from the real module on next use


def test_missing_stubs_are_one_config_error_line(no_stubs: None) -> None:
    with pytest.raises(ConfigError) as caught:
        protocol()
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith("--grpc-port needs Triton's gRPC stubs (tritonclient.grpc.service_pb2)")
    assert 'pip install "cifar10-runtime[serve]". Received: ModuleNotFoundError: ' in text


def test_cifar_serve_grpc_port_without_stubs_exits_2_before_serving(
    valid_model: Path, no_stubs: None
) -> None:
    from cifar10_runtime.cli import serve as serve_cli

    result = CliRunner().invoke(serve_cli.main, [str(valid_model), "--grpc-port", "0"])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: --grpc-port needs Triton's gRPC stubs"), result.output
    assert "cifar10-runtime[serve]" in last and "Traceback" not in result.output


def _infer_request(x: np.ndarray) -> Any:
    p = protocol()
    tensor = p.ModelInferRequest.InferInputTensor(name="image", datatype="UINT8", shape=x.shape)
    return p.ModelInferRequest(
        model_name="cifar10", inputs=[tensor], raw_input_contents=[x.tobytes()]
    )


@contextlib.asynccontextmanager
async def _served(
    predictor: Predictor, run: Any, max_rpcs: int
) -> AsyncIterator[tuple[GrpcServer, MicroBatcher]]:
    """A GrpcServer over a MicroBatcher of `run`, stopped and drained however the scenario
    ends: a failed assertion must not leave a server bound to a closed event loop behind
    for later tests (grpc.aio shuts such a server down from its finalizer)."""
    metrics = Metrics("cifar10", predictor.model_version)
    batcher = MicroBatcher(run, max_batch_size=8, observer=metrics)
    dataplane = V2Dataplane(predictor, batcher, "cifar10")
    server = GrpcServer(GrpcInference(dataplane, metrics, 2**20), "127.0.0.1", 0, max_rpcs, 10)
    await server.start()
    try:
        yield server, batcher
    finally:
        await server.stop(1)  # both are no-ops when the scenario stopped them itself
        await batcher.close()


def _caller(channel: grpc.aio.Channel, name: str) -> Any:
    method = protocol().methods[name]
    return channel.unary_unary(
        method.path,
        request_serializer=method.request.SerializeToString,
        response_deserializer=method.response.FromString,
    )


def test_unavailable_before_ready_and_after_close(predictor: Predictor) -> None:
    x = sample_images(2, seed=1)

    async def scenario() -> None:
        served = _served(predictor, predictor.predict_array, max_rpcs=8)
        p = protocol()
        async with (
            served as (server, batcher),
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            ready, infer = _caller(channel, "ServerReady"), _caller(channel, "ModelInfer")
            assert (await ready(p.ServerReadyRequest(), timeout=BOUND)).ready is False
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await infer(_infer_request(x), timeout=BOUND)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "not started" in caught.value.details()
            await batcher.start()
            assert (await ready(p.ServerReadyRequest(), timeout=BOUND)).ready is True
            answer = await infer(_infer_request(x), timeout=BOUND)
            got = np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(2, 10)
            assert np.array_equal(got, predictor.predict_array(x))
            await batcher.close()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await infer(_infer_request(x), timeout=BOUND)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in caught.value.details()

    asyncio.run(scenario())


def test_tritons_extensions_are_unimplemented(predictor: Predictor) -> None:
    p = protocol()
    extensions = [m for name, m in p.methods.items() if name not in OPEN_INFERENCE]
    assert len(extensions) >= 10  # repository, statistics, shared memory, streaming...

    async def scenario() -> None:
        served = _served(predictor, predictor.predict_array, max_rpcs=8)
        async with (
            served as (server, batcher),
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            await batcher.start()
            assert (await _caller(channel, "ServerLive")(p.ServerLiveRequest(), timeout=BOUND)).live
            for m in extensions:
                kind = channel.stream_stream if m.streaming else channel.unary_unary
                call = kind(
                    m.path,
                    request_serializer=m.request.SerializeToString,
                    response_deserializer=m.response.FromString,
                )
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    if m.streaming:
                        async for _ in call(iter([m.request()]), timeout=BOUND):
                            pass
                    else:
                        await call(m.request(), timeout=BOUND)
                assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED, m.name

    asyncio.run(scenario())


def test_rpcs_in_progress_are_bounded_and_finish_on_stop(predictor: Predictor) -> None:
    x = sample_images(1, seed=2)
    started, release = threading.Event(), threading.Event()

    def slow_run(images: np.ndarray) -> np.ndarray:
        started.set()
        release.wait(BOUND)
        return predictor.predict_array(images)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        served = _served(predictor, slow_run, max_rpcs=1)
        async with (
            served as (server, batcher),
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            await batcher.start()
            infer = _caller(channel, "ModelInfer")
            first = asyncio.ensure_future(infer(_infer_request(x), timeout=BOUND))
            assert await loop.run_in_executor(None, started.wait, BOUND)
            with pytest.raises(grpc.aio.AioRpcError) as caught:  # the one slot is taken
                await infer(_infer_request(x), timeout=BOUND)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert caught.value.details() == (
                "server busy: more than 1 calls in progress (--limit-concurrency). Retry shortly."
            )
            # A graceful stop lets the RPC in progress finish and refuses new ones meanwhile.
            stopping = asyncio.ensure_future(server.stop(BOUND))
            while not server.servicer.calls.draining:
                await asyncio.sleep(0)  # the stop's first step runs on this loop
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await infer(_infer_request(x), timeout=BOUND)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert caught.value.details() == SHUTTING_DOWN
            release.set()
            answer = await first
            assert len(answer.raw_output_contents[0]) == 10 * 4
            await stopping

    asyncio.run(scenario())


def _tensor(datatype: str = "UINT8", **fields: Any) -> Any:
    return protocol().ModelInferRequest.InferInputTensor(
        name="image", datatype=datatype, shape=[1, 32, 32, 3], **fields
    )


@pytest.mark.parametrize(
    ("request_fields", "fragment"),
    [
        ({"inputs": [_tensor()]}, "has no data: send raw_input_contents"),
        (
            {"inputs": [_tensor(contents={"uint_contents": [0]})], "raw_input_contents": [b"x"]},
            "not both",
        ),
        ({"inputs": [_tensor(), _tensor()], "raw_input_contents": [b"x"]}, "1 entries for 2"),
    ],
    ids=["no-data", "raw-and-typed", "raw-count"],
)
def test_malformed_infer_requests_are_invalid_argument(request_fields: dict, fragment: str) -> None:
    with pytest.raises(Aborted) as caught:
        to_v2_header(protocol().ModelInferRequest(model_name="cifar10", **request_fields))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in str(caught.value)


def test_typed_fp32_and_output_parameters_reach_v2s_header() -> None:
    p = protocol()
    tensor = _tensor(datatype="FP32", contents={"fp32_contents": [0.5, 1.0]})
    wanted = p.ModelInferRequest.InferRequestedOutputTensor(name="probabilities")
    wanted.parameters["classification"].int64_param = 3
    header, binary = to_v2_header(
        p.ModelInferRequest(model_name="cifar10", inputs=[tensor], outputs=[wanted])
    )
    assert header["inputs"][0]["data"] == [0.5, 1.0] and not binary
    assert header["outputs"] == [{"name": "probabilities", "parameters": {"classification": 3}}]


def test_errors_map_to_status_codes_with_grpc_wording() -> None:
    from cifar10_runtime.serving.v2.errors import DataplaneError, ErrorKind

    size = DataplaneError(
        ErrorKind.INVALID_ARGUMENT,
        "input 'image': the size of raw_input_contents[0] is 6 bytes, but shape needs 9.",
    )
    code, text = status_of(size)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert text == "input 'image': the size of raw_input_contents[0] is 6 bytes, but shape needs 9."
    route = DataplaneError(ErrorKind.NOT_FOUND, "unknown model 'x'. This server serves 'cifar10'.")
    assert status_of(route) == (
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'x'. This server serves 'cifar10'.",
    )
    too_big = DataplaneError(ErrorKind.TOO_LARGE, "too big")
    assert status_of(too_big)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (
        status_of(DataplaneError(ErrorKind.UNAVAILABLE, "busy"))[0] == grpc.StatusCode.UNAVAILABLE
    )
    long = DataplaneError(ErrorKind.NOT_FOUND, "unknown model " + "x" * 10**6 + "\nend")
    code, text = status_of(long)  # every status a call carries is bounded, on one line
    assert code == grpc.StatusCode.NOT_FOUND and len(text) == 1000 and "\n" not in text
    assert status_of(KeyError("bug")) == (
        grpc.StatusCode.INTERNAL,
        "internal server error; see the server log.",
    )


def test_the_grpc_wording_comes_from_the_dataplane_not_a_rewrite(predictor: Predictor) -> None:
    """The messages a gRPC client sees name gRPC's parts: the raw bytes' size and no REST
    route, because the codec hands the dataplane gRPC's words."""
    from cifar10_runtime.serving.grpc.codec import RAW_SIZE
    from cifar10_runtime.serving.v2.errors import DataplaneError

    plane = V2Dataplane(predictor, MicroBatcher(predictor.predict_array), "cifar10")
    with pytest.raises(DataplaneError) as caught:
        plane.check_model("x", None)
    assert status_of(caught.value) == (
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'x'. This server serves 'cifar10'.",
    )
    header, raw = to_v2_header(_infer_request(sample_images(2, seed=3)))
    header["inputs"][0]["shape"] = [3, 32, 32, 3]  # says 3 images, carries 2
    with pytest.raises(DataplaneError) as caught:
        plane.tensor_images(header["inputs"], raw, RAW_SIZE)
    assert status_of(caught.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'image': the size of raw_input_contents[0] is 6144 bytes, but shape "
        "[3, 32, 32, 3] of UINT8 needs 9216.",
    )
