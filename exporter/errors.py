"""The exporter's own error type, on top of the runtime's shared base (`CifarError`)."""

from __future__ import annotations

from cifar10_runtime.errors import CifarError


class ParityError(CifarError):
    """The exported model does not reproduce the source model, or fails its accuracy gate."""

    exit_code = 1
