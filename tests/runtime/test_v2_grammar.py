"""One JSON grammar (strict_json's) on both Open Inference Protocol body-size paths: a body
under INLINE_JSON_BYTES (orjson on the event loop) and the same body padded past it with JSON
white space (big_json in a worker thread) get the same status and answer, for hand-picked and
generated bodies; true/false are no pixels; one nesting limit.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from v2_requests import PIXELS, check_answer, infer_request, post

from cifar10_runtime import Predictor
from cifar10_runtime.limits import INLINE_JSON_BYTES
from cifar10_runtime.serving.app import create_app
from cifar10_runtime.serving.config import ServeConfig
from cifar10_runtime.serving.v2 import big_json, strict_json

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # see test_serve_app.py
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def client(predictor: Predictor) -> Iterator[TestClient]:
    app = create_app(predictor, ServeConfig(max_body_mb=1))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


# --- one grammar on both body-size paths ---------------------------------------------------
def _paddings(body: bytes) -> list[bytes]:
    """`body` padded past INLINE_JSON_BYTES with JSON white space three ways: after it,
    before it, and after each comma (which makes the pixel array itself a big one)."""
    spread = body.replace(b",", b",      ")
    pads = [body + b" " * INLINE_JSON_BYTES, b"\n\t\r " * (INLINE_JSON_BYTES // 4) + body]
    return [*pads, spread] if len(spread) > INLINE_JSON_BYTES else pads


def _outcome(response: Any) -> tuple[int, Any]:
    if response.status_code != 200:
        return response.status_code, None
    return 200, response.json()["outputs"][0]["data"]


def _agree(client: TestClient, body: bytes) -> int:
    assert len(body) <= INLINE_JSON_BYTES
    small = _outcome(post(client, body, False))
    assert small[0] in (200, 400), small
    for padded in _paddings(body):
        big = _outcome(post(client, padded, False))
        assert big == small, (body[:200], padded[:40], small[0], big[0])
    return small[0]


def _text(data: str = "", **fields: str) -> bytes:
    base = json.loads(json.dumps(infer_request(False)))
    text = json.dumps(base)
    data_text = json.dumps(PIXELS)
    if data:
        text = text.replace(data_text, data)
    for old, new in fields.items():
        text = text.replace(old, new)
    return text.encode()


PIXEL_TEXT = json.dumps(PIXELS)[1:-1]
BODIES = {
    "valid": _text(),
    "true as a pixel": _text("[true, " + PIXEL_TEXT[3:] + "]"),
    "false as a pixel": _text("[" + PIXEL_TEXT[:-5] + ", false]"),
    "many true": _text(json.dumps([1] * 2800 + [True] * 272)),
    "null as a pixel": _text("[null, " + PIXEL_TEXT[3:] + "]"),
    "vertical tab between pixels": _text("[" + PIXEL_TEXT.replace(", 1,", ",\v1,") + "]"),
    "form feed between pixels": _text("[" + PIXEL_TEXT.replace(", 1,", "\f, 1,") + "]"),
    "vertical tab between fields": _text().replace(b', "inputs"', b',\v"inputs"'),
    "form feed at the end": _text() + b"\f",
    "NaN": _text("[NaN, " + PIXEL_TEXT[3:] + "]"),
    "Infinity in parameters": _text().replace(
        b'"parameters": {}', b'"parameters": {"a": -Infinity}'
    ),
    "1e400 in parameters": _text().replace(b'"parameters": {}', b'"parameters": {"a": 1e400}'),
    "big integer in parameters": _text().replace(
        b'"parameters": {}', b'"parameters": {"a": %d}' % 2**80
    ),
    "big integer as a pixel": _text(f"[{2**70}, " + PIXEL_TEXT[3:] + "]"),
    "leading zero": _text("[01, " + PIXEL_TEXT[3:] + "]"),
    "plus sign": _text("[+1, " + PIXEL_TEXT[3:] + "]"),
    "trailing comma": _text("[" + PIXEL_TEXT + ",]"),
    "control character in a string": _text(**{'"r1"': '"r\x011"'}),
    "single quotes": _text(**{'"r1"': "'r1'"}),
    "float pixel 1.0": _text("[1.0, " + PIXEL_TEXT[3:] + "]"),
    "string pixel": _text('["1", ' + PIXEL_TEXT[3:] + "]"),
    "nested list as a pixel": _text("[[1], " + PIXEL_TEXT[3:] + "]"),
    "true in the id": _text(**{'"r1"': '"true"'}),
    "two documents": _text() + b" {}",
    "nested pixels": _text(
        json.dumps(np.reshape(PIXELS, (1, 32, 32, 3)).tolist(), separators=(",", ":"))
    ),
    "vertical tab between nested rows": _text(
        json.dumps(np.reshape(PIXELS, (1, 32, 32, 3)).tolist(), separators=(",", ":"))
    ).replace(b"]],[[", b"]],\v[[", 1),
    "form feed before the first nested row": _text(
        json.dumps(np.reshape(PIXELS, (1, 32, 32, 3)).tolist(), separators=(",", ":"))
    ).replace(b"[[[[", b"[\f[[[", 1),
}


# json.loads reads 1e400 as inf and keeps big integers: valid JSON, where nothing reads them.
ACCEPTED = {
    "valid",
    "nested pixels",
    "1e400 in parameters",
    "big integer in parameters",
    "true in the id",  # the pixels are checked one by one: none is a bool
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_both_paths_agree_on_hand_picked_bodies(client: TestClient, name: str) -> None:
    status = _agree(client, BODIES[name])
    assert status == (200 if name in ACCEPTED else 400), status


TOKENS = [
    b"\x0b",
    b"\x0c",
    b"\x00",
    b"\x7f",
    b"\xff",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b" ",
    b"\t",
    b"\r\n",
    b"true",
    b"false",
    b"null",
    b"NaN",
    b"Infinity",
    b"-",
    b"01",
    b".5",
    b"+1",
    b"1e400",
    b"2",
    b"256",
    b"1.0",
    b",",
    b"[",
    b"]",
    b"{",
    b"}",
    b":",
    b'"',
    b"\\",
    b"\\ud800",
    b"\\u0000",
    b"e",
    b"]]",
    b"true,",
    b"\x0b[",
    b"]\x0c",
]
BASES = [_text(), BODIES["nested pixels"]]


@settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    base=st.sampled_from(BASES),
    edits=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.sampled_from(TOKENS), st.booleans()),
        min_size=1,
        max_size=3,
    ),
)
def test_both_paths_agree_on_generated_bodies(
    client: TestClient, base: bytes, edits: list[tuple[float, bytes, bool]]
) -> None:
    body = base
    for where, token, after_comma in edits:
        at = int(where * len(body))
        if after_comma:  # where a value or a gap starts: the edit is more often valid JSON
            at = body.find(b",", at) + 1
        body = body[:at] + token + body[at:]
    _agree(client, body)


@pytest.mark.parametrize("depth", [1, 59, 60, 61, 100, 900, 1020])
def test_one_nesting_limit_on_both_paths(client: TestClient, depth: int) -> None:
    """Nested MAX_NESTING levels at most (the root, `inputs`, the tensor, its `parameters`:
    four levels above the nested lists)."""
    body = _text().replace(
        b'"parameters": {}', b'"parameters": {"x": %s}' % (b"[" * depth + b"]" * depth)
    )
    status = _agree(client, body)
    assert status == (200 if 4 + depth <= strict_json.MAX_NESTING else 400)
    if status == 400:
        check_answer(post(client, body, False), 400, "nested too deeply")


@pytest.mark.parametrize("wrap", [0, 30, 61, 62])
def test_numpy_arrays_count_their_dimensions(wrap: int) -> None:
    text = b'{"d": ' + b"[" * wrap + json.dumps([[1] * 9000] * 2).encode() + b"]" * wrap + b"}"
    value = big_json.loads(text)
    inner = value["d"]
    for _ in range(wrap):
        inner = inner[0]
    assert isinstance(inner, np.ndarray) and inner.ndim == 2  # cut out and parsed as numpy
    levels = 1 + wrap + 2  # the object, the wrappers, the array's 2 dimensions
    if levels <= strict_json.MAX_NESTING:
        strict_json.check_nesting(text, value)
    else:
        with pytest.raises(strict_json.NestingError):
            strict_json.check_nesting(text, value)
