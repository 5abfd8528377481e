"""The Open Inference Protocol's errors, free of any transport: a kind and one line.

The dataplane raises `DataplaneError`; each transport maps its kind to its own status
(REST: `serving.v2.rest_codec.HTTP_STATUS`, gRPC: `serving.grpc.codec.GRPC_CODE`) and sends
the message as it is. Also `short`, how a client's value is quoted in any such message.
"""

from __future__ import annotations

import enum
import json
from typing import Any


class ErrorKind(enum.Enum):
    """Why a request was refused, in the protocol's terms (not HTTP's, not gRPC's)."""

    INVALID_ARGUMENT = "invalid argument"  # the request is wrong: fix it and send it again
    NOT_FOUND = "not found"  # no such model or version here
    TOO_LARGE = "too large"  # the request is over a size limit
    UNAVAILABLE = "unavailable"  # not now (queue full, not started, shutting down): retry
    INTERNAL = "internal"  # a bug: the server log holds the rest


class DataplaneError(Exception):
    """A refused request: its kind and the one-line message a client sees, over any transport."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def invalid(message: str) -> DataplaneError:
    return DataplaneError(ErrorKind.INVALID_ARGUMENT, message)


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
