"""The Open Inference Protocol (KServe v2 REST + Triton binary tensors).

In-process (TestClient): the wire format byte by byte and every bad body. Against a real
`cifar-serve` process on 127.0.0.1: the real `tritonclient.http.InferenceServerClient`,
whose answers must equal a bare `InferenceSession.run`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from serve_samples import sample_images

from cifar10_runtime import Predictor
from cifar10_runtime.serving.app import create_app
from cifar10_runtime.serving.config import ServeConfig

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # see test_serve_app.py
    from starlette.testclient import TestClient

INFER = "/v2/models/cifar10/infer"
HEADER = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return sample_images(64)


@pytest.fixture()
def client(predictor: Predictor) -> Iterator[TestClient]:
    with TestClient(create_app(predictor, ServeConfig(max_body_mb=1))) as c:
        yield c


def _bare_run(model: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def _tensor(x: np.ndarray, datatype: str = "UINT8", **extra: object) -> dict:
    return {"name": "image", "shape": list(x.shape), "datatype": datatype, **extra}


def _binary_request(x: np.ndarray, datatype: str = "UINT8", **request: object) -> tuple:
    raw = x.tobytes()
    header = {
        "inputs": [_tensor(x, datatype, parameters={"binary_data_size": len(raw)})],
        **request,
    }
    head = json.dumps(header).encode()
    return head + raw, {HEADER: str(len(head))}


def _error(response, status: int, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    for fragment in fragments:
        assert fragment in body["error"], body["error"]


def test_json_and_binary_infer_match_a_bare_session(
    client: TestClient, valid_model: Path, images: np.ndarray
) -> None:
    expected = _bare_run(valid_model, images)
    flat = {"id": "req-7", "inputs": [_tensor(images, data=images.ravel().tolist())]}
    response = client.post(INFER, json=flat)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-7" and body["model_name"] == "cifar10"
    assert body["model_version"] == "tiny-1.0"
    (out,) = body["outputs"]
    assert out["name"] == "probabilities" and out["datatype"] == "FP32" and out["shape"] == [64, 10]
    assert np.abs(np.asarray(out["data"], np.float32).reshape(64, 10) - expected).max() <= 1e-6

    content, headers = _binary_request(images, parameters={"binary_data_output": True})
    response = client.post(INFER, content=content, headers=headers)
    assert response.status_code == 200, response.text
    length = int(response.headers[HEADER])
    head = json.loads(response.content[:length])
    (out,) = head["outputs"]
    assert out["parameters"] == {"binary_data_size": 64 * 10 * 4}
    got = np.frombuffer(response.content[length:], "<f4").reshape(64, 10)
    assert np.array_equal(got, expected)


def test_requested_outputs_choose_json_or_binary(client: TestClient, images: np.ndarray) -> None:
    content, headers = _binary_request(
        images[:2], outputs=[{"name": "probabilities", "parameters": {"binary_data": False}}]
    )
    response = client.post(INFER, content=content, headers=headers)
    assert response.status_code == 200 and HEADER not in response.headers
    assert len(response.json()["outputs"][0]["data"]) == 20
    unknown = {"inputs": [_tensor(images[:1], data=[0] * 3072)], "outputs": [{"name": "logits"}]}
    _error(client.post(INFER, json=unknown), 400, "unknown output 'logits'")


def test_fp32_unit_input_is_scaled_the_contract_way(
    client: TestClient, valid_model: Path, images: np.ndarray
) -> None:
    x = images[:4]
    unit = x.astype(np.float32) / 255
    content, headers = _binary_request(unit, "FP32", parameters={"binary_data_output": True})
    response = client.post(INFER, content=content, headers=headers)
    assert response.status_code == 200, response.text
    length = int(response.headers[HEADER])
    got = np.frombuffer(response.content[length:], "<f4").reshape(4, 10)
    assert np.array_equal(got, _bare_run(valid_model, x))
    outside = client.post(INFER, json={"inputs": [_tensor(x[:1], "FP32", data=[2.0] * 3072)]})
    _error(outside, 400, "[0, 1]")


def test_health_and_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    server = client.get("/v2").json()
    assert "binary_tensor_data" in server["extensions"] and server["name"] and server["version"]
    meta = client.get("/v2/models/cifar10").json()
    assert meta == client.get("/v2/models/cifar10/versions/tiny-1.0").json()
    assert meta == {
        "name": "cifar10",
        "versions": ["tiny-1.0"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, 32, 32, 3]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
        "parameters": {"engine": "onnxruntime/fp32", "precision": "fp32"},
    }
    assert client.get("/v2/models/cifar10/ready").json() == {"name": "cifar10", "ready": True}
    _error(client.get("/v2/models/resnet"), 404, "unknown model 'resnet'", "cifar10")
    _error(client.get("/v2/models/cifar10/versions/9/ready"), 404, "unknown version '9'")


def _bad_bodies(x: np.ndarray) -> list[tuple[str, bytes, dict, int, str]]:
    raw = x.tobytes()
    ok_head = json.dumps(
        {"inputs": [_tensor(x, parameters={"binary_data_size": len(raw)})]}
    ).encode()
    short = json.dumps({"inputs": [_tensor(x, parameters={"binary_data_size": 10})]}).encode()

    def js(obj: object) -> bytes:
        return json.dumps(obj).encode()

    one = x[:1]
    return [
        ("malformed JSON", b"{not json", {}, 400, "not valid JSON"),
        ("not an object", b"[1, 2]", {}, 400, "JSON object"),
        ("no inputs", js({"outputs": []}), {}, 400, "'inputs'"),
        ("wrong name", js({"inputs": [{**_tensor(one), "name": "x"}]}), {}, 400, "unknown input"),
        ("wrong datatype", js({"inputs": [_tensor(one, "INT64")]}), {}, 400, "datatype"),
        (
            "wrong shape",
            js({"inputs": [{**_tensor(one), "shape": [1, 3, 32, 32]}]}),
            {},
            400,
            "shape must be [N, 32, 32, 3]",
        ),
        (
            "zero images",
            js({"inputs": [{**_tensor(one), "shape": [0, 32, 32, 3]}]}),
            {},
            400,
            "N >= 1",
        ),
        ("data too short", js({"inputs": [_tensor(one, data=[1, 2, 3])]}), {}, 400, "has 3 values"),
        (
            "data not integers",
            js({"inputs": [_tensor(one, data=[0.5] * 3072)]}),
            {},
            400,
            "integers",
        ),
        ("data out of range", js({"inputs": [_tensor(one, data=[300] * 3072)]}), {}, 400, "0..255"),
        ("no data", js({"inputs": [_tensor(one)]}), {}, 400, "needs 'data'"),
        (
            "binary size vs shape",
            short + raw,
            {HEADER: str(len(short))},
            400,
            "binary_data_size is 10 bytes",
        ),
        ("binary bytes missing", ok_head + raw[:-5], {HEADER: str(len(ok_head))}, 400, "add up to"),
        (
            "binary bytes extra",
            ok_head + raw + b"xx",
            {HEADER: str(len(ok_head))},
            400,
            "add up to",
        ),
        ("header length too big", ok_head + raw, {HEADER: "99999999"}, 400, HEADER),
        ("header length not a number", ok_head + raw, {HEADER: "ten"}, 400, HEADER),
        (
            "bytes but no binary input",
            js({"inputs": [_tensor(one, data=[0] * 3072)]}) + b"\0",
            {HEADER: str(len(js({"inputs": [_tensor(one, data=[0] * 3072)]})))},
            400,
            "no input has",
        ),
        (
            "id not a string",
            js({"id": 5, "inputs": [_tensor(one, data=[0] * 3072)]}),
            {},
            400,
            "'id' must be a string",
        ),
        (
            "classification",
            js(
                {
                    "inputs": [_tensor(one, data=[0] * 3072)],
                    "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}],
                }
            ),
            {},
            400,
            "classification",
        ),
    ]


@pytest.mark.parametrize("case", range(19))
def test_every_bad_body_is_a_json_error_and_the_server_stays_ready(
    client: TestClient, images: np.ndarray, case: int
) -> None:
    cases = _bad_bodies(images[:2])
    assert len(cases) == 19
    _, content, headers, status, fragment = cases[case]
    _error(client.post(INFER, content=content, headers=headers), status, fragment)
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/models/cifar10/ready").status_code == 200


def test_unknown_model_and_oversize_bodies(client: TestClient, images: np.ndarray) -> None:
    content, headers = _binary_request(images[:1])
    _error(client.post("/v2/models/other/infer", content=content, headers=headers), 404, "other")
    big = b"\0" * (2 * 2**20)
    response = client.post(INFER, content=big, headers={"Content-Type": "application/json"})
    _error(response, 413, "limit of 1048576 bytes")
    assert response.headers["connection"] == "close"
    assert client.get("/v2/health/ready").status_code == 200


def test_v1_and_v2_requests_share_the_batcher(client: TestClient, images: np.ndarray) -> None:
    batcher = client.app.state.batcher  # type: ignore[attr-defined]
    before = batcher.images
    content, headers = _binary_request(images[:3])
    assert client.post(INFER, content=content, headers=headers).status_code == 200
    assert batcher.images == before + 3
