"""Conformance over gRPC: the real `tritonclient[grpc]` against a real `cifar-serve --grpc-port`.

Health, metadata, raw-contents inference at batch 1 and 64 (equal to a bare
`InferenceSession.run`, max |diff| <= 1e-6), typed contents through Triton's own generated
stub, each error raising the client's exception with our message and the right status code,
/metrics counting the gRPC requests, and a clean stop on SIGTERM.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from serve_process import ServeProcess
from serve_samples import sample_images
from triton_client import infer_raises

grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] not installed")
import grpc  # noqa: E402
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.slow
GRPC_LINE = re.compile(r"gRPC \(Open Inference Protocol\) on 127\.0\.0\.1:(\d+)")


def onnx_props(model: Path) -> dict[str, str]:
    """The model's metadata_props, read with onnxruntime (no onnx package in the runtime venv)."""
    import onnxruntime as ort

    meta = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_modelmeta()
    return dict(meta.custom_metadata_map)


class GrpcServe:
    """A cifar-serve process with --grpc-port 0, and the port it bound."""

    def __init__(self, model: Path, log: Path, *flags: str) -> None:
        self.http = ServeProcess(model, log, "--grpc-port", "0", "--threads", "1", *flags)
        port = next(int(m.group(1)) for line in self.http.lines if (m := GRPC_LINE.search(line)))
        self.address = f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(valid_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcServe]:
    log = tmp_path_factory.mktemp("grpc") / "serve.log"
    srv = GrpcServe(valid_model, log, "--max-body-mb", "1")
    yield srv
    srv.http.stop()


@pytest.fixture(scope="module")
def client(server: GrpcServe) -> Iterator:
    with grpcclient.InferenceServerClient(server.address) as c:
        yield c


@pytest.fixture(scope="module")
def expected(valid_model: Path) -> tuple[np.ndarray, np.ndarray]:
    x = sample_images(64, seed=5)
    session = ort.InferenceSession(str(valid_model), providers=["CPUExecutionProvider"])
    return x, session.run(None, {"image": x})[0]


def _tensor(data: np.ndarray, name: str = "image", datatype: str = "UINT8"):  # type: ignore[no-untyped-def]
    tensor = grpcclient.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)  # raw_input_contents, as the client always sends
    return tensor


def test_health_and_metadata(server: GrpcServe, client) -> None:  # type: ignore[no-untyped-def]
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("cifar10") and client.is_model_ready("cifar10", "tiny-1.0")
    info = client.get_server_metadata(as_json=True)
    assert info["name"] == "cifar10-runtime" and info["version"]
    meta = client.get_model_metadata("cifar10", as_json=True)
    # protobuf's JSON form writes int64 as strings.
    assert meta == {
        "name": "cifar10",
        "versions": ["tiny-1.0"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "image", "datatype": "UINT8", "shape": ["-1", "32", "32", "3"]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "10"]}],
    }
    assert client.get_model_metadata("cifar10", "tiny-1.0").name == "cifar10"
    # The same model, version, shapes and datatypes as the REST API's /v2.
    with urllib.request.urlopen(f"{server.http.url}/v2/models/cifar10", timeout=30) as answer:
        rest = json.load(answer)
    for tensors in ("inputs", "outputs"):
        for t in meta[tensors]:
            t["shape"] = [int(d) for d in t["shape"]]
    # REST adds the engine that runs the model under `parameters`; the gRPC message has no such
    # field (ModelMetadataResponse: name, versions, platform, inputs, outputs).
    assert rest.pop("parameters")["engine"].startswith("onnxruntime/")
    assert meta == rest
    with urllib.request.urlopen(f"{server.http.url}/v2", timeout=30) as answer:
        rest_server = json.load(answer)
    assert (info["name"], info["version"]) == (rest_server["name"], rest_server["version"])


def test_tritons_extensions_are_unimplemented_for_its_client(client) -> None:  # type: ignore[no-untyped-def]
    """Triton's own RPCs beyond the protocol's six: gRPC's UNIMPLEMENTED, as the client sees it."""
    calls = {
        "RepositoryIndex": client.get_model_repository_index,
        "ModelConfig": lambda: client.get_model_config("cifar10"),
        "ModelStatistics": lambda: client.get_inference_statistics("cifar10"),
        "SystemSharedMemoryStatus": client.get_system_shared_memory_status,
    }
    for name, call in calls.items():
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == "StatusCode.UNIMPLEMENTED", name


