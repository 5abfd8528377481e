"""Conformance: the real `tritonclient[http]` against a real `cifar-serve` on 127.0.0.1.

Health, metadata, binary and JSON inference at batch 1 and 64 (equal to a bare
`InferenceSession.run`, max |diff| <= 1e-6), and each error raising the client's own
exception carrying our message.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from serve_process import ServeProcess
from serve_samples import sample_images
from triton_client import infer_raises as _infer_raises

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] not installed")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(valid_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    log = tmp_path_factory.mktemp("triton") / "serve.log"
    srv = ServeProcess(valid_model, log, "--threads", "1", "--max-body-mb", "1")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: ServeProcess) -> Iterator:
    with httpclient.InferenceServerClient(server.address, network_timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def expected(valid_model: Path) -> tuple[np.ndarray, np.ndarray]:
    x = sample_images(64, seed=3)
    session = ort.InferenceSession(str(valid_model), providers=["CPUExecutionProvider"])
    return x, session.run(None, {"image": x})[0]


def test_health_and_metadata(client) -> None:  # type: ignore[no-untyped-def]
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("cifar10")
    assert client.is_model_ready("cifar10", "tiny-1.0")
    assert not client.is_model_ready("other")
    server = client.get_server_metadata()
    assert "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata("cifar10")
    assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["tiny-1.0"]
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 32, 32, 3]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    # The precision that answers, as an extra key the client's own parsing keeps.
    assert meta["parameters"] == {"engine": "onnxruntime/fp32", "precision": "fp32"}


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_equals_a_bare_session(client, expected, batch: int, binary: bool) -> None:  # type: ignore[no-untyped-def]
    x, probs = expected[0][:batch], expected[1][:batch]
    tensor = httpclient.InferInput("image", list(x.shape), "UINT8")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = [httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
    result = client.infer("cifar10", [tensor], outputs=wanted, request_id=f"r{batch}")
    got = result.as_numpy("probabilities")
    assert got.shape == (batch, 10) and got.dtype == np.float32
    assert np.abs(got - probs).max() <= 1e-6
    assert result.get_response()["id"] == f"r{batch}"
    # No outputs named: tritonclient asks for binary_data_output, as with Triton.
    default = client.infer("cifar10", [tensor], model_version="tiny-1.0")
    assert np.abs(default.as_numpy("probabilities") - probs).max() <= 1e-6
    for algorithm in ("gzip", "deflate"):  # compressed request bodies, as the client sends them
        packed = client.infer("cifar10", [tensor], request_compression_algorithm=algorithm)
        assert np.abs(packed.as_numpy("probabilities") - probs).max() <= 1e-6


def test_errors_raise_the_clients_exception_with_our_message(client, expected) -> None:  # type: ignore[no-untyped-def]
    x = expected[0][:2]

    def tensor(name: str = "image", data: np.ndarray = x, datatype: str = "UINT8", binary=True):  # type: ignore[no-untyped-def]
        t = httpclient.InferInput(name, list(data.shape), datatype)
        return t.set_data_from_numpy(data, binary_data=binary)

    _infer_raises(client, "unknown model 'resnet'", "404", "resnet", [tensor()])
    _infer_raises(client, "unknown version '7'", "404", "cifar10", [tensor()], model_version="7")
    _infer_raises(client, "unknown input 'pixels'", "400", "cifar10", [tensor("pixels")])
    _infer_raises(
        client,
        "datatype must be UINT8",
        "400",
        "cifar10",
        [tensor(data=x.astype(np.int32), datatype="INT32")],
    )
    _infer_raises(
        client, "shape must be [N, 32, 32, 3]", "400", "cifar10", [tensor(data=x[:, :16])]
    )
    too_big = np.zeros((200, 32, 32, 3), np.uint8)  # 1.2 MB of JSON: over --max-body-mb 1
    _infer_raises(
        client, "larger than the limit", "413", "cifar10", [tensor(data=too_big, binary=False)]
    )
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_metadata("resnet")
    assert client.is_server_ready() and client.is_model_ready("cifar10")
