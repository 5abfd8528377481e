"""A model's metadata_props read and checked before anything uses them: one validator per
key, all of them in VALIDATORS.

A model file comes from outside. Each value is bounded in size before it is parsed, the keys
that hold JSON (contract.JSON_KEYS) are parsed with bounded nesting and numbers
(untrusted.parse_json), and every key the runtime knows is checked for its type and size; a
value that fails is refused with one ModelError naming the file and the key (exit code 4),
never a traceback. Informational keys (parity, metrics, ...) written as plain text by other
tools stay text, as before; keys the runtime does not know are kept as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cifar10_runtime.contract import JSON_KEYS, NUM_CLASSES, valid_class_names
from cifar10_runtime.engines.golden import MAX_IMAGES, golden_problem, precisions_problem
from cifar10_runtime.errors import ModelError
from cifar10_runtime.untrusted import parse_json

MAX_JSON_CHARS = 1 << 20  # every JSON key but the golden set: the exporter's are a few KB
# MAX_IMAGES images and their outputs in base64, with room for the rest of the record.
MAX_GOLDEN_CHARS = 4 * -(-MAX_IMAGES * (32 * 32 * 3 + NUM_CLASSES * 4) // 3) + (64 << 10)
MAX_TEXT_CHARS = 4096  # model_version, source_sha256
MAX_CLASS_NAME_CHARS = 256
# Keys the runtime uses, so their value must be JSON.
_NEED_JSON = ("class_names", "precisions", "golden_set")
# The other JSON keys: any JSON object, or plain text (another tool's free-form note).
_OBJECTS = tuple(key for key in JSON_KEYS if key not in _NEED_JSON)


def _class_names(value: Any) -> str | None:
    if valid_class_names(value) and all(len(n) <= MAX_CLASS_NAME_CHARS for n in value):
        return None
    return (
        f"must be a JSON list of {NUM_CLASSES} distinct non-empty strings (each at most "
        f"{MAX_CLASS_NAME_CHARS} characters)"
    )


def _object_or_text(value: Any) -> str | None:
    return None if isinstance(value, dict | str) else "must be a JSON object"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be text"


VALIDATORS: dict[str, Callable[[Any], str | None]] = {
    "class_names": _class_names,
    "precisions": precisions_problem,
    "golden_set": golden_problem,
    **{key: _object_or_text for key in _OBJECTS},
    "model_version": _text,
    "source_sha256": _text,
}
_LIMITS = {**{key: MAX_JSON_CHARS for key in JSON_KEYS}, "golden_set": MAX_GOLDEN_CHARS}


def _refuse(source: str, key: str, problem: str, raw: str) -> ModelError:
    cut = f" (the first 80 of {len(raw)} characters)" if len(raw) > 80 else ""
    return ModelError(
        f"{source}: metadata {key!r} {problem}. Received: {raw[:80]!r}{cut}. Re-export the "
        "model with cifar-export, or remove the key from its metadata_props."
    )


def read_metadata(raw: dict[str, str], source: str) -> dict[str, Any]:
    """The model's metadata with the JSON keys parsed, every known key checked; ModelError
    naming the file and the key for the first value that is too large or of the wrong type."""
    metadata: dict[str, Any] = {}
    for key, text in raw.items():
        limit = _LIMITS.get(key, MAX_TEXT_CHARS if key in VALIDATORS else None)
        if limit is not None and len(text) > limit:
            problem = f"is {len(text)} characters long (at most {limit})"
            raise _refuse(source, key, problem, text)
        metadata[key] = text
        if key not in JSON_KEYS:
            continue
        try:
            metadata[key] = parse_json(text, constants=True)  # the exporter may write NaN
        except ValueError as exc:
            # Only a plain JSON syntax error is free-form text; nesting, numbers and bytes
            # that no JSON reader should meet are refused for every key.
            if key in _NEED_JSON or not isinstance(exc, json.JSONDecodeError):
                problem = f"is not usable JSON ({exc})"
                if key == "class_names":
                    problem = f"{_class_names(None)}; it {problem}"
                raise _refuse(source, key, problem, text) from None
    for key, check in VALIDATORS.items():
        problem = check(metadata[key]) if key in metadata else None
        if problem is not None:
            raise _refuse(source, key, problem, raw[key])
    return metadata
