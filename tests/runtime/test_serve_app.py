"""The Starlette app in-process (TestClient over httpx): /v1 endpoints, errors, headers, batching.

Images are generated (serve_samples.py); concurrency is arranged with a gated predictor
(requests pile up while a run is held open), never with timing windows.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from runtime_samples import broken_files, encode, gradient, png_header_only
from serve_samples import sample_pngs

from cifar10_runtime import ModelError, Predictor
from cifar10_runtime.serving.app import create_app
from cifar10_runtime.serving.config import ServeConfig

with warnings.catch_warnings():
    # Newer Starlette prefers the `httpx2` fork and warns about plain httpx, which it still
    # supports and which is what both venvs install.
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

PNG = "image/png"


@pytest.fixture(scope="module")
def pngs() -> list[bytes]:
    return sample_pngs(8)


@pytest.fixture()
def client(predictor: Predictor) -> Iterator[TestClient]:
    with TestClient(create_app(predictor, ServeConfig(max_body_mb=0.05))) as c:
        yield c


def _expected(
    predictor: Predictor, data: bytes, top_k: int = 1, file: str = "request body"
) -> dict:
    return {"file": file, **predictor.predict(data, top_k=top_k).to_dict()}


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
    assert response.json()["predictions"] == [
        _expected(predictor, d, 2, f"{i}.png") for i, d in enumerate(pngs[:5])
    ]
    assert response.headers["x-batch-size"] == "5"


def test_every_answer_names_its_file_or_field(client: TestClient, pngs: list[bytes]) -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="first"; filename="cat.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + pngs[0] + b"\r\n"
        b'--B\r\nContent-Disposition: form-data; name="second"; filename=""\r\n'
        b"Content-Type: image/png\r\n\r\n" + pngs[1] + b"\r\n--B--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=B"}
    response = client.post("/v1/predict", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert [p["file"] for p in response.json()["predictions"]] == ["cat.png", "second"]


def _two_files(pngs: list[bytes]) -> bytes:
    return (
        b'--B\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\n\r\n'
        + pngs[0]
        + b'\r\n--B\r\nContent-Disposition: form-data; name="f"; filename="b.png"\r\n\r\n'
        + pngs[1]
        + b"\r\n--B--\r\n"
    )


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda body: body[: -len(b"--B--\r\n")], id="no-closing-boundary"),
        pytest.param(lambda body: body[:-40], id="cut-inside-the-last-file"),
        pytest.param(lambda body: body[: body.index(b"b.png") + 30], id="cut-in-the-last-head"),
    ],
)
def test_a_cut_multipart_body_is_400(client: TestClient, pngs: list[bytes], cut) -> None:  # type: ignore[no-untyped-def]
    headers = {"Content-Type": "multipart/form-data; boundary=B"}
    whole = client.post("/v1/predict", content=_two_files(pngs), headers=headers)
    assert whole.status_code == 200 and len(whole.json()["predictions"]) == 2
    response = client.post("/v1/predict", content=cut(_two_files(pngs)), headers=headers)
    _assert_json_error(response, 400, "malformed multipart")
    assert response.headers["connection"] == "close"
    assert client.get("/readyz").status_code == 200


def test_images_over_the_pixel_budget_are_400_before_decoding(predictor: Predictor) -> None:
    with TestClient(create_app(predictor, ServeConfig(max_pixels=1_000_000))) as client:
        # A header claiming 9400x9400 with no pixel data: refused from the header alone.
        response = client.post(
            "/v1/predict", content=png_header_only(9400, 9400), headers={"Content-Type": PNG}
        )
        _assert_json_error(response, 400, "request body: 9400x9400 = 88360000 pixels", "budget")
        assert client.get("/v1/metadata").json()["server"]["max_pixels"] == 1_000_000


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
    for response in (declared, streamed, multipart):  # the rest of the upload is not read
        assert response.headers["connection"] == "close"
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", None])
def test_unsupported_content_type_is_415(client: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/v1/predict", content=b"{}", headers=headers)
    _assert_json_error(response, 415, "unsupported Content-Type", "image/*")


def test_unknown_routes_and_methods(client: TestClient) -> None:
    _assert_json_error(client.get("/v2/predict"), 404, "no such endpoint", "POST /v1/predict")
    _assert_json_error(client.get("/v1/predict"), 405, "method GET not allowed")


@pytest.mark.parametrize("path", ["/readyz/", "/v1/metadata/", "/v2/health/ready/"])
def test_no_redirect_is_built_from_the_host_header(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    _assert_json_error(response, 404, "no such endpoint")
    assert "location" not in response.headers


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


def _post_in_thread(client: TestClient, body: bytes, out: dict, key: str) -> threading.Thread:
    def post() -> None:
        r = client.post("/v1/predict", content=body, headers={"Content-Type": PNG})
        out[key] = (r.status_code, r.headers.get("x-batch-size"), r.json())

    thread = threading.Thread(target=post)
    thread.start()
    return thread


class QueueWatch:
    """Wraps the batcher's observer: an event set once `count` requests are queued."""

    def __init__(self, app, count: int) -> None:  # type: ignore[no-untyped-def]
        self.inner = app.state.batcher.observer
        self.count = count
        self.reached = threading.Event()
        app.state.batcher.observer = self

    def queued(self, seconds: float) -> None:
        self.inner.queued(seconds)

    def ran(self, images: int, requests: int, seconds: float, ok: bool) -> None:
        self.inner.ran(images, requests, seconds, ok)

    def depth(self, pending: int) -> None:
        self.inner.depth(pending)
        if pending >= self.count:
            self.reached.set()


