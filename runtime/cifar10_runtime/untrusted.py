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
"""

from __future__ import annotations

import re
import unicodedata
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
