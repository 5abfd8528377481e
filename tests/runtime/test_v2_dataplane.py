"""cifar10_runtime.serving.v2.dataplane used with no transport at all: plain calls that answer
or raise DataplaneError with its kind; and every error kind has its HTTP status and gRPC code.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest
from serve_samples import sample_images

from cifar10_runtime import Predictor
from cifar10_runtime.batcher import MicroBatcher
from cifar10_runtime.serving.v2.dataplane import V2Dataplane
from cifar10_runtime.serving.v2.errors import DataplaneError, ErrorKind
from cifar10_runtime.serving.v2.tensors import flat_numbers


@pytest.fixture
def plane(predictor: Predictor) -> V2Dataplane:
    return V2Dataplane(predictor, MicroBatcher(predictor.predict_array), "cifar10")


def _tensor(x: np.ndarray, **fields: object) -> dict:
    return {"name": "image", "datatype": "UINT8", "shape": list(x.shape), **fields}


def test_metadata_and_model_identity(plane: V2Dataplane, predictor: Predictor) -> None:
    assert plane.live() and not plane.ready()  # the batcher has not started
    assert plane.server_metadata()["name"] == "cifar10-runtime"
    meta = plane.model_metadata()
    assert meta["name"] == "cifar10" and meta["versions"] == [predictor.model_version]
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 32, 32, 3]}]
    assert plane.serves("cifar10", None) and plane.serves("cifar10", predictor.model_version)
    assert not plane.serves("cifar10", "7") and not plane.serves("resnet", None)
    plane.check_model("cifar10", predictor.model_version)  # no error


@pytest.mark.parametrize(
    ("call", "kind", "message"),
    [
        (
            lambda p: p.check_model("resnet", None),
            ErrorKind.NOT_FOUND,
            "unknown model 'resnet'. This server serves 'cifar10'.",
        ),
        (
            lambda p: p.check_model("resnet", None, where="GET /v2/models/cifar10"),
            ErrorKind.NOT_FOUND,
            "unknown model 'resnet'. This server serves 'cifar10' (GET /v2/models/cifar10).",
        ),
        (lambda p: p.check_model("cifar10", "7"), ErrorKind.NOT_FOUND, "unknown version '7'"),
        (
            lambda p: p.input_spec([{"name": "pixels"}]),
            ErrorKind.INVALID_ARGUMENT,
            "unknown input 'pixels'. The model's input is 'image'.",
        ),
        (
            lambda p: p.tensor_images([_tensor(np.zeros((1, 32, 32, 3)), data=[256] * 3072)]),
            ErrorKind.INVALID_ARGUMENT,
            "input 'image': UINT8 values must be 0..255.",
        ),
        (
            lambda p: p.tensor_images([_tensor(np.zeros((2, 32, 32, 3)))], memoryview(b"x"), "n"),
            ErrorKind.INVALID_ARGUMENT,
            "input 'image': n is 1 bytes, but shape [2, 32, 32, 3] of UINT8 needs 6144.",
        ),
        (
            lambda p: p.requested_outputs([{"name": "logits"}]),
            ErrorKind.INVALID_ARGUMENT,
            "unknown output 'logits'. The model's output is 'probabilities'.",
        ),
    ],
    ids=["model", "model-where", "version", "input-name", "uint8-range", "raw-size", "output"],
)
def test_plain_calls_raise_the_neutral_error_with_its_kind(
    plane: V2Dataplane, call, kind: ErrorKind, message: str
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataplaneError) as caught:
        call(plane)
    assert caught.value.kind is kind
    assert caught.value.message.startswith(message), caught.value.message
    assert "\n" not in caught.value.message


def test_images_from_data_or_bytes_then_infer(plane: V2Dataplane, predictor: Predictor) -> None:
    x = sample_images(2, seed=5)
    from_bytes = plane.tensor_images([_tensor(x)], memoryview(x.tobytes()))
    from_data = plane.tensor_images([_tensor(x, data=x.ravel().tolist())])
    floats = (x.astype(np.float32) / 255).ravel().tolist()
    from_fp32 = plane.tensor_images([{**_tensor(x, data=floats), "datatype": "FP32"}])
    assert np.array_equal(from_bytes, x) and np.array_equal(from_data, x)
    assert np.array_equal(from_fp32, x)
    # the REST codec's fast form of the same lists: one array, the same images
    ints, mixed = flat_numbers(x.ravel().tolist()), flat_numbers(floats[:-1] + [1])
    assert ints.dtype == np.int64 and mixed.dtype == np.float64
    assert np.array_equal(plane.tensor_images([_tensor(x, data=ints)]), x)
    fp32 = {**_tensor(x, data=flat_numbers(floats)), "datatype": "FP32"}
    assert np.array_equal(plane.tensor_images([fp32]), x)
    assert plane.requested_outputs(None, default_binary=True) == [True]

    async def scenario() -> None:
        with pytest.raises(DataplaneError) as caught:  # before the batcher starts
            await plane.infer(from_bytes)
        assert caught.value.kind is ErrorKind.UNAVAILABLE
        assert "not started" in caught.value.message
        await plane.batcher.start()
        try:
            probs, run_size = await plane.infer(from_bytes)
        finally:
            await plane.batcher.close()
        assert run_size == 2 and np.array_equal(probs, predictor.predict_array(x))

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "data",
    [[1, "2"], [1, [2]], [1, None], [1, {"a": 1}], [1, 2**2000], "123", {"a": 1}],
)
def test_flat_numbers_leaves_anything_but_plain_numbers_to_the_full_checks(data: object) -> None:
    assert flat_numbers(data) is data


def test_flat_numbers_widens_as_numpy_would() -> None:
    assert flat_numbers([]).dtype == np.int64 and flat_numbers([]).size == 0
    assert flat_numbers([2**63 - 1]).tolist() == [2**63 - 1]
    assert flat_numbers([2**64]).dtype == np.float64  # beyond int64: a float, as UINT8 refuses


def test_every_error_kind_has_an_http_status_and_a_grpc_code() -> None:
    import grpc

    from cifar10_runtime.serving.grpc.codec import GRPC_CODE
    from cifar10_runtime.serving.v2.rest_codec import HTTP_STATUS

    assert set(HTTP_STATUS) == set(ErrorKind) == set(GRPC_CODE)
    assert all(400 <= status <= 599 for status in HTTP_STATUS.values())
    assert all(code is not grpc.StatusCode.OK for code in GRPC_CODE.values())
    # One meaning, two spellings: the pairs agree with each other.
    assert HTTP_STATUS[ErrorKind.NOT_FOUND] == 404
    assert GRPC_CODE[ErrorKind.TOO_LARGE] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (HTTP_STATUS[ErrorKind.UNAVAILABLE], GRPC_CODE[ErrorKind.UNAVAILABLE]) == (
        503,
        grpc.StatusCode.UNAVAILABLE,
    )


def test_the_dataplane_and_grpc_load_neither_starlette_nor_the_other_codec() -> None:
    code = (
        "import sys\n"
        "import cifar10_runtime.serving.v2.dataplane\n"
        "print('starlette' in sys.modules, 'grpc' in sys.modules)\n"
        "import cifar10_runtime.serving.grpc.server\n"
        "print('cifar10_runtime.serving.v2.rest' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["False", "False", "False"]
