"""The Starlette app in-process (TestClient over httpx): endpoints, errors, headers, batching."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runtime_samples import broken_files, encode, gradient

from cifar10_runtime import ModelError, Predictor
from cifar10_runtime.server import create_app

with warnings.catch_warnings():
    # Newer Starlette prefers the `httpx2` fork and warns about plain httpx, which it still
    # supports and which is what both venvs install.
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

PNG = "image/png"


@pytest.fixture(scope="module")
def pngs(subset_pngs: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(subset_pngs.glob("*.png"))[:8]]


@pytest.fixture()
def client(predictor: Predictor) -> Iterator[TestClient]:
    with TestClient(create_app(predictor, max_body_mb=0.05)) as c:
        yield c


def _expected(predictor: Predictor, data: bytes, top_k: int = 1) -> dict:
    return predictor.predict(data, top_k=top_k).to_dict()


def _assert_json_error(response, status: int, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    for fragment in fragments:
        assert fragment in body["error"], body["error"]


def test_health_ready_and_metadata(client: TestClient, predictor: Predictor) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model_version": "tiny-1.0"}
    meta = client.get("/v1/metadata")
    assert meta.status_code == 200
    assert meta.headers["x-model-version"] == "tiny-1.0"
    info = meta.json()
    assert info["class_names"] == list(predictor.class_names)
    assert info["input"] == {
        "name": "image",
        "dtype": "uint8",
        "shape": [None, 32, 32, 3],
        "layout": "NHWC RGB",
        "scaling": "in the graph",
    }
    assert info["metrics"] == {"test_accuracy": 0.1, "test_loss": 2.3}
    assert info["producer_versions"]["opset"] == 17
    assert info["providers"] == predictor.providers  # what is active, CPU or GPU machine
    assert info["server"]["max_batch_size"] == 32 and info["server"]["max_body_bytes"] == 52428


def test_predict_one_image(client: TestClient, predictor: Predictor, pngs: list[bytes]) -> None:
    response = client.post("/v1/predict", content=pngs[0], headers={"Content-Type": PNG})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-model-version"] == "tiny-1.0"
    assert response.headers["x-batch-size"] == "1"
    assert response.json() == {
        "predictions": [_expected(predictor, pngs[0])],
        "model_version": "tiny-1.0",
    }
    jpeg = encode(Image.fromarray(gradient(80, 60)), "JPEG")
    for content_type, data in [("image/jpeg", jpeg), ("application/octet-stream", pngs[1])]:
        headers = {"Content-Type": content_type}
        got = client.post("/v1/predict?top_k=3", content=data, headers=headers)
        assert got.status_code == 200
        assert got.json()["predictions"] == [_expected(predictor, data, 3)]


def test_predict_multipart_keeps_order(
    client: TestClient, predictor: Predictor, pngs: list[bytes]
) -> None:
    files = [("file", (f"{i}.png", data, PNG)) for i, data in enumerate(pngs[:5])]
    response = client.post("/v1/predict?top_k=2", files=files, data={"note": "ignored"})
    assert response.status_code == 200
    assert response.json()["predictions"] == [_expected(predictor, d, 2) for d in pngs[:5]]
    assert response.headers["x-batch-size"] == "5"


@pytest.mark.parametrize("name", sorted(broken_files()))
def test_broken_image_is_400(client: TestClient, name: str) -> None:
    body = broken_files()[name]
    if len(body) > 50_000:
        pytest.skip("over this client's body limit")
    response = client.post("/v1/predict", content=body, headers={"Content-Type": PNG})
    _assert_json_error(response, 400, "request body:")
    multipart = client.post(
        "/v1/predict",
        files=[
            ("a", ("good.png", encode(Image.new("RGB", (8, 8))), PNG)),
            ("b", (name, body, PNG)),
        ],
    )
    _assert_json_error(multipart, 400, f"{name}:")


def test_bad_multipart_and_top_k_are_400(client: TestClient, pngs: list[bytes]) -> None:
    # (httpx would send fields without files urlencoded, so the body is written by hand.)
    no_files = client.post(
        "/v1/predict",
        content=b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--XyZ--\r\n',
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    _assert_json_error(no_files, 400, "no file part")
    no_boundary = client.post(
        "/v1/predict", content=b"whatever", headers={"Content-Type": "multipart/form-data"}
    )
    _assert_json_error(no_boundary, 400, "malformed multipart", "boundary")
    for value in ("0", "11", "abc"):
        response = client.post(
            f"/v1/predict?top_k={value}", content=pngs[0], headers={"Content-Type": PNG}
        )
        _assert_json_error(response, 400, "top_k", value)


def test_bodies_over_the_limit_are_413(client: TestClient) -> None:
    big = b"\x00" * 60_000
    declared = client.post("/v1/predict", content=big, headers={"Content-Type": PNG})
    _assert_json_error(declared, 413, "limit of 52428 bytes", "Content-Length 60000")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(60):
            yield b"\x00" * 1000

    streamed = client.post("/v1/predict", content=chunks(), headers={"Content-Type": PNG})
    assert streamed.request.headers.get("transfer-encoding") == "chunked"
    _assert_json_error(streamed, 413, "more than 52428 bytes streamed")
    multipart = client.post("/v1/predict", files=[("f", ("big.png", big, PNG))])
    _assert_json_error(multipart, 413)
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", None])
def test_unsupported_content_type_is_415(client: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/v1/predict", content=b"{}", headers=headers)
    _assert_json_error(response, 415, "unsupported Content-Type", "image/*")


def test_unknown_routes_and_methods(client: TestClient) -> None:
    _assert_json_error(client.get("/v2/predict"), 404, "no such endpoint", "POST /v1/predict")
    _assert_json_error(client.get("/v1/predict"), 405, "method GET not allowed")


def test_not_ready_outside_the_lifespan(predictor: Predictor, pngs: list[bytes]) -> None:
    app = create_app(predictor)
    outside = TestClient(app)  # no `with`: the lifespan (and the batcher) never started
    ready = outside.get("/readyz")
    assert ready.status_code == 503 and ready.json()["status"] == "not ready"
    assert outside.get("/healthz").status_code == 200
    response = outside.post("/v1/predict", content=pngs[0], headers={"Content-Type": PNG})
    _assert_json_error(response, 503, "not started")
    with TestClient(app) as inside:
        assert inside.get("/readyz").status_code == 200
    assert outside.get("/readyz").status_code == 503  # after shutdown


class GatedPredictor(Predictor):
    """Blocks inside every run until released, so requests can be made to pile up."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def predict_array(self, x: np.ndarray) -> np.ndarray:
        self.entered.set()
        assert self.gate.wait(10)
        return super().predict_array(x)


