"""The trainer's own error type, on top of the runtime's shared base (`CifarError`)."""

from __future__ import annotations

from cifar10_runtime.errors import CifarError


class DataError(CifarError):
    """A dataset that is missing, truncated, or not CIFAR-10 shaped."""

    exit_code = 3


class DivergedError(CifarError):
    """Training whose loss became NaN or infinite: its run is never made runs/latest."""

    exit_code = 1


class TensorFlowMissing(CifarError):
    """TensorFlow (or Keras) is not installed, or fails to import."""

    exit_code = 1


class PeerError(CifarError):
    """Multi-worker training lost (or never reached) another worker of the cluster."""

    exit_code = 6