def test_full_queue_is_503_and_the_server_recovers(valid_model: Path, pngs: list[bytes]) -> None:
    gated = GatedPredictor(valid_model, threads=1)
    app = create_app(gated, ServeConfig(max_batch_size=1, max_delay_ms=0, max_queue=1))
    results: dict = {}
    with TestClient(app) as client:
        running = _post_in_thread(client, pngs[0], results, "running")
        assert gated.entered.wait(10)
        watch = QueueWatch(app, 1)
        queued = _post_in_thread(client, pngs[0], results, "queued")
        assert watch.reached.wait(10)
        rejected = client.post("/v1/predict", content=pngs[0], headers={"Content-Type": PNG})
        _assert_json_error(rejected, 503, "server busy", "max_queue=1")
        assert rejected.headers["retry-after"] == "1"
        gated.gate.set()
        running.join(10)
        queued.join(10)
        assert {k: v[0] for k, v in results.items()} == {"running": 200, "queued": 200}
        assert client.get("/readyz").status_code == 200


def test_requests_that_arrive_during_a_run_are_batched(
    valid_model: Path, predictor: Predictor, pngs: list[bytes]
) -> None:
    gated = GatedPredictor(valid_model, threads=1)
    # 32 images as asked, no extra delay: a measured size would time the gated runs at start
    app = create_app(gated, ServeConfig(max_batch_size=32))
    answers: dict = {}
    with TestClient(app) as client:
        first = _post_in_thread(client, pngs[0], answers, "first")
        assert gated.entered.wait(10)  # the first request runs alone, at once
        watch = QueueWatch(app, 7)
        others = [_post_in_thread(client, pngs[i], answers, str(i)) for i in range(1, 8)]
        assert watch.reached.wait(10)
        gated.gate.set()
        for thread in [first, *others]:
            thread.join(20)
    assert answers["first"][:2] == (200, "1")
    assert {answers[str(i)][:2] for i in range(1, 8)} == {(200, "7")}
    assert app.state.batcher.largest_batch == 7
    for i in range(1, 8):
        assert answers[str(i)][2]["predictions"] == [_expected(predictor, pngs[i])]


def test_batching_off_runs_each_request_alone(predictor: Predictor, pngs: list[bytes]) -> None:
    app = create_app(predictor, ServeConfig(max_batch_size=1, max_delay_ms=0))
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


def test_a_failed_run_is_500_and_serving_goes_on(valid_model: Path, pngs: list[bytes]) -> None:
    class FailsOnce(Predictor):
        calls = 0

        def predict_array(self, x: np.ndarray) -> np.ndarray:
            self.calls += 1
            if self.calls == 1:
                raise ValueError("cannot assemble")
            return super().predict_array(x)

    # A size asked for: measuring one at start would make the failing run.
    app = create_app(FailsOnce(valid_model, threads=1), ServeConfig(max_batch_size=8))
    with TestClient(app, raise_server_exceptions=False) as client:
        failed = client.post("/v1/predict", content=pngs[0], headers={"Content-Type": PNG})
        _assert_json_error(failed, 500, "internal server error")
        ok = client.post("/v1/predict", content=pngs[0], headers={"Content-Type": PNG})
        assert ok.status_code == 200
        assert client.get("/readyz").status_code == 200


def test_internal_errors_are_json_500(valid_model: Path, pngs: list[bytes]) -> None:
    class Broken(Predictor):
        def predict_array(self, x: np.ndarray) -> np.ndarray:
            raise RuntimeError("kaboom")

    app = create_app(Broken(valid_model, threads=1), ServeConfig(max_batch_size=8))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/predict", content=pngs[0], headers={"Content-Type": PNG})
        _assert_json_error(response, 500, "internal server error")
        assert client.get("/readyz").status_code == 200


def test_create_app_from_a_path(valid_model: Path, tmp_path: Path) -> None:
    with TestClient(create_app(str(valid_model), ServeConfig(threads=1))) as client:
        assert client.get("/v1/metadata").json()["model_version"] == "tiny-1.0"
    with pytest.raises(ModelError, match="model file not found"):
        create_app(tmp_path / "absent.onnx")


def test_services_start_after_the_batcher_and_stop_before_it_drains(
    predictor: Predictor,
) -> None:
    events: list[tuple[str, bool]] = []

    @contextlib.asynccontextmanager
    async def service(app):  # type: ignore[no-untyped-def]
        events.append(("start", app.state.batcher.running))
        yield
        events.append(("stop", app.state.batcher.running))

    with TestClient(create_app(predictor, services=[service])) as client:
        assert client.get("/readyz").status_code == 200
        assert events == [("start", True)]
    assert events == [("start", True), ("stop", True)]


@pytest.mark.parametrize(("side", "status"), [(32, 200), (40, 400), (200, 400)])
def test_small_and_large_single_images_keep_the_pixel_budget(
    predictor: Predictor, side: int, status: int
) -> None:
    # 32x32 and 40x40 are small enough to decode on the loop, 200x200 goes to the pool:
    # whichever path, --max-pixels 1024 holds.
    body = encode(Image.fromarray(gradient(side, side)))
    with TestClient(create_app(predictor, ServeConfig(max_pixels=1024))) as client:
        response = client.post("/v1/predict", content=body, headers={"Content-Type": PNG})
    assert response.status_code == status, response.text
    if status == 400:
        assert f"{side}x{side} = {side * side} pixels is over" in response.json()["error"]
