"""Big Open Inference Protocol JSON bodies, parsed without holding the GIL for long: the REST
codec's parser (rest_codec.split_body) for headers over limits.INLINE_JSON_BYTES. A body it
cannot take is an HTTPException 400, as the rest of the REST wire format's problems.

`json.loads` is one C call that keeps the GIL for its whole run (a time that grows with the
body), so even in a worker thread it would stall the event loop, /readyz included, for as
long. `loads` gives the same value in short steps:

1. every number array (digits, signs, dots, exponents, commas, brackets, white space; at
   most MAX_DEPTH deep) of PIECE bytes or more is cut out of the text, a placeholder number
   left in its place;
2. the rest must be small (MAX_REST bytes: names, shapes, parameters are; a big body that is
   not numbers is refused, 400) and is parsed with strict_json.loads, every body's grammar;
3. each array is parsed in pieces of about PIECE bytes (a flat one split at commas, a nested
   one at its outermost elements), each piece a short C call: between pieces the GIL goes to
   whoever waits;
4. the arrays go back in place of their placeholders, as numpy arrays (a list of arrays when
   nested elements differ in shape).

An array whose placeholder is not found (its text sat inside a JSON string) is put back as
text and the rest parsed again, so the value is always strict_json.loads's, arrays aside:
whatever one body-size path refuses, the other refuses too.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

import numpy as np
from starlette.exceptions import HTTPException

from cifar10_runtime.serving.v2 import strict_json

PIECE = 16 * 1024  # bytes parsed per C call: about a millisecond, below the switch interval
MAX_REST = 64 * 1024  # bytes of JSON outside number arrays (a request header is < 1 KB)
MAX_DEPTH = 32  # nesting of a number array cut out (numpy's own limit is 64)
FAILED_TRY = 64  # budget units of a failed try (about what a try costs, in brackets looked at)
# White space is JSON's four characters only (not \s, which also takes \v and \f).
_RUN = re.compile(rb"[\[\]0-9eE+\-., \t\n\r]*")
_BRACKETS = re.compile(rb"[\[\]]")
_SPACE = re.compile(rb"[ \t\n\r]*")
_COMMA = re.compile(rb"[ \t\n\r]*,[ \t\n\r]*")
# Placeholders are numbers no client can guess: this process's random base minus an index.
_BASE = -(10**30) - secrets.randbelow(10**29) * 1000


class _Array:
    """One number array in the text: where, and its outermost elements (None: flat)."""

    def __init__(self, start: int, end: int, elements: list[tuple[int, int]] | None) -> None:
        self.start, self.end, self.elements = start, end, elements


def loads(text: bytes) -> Any:
    """`json.loads(text)`, with big number arrays as numpy arrays, in short GIL-held steps."""
    arrays = _number_arrays(text)
    for _ in range(2):
        rest = _without(text, arrays)
        if len(rest) > MAX_REST:
            raise HTTPException(
                400,
                f"the request's JSON has {len(rest)} bytes outside tensor data (at most "
                f"{MAX_REST}). Send tensor data as numbers, or as binary data after the JSON "
                "header (parameters.binary_data_size).",
            )
        value = strict_json.loads(rest)  # the small-body path's grammar (UTF-8, no NaN...)
        found: dict[int, int] = {}
        _count(value, len(arrays), found)
        kept = [a for i, a in enumerate(arrays) if found.get(i) == 1]
        if len(kept) == len(arrays):
            view = memoryview(text)
            return _put_back(value, [_parse(view, a) for a in arrays])
        arrays = kept  # the others were text inside strings: parse them as such
    raise HTTPException(400, "the request's JSON could not be read in pieces: send flat lists.")


def _number_arrays(text: bytes) -> list[_Array]:
    """Every single, complete number array of PIECE bytes or more, in text order. Each run
    of number characters is read once; inside it only arrays that fail to close as one
    well-formed array are looked into. The work is bounded by the text's size (a bracket
    looked at costs 1, a failed try FAILED_TRY, len(text) // 4 in all: a real nested tensor
    needs about a seventh): past that (hostile nesting) the rest stays JSON text."""
    arrays: list[_Array] = []
    budget = [len(text) // 4]
    pos = 0
    try:
        while (start := text.find(b"[", pos)) >= 0:
            stop = _run_end(text, start)
            while 0 <= start < stop:
                found = _split(text, start, stop, budget)
                if found is None:
                    budget[0] -= FAILED_TRY
                    if budget[0] < 0:
                        raise _OutOfBudget
                    after = start + 1
                else:
                    after = found[0]
                    if after - start >= PIECE:
                        arrays.append(_Array(start, *found))
                start = text.find(b"[", after, stop)
            pos = stop
    except _OutOfBudget:
        pass
    return arrays


class _OutOfBudget(Exception):
    pass


def _run_end(text: bytes, pos: int) -> int:
    """Where the run of number characters from `pos` ends (read PIECE bytes per call)."""
    while pos < len(text):
        stop = min(pos + PIECE, len(text))
        pos = _RUN.match(text, pos, stop).end()  # type: ignore[union-attr]  # "*" matches
        if pos < stop:
            return pos
    return len(text)


def _split(
    text: bytes, start: int, stop: int, budget: list[int] | None = None
) -> tuple[int, list[tuple[int, int]] | None] | None:
    """(end, outermost elements or None if flat) of the array opening at `start`, or None
    when it does not close as one well-formed array before `stop`."""
    close = text.find(b"]", start, stop)
    if close < 0:
        return None
    if text.find(b"[", start + 1, close) < 0:
        return close + 1, None
    elements: list[tuple[int, int]] = []
    depth, element_start, gap_from = 0, 0, start + 1
    for bracket in _BRACKETS.finditer(text, start, stop):
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise _OutOfBudget
        at = bracket.start()
        if text[at] == 0x5B:  # "["
            depth += 1
            if depth > MAX_DEPTH:
                return None
            if depth == 2:
                gap = _COMMA if elements else _SPACE
                if not gap.fullmatch(text, gap_from, at):
                    return None  # a number, or nothing valid, beside an element
                element_start = at
            continue
        if depth == 2:
            elements.append((element_start, at + 1))
            gap_from = at + 1
        depth -= 1
        if depth == 0:
            return (at + 1, elements) if _SPACE.fullmatch(text, gap_from, at) else None
    return None


def _without(text: bytes, arrays: list[_Array]) -> bytes:
    out, last = [], 0
    for i, array in enumerate(arrays):
        out += [text[last : array.start], b"%d" % (_BASE - i)]
        last = array.end
    out.append(text[last:])
    return b"".join(out)


def _parse(view: memoryview, array: _Array) -> Any:
    """One number array as numpy, filled piece by piece into one allocation (a list of
    arrays when nested elements differ in shape)."""
    text = view.obj
    assert isinstance(text, bytes)
    if array.elements is None:
        start, end = array.start + 1, array.end - 1
        filler = _Filler((text.count(b",", start, end) + 1,))
        for a, b in _flat_pieces(text, start, end):
            filler.add(np.asarray(json.loads(b"[" + view[a:b] + b"]")))
        return filler.result()
    rows: _Filler | list[Any] | None = None
    for block in _blocks(view, array.elements):
        if rows is None:
            same = isinstance(block, np.ndarray)
            rows = _Filler((len(array.elements), *block.shape[1:])) if same else []
        if isinstance(rows, _Filler) and not rows.add_rows(block):
            rows = rows.rows_so_far()
        if isinstance(rows, list):
            rows.extend(list(block))
    if isinstance(rows, _Filler):
        return rows.result()
    return rows or []  # ragged: the caller says so


def _blocks(view: memoryview, elements: list[tuple[int, int]]) -> Iterator[Any]:
    """Consecutive elements parsed together, about PIECE bytes per json.loads (one big
    element on its own, in pieces): arrays [k, ...], or lists when ragged."""
    text = view.obj
    assert isinstance(text, bytes)
    first = 0
    while first < len(elements):
        a, b = elements[first]
        if b - a > PIECE:
            inner = _split(text, a, b)
            if inner is None:  # cannot happen: the element was checked as part of the array
                raise ValueError("a nested tensor element is not an array")
            part = _parse(view, _Array(a, *inner))
            yield part[None] if isinstance(part, np.ndarray) else [part]
            first += 1
            continue
        last = first
        while last + 1 < len(elements) and elements[last + 1][1] - a <= PIECE:
            last += 1
        yield _as_array(json.loads(b"[" + view[a : elements[last][1]] + b"]"))
        first = last + 1


class _Filler:
    """One array of `shape`, filled in order; its dtype widens as json.loads's would (int,
    then float or object), so the result equals np.asarray of the whole list."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.out = np.empty(shape, dtype=np.int64)
        self.filled = 0

    def _fit(self, part: np.ndarray) -> None:
        dtype = np.result_type(self.out.dtype, part.dtype)
        if dtype != self.out.dtype:
            self.out = self.out.astype(dtype)

    def add(self, part: np.ndarray) -> None:  # flat: `part` is 1-D
        self._fit(part)
        self.out[self.filled : self.filled + len(part)] = part
        self.filled += len(part)

    def add_rows(self, block: Any) -> bool:  # nested: False when `block` does not fit
        if not isinstance(block, np.ndarray) or block.shape[1:] != self.out.shape[1:]:
            return False
        self._fit(block)
        self.out[self.filled : self.filled + len(block)] = block
        self.filled += len(block)
        return True

    def rows_so_far(self) -> list[Any]:
        return list(self.out[: self.filled])

    def result(self) -> np.ndarray:
        return self.out[: self.filled]


def _as_array(value: Any) -> Any:
    try:
        return np.asarray(value)
    except ValueError:  # ragged: kept as parsed, and the caller says so
        return value


def _flat_pieces(text: bytes, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(start, end) of comma-separated runs of about PIECE bytes between `start` and `end`."""
    while end - start > PIECE:
        comma = text.find(b",", start + PIECE, end)
        if comma < 0:
            break
        yield start, comma
        start = comma + 1
    yield start, end


def _index(value: Any, n: int) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= _BASE - value < n:
        return _BASE - value
    return None


def _count(value: Any, n: int, found: dict[int, int]) -> None:
    if (i := _index(value, n)) is not None:
        found[i] = found.get(i, 0) + 1
    elif isinstance(value, dict):
        for item in value.values():
            _count(item, n, found)
    elif isinstance(value, list):
        for item in value:
            _count(item, n, found)


def _put_back(value: Any, arrays: list[Any]) -> Any:
    if (i := _index(value, len(arrays))) is not None:
        return arrays[i]
    if isinstance(value, dict):
        return {k: _put_back(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_put_back(v, arrays) for v in value]
    return value
