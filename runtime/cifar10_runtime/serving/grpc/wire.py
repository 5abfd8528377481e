"""A ModelInferRequest's big fields read straight from its wire bytes, without protobuf.

protobuf would copy `raw_input_contents` into new bytes objects and build one Python int per
value of packed typed contents (seconds of GIL-held work for a 10 MB message, stalling the
event loop even from a thread). Here the tensors' bytes stay memoryviews of the received
message (no copy), packed `uint_contents` / `fp32_contents` become numpy arrays decoded in
short numpy steps, and only the small rest of the message (names, shapes, parameters) goes
to protobuf. Anything this reader does not expect (an unpacked repeated field, another
contents type) is left in the rest, where protobuf reads it as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

# Field numbers of Triton's grpc_service.proto (protocol.py checks the stubs agree).
INPUTS, RAW_INPUT_CONTENTS = 5, 7  # ModelInferRequest
TENSOR_CONTENTS = 5  # ModelInferRequest.InferInputTensor.contents
UINT_CONTENTS, FP32_CONTENTS = 4, 6  # InferTensorContents
LENGTH_DELIMITED = 2
VARINT_STEP = 1 << 18  # packed varint bytes decoded per numpy step (bounds temporaries)


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


@dataclass
class InferWire:
    rest: bytes  # the message without the fields below, for protobuf
    raw: list[memoryview] = field(default_factory=list)  # raw_input_contents, in order
    typed: dict[int, np.ndarray] = field(default_factory=dict)  # input index -> its contents


def read_infer(data: bytes) -> InferWire:
    """Split a serialized ModelInferRequest into its big fields and the rest."""
    view = memoryview(data)
    rest: list[memoryview] = []
    wire = InferWire(b"")
    index = 0
    for number, kind, start, end, head in _fields(view, 0, len(view)):
        if number == RAW_INPUT_CONTENTS and kind == LENGTH_DELIMITED:
            wire.raw.append(view[start:end])
            continue
        if number == INPUTS and kind == LENGTH_DELIMITED:
            tensor, values = _tensor(view, start, end)
            index += 1
            if values is not None:
                wire.typed[index - 1] = values
                rest.append(memoryview(_length_delimited(number, tensor)))
                continue
        rest.append(view[head:end])
    wire.rest = b"".join(rest)
    return wire


def _tensor(view: memoryview, start: int, end: int) -> tuple[bytes, np.ndarray | None]:
    """An InferInputTensor's bytes without its packed contents, and those contents."""
    kept: list[memoryview] = []
    values = None
    for number, kind, begin, stop, head in _fields(view, start, end):
        if number == TENSOR_CONTENTS and kind == LENGTH_DELIMITED and values is None:
            values = _contents(view, begin, stop)
            if values is not None:
                continue
        kept.append(view[head:stop])
    return b"".join(kept), values


def _contents(view: memoryview, start: int, end: int) -> np.ndarray | None:
    """One packed uint_contents or fp32_contents field as an array (None: anything else)."""
    found = list(_fields(view, start, end))
    if len(found) == 0:
        return np.zeros(0, np.uint32)
    if len(found) != 1 or found[0][1] != LENGTH_DELIMITED:
        return None
    number, _, begin, stop, _ = found[0]
    if number == FP32_CONTENTS:
        if (stop - begin) % 4:
            raise WireError("packed fp32_contents is not a whole number of floats")
        return np.frombuffer(view[begin:stop], "<f4")
    if number == UINT_CONTENTS:
        return packed_varints(np.frombuffer(view[begin:stop], np.uint8))
    return None


def packed_varints(b: np.ndarray) -> np.ndarray:
    """Packed protobuf varints (uint32 values) as uint64, in steps of VARINT_STEP bytes."""
    if b.size and b[-1] & 0x80:
        raise WireError("packed varints end inside a value")
    pieces, start = [], 0
    while start < b.size:
        stop = min(start + VARINT_STEP, b.size)
        while b[stop - 1] & 0x80:  # cut after a value's last byte
            stop += 1
        pieces.append(_varints(b[start:stop]))
        start = stop
    return np.concatenate(pieces) if pieces else np.zeros(0, np.uint64)


def _varints(b: np.ndarray) -> np.ndarray:
    more = b >= 0x80
    if not more.any():  # every value below 128: one byte each
        return b.astype(np.uint64)
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    position = np.arange(b.size) - np.repeat(starts, ends - starts + 1)
    if position.max() > 4:  # uint32: at most 5 bytes
        raise WireError("a packed uint32 varint is longer than 5 bytes")
    parts = (b & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    return np.add.reduceat(parts, starts)


def _fields(view: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(number, wire type, value start, value end, field start) of each field in a range."""
    at = start
    while at < end:
        head = at
        key, at = _varint(view, at, end)
        number, kind = key >> 3, key & 7
        if kind == 0:
            _, stop = _varint(view, at, end)
        elif kind == 1:
            stop = at + 8
        elif kind == LENGTH_DELIMITED:
            size, at = _varint(view, at, end)
            stop = at + size
        elif kind == 5:
            stop = at + 4
        else:
            raise WireError(f"unsupported wire type {kind}")
        if stop > end or number == 0:
            raise WireError("a field runs past the end of its message")
        yield number, kind, at, stop, head
        at = stop


def _varint(view: memoryview, at: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while at < end and shift < 64:
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
    raise WireError("a varint runs past the end of its message")


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
