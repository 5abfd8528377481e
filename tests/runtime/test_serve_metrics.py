"""GET /metrics (parsed with prometheus_client's own parser) and GET /openapi.json."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from serve_samples import sample_pngs

from cifar10_runtime import Predictor
from cifar10_runtime.serving.app import create_app
from cifar10_runtime.serving.metrics import Metrics

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # see test_serve_app.py
    from starlette.testclient import TestClient

PNG = {"Content-Type": "image/png"}


@pytest.fixture()
def client(predictor: Predictor) -> Iterator[TestClient]:
    with TestClient(create_app(predictor)) as c:
        yield c


def _samples(client: TestClient) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: dict, metric: str, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


MODEL = {"model": "cifar10", "version": "tiny-1.0"}


def test_counts_move_with_requests(client: TestClient) -> None:
    before = _samples(client)
    info = {"name": "cifar10", "version": "tiny-1.0"}
    # What runs the model is a label of the info metric too.
    assert _value(before, "cifar_model_info", **info, engine="onnxruntime/fp32", precision="fp32")
    png = sample_pngs(1)[0]
    assert client.post("/v1/predict", content=png, headers=PNG).status_code == 200
    assert client.post("/v1/predict", content=b"junk", headers=PNG).status_code == 400
    x = np.zeros((3, 32, 32, 3), np.uint8)
    tensor = {"name": "image", "shape": [3, 32, 32, 3], "datatype": "UINT8"}
    v2 = {"inputs": [{**tensor, "data": x.ravel().tolist()}]}
    assert client.post("/v2/models/cifar10/infer", json=v2).status_code == 200
    assert client.get("/nowhere/123").status_code == 404
    after = _samples(client)

    def moved(metric: str, **labels: str) -> float:
        return _value(after, metric, **labels) - _value(before, metric, **labels)

    assert (
        moved("cifar_http_requests_total", endpoint="/v1/predict", method="POST", code="200") == 1
    )
    assert (
        moved("cifar_http_requests_total", endpoint="/v1/predict", method="POST", code="400") == 1
    )
    assert moved("cifar_http_requests_total", endpoint="(unmatched)", method="GET", code="404") == 1
    assert moved("cifar_inference_request_success_total", **MODEL, api="v1") == 1
    assert moved("cifar_inference_request_success_total", **MODEL, api="v2") == 1
    assert moved("cifar_inference_request_failure_total", **MODEL, api="v1", code="400") == 1
    assert moved("cifar_inference_count_total", **MODEL) == 4
    assert moved("cifar_inference_exec_count_total", **MODEL) == 2
    assert moved("cifar_inference_batch_size_count", **MODEL) == 2
    assert moved("cifar_inference_batch_size_sum", **MODEL) == 4
    assert moved("cifar_inference_queue_duration_seconds_count", **MODEL) == 2
    assert moved("cifar_inference_compute_duration_seconds_count", **MODEL) == 2
    assert moved("cifar_http_request_duration_seconds_count", endpoint="/v1/predict") == 2
    assert _value(after, "cifar_inference_queue_depth", **MODEL) == 0


def test_each_app_has_its_own_registry(predictor: Predictor) -> None:
    a, b = create_app(predictor), create_app(predictor)
    assert a.state.metrics.registry is not b.state.metrics.registry


def test_openapi_describes_every_api_route(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    api_prefixes = ("/v1", "/v2", "/healthz", "/readyz", "/metrics", "/openapi.json")
    served = {
        route.path: set(route.methods or ()) - {"HEAD"}
        for route in client.app.routes  # type: ignore[attr-defined]
        if route.path.startswith(api_prefixes)
    }
    described = {path: {m.upper() for m in ops} for path, ops in document["paths"].items()}
    assert described == served
    for path, ops in document["paths"].items():
        for op in ops.values():
            assert "200" in op["responses"], path
    json.dumps(document)  # plain JSON all the way down


def test_grpc_collectors_join_the_registry_on_first_use_only() -> None:
    metrics = Metrics("cifar10", "1")
    assert b"cifar_grpc" not in generate_latest(metrics.registry)  # no gRPC server: no families
    assert metrics.grpc() is metrics.grpc()  # registered once
    metrics.grpc().record("ModelInfer", "OK", 0.001)
    text = generate_latest(metrics.registry).decode()
    assert 'cifar_grpc_requests_total{code="OK",method="ModelInfer"} 1.0' in text
    assert 'cifar_grpc_request_duration_seconds_count{method="ModelInfer"} 1.0' in text
