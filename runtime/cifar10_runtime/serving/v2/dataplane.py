"""The Open Inference Protocol (KServe v2) dataplane: one served model, whatever transport.

Health, server and model metadata, model identity and readiness, the request's tensors
checked into uint8 images (tensors.py) and inference through the app's MicroBatcher. REST
(`serving.v2.rest`) and gRPC (`serving.grpc.server`) are thin codecs around it: they turn
their wire format into these calls and the answers (and DataplaneError kinds) back into
theirs. Nothing here imports Starlette or grpc.

The model has one input, `image` UINT8 [-1,32,32,3] (NHWC RGB, as the ONNX contract), and
one output, `probabilities` FP32 [-1,10]. An FP32 input in [0,1] is accepted too and turned
into uint8 the contract's way, round(x * 255); values outside [0,1] are refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cifar10_runtime import __version__
from cifar10_runtime.batcher import MicroBatcher, UnavailableError
from cifar10_runtime.contract import IMAGE_SHAPE
from cifar10_runtime.predictor import Predictor
from cifar10_runtime.serving.v2.errors import DataplaneError, ErrorKind, short
from cifar10_runtime.serving.v2.tensors import (
    InputSpec,
    check_byte_size,
    from_bytes,
    from_data,
    input_spec,
    requested_outputs,
    to_uint8,
)

SERVER_NAME = "cifar10-runtime"
PLATFORM = "onnxruntime_onnx"
NOT_RUNNING = "the prediction queue is not running (starting, warming up or shutting down)"


class V2Dataplane:
    """The protocol's operations for one model served under `model_name`."""

    def __init__(self, predictor: Predictor, batcher: MicroBatcher, model_name: str) -> None:
        self.predictor = predictor
        self.batcher = batcher
        self.name = model_name
        self.version = predictor.model_version
        self.input_name = predictor.input_name
        self.output_name = predictor.output_name
        self.num_classes = predictor.num_classes

    # --- health and metadata -------------------------------------------------------------
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Whether inference requests are taken and run at once (the batcher runs, warm)."""
        return self.batcher.running

    def server_metadata(self) -> dict[str, Any]:
        """The server's name and version (each transport adds the extensions it speaks)."""
        return {"name": SERVER_NAME, "version": __version__}

    def serves(self, name: str, version: str | None) -> bool:
        """Whether `name` (and `version`, when given) is the served model."""
        return name == self.name and version in (None, self.version)

    def check_model(self, name: str, version: str | None, where: str = "") -> None:
        """NOT_FOUND unless `name` (and `version`, when given) is the served model's.

        `where`: how this transport's clients read the served model's metadata (REST: its
        route), named in the message; "" names nothing.
        """
        if name != self.name:
            hint = f" ({where})" if where else ""
            raise DataplaneError(
                ErrorKind.NOT_FOUND,
                f"unknown model {short(name)}. This server serves {self.name!r}{hint}.",
            )
        if version is not None and version != self.version:
            raise DataplaneError(
                ErrorKind.NOT_FOUND,
                f"unknown version {short(version)} of model {self.name!r}. "
                f"Available: {self.version!r}.",
            )

    def model_metadata(self) -> dict[str, Any]:
        """The served model's metadata (check_model first for a name a client sent)."""
        shape = [-1, *IMAGE_SHAPE]
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": PLATFORM,
            "inputs": [{"name": self.input_name, "datatype": "UINT8", "shape": shape}],
            "outputs": [
                {"name": self.output_name, "datatype": "FP32", "shape": [-1, self.num_classes]}
            ],
            # What runs the model: the engine chosen at load and its precision.
            "parameters": {
                "engine": self.predictor.engine,
                "precision": self.predictor.precision,
            },
        }

    # --- inference -----------------------------------------------------------------------
    def input_spec(self, inputs: Any) -> InputSpec:
        """The request's `inputs` checked down to the one tensor's name, datatype and shape."""
        return input_spec(inputs, self.input_name)

    def check_byte_size(self, spec: InputSpec, size: int, label: str) -> None:
        """INVALID_ARGUMENT unless `size` bytes (`label`: the transport's word) fit the shape."""
        check_byte_size(spec, size, label)

    def images(
        self, spec: InputSpec, raw: memoryview | None = None, raw_label: str = "the raw data"
    ) -> np.ndarray:
        """uint8 [N,32,32,3] from the tensor's raw bytes, or else from its `data`.

        `raw_label` is what the transport calls the bytes' size, for the message when it
        does not fit the shape.
        """
        if raw is None:
            array = from_data(spec, spec.tensor.get("data"))
        else:
            array = from_bytes(spec, raw, raw_label)
        return to_uint8(spec, array)

    def tensor_images(
        self, inputs: Any, raw: memoryview | None = None, raw_label: str = "the raw data"
    ) -> np.ndarray:
        """input_spec and images in one call, for a transport with nothing to check between."""
        return self.images(self.input_spec(inputs), raw, raw_label)

    def requested_outputs(self, outputs: Any, default_binary: bool = False) -> list[bool]:
        """The request's `outputs` checked: per output returned, whether it goes as bytes."""
        return requested_outputs(outputs, self.output_name, default_binary)

    async def infer(self, images: np.ndarray) -> tuple[np.ndarray, int]:
        """FP32 [N,10] probabilities for uint8 images, and the size of the run they were in.

        UNAVAILABLE when the batcher takes no request now (full, not started, shutting down).
        """
        try:
            return await self.batcher.submit(images)
        except UnavailableError as exc:
            raise DataplaneError(ErrorKind.UNAVAILABLE, str(exc)) from None
