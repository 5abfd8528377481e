"""The one JSON grammar of Open Inference Protocol REST bodies, whatever their size.

A body is strict RFC 8259 JSON as the standard library's `json.loads` reads it (control
characters inside strings refused), and also:

- UTF-8 only: a UTF-16 or UTF-32 body (which `json.loads` would guess from bytes) is refused;
- no NaN, Infinity or -Infinity (not JSON, and no pixel value);
- no lone surrogate (`"\\ud800"` without its pair) in any string or key: such a string is no
  Unicode text, cannot be written back as UTF-8 (the answer echoes `id`), and orjson refuses it;
- nested at most MAX_NESTING levels (check_nesting; a request needs under ten), where orjson
  and json.loads would each stop at their own depth.

`loads` is that grammar. rest_codec parses small bodies with orjson (fast) and, where orjson
refuses, with `loads`; big_json parses the text outside number arrays with `loads`: so both
body-size paths accept exactly the same documents and refuse the same ones with a 400.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

MAX_NESTING = 64  # arrays and objects inside one another: numpy's own limit on dimensions
# Where a lone surrogate could be: an escape of one half of a pair (a cheap test first).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send finite numbers")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def loads(text: bytes) -> Any:
    """The value of `text` in the grammar above; ValueError (or RecursionError) if it has none.

    UnicodeDecodeError, a ValueError, says a body is not UTF-8.
    """
    value = _DECODER.decode(text.decode("utf-8"))
    if _SURROGATE_ESCAPE.search(text):
        check_text(value)
    return value


def check_text(value: Any) -> None:
    """ValueError if a string or key anywhere in `value` holds a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, dict):
            for key in item:
                _check_string(key)
            stack.extend(v for v in item.values() if isinstance(v, str | list | dict))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, str | list | dict))


def _check_string(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        raise ValueError(
            f"a string holds a lone surrogate \\u{code:04x}: send Unicode text "
            "(a surrogate only as half of a pair)"
        ) from None


class NestingError(ValueError):
    """A document nested deeper than MAX_NESTING levels."""


def check_nesting(text: bytes, value: Any) -> None:
    """NestingError if `value` (parsed from `text`; numpy arrays count their dimensions) is
    nested deeper than MAX_NESTING. Free when `text` has too few brackets to be that deep."""
    if text.count(b"[") + text.count(b"{") <= MAX_NESTING:
        return
    stack = [(value, 1)] if isinstance(value, list | dict | np.ndarray) else []
    while stack:
        item, level = stack.pop()
        if isinstance(item, np.ndarray):
            level += item.ndim - 1
            children: Any = ()
        elif isinstance(item, dict):
            children = item.values()
        elif set(map(type, item)) & {list, dict, np.ndarray}:  # one C-speed pass per list
            children = item
        else:
            children = ()
        if level > MAX_NESTING:
            raise NestingError(f"nested deeper than {MAX_NESTING} levels")
        stack.extend((v, level + 1) for v in children if isinstance(v, list | dict | np.ndarray))
