"""cifar10_runtime.serving.v2.big_json: big JSON bodies parsed in short steps give
json.loads's value."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from starlette.exceptions import HTTPException

from cifar10_runtime.serving.v2 import big_json as v2_json
from cifar10_runtime.serving.v2 import strict_json

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)


def _same(got: Any, want: Any) -> bool:
    """Equal as values, numpy arrays standing for the lists they were parsed from."""
    if isinstance(got, np.ndarray):
        return np.asarray(want).shape == got.shape and (np.asarray(want) == got).all()
    if isinstance(got, dict):
        return (
            isinstance(want, dict)
            and got.keys() == want.keys()
            and all(_same(got[k], want[k]) for k in got)
        )
    if isinstance(got, list):
        return isinstance(want, list) and len(got) == len(want) and all(map(_same, got, want))
    return type(got) is type(want) and got == want


def _request(data: Any, **extra: Any) -> dict[str, Any]:
    tensor = {"name": "image", "shape": [40, 32, 32, 3], "datatype": "UINT8", "data": data}
    return {"id": "r1", "inputs": [tensor], **extra}


CASES = {
    "flat": _request(IMAGES.ravel().tolist()),
    "flat, pretty-printed": _request(IMAGES.ravel().tolist(), parameters={"a": [1, 2]}),
    "nested [N,32,32,3]": _request(IMAGES.tolist()),
    "rows [N,3072]": _request(IMAGES.reshape(40, -1).tolist()),
    "floats": _request((IMAGES.ravel() / 255).tolist()),
    "mixed ints and floats": _request([1.5, *IMAGES.ravel().tolist()]),
    "two big arrays": _request(IMAGES.ravel().tolist(), outputs=[{"name": "p", "x": [0] * 9000}]),
    "big ints": _request([2**70, *IMAGES.ravel().tolist()]),
    "numbers beside arrays": {"d": [[0] * 9000, 5, [1] * 9000]},
    "ragged nested": {"d": [[1, 2, 3] * 3000, [1, 2] * 3000]},
    "array text inside a small string": {"id": "[1,2,3]", "d": [7] * 9000},
    # Deeper than MAX_DEPTH: the innermost MAX_DEPTH levels are cut out, the rest parsed.
    "deep": {"d": json.loads("[" * 40 + "1," * 9000 + "1" + "]" * 40)},
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("indent", [None, 1])
def test_the_value_is_json_loads_value(name: str, indent: int | None) -> None:
    text = json.dumps(CASES[name], indent=indent).encode()
    assert len(text) > v2_json.PIECE
    assert _same(v2_json.loads(text), json.loads(text))


def test_every_c_call_parses_a_short_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = json.loads

    def spy(text: bytes) -> Any:
        sizes.append(len(text))
        return real(text)

    monkeypatch.setattr(v2_json.json, "loads", spy)
    for name in ("flat", "nested [N,32,32,3]", "rows [N,3072]", "floats"):
        sizes.clear()
        text = json.dumps(CASES[name]).encode()
        v2_json.loads(text)
        assert len(text) > 20 * v2_json.PIECE and len(sizes) > 20, name
        assert max(sizes) <= v2_json.PIECE + 64, (name, max(sizes))


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"a": ["x"] * 40_000}).encode(),  # big, and not numbers
        json.dumps({"id": json.dumps(list(range(20_000)))}).encode(),  # numbers in a string
        b"[" * 100_000 + b"]" * 100_000,  # nested past any tensor's depth
        b'{"d": ' + b"[[" * 30_000 + b"1" + b"]]" * 30_000 + b"}",
    ],
)
def test_big_json_that_is_not_tensor_data_is_a_400(text: bytes) -> None:
    with pytest.raises(HTTPException) as caught:
        v2_json.loads(text)
    assert caught.value.status_code == 400 and "bytes outside tensor data" in caught.value.detail


@pytest.mark.parametrize(
    "text",
    [
        b'{"d": [' + b"1," * 40_000 + b",2]}",  # a hole
        b'{"d": [' + b"1 " * 40_000 + b"]}",  # no commas
        b'{"d": [' + b"1," * 40_000 + b"2,]}",  # a trailing comma
        b'{"d": [' + b"1," * 40_000 + b"2]",  # the object never closes
        b'{"d": [[' + b"1," * 40_000 + b"2] [3]]}",  # elements without a comma
    ],
)
def test_invalid_json_stays_invalid(text: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        v2_json.loads(text)


NESTED = json.dumps(IMAGES.tolist(), separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "text",
    [
        b'{"d": [\x0b' + NESTED[1:] + b"}",  # \v before the first element of a cut-out array
        b'{"d": ' + NESTED[:-1] + b"\x0c]}",  # \f after the last
        b'{"d": ' + NESTED.replace(b"]],[[", b"]],\x0b[[", 1) + b"}",  # \v between elements
        b'{"d": [' + b"1,\x0c" * 9000 + b"2]}",  # \f between the numbers of a flat array
        b'{"d": [' + b"1," * 9000 + b"NaN]}",
        b'{"d": [' + b"1," * 9000 + b'2], "e": Infinity}',
        b'{"id": "\\udc00", "d": [' + b"1," * 9000 + b"2]}",  # a lone surrogate
        b'{"\\ud800x": 1, "d": [' + b"1," * 9000 + b"2]}",  # ... in a key
        json.dumps({"d": [1] * 9000}).encode("utf-16"),
        b"\xef\xbb\xbf" + json.dumps({"d": [1] * 9000}).encode(),  # a UTF-8 byte order mark
    ],
)
def test_what_strict_json_refuses_big_json_refuses(text: bytes) -> None:
    """One grammar: strict json.loads, UTF-8 only, no NaN/Infinity, no lone surrogate."""
    assert len(text) > v2_json.PIECE
    with pytest.raises(ValueError):
        strict_json.loads(text)
    with pytest.raises((ValueError, HTTPException)):
        v2_json.loads(text)


def test_a_surrogate_pair_is_one_character_on_both_parsers() -> None:
    text = b'{"id": "\\ud83d\\ude00", "d": [' + b"1," * 9000 + b"2]}"
    assert strict_json.loads(text)["id"] == v2_json.loads(text)["id"] == "\U0001f600"
