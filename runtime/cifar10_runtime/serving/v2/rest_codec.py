"""The Open Inference Protocol's wire format: the body split at
`Inference-Header-Content-Length`, optional gzip/deflate, JSON tensor data, FP32 in [0,1]
to uint8. Every problem is an HTTPException (400, 413 or 415) whose message names the fix.
Nothing here touches the request or the event loop: v2.py runs big bodies in a thread.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

try:  # the serve extra brings orjson: 5x json.loads on tensor `data`, nesting capped at 1024
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - the standard library parses the same documents
    from json import loads as _loads

import numpy as np
from starlette.exceptions import HTTPException

from cifar10_runtime.errors import first_line
from cifar10_runtime.limits import INLINE_JSON_BYTES
from cifar10_runtime.serving.http.bodies import BodyTooLarge
from cifar10_runtime.serving.v2 import big_json as v2_json
from cifar10_runtime.untrusted import parse_decimal

HEADER_LENGTH = "Inference-Header-Content-Length"
NESTED_TOO_DEEPLY = "the request's JSON is nested too deeply to parse; tensor data is a flat list."


def bad_request(message: str) -> HTTPException:
    return HTTPException(400, message)


def short(value: Any) -> str:
    """A client value for an error message: at most 80 characters, one line."""
    if isinstance(value, str):
        text = repr(value[:80])
    else:
        try:
            text = json.dumps(value)
        except (ValueError, TypeError, RecursionError):
            text = type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def content_encoding(raw: str | None) -> str:
    return (raw or "identity").strip().lower()


def decompress(encoding: str, body: bytes, limit: int) -> bytes:
    """`body` inflated (`encoding` as content_encoding gives it), at most `limit` bytes."""
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise HTTPException(
            415, f"unsupported Content-Encoding {encoding!r}: use gzip, deflate or none."
        )
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise bad_request(f"the {encoding} body cannot be decompressed ({exc}).") from None
    if not inflater.eof and not inflater.unconsumed_tail and len(data) <= limit:
        raise bad_request(f"the {encoding} body is cut short: send the whole stream.")
    if len(data) > limit:
        raise BodyTooLarge(limit, f"a {encoding} body that inflates past the limit")
    return data


def header_size(raw_length: str | None, body_size: int) -> int:
    """The JSON header's size: the whole body, or `Inference-Header-Content-Length`."""
    if raw_length is None:
        return body_size
    length = parse_decimal(raw_length)
    if length is None or length > body_size:
        raise bad_request(
            f"{HEADER_LENGTH} must be the JSON header's size in bytes (ASCII digits), at "
            f"most the body's {body_size}. Received: {short(raw_length)}."
        )
    return length


def split_body(raw_length: str | None, body: bytes) -> tuple[dict[str, Any], memoryview]:
    length = header_size(raw_length, len(body))
    head, binary = (
        (body, memoryview(b""))
        if length == len(body)
        else (body[:length], memoryview(body)[length:])
    )
    try:
        # Big bodies (parsed in a worker thread) go in short steps: see v2_json.
        header = _loads(head) if len(head) <= INLINE_JSON_BYTES else v2_json.loads(head)
    except RecursionError:
        raise bad_request(NESTED_TOO_DEEPLY) from None
    except (ValueError, UnicodeDecodeError) as exc:
        if "depth limit" in str(exc):  # orjson's own nesting cap (1024 levels)
            raise bad_request(NESTED_TOO_DEEPLY) from None
        raise bad_request(f"the request is not valid JSON ({first_line(exc, 120)}).") from None
    if not isinstance(header, dict):
        raise bad_request("the request must be a JSON object with 'inputs'.")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad_request(f"'id' must be a string. Received: {short(request_id)}.")
    return header, binary


def from_json_data(
    data: Any, name: str, shape: list[int], datatype: str, dtype: np.dtype, count: int
) -> np.ndarray:
    if not isinstance(data, list | np.ndarray):  # big arrays come parsed (v2_json)
        raise bad_request(
            f"input {name!r}: needs 'data' (a flat row-major list) or "
            "parameters.binary_data_size with the bytes after the JSON header."
        )
    try:
        values = np.asarray(data)
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise bad_request(
            f"input {name!r}: 'data' is ragged or nested too deeply; send a flat row-major list."
        ) from None
    allowed = "iub" if datatype == "UINT8" else "iuf"
    if values.size and values.dtype.kind not in allowed:
        kind = "integers 0..255" if datatype == "UINT8" else "numbers"
        raise bad_request(f"input {name!r}: {datatype} 'data' must hold {kind} only.")
    if values.size != count:
        raise bad_request(
            f"input {name!r}: 'data' has {values.size} values, but shape {shape} needs {count}."
        )
    if datatype == "UINT8" and values.size and (values.min() < 0 or values.max() > 255):
        raise bad_request(f"input {name!r}: UINT8 values must be 0..255.")
    return values.astype(dtype).reshape(shape)


def unit_floats_to_uint8(x: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise bad_request(
            f"input {name!r}: FP32 pixels must be in [0, 1] (they become round(x * 255)); "
            "or send UINT8 0..255."
        )
    return np.rint(x * np.float32(255)).astype(np.uint8)
