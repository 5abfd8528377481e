"""The small set of exception types every stage raises for problems a user can fix.

Only the shared base lives here, so the serving wheel carries no training vocabulary:
the trainer adds `DataError` (cifar10_trainer.errors), the exporter `ParityError`
(cifar10_exporter.errors). The CLIs map them to one line on stderr and a non-zero exit
code (see `cli_errors`); the server maps them to 4xx answers. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class CifarError(Exception):
    """Base class: a user-fixable problem. The message is one line naming the input and the fix."""

    exit_code = 1


class ConfigError(CifarError):
    """A bad flag, parameters file key, or value type."""

    exit_code = 2


class ModelError(CifarError):
    """A model file that is missing, unreadable, or breaks the ONNX model contract."""

    exit_code = 4


class ImageError(CifarError):
    """An image that cannot be decoded (empty, truncated, not an image, decompression bomb)."""

    exit_code = 5


def first_line(exc: BaseException, limit: int = 300, default: str | None = None) -> str:
    """The first line of `exc`'s message, cut to `limit` characters, for a one-line error.

    Libraries (onnxruntime, tf2onnx, onnx) raise multi-line messages with dumps after the
    first line; `default` (else the exception's type name) stands in for an empty message.
    """
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else default or type(exc).__name__)[:limit]


@contextlib.contextmanager
def cli_errors(verbose: bool = False) -> Iterator[None]:
    """Turn a CifarError into `error: <message>` on stderr and its exit code.

    With verbose=True the traceback is kept, for debugging.
    """
    try:
        yield
    except CifarError as exc:
        if verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
