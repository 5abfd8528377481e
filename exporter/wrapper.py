"""What the exporter wraps around a Keras model, and the wrapper's arithmetic (a leaf module).

`WrapperSpec` records how the contract's uint8 RGB `image` becomes what the Keras model takes
(cast, /255 or (x - mean) / std, channel order) and whether a softmax is appended; `feed` is
that arithmetic written once for numpy and TensorFlow alike. Everything that decides a spec
(inspection.py, preprocessing.py) or applies one (keras_model.py, convert.py) imports this
module; it imports nothing of the exporter, so no cycle can form around it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# CIFAR-10 training set per-channel mean and std (RGB), in pixel units: the published
# 0.4914/0.4822/0.4465 and 0.2470/0.2435/0.2616 times 255.
CIFAR10_MEAN = (125.307, 122.950, 113.865)
CIFAR10_STD = (62.993, 62.089, 66.705)


@dataclass(frozen=True)
class WrapperSpec:
    """How a Keras model is wrapped: what it takes, what it gives, what the wrapper adds.

    (Not the runtime's `cifar10_runtime.model.ModelSpec`, which describes an ONNX session.)
    """

    input_dtype: str  # the Keras input's dtype, e.g. "uint8" or "float32"
    input_shape: tuple[Any, ...]  # as Keras reports it, e.g. (None, 32, 32, 3)
    # "none": integer input, cast only; "unit": /255; "raw": float cast only;
    # "standardize": (x - mean) / std with mean/std in pixel units, RGB order
    input_scale: str
    add_softmax: bool  # the model gives logits: the wrapper appends a softmax
    output_dtype: str
    decided_by: str  # how the output kind was decided ("last layer ...", "probe", "forced")
    channel_order: str = "RGB"  # what the model takes; "BGR": the wrapper reverses channels
    mean: tuple[float, ...] | None = None  # standardize only
    std: tuple[float, ...] | None = None
    scale_decided_by: str = ""  # how input_scale/channel_order were decided
    # True while the model does not show its own scaling and no flag fixed it: the pipeline
    # then decides by scoring the candidates on labelled images.
    scaling_open: bool = False
    # "flip": the graph runs the model on each image and on its mirror image and averages
    # the two probability vectors (test-time augmentation); "none": the model alone.
    tta: str = "none"

    def replace(self, **changes: Any) -> WrapperSpec:
        return dataclasses.replace(self, **changes)

    @property
    def preprocessing(self) -> str:
        """Short name of what the wrapper feeds the model, e.g. "raw/RGB"."""
        return f"{self.input_scale}/{self.channel_order}"

    def describe(self) -> str:
        order = ", channels reversed to BGR" if self.channel_order == "BGR" else ""
        inp = {
            "none": f"{self.input_dtype} input fed as is{order}",
            "unit": f"{self.input_dtype} input fed image/255 (model takes [0, 1]{order})",
            "raw": f"{self.input_dtype} input fed float(image) (model takes [0, 255]{order})",
            "standardize": f"{self.input_dtype} input fed (image - mean) / std{order}",
        }[self.input_scale]
        out = "softmax appended to logits" if self.add_softmax else "softmax output kept"
        tta = "; averaged with its mirror image (--tta flip)" if self.tta == "flip" else ""
        return f"{inp} ({self.scale_decided_by}); {out} ({self.decided_by}){tta}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        for key in ("mean", "std"):
            d[key] = list(d[key]) if d[key] is not None else None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WrapperSpec:
        """The spec recorded in an export's `export_wrapper` metadata (for --verify-only)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["input_shape"] = tuple(values["input_shape"])
        for key in ("mean", "std"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def with_preprocessing(
    spec: WrapperSpec, scale: str, order: str, mean, std, **extra: Any
) -> WrapperSpec:
    """`spec` with this scaling and channel order (mean/std only for `standardize`, CIFAR-10's
    published ones unless given), plus any other `extra` fields."""
    standardize = scale == "standardize"
    return spec.replace(
        input_scale=scale,
        channel_order=order,
        mean=tuple(mean or CIFAR10_MEAN) if standardize else None,
        std=tuple(std or CIFAR10_STD) if standardize else None,
        **extra,
    )


def feed(x, spec: WrapperSpec, cast, reverse):
    """What the model is fed for uint8 images `x`: the wrapper's steps, written once for both
    numpy (the Keras reference, `preprocess`) and TensorFlow (the ONNX graph's wrapper,
    convert.build_serving_function), so the two cannot drift apart. `cast(x, dtype)` and
    `reverse(x)` (of the channel axis) are the library's; constants are numpy arrays, which
    TensorFlow takes as graph constants."""
    if spec.input_scale == "none":
        x = reverse(x) if spec.channel_order == "BGR" else x
        return x if spec.input_dtype == "uint8" else cast(x, spec.input_dtype)
    dtype = "float32" if spec.input_dtype == "bfloat16" else spec.input_dtype
    x = cast(x, dtype)
    if spec.input_scale == "unit":
        x = x / np.asarray(255, dtype=dtype)
    elif spec.input_scale == "standardize":
        x = (x - np.asarray(spec.mean, dtype=dtype)) / np.asarray(spec.std, dtype=dtype)
    return reverse(x) if spec.channel_order == "BGR" else x


def mirrored(images: np.ndarray) -> np.ndarray:
    """Each NHWC image mirrored left to right (the second view of `--tta flip`), as the
    graph's `image[:, :, ::-1]` does."""
    return images[:, :, ::-1]


def preprocess(images: np.ndarray, spec: WrapperSpec) -> np.ndarray:
    """What the Keras model is fed for uint8 `images` (bfloat16 models: float32 here)."""
    return feed(images, spec, lambda a, dtype: a.astype(dtype), lambda a: a[..., ::-1])