def test_full_queue_is_503_and_the_server_recovers(valid_model: Path, pngs: list[bytes]) -> None:
    gated = GatedPredictor(valid_model, threads=1)
    app = create_app(gated, max_batch_size=1, max_delay_ms=0, max_queue=1)
    results: dict[str, int] = {}
    with TestClient(app) as client:

        def post(key: str) -> None:
            r = client.post("/v1/predict", content=pngs[0], headers={"Content-Type": PNG})
            results[key] = r.status_code

        running = threading.Thread(target=post, args=("running",))
        running.start()
        assert gated.entered.wait(10)
        queued = threading.Thread(target=post, args=("queued",))
        queued.start()
        deadline = time.monotonic() + 10
        while app.state.batcher.pending < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        rejected = client.post("/v1/predict", content=pngs[0], headers={"Content-Type": PNG})
        _assert_json_error(rejected, 503, "server busy", "max_queue=1")
        assert rejected.headers["retry-after"] == "1"
        gated.gate.set()
        running.join(10)
        queued.join(10)
        assert results == {"running": 200, "queued": 200}
        assert client.get("/readyz").status_code == 200


def test_concurrent_requests_are_batched(predictor: Predictor, pngs: list[bytes]) -> None:
    app = create_app(predictor, max_delay_ms=300)
    answers: list = [None] * len(pngs)
    with TestClient(app) as client:

        def post(i: int) -> None:
            r = client.post("/v1/predict", content=pngs[i], headers={"Content-Type": PNG})
            answers[i] = (r.status_code, int(r.headers["x-batch-size"]), r.json())

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(pngs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    assert all(a[0] == 200 for a in answers)
    assert max(a[1] for a in answers) > 1
    assert app.state.batcher.largest_batch > 1
    for data, (_, _, body) in zip(pngs, answers, strict=True):
        assert body["predictions"] == [_expected(predictor, data)]


def test_batching_off_runs_each_request_alone(predictor: Predictor, pngs: list[bytes]) -> None:
    app = create_app(predictor, max_batch_size=1, max_delay_ms=0)
    with TestClient(app) as client:
        sizes = []

        def post(i: int) -> None:
            r = client.post("/v1/predict", content=pngs[i], headers={"Content-Type": PNG})
            sizes.append(r.headers["x-batch-size"])

        threads = [threading.Thread(target=post, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    assert sizes == ["1"] * 4
    assert app.state.batcher.largest_batch == 1


def test_internal_errors_are_json_500(valid_model: Path, pngs: list[bytes]) -> None:
    class Broken(Predictor):
        def predict_array(self, x: np.ndarray) -> np.ndarray:
            raise RuntimeError("kaboom")

    app = create_app(Broken(valid_model, threads=1))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/predict", content=pngs[0], headers={"Content-Type": PNG})
        _assert_json_error(response, 500, "internal server error")
        assert client.get("/readyz").status_code == 200


def test_create_app_from_a_path(valid_model: Path, tmp_path: Path) -> None:
    with TestClient(create_app(str(valid_model), threads=1)) as client:
        assert client.get("/v1/metadata").json()["model_version"] == "tiny-1.0"
    with pytest.raises(ModelError, match="model file not found"):
        create_app(tmp_path / "absent.onnx")
