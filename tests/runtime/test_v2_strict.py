"""Open Inference Protocol REST bodies: every field's JSON type checked (a 400 with one line,
never a 500), on both body-size paths and for JSON and binary requests; lone surrogates
refused anywhere, whatever the size and the answer's form (test_v2_grammar.py: one grammar).
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from v2_requests import HEADER, check_answer, infer_request, post

from cifar10_runtime import Predictor
from cifar10_runtime.limits import INLINE_JSON_BYTES
from cifar10_runtime.serving.app import create_app
from cifar10_runtime.serving.config import ServeConfig

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # see test_serve_app.py
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def client(predictor: Predictor) -> Iterator[TestClient]:
    app = create_app(predictor, ServeConfig(max_body_mb=1))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


# --- every field's JSON type -------------------------------------------------------------
WRONG: list[Any] = [{}, [], ["UINT8"], [1], "x", 7, -1, 1.5, True, False, None]
# Field path -> the values among WRONG that are right for it (all others are a 400).
FIELDS: dict[tuple[Any, ...], list[Any]] = {
    ("id",): ["x", None],
    ("parameters",): [{}, None],
    ("parameters", "binary_data_output"): [True, False],
    ("inputs",): [],
    ("inputs", 0): [],
    ("inputs", 0, "name"): [],
    ("inputs", 0, "datatype"): [],
    ("inputs", 0, "shape"): [],
    ("inputs", 0, "shape", 0): [],
    ("inputs", 0, "shape", 3): [],
    ("inputs", 0, "parameters"): [{}, None],  # binary requests: see _right
    ("inputs", 0, "parameters", "binary_data_size"): [],
    ("inputs", 0, "data"): [],
    ("outputs",): [[], None],
    ("outputs", 0): [],
    ("outputs", 0, "name"): [],
    ("outputs", 0, "parameters"): [{}, None],
    ("outputs", 0, "parameters", "binary_data"): [True, False],
}


def _right(path: tuple[Any, ...], value: Any, binary: bool) -> bool:
    if path == ("inputs", 0, "parameters") and binary:
        return False  # the bytes after the JSON then belong to no input
    return any(value == ok and type(value) is type(ok) for ok in FIELDS[path])


def _set(request: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(request)
    where: Any = changed
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    return changed


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("padded", [False, True], ids=["small", "over-16KB"])
def test_every_field_of_the_wrong_json_type_is_a_400(
    client: TestClient, binary: bool, padded: bool
) -> None:
    request = infer_request(binary)
    cases = 0
    for path in FIELDS:
        if path[-1] == "data" and binary or path[-1] == "binary_data_size" and not binary:
            continue
        for value in WRONG:
            head = json.dumps(_set(request, path, value)).encode()
            if padded:  # the JSON header over the limit: big_json parses it
                head += b" " * INLINE_JSON_BYTES
            assert (len(head) > INLINE_JSON_BYTES) == padded
            status = 200 if _right(path, value, binary) else 400
            response = post(client, head, binary)
            try:
                check_answer(response, status)
            except AssertionError as exc:
                raise AssertionError(f"{path} = {value!r}: {exc}") from None
            cases += 1
    assert cases > 150
    assert client.get("/v2/health/ready").status_code == 200


def test_the_original_unhashable_datatypes_name_what_to_send(client: TestClient) -> None:
    for value in ({}, [], ["UINT8"]):
        head = json.dumps(_set(infer_request(False), ("inputs", 0, "datatype"), value)).encode()
        check_answer(post(client, head, False), 400, "datatype must be UINT8")


def test_long_wrong_values_are_quoted_bounded(client: TestClient) -> None:
    for path in (("inputs", 0, "name"), ("inputs", 0, "datatype"), ("outputs", 0, "name")):
        for value in ("n" * 5000, ["n" * 5000], {"k": "v" * 5000}):
            head = json.dumps(_set(infer_request(False), path, value)).encode()
            response = post(client, head, False)
            check_answer(response, 400)
            assert len(response.json()["error"]) < 250


# --- lone surrogates ----------------------------------------------------------------------
LONE = ["\\ud800", "\\udc00", "a\\udbff", "\\udfffz", "\\udc00\\ud800", "\\ud800\\ud800"]


def _with_string(binary: bool, where: str, escaped: str) -> bytes:
    """The request with `escaped` (JSON escape text) as a string at `where`."""
    marker = "@@MARK@@"
    request = infer_request(binary)
    if where == "key":
        request["parameters"][marker] = 1
    elif where == "output name":
        request["outputs"][0]["name"] = marker
    elif where == "input name":
        request["inputs"][0]["name"] = marker
    elif where == "parameter":
        request["inputs"][0]["parameters"]["note"] = marker
    else:
        request["id"] = marker
    return json.dumps(request).encode().replace(marker.encode(), escaped.encode())


@pytest.mark.parametrize("where", ["id", "key", "parameter", "input name", "output name"])
@pytest.mark.parametrize("binary_output", [False, True], ids=["json-out", "binary-out"])
def test_a_lone_surrogate_anywhere_is_a_400_on_both_paths(
    client: TestClient, where: str, binary_output: bool
) -> None:
    for binary in (False, True):
        for escaped in LONE:
            head = _with_string(binary, where, escaped)
            head = head.replace(
                b'"binary_data_output": false',
                b'"binary_data_output": %s' % (b"true" if binary_output else b"false"),
            ).replace(
                b'"binary_data": false',
                b'"binary_data": %s' % (b"true" if binary_output else b"false"),
            )
            for pad in (b"", b" " * INLINE_JSON_BYTES):
                check_answer(post(client, head + pad, binary), 400, "lone surrogate")


@pytest.mark.parametrize("binary_output", [False, True], ids=["json-out", "binary-out"])
def test_a_surrogate_pair_is_text_and_echoes_back(client: TestClient, binary_output: bool) -> None:
    request = infer_request(False)
    request["outputs"][0]["parameters"]["binary_data"] = binary_output
    for pad in (b"", b" " * INLINE_JSON_BYTES):
        head = json.dumps(request).encode().replace(b'"r1"', b'"\\ud83d\\ude00 \\u00e9"')
        response = post(client, head + pad, False)
        check_answer(response, 200)
        length = int(response.headers.get(HEADER, len(response.content)))
        assert json.loads(response.content[:length])["id"] == "\U0001f600 \u00e9"


def test_surrogate_bytes_and_other_encodings_are_a_400(client: TestClient) -> None:
    text = json.dumps(infer_request(False))
    bodies = [
        text.replace('"r1"', '"\udcff"').encode("utf-8", "surrogatepass"),  # CESU-style bytes
        text.encode("utf-16"),
        text.encode("utf-16-le"),
        text.encode("utf-32"),
        b"\xef\xbb\xbf" + text.encode(),  # a UTF-8 byte order mark
        text.replace('"r1"', '"\xe9"').encode("latin-1"),
    ]
    pad = b" " * INLINE_JSON_BYTES
    for body in bodies:
        check_answer(post(client, body, False), 400, "not valid JSON")
        for head in (body + pad, body + pad.decode().encode("utf-16-le")):
            check_answer(post(client, head, False), 400)
