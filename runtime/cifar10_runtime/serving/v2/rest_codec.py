"""The Open Inference Protocol's REST wire format, between HTTP bodies and the dataplane.

The body split at `Inference-Header-Content-Length`, optional gzip/deflate, the JSON header,
Triton's binary tensor extension (`parameters.binary_data_size` per input, bytes after the
JSON; `binary_data` / `binary_data_output` for outputs), the infer answer rendered as JSON or
JSON plus bytes, and the dataplane's error kinds as HTTP statuses (HTTP_STATUS). Problems of
the wire format itself are an HTTPException (400, 413 or 415) whose message names the fix.
Nothing here touches the request or the event loop: rest.py runs big bodies in a thread.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:  # the serve extra brings orjson: 5x json.loads on tensor `data`, nesting capped at 1024
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - the standard library parses the same documents
    from json import loads as _loads

import numpy as np
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from cifar10_runtime.errors import first_line
from cifar10_runtime.limits import INLINE_JSON_BYTES
from cifar10_runtime.serving.http.bodies import CLOSE, BodyTooLarge
from cifar10_runtime.serving.v2 import big_json, strict_json
from cifar10_runtime.serving.v2.dataplane import V2Dataplane
from cifar10_runtime.serving.v2.errors import DataplaneError, ErrorKind, short
from cifar10_runtime.serving.v2.tensors import flat_numbers, parameters
from cifar10_runtime.untrusted import parse_decimal

HEADER_LENGTH = "Inference-Header-Content-Length"
NESTED_TOO_DEEPLY = (
    f"the request's JSON is nested too deeply to parse (at most {strict_json.MAX_NESTING} "
    "levels); tensor data is a flat list."
)
BINARY_SIZE = "binary_data_size"  # what REST calls an input's byte count, in messages
HTTP_STATUS = {
    ErrorKind.INVALID_ARGUMENT: 400,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.INTERNAL: 500,
}
# A refused upload drops the connection (see bodies.py); a busy server asks for a retry.
HTTP_HEADERS = {ErrorKind.TOO_LARGE: CLOSE, ErrorKind.UNAVAILABLE: {"Retry-After": "1"}}


def bad_request(message: str) -> HTTPException:
    return HTTPException(400, message)


@contextmanager
def http_errors() -> Iterator[None]:
    """The dataplane's errors as HTTPException: the app answers `{"error": message}`."""
    try:
        yield
    except DataplaneError as exc:
        status, headers = HTTP_STATUS[exc.kind], HTTP_HEADERS.get(exc.kind)
        raise HTTPException(status, exc.message, headers) from None


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
        header = _parse_json(head)
    except RecursionError:
        raise bad_request(NESTED_TOO_DEEPLY) from None
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, strict_json.NestingError) or "depth limit" in str(exc):
            raise bad_request(NESTED_TOO_DEEPLY) from None
        raise bad_request(f"the request is not valid JSON ({first_line(exc, 120)}).") from None
    if not isinstance(header, dict):
        raise bad_request("the request must be a JSON object with 'inputs'.")
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad_request(f"'id' must be a string. Received: {short(request_id)}.")
    return header, binary


def _parse_json(head: bytes) -> Any:
    """The JSON header in strict_json's grammar, the same whatever its size."""
    if len(head) > INLINE_JSON_BYTES:  # parsed in a worker thread, in short steps
        value = big_json.loads(head)
    else:
        try:
            value = _loads(head)  # orjson takes a subset of the grammar, faster
        except ValueError:
            value = strict_json.loads(head)  # what orjson refuses (a big integer...) decided here
        else:
            if b"true" not in head and b"false" not in head:  # no JSON bool anywhere
                _data_as_arrays(value)
    strict_json.check_nesting(head, value)  # one depth limit: each parser has its own
    return value


def _data_as_arrays(value: Any) -> None:
    """Each input's flat `data` list as a numpy array, in place (tensors.flat_numbers)."""
    inputs = value.get("inputs") if isinstance(value, dict) else None
    for tensor in inputs if isinstance(inputs, list) else ():
        if isinstance(tensor, dict) and isinstance(tensor.get("data"), list):
            tensor["data"] = flat_numbers(tensor["data"])


def images(plane: V2Dataplane, header: dict[str, Any], binary: memoryview) -> np.ndarray:
    """The header's one input as uint8 images: its JSON `data`, or the bytes after the JSON."""
    spec = plane.input_spec(header.get("inputs"))
    name = spec.name
    with http_errors():
        params = parameters(spec.tensor.get("parameters"), f"input {name!r}: 'parameters'")
    size = params.get(BINARY_SIZE)
    if size is None:
        if len(binary):
            raise bad_request(
                f"{len(binary)} bytes follow the JSON header but no input has "
                f"parameters.{BINARY_SIZE}."
            )
        if not isinstance(spec.tensor.get("data"), list | np.ndarray):  # big: parsed already
            raise bad_request(
                f"input {name!r}: needs 'data' (a flat row-major list) or "
                f"parameters.{BINARY_SIZE} with the bytes after the JSON header."
            )
        return plane.images(spec)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise bad_request(
            f"input {name!r}: {BINARY_SIZE} must be a byte count. Received: {short(size)}."
        )
    plane.check_byte_size(spec, size, BINARY_SIZE)  # what the shape needs, then what came
    if size != len(binary):
        raise bad_request(
            f"binary data after the JSON header is {len(binary)} bytes, but the inputs' "
            f"{BINARY_SIZE} add up to {size}. Check {HEADER_LENGTH}."
        )
    return plane.images(spec, binary, BINARY_SIZE)


def requested_outputs(plane: V2Dataplane, header: dict[str, Any]) -> list[bool]:
    """Per output to return, whether it goes out as bytes after the JSON."""
    with http_errors():
        params = parameters(header.get("parameters"), "'parameters'")
    default_binary = params.get("binary_data_output", False)
    if not isinstance(default_binary, bool):
        raise bad_request(
            f"binary_data_output must be true or false. Received: {short(default_binary)}."
        )
    return plane.requested_outputs(header.get("outputs"), default_binary)


def infer_answer(
    plane: V2Dataplane,
    header: dict[str, Any],
    outputs: list[bool],
    probs: np.ndarray,
    run_size: int,
) -> Response:
    """The infer answer: JSON `data`, or the probabilities' bytes after the JSON."""
    answer: dict[str, Any] = {"model_name": plane.name, "model_version": plane.version}
    request_id = header.get("id")
    if request_id is not None:
        answer["id"] = request_id
    tensor: dict[str, Any] = {
        "name": plane.output_name,
        "datatype": "FP32",
        "shape": list(probs.shape),
    }
    headers = {"X-Batch-Size": str(run_size)}
    if outputs[0]:
        raw = np.ascontiguousarray(probs, dtype="<f4").tobytes()
        tensor["parameters"] = {BINARY_SIZE: len(raw)}
        answer["outputs"] = [tensor]
        head = json.dumps(answer, separators=(",", ":")).encode()
        headers[HEADER_LENGTH] = str(len(head))
        return Response(head + raw, media_type="application/octet-stream", headers=headers)
    tensor["data"] = probs.ravel().tolist()
    answer["outputs"] = [tensor]
    return JSONResponse(answer, headers=headers)