@pytest.mark.parametrize("batch", [1, 64])
def test_raw_infer_equals_a_bare_session(client, expected, batch: int) -> None:  # type: ignore[no-untyped-def]
    x, probs = expected[0][:batch], expected[1][:batch]
    wanted = [grpcclient.InferRequestedOutput("probabilities")]
    result = client.infer("cifar10", [_tensor(x)], outputs=wanted, request_id=f"g{batch}")
    got = result.as_numpy("probabilities")
    assert got.shape == (batch, 10) and got.dtype == np.float32
    assert np.abs(got - probs).max() <= 1e-6
    response = result.get_response()
    assert response.id == f"g{batch}" and response.model_version == "tiny-1.0"
    assert len(response.raw_output_contents) == 1  # raw bytes back, as Triton answers
    for algorithm in ("gzip", "deflate"):  # gRPC message compression, as the client offers
        packed = client.infer("cifar10", [_tensor(x)], compression_algorithm=algorithm)
        assert np.abs(packed.as_numpy("probabilities") - probs).max() <= 1e-6
    # No outputs named, a version given, FP32 in [0, 1]: the same answer.
    floats = x.astype(np.float32) / 255
    default = client.infer("cifar10", [_tensor(floats, datatype="FP32")], model_version="tiny-1.0")
    assert np.abs(default.as_numpy("probabilities") - probs).max() <= 1e-6


def test_typed_contents_through_tritons_own_stub(server: GrpcServe, expected) -> None:  # type: ignore[no-untyped-def]
    x, probs = expected[0][:3], expected[1][:3]
    request = service_pb2.ModelInferRequest(model_name="cifar10")
    tensor = request.inputs.add(name="image", datatype="UINT8", shape=list(x.shape))
    tensor.contents.uint_contents.extend(x.ravel().tolist())
    with grpc.insecure_channel(server.address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, timeout=30)
        got = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(3, 10)
        assert np.abs(got - probs).max() <= 1e-6
        tensor.contents.uint_contents[0] = 256
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "UINT8 values must be 0..255" in caught.value.details()


def test_errors_raise_the_clients_exception_with_our_message(client, expected) -> None:  # type: ignore[no-untyped-def]
    x = expected[0][:2]
    infer_raises(
        client,
        "unknown model 'resnet'. This server serves 'cifar10'.",  # no REST route in it
        "StatusCode.NOT_FOUND",
        "resnet",
        [_tensor(x)],
    )
    infer_raises(
        client,
        "unknown version '7'",
        "StatusCode.NOT_FOUND",
        "cifar10",
        [_tensor(x)],
        model_version="7",
    )
    bad = "StatusCode.INVALID_ARGUMENT"
    infer_raises(client, "shape must be [N, 32, 32, 3]", bad, "cifar10", [_tensor(x[:, :16])])
    infer_raises(client, "unknown input 'pixels'", bad, "cifar10", [_tensor(x, "pixels")])
    infer_raises(
        client,
        "datatype must be UINT8 (or FP32 in [0,1]). Received: 'INT32'",
        bad,
        "cifar10",
        [_tensor(x.astype(np.int32), datatype="INT32")],
    )
    lying = _tensor(x)
    lying.set_shape([3, 32, 32, 3])  # says 3 images, carries 2
    infer_raises(client, "raw_input_contents[0] is 6144 bytes", bad, "cifar10", [lying])
    # 400 images = 1.2 MB, over --max-body-mb 1: gRPC core refuses it before buffering it
    # whole, with its own message (the limit and the size).
    too_big = np.zeros((400, 32, 32, 3), np.uint8)
    infer_raises(
        client,
        "larger than max (",
        "StatusCode.RESOURCE_EXHAUSTED",
        "cifar10",
        [_tensor(too_big)],
    )
    # Compressed, the same images are a few KB on the wire: the limit is on what they inflate
    # to, as far past it.
    for images in (too_big, np.zeros((2000, 32, 32, 3), np.uint8)):
        infer_raises(
            client,
            "larger than max",
            "StatusCode.RESOURCE_EXHAUSTED",
            "cifar10",
            [_tensor(images)],
            compression_algorithm="gzip",
        )
    with pytest.raises(InferenceServerException, match="unknown model 'resnet'"):
        client.get_model_metadata("resnet")
    # As Triton: an unknown model or version is not ready, not an error.
    assert not client.is_model_ready("resnet") and not client.is_model_ready("cifar10", "7")
    assert client.is_server_ready() and client.is_model_ready("cifar10")


