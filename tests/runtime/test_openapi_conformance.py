"""GET /openapi.json against the server itself, with Schemathesis: requests generated from
the document (valid ones and, for the checks that ask, invalid ones) go to the in-process
ASGI app, and every answer must be documented: a documented status, content type, response
schema and headers, and never a 5xx. Derandomized with a bounded number of examples per
operation, so a run is repeatable and offline; a second test checks the document is no
looser than the server on the examples where JSON Schema can say everything.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the dev extra brings schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cifar10_runtime import Predictor  # noqa: E402
from cifar10_runtime.serving.app import create_app  # noqa: E402
from cifar10_runtime.serving.config import ServeConfig  # noqa: E402
from cifar10_runtime.serving.openapi import PATHS  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # see test_serve_app.py
    from starlette.testclient import TestClient

JSON = "application/json"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
SETTINGS = settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def client(predictor: Predictor) -> Iterator[TestClient]:
    app = create_app(predictor, ServeConfig(max_body_mb=1))
    with TestClient(app, raise_server_exceptions=False) as c:  # the lifespan: batcher runs
        yield c


@pytest.fixture(scope="module")
def schema(client: TestClient) -> Any:
    document = client.get("/openapi.json").json()
    return schemathesis.openapi.from_dict(document)


def _send(client: TestClient, case: Any) -> Any:
    """The case through TestClient (with the app's lifespan, so the batcher runs)."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    allowed = ("method", "url", "params", "headers", "cookies", "json", "content")
    request = {k: v for k, v in kwargs.items() if k in allowed and v is not None}
    if isinstance(kwargs.get("data"), bytes | str):  # a body built by hand (multipart)
        request["content"] = kwargs["data"]
    if kwargs.get("files"):  # invalid cases put any JSON value where a file's content goes
        request["files"] = [(name, _file_part(*part)) for name, part in kwargs["files"]]
    response = client.request(**request)
    response.request.read()  # a multipart body is a stream: Schemathesis' reports quote it
    return response


def _file_part(filename: Any, content: Any, *rest: Any) -> tuple[Any, ...]:
    if not isinstance(content, bytes | str):
        content = json.dumps(content)
    return (filename, content, *rest)


OPERATIONS = [
    pytest.param(path, method, mode, id=f"{method} {path} {mode.value}")
    for path, ops in PATHS.items()
    for method, op in ops.items()
    for mode in GenerationMode
    # Invalid requests need something to be invalid: a body or a query parameter.
    if mode is GenerationMode.POSITIVE or "requestBody" in op
]
# Operations without a request body or a free path parameter: there JSON Schema says all
# the server takes, so every schema-valid request must be a 2xx too.
EXACT = {"/v2", "/v2/health/live", "/v1/metadata", "/healthz", "/openapi.json", "/metrics"}


def _fuzz(
    client: TestClient, schema: Any, path: str, method: str, mode: Any, checks: list[Any]
) -> None:
    strategy = schema[path][method.upper()].as_strategy(generation_mode=mode)

    @SETTINGS
    @given(case=strategy)
    def run(case: Any) -> None:
        case.validate_response(_send(client, case), checks=checks)

    run()


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS)
def test_every_answer_is_documented(
    client: TestClient, schema: Any, path: str, method: str, mode: Any
) -> None:
    """Generated requests, valid ones and (negative) invalid ones: status, content type,
    schema and headers documented; no 5xx."""
    exact = path in EXACT and mode is GenerationMode.POSITIVE
    _fuzz(
        client, schema, path, method, mode, [*CHECKS, positive_data_acceptance] if exact else CHECKS
    )
    assert client.get("/v2/health/ready").status_code == 200


def _infer_case(**tensor: Any) -> dict[str, Any]:
    base = {"name": "image", "datatype": "UINT8", "shape": [1, 32, 32, 3], "data": [0] * 3072}
    return {"inputs": [{**base, **tensor}]}


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        (_infer_case(), True),
        (_infer_case(datatype="FP32", data=[0.5] * 3072), True),
        (_infer_case(datatype="FP32", data=[]), False),
        (_infer_case(data=[True] * 3072), False),
        (_infer_case(data=[256] * 3072), False),
        (_infer_case(datatype="FP32", data=[1.5] * 3072), False),
        (_infer_case(name="x"), False),
        (_infer_case(shape=[1, 3, 32, 32]), False),
        (_infer_case(shape=[0, 32, 32, 3]), False),
        (_infer_case(datatype=["UINT8"]), False),
        ({**_infer_case(), "outputs": [{"name": "logits"}]}, False),
        ({**_infer_case(), "outputs": [{"parameters": {"binary_data": True}}]}, False),
    ],
)
def test_the_infer_schema_refuses_what_the_server_refuses(
    client: TestClient, schema: Any, body: dict[str, Any], valid: bool
) -> None:
    """The request schema against the server, both ways, on one-image requests."""
    import jsonschema_rs

    document = client.get("/openapi.json").json()
    request = document["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]
    root = {**request["content"]["application/json"]["schema"], **document}
    validator = jsonschema_rs.Draft202012Validator(root)
    assert validator.is_valid(body) == valid, validator.iter_errors(body)
    response = client.post("/v2/models/cifar10/infer", content=json.dumps(body).encode())
    assert response.status_code == (200 if valid else 400), response.text


@pytest.mark.parametrize("binary_output", [False, True], ids=["json-out", "binary-out"])
@pytest.mark.parametrize(
    "path", ["/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"]
)
def test_real_answers_conform(
    client: TestClient, schema: Any, path: str, binary_output: bool
) -> None:
    """Accepted requests (rare among generated ones): their 200 answers match the document."""
    body = {**_infer_case(), "parameters": {"binary_data_output": binary_output}, "id": "r"}
    params = (
        {"name": "cifar10", "version": "tiny-1.0"} if "version" in path else {"name": "cifar10"}
    )
    case = schema[path]["POST"].Case(path_parameters=params, body=body, media_type=JSON)
    response = _send(client, case)
    assert response.status_code == 200, response.text
    expected = "application/octet-stream" if binary_output else JSON
    assert response.headers["content-type"] == expected
    case.validate_response(response, checks=[*CHECKS, positive_data_acceptance])
