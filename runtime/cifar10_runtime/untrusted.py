"""Text from outside (clients, model files, file names) made safe to use: one home for

- `parse_decimal`: a non-negative integer written in ASCII digits, short enough to be a
  size. `str.isdigit()` is true for "²" and "٣" and `int()` refuses 5,000 digits, so
  `isdigit()` then `int()` on client input is a 500 waiting to happen.
- `check_model_version`: what the exporter writes as `model_version` (no control
  characters: a CR/LF would break every header it is sent in; Unicode is kept, and
  `version_header` encodes it for headers).
- `version_header`: the `X-Model-Version` value: printable ASCII as is, everything else
  (and `%`) percent-encoded as UTF-8, as RFC 8187 does for header parameters, so any
  version a model carries can be sent (`urllib.parse.unquote` gives it back).
- `without_server_paths`: metadata for clients with absolute paths cut to their last name
  (where the server keeps its data is not the clients' business).
- `read_regular_file`: a file of at most a given size, read only when it is a regular file
  (not a FIFO, which blocks the reader forever, nor a symlink to /dev/zero, which never ends),
  checked on the open descriptor so nothing can be swapped in between the check and the read.
- `parse_json`: JSON with bounded nesting and bounded numbers: `json.loads` recurses once per
  level (RecursionError) and turns 400 digits into an int that no float holds (OverflowError).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import unicodedata
from itertools import accumulate
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

from cifar10_runtime.errors import ConfigError

MAX_DECIMAL_DIGITS = 18  # below 2**63: every size a server meets, and cheap to convert
MAX_VERSION_CHARS = 128
# Bytes of an X-Model-Version value: MAX_VERSION_CHARS of any script, percent-encoded, fit
# (4 UTF-8 bytes x 3 characters each); far more would break clients' header limits.
MAX_VERSION_HEADER = 2048
_DECIMAL = re.compile(rb"[0-9]{1,%d}" % MAX_DECIMAL_DIGITS)
# Printable ASCII except "%", which starts an escape.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if c != 0x25)
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\[^\\]+\\)")
# Keys whose values are names chosen by people, never paths to hide.
_KEEP = frozenset({"class_names", "model_version"})
MAX_JSON_DEPTH = 32
_ESCAPE = re.compile(r"\\.", re.DOTALL)  # a backslash and the character it escapes
_STRING = re.compile(r'"[^"]*"')  # once escapes are out, a string ends at the next quote
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
MAX_NUMBER_CHARS = 40  # any float64 written out in full, and far below int's digit limit


def parse_decimal(text: str | bytes | None) -> int | None:
    """`text` (surrounding spaces allowed) as an int if it is 1-18 ASCII digits, else None."""
    if text is None:
        return None
    raw = text.encode("latin-1", "replace") if isinstance(text, str) else bytes(text)
    raw = raw.strip(b" \t")
    return int(raw) if _DECIMAL.fullmatch(raw) else None


def version_problem(version: str) -> str | None:
    """Why `version` cannot be a model_version, or None when it can."""
    if not version.strip():
        return "it is empty"
    if len(version) > MAX_VERSION_CHARS:
        return f"it is {len(version)} characters long (at most {MAX_VERSION_CHARS})"
    for char in version:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return f"it contains the control character {char!r} (CR, LF, tab, NUL, ...)"
    return None


def check_model_version(
    version: str,
    source: str = "--model-version",
    fix: str = "Use printable text such as 'run-2025-01-02' (Unicode is fine)",
) -> str:
    """Return `version`, or raise ConfigError saying what is wrong with it and the fix."""
    problem = version_problem(version)
    if problem is not None:
        raise ConfigError(
            f"{source} cannot be a model version: {problem}. {fix}. Received: {version!r}."
        )
    return version


def version_header(version: str) -> str:
    """The X-Model-Version header value for `version` (pure ASCII, reversible)."""
    return quote(version, safe=_HEADER_SAFE, encoding="utf-8", errors="backslashreplace")


def without_server_paths(value: Any, key: str = "") -> Any:
    """A copy of JSON-like `value` with every absolute path string cut to its last name."""
    if key in _KEEP:
        return value
    if isinstance(value, dict):
        return {k: without_server_paths(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_server_paths(v, key) for v in value]
    if isinstance(value, str):
        if (value.startswith("/") and len(value) > 1) or value.startswith("~/"):
            return PurePosixPath(value).name
        if _WINDOWS_ABSOLUTE.match(value):
            return PureWindowsPath(value).name
        if value.startswith("file://"):
            return PurePosixPath(value[len("file://") :]).name
    return value


def read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of `path` if it is a regular file of at most `max_bytes`.

    Raises ValueError saying what it is instead (a folder, a FIFO, a device, too large), or
    OSError when it cannot be opened; a symbolic link is refused (OSError ELOOP), never
    followed. O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "a symbolic link (never followed)", str(path)) from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file (a folder, FIFO, socket or device)")
        if info.st_size > max_bytes:
            raise ValueError(f"{info.st_size} bytes (at most {max_bytes})")
        chunks, size = [], 0
        while size <= max_bytes:  # bounded even if the file grows while it is read
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise ValueError(f"it grew past {max_bytes} bytes while being read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def json_depth(text: str) -> int:
    """How deeply `text`'s arrays and objects nest, counted before parsing (json.loads
    recurses once per level) in linear time: escapes out, then strings, then all but the
    brackets (each pattern matches one way only, so nothing backtracks)."""
    without_strings = _STRING.sub("", _ESCAPE.sub("", text))
    brackets = _NOT_BRACKET.sub("", without_strings)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of float range")
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH, constants: bool = False) -> Any:
    """`text` as JSON, or ValueError saying why not: malformed, nested deeper than
    `max_depth`, a number longer than MAX_NUMBER_CHARS or beyond float, NaN or Infinity
    (unless `constants`: Python's json.dumps writes them for non-finite floats)."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")  # UnicodeDecodeError is a ValueError
    depth = json_depth(text)
    if depth > max_depth:
        raise ValueError(f"nested {depth} levels deep (at most {max_depth})")
    return json.loads(
        text,
        parse_int=_bounded_int,
        parse_float=_bounded_float,
        parse_constant=float if constants else _no_constant,
    )