def test_metrics_count_grpc_requests_and_sigterm_stops_cleanly(
    valid_model: Path, tmp_path: Path, expected
) -> None:  # type: ignore[no-untyped-def]
    srv = GrpcServe(valid_model, tmp_path / "serve.log")
    try:
        with grpcclient.InferenceServerClient(srv.address) as c:
            c.infer("cifar10", [_tensor(expected[0][:4])])
            with pytest.raises(InferenceServerException):
                c.infer("other", [_tensor(expected[0][:1])])
        with urllib.request.urlopen(f"{srv.http.url}/metrics", timeout=30) as answer:
            text = answer.read().decode()
    finally:
        code = srv.http.stop(signal.SIGTERM)
    assert 'cifar_grpc_requests_total{code="OK",method="ModelInfer"} 1.0' in text
    assert 'cifar_grpc_requests_total{code="NOT_FOUND",method="ModelInfer"} 1.0' in text, [
        line for line in text.splitlines() if "grpc" in line
    ]
    assert 'cifar_inference_request_success_total{api="grpc"' in text
    assert re.search(r"cifar_inference_count_total\{[^}]*\} 4\.0", text), text
    assert code in (0, -signal.SIGTERM), srv.http.text()  # uvicorn re-raises the signal
    assert "Application shutdown complete" in srv.http.text()
    assert "Traceback" not in srv.http.text()


def test_a_taken_grpc_port_is_one_error_line(valid_model: Path) -> None:
    script = Path(sys.executable).with_name("cifar-serve")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [str(script), str(valid_model), "--port", "0", "--grpc-port", str(port)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: cannot listen for gRPC on 127.0.0.1:{port} (Address already in use); "
        f"choose another --grpc-port. Received: --grpc-port={port}"
    )
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_a_trained_model_on_real_images_over_grpc(
    exported_dir: Path, tmp_path: Path, precision: str
) -> None:
    """The model `make fixtures` trained and exported, fed real CIFAR-10 test images: forced to
    onnxruntime float32 the answers equal plain onnxruntime's (recorded when the fixture was
    made); with the default engine choice they stay within the tolerance the export recorded for
    the engine that runs (OpenVINO, bf16 or int8 where this machine runs them faster)."""
    images = np.load(exported_dir / "images.npy")
    expected = np.load(exported_dir / "probabilities.npy")
    # fp32 alone still lets OpenVINO's float32 serve the batch sizes it times faster here.
    engine = ("--engine", "onnxruntime") if precision == "fp32" else ()
    flags = ("--precision", precision, *engine)
    srv = GrpcServe(exported_dir / "model.onnx", tmp_path / "serve.log", *flags)
    tolerances = json.loads(onnx_props(exported_dir / "model.onnx")["precisions"])["tolerances"]
    atol = 1e-6 if precision == "fp32" else max(tolerances.values())
    try:
        with grpcclient.InferenceServerClient(srv.address) as c:
            for batch in (1, len(images)):
                got = c.infer("cifar10", [_tensor(images[:batch])]).as_numpy("probabilities")
                assert np.abs(got - expected[:batch]).max() <= atol, (precision, batch)
            meta = c.get_model_metadata("cifar10")
            assert meta.platform == "onnxruntime_onnx" and len(meta.versions) == 1
            assert c.is_model_ready("cifar10", meta.versions[0])
    finally:
        srv.http.stop()


def test_two_workers_share_the_grpc_port(valid_model: Path, tmp_path: Path, expected) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as probe:  # a free port for both workers (they cannot both pick 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flags = ("--workers", "2", "--threads", "1", "--grpc-port", str(port))
    srv = ServeProcess(valid_model, tmp_path / "serve.log", *flags, ready_lines=2)
    try:
        assert srv.count(f"gRPC (Open Inference Protocol) on 127.0.0.1:{port}") == 2
        with grpcclient.InferenceServerClient(f"127.0.0.1:{port}") as c:
            for _ in range(4):
                got = c.infer("cifar10", [_tensor(expected[0][:2])]).as_numpy("probabilities")
                assert np.abs(got - expected[1][:2]).max() <= 1e-6
    finally:
        code = srv.stop()
    assert code in (0, -signal.SIGTERM), srv.text()
