"""Load a Keras image classifier and work out how to wrap it into the ONNX contract.

The contract (DESIGN.md): input `image` uint8 [N, 32, 32, 3] RGB NHWC, output
`probabilities` float32 [N, 10] softmax. Any Keras model with one 32x32x3 input and one
10-wide output can be wrapped to meet it:

- uint8 (or other integer) input: the image goes in unchanged (cast if needed).
- float input: the wrapper casts, optionally reverses the channels (BGR models) and scales:
  `unit` (/255), `raw` (as is, [0, 255]) or `standardize` ((x - mean) / std). If the
  model's first layer rescales by <= 1/10 itself (for example `Rescaling(1/255)`), it takes
  [0, 255] floats: raw. Otherwise the spec is left "open" (today's rule, unit RGB, until the
  pipeline scores every candidate on labelled images: preprocessing.py). Flags override.
- a last layer with softmax activation (or a Softmax layer) keeps its output; a linear
  last layer gives logits and the wrapper appends a softmax. Anything else is decided by
  running the model on a few probe images: rows that are non-negative and sum to 1 are
  probabilities, else logits. `output_kind` overrides the guess.

The Keras-side reference for the parity check applies the same wrapping in TensorFlow.
"""

from __future__ import annotations

import dataclasses
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifar10_runtime.errors import ModelError, first_line

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
CONTRACT_INPUT = "one image input of shape (N, 32, 32, 3) (RGB, NHWC)"
CONTRACT_OUTPUT = "one output of shape (N, 10) (one score per class)"


@dataclass(frozen=True)
class ModelSpec:
    """How a Keras model is wrapped: what it takes, what it gives, what the wrapper adds."""

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

    def replace(self, **changes: Any) -> ModelSpec:
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
        return f"{inp} ({self.scale_decided_by}); {out} ({self.decided_by})"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        for key in ("mean", "std"):
            d[key] = list(d[key]) if d[key] is not None else None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """The spec recorded in an export's `export_wrapper` metadata (for --verify-only)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["input_shape"] = tuple(values["input_shape"])
        for key in ("mean", "std"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def check_model_path(path: Path) -> None:
    """ModelError unless `path` is an existing .keras/.h5 file (cheap: no Keras import)."""
    path = Path(path)
    received = f"Received: --model={path}"
    if not path.exists():
        raise ModelError(
            f"no Keras model at {path}: train one with `cifar-train` or pass --model PATH. "
            f"{received}"
        )
    if path.is_dir() or path.suffix.lower() not in KERAS_SUFFIXES:
        raise ModelError(
            f"{path} is not a Keras model file: --model needs a .keras (or legacy .h5) file. "
            f"{received}"
        )


def load_keras_model(path: Path):
    """Load a `.keras` (or legacy `.h5`) model without compiling it; ModelError if impossible."""
    path = Path(path)
    received = f"Received: --model={path}"
    check_model_path(path)
    # Keras answers "File not found" for a .keras that exists but is no zip: say what it is.
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}. {received}") from None
    if path.suffix.lower() == ".keras" and not is_zip:
        size = path.stat().st_size
        raise ModelError(
            f"{path} is not a Keras model: a .keras file is a zip archive and this one is not "
            f"({size} bytes: truncated, or another format); save the model again with "
            f"model.save(). {received}"
        )
    import keras  # heavy: only when a model is really loaded

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for unreadable files
        first = first_line(exc)
        raise ModelError(
            f"cannot load Keras model {path}: {first}; check the file is a complete Keras "
            f"model saved with model.save(). {received}"
        ) from exc


def _shape(tensor) -> tuple[Any, ...]:
    return tuple(None if d is None else int(d) for d in tensor.shape)


def _dtype(tensor) -> str:
    dtype = tensor.dtype
    return str(getattr(dtype, "name", dtype))


def _output_layer(model):
    try:
        return model.outputs[0]._keras_history[0]
    except (AttributeError, IndexError, TypeError):
        return model.layers[-1] if model.layers else None


def _first_layer(model):
    for layer in model.layers:
        if type(layer).__name__ != "InputLayer":
            return layer
    return None


def _activation_name(layer) -> str | None:
    if layer is None:
        return None
    if type(layer).__name__ == "Softmax":
        return "softmax"
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None) if act is not None else None


def inspect_model(
    model,
    *,
    input_scale: str = "auto",
    output_kind: str = "auto",
    source: str = "model",
    channel_order: str = "auto",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> ModelSpec:
    """Check `model` can meet the contract and decide the wrapping; ModelError if it cannot."""
    received = f"Received: --model={source}"
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError) as exc:
        raise ModelError(
            f"{source} has no defined input (subclassed or unbuilt model); the ONNX contract "
            f"needs {CONTRACT_INPUT}: build it from keras.Input(shape=(32, 32, 3)). {received}"
        ) from exc
    if len(inputs) != 1:
        found = ", ".join(f"{_shape(t)} {_dtype(t)}" for t in inputs)
        raise ModelError(
            f"{source} has {len(inputs)} inputs ({found}); the ONNX contract needs "
            f"{CONTRACT_INPUT}. {received}"
        )
    tin = inputs[0]
    shape, dtype = _shape(tin), _dtype(tin)
    spatial_ok = len(shape) == 4 and all(d in (None, 32) for d in shape[1:3]) and shape[3] == 3
    if not spatial_ok:
        raise ModelError(
            f"{source} has input shape {shape} ({dtype}); the ONNX contract needs "
            f"{CONTRACT_INPUT}. {received}"
        )
    if dtype not in (
        "uint8",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint16",
        "float16",
        "bfloat16",
        "float32",
        "float64",
    ):
        raise ModelError(
            f"{source} has a {dtype} input; the ONNX contract needs an integer or float "
            f"image input. {received}"
        )
    if len(outputs) != 1:
        found = ", ".join(str(_shape(t)) for t in outputs)
        raise ModelError(
            f"{source} has {len(outputs)} outputs ({found}); the ONNX contract needs "
            f"{CONTRACT_OUTPUT}. {received}"
        )
    oshape = _shape(outputs[0])
    if len(oshape) != 2 or oshape[1] != 10:
        raise ModelError(
            f"{source} has output shape {oshape}; the ONNX contract needs {CONTRACT_OUTPUT}. "
            f"{received}"
        )
    out_dtype = _dtype(outputs[0])
    if not out_dtype.startswith(("float", "bfloat")):
        raise ModelError(
            f"{source} gives {out_dtype} outputs; the ONNX contract needs float scores. {received}"
        )

    spec = ModelSpec(dtype, shape, "none", False, out_dtype, "forced")
    if dtype.startswith(("float", "bfloat")):
        spec = _float_scaling(model, spec, input_scale, channel_order, mean, std)
    elif channel_order != "auto":
        why = f"integer input: the model scales itself, --channel-order={channel_order}"
        spec = spec.replace(channel_order=channel_order.upper(), scale_decided_by=why)
    else:
        spec = spec.replace(scale_decided_by="integer input: the model scales itself")
    if output_kind != "auto":
        return _with_softmax(spec, output_kind == "logits", f"--output-kind={output_kind}")
    act = _activation_name(_output_layer(model))
    if act == "softmax":
        return _with_softmax(spec, False, "last layer is softmax")
    if act == "linear":
        return _with_softmax(spec, True, "last layer is linear: logits")
    from .samples import edge_cases

    probe = keras_outputs(model, spec, edge_cases())
    is_probs = bool(
        np.all(probe >= -1e-6)
        and np.all(probe <= 1 + 1e-6)
        and np.allclose(probe.sum(axis=1), 1.0, atol=1e-3)
    )
    kind = "probabilities" if is_probs else "logits"
    return _with_softmax(spec, not is_probs, f"probe: outputs look like {kind}")


def _float_scaling(model, spec, input_scale, channel_order, mean, std) -> ModelSpec:
    """Scale and channel order of a float-input model, from flags or the model's first layer;
    still open (today's rule: unit RGB, until labelled images decide) otherwise."""
    from .preprocessing import with_preprocessing

    first = _first_layer(model)
    rescales = type(first).__name__ == "Rescaling" and abs(float(first.scale)) <= 0.1
    order = channel_order.upper() if channel_order != "auto" else "RGB"
    if input_scale != "auto":
        scale, why = input_scale, f"--input-scale={input_scale}"
    elif rescales:
        scale, why = "raw", f"first layer {first.name} rescales by {float(first.scale):.3g}"
    else:
        scale, why = "unit", "today's rule: unit RGB"
    open_ = not rescales and "auto" in (input_scale, channel_order)
    if channel_order != "auto":
        why += f", --channel-order={channel_order}"
    return with_preprocessing(
        spec, scale, order, mean, std, scale_decided_by=why, scaling_open=open_
    )


def _with_softmax(spec: ModelSpec, add: bool, why: str) -> ModelSpec:
    return spec.replace(add_softmax=add, decided_by=why)


def feed(x, spec: ModelSpec, cast, reverse):
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


def preprocess(images: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """What the Keras model is fed for uint8 `images` (bfloat16 models: float32 here)."""
    return feed(images, spec, lambda a, dtype: a.astype(dtype), lambda a: a[..., ::-1])


def keras_outputs(model, spec: ModelSpec, images: np.ndarray, batch_size: int = 128):
    """The model's raw outputs (float32) for uint8 `images`, preprocessed as `spec` says."""
    import tensorflow as tf

    outs = []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(preprocess(images[start : start + batch_size], spec))
        if spec.input_dtype == "bfloat16":
            x = tf.cast(x, tf.bfloat16)
        outs.append(np.asarray(tf.cast(model(x, training=False), tf.float32)))
    if not outs:
        return np.zeros((0, 10), np.float32)
    return np.concatenate(outs).astype(np.float32, copy=False)


def keras_reference(model, spec: ModelSpec, images: np.ndarray, batch_size: int = 128):
    """What the ONNX model must reproduce: Keras outputs, plus the softmax the wrapper adds."""
    import tensorflow as tf

    out = keras_outputs(model, spec, images, batch_size)
    if spec.add_softmax:
        out = np.asarray(tf.nn.softmax(tf.convert_to_tensor(out), axis=-1))
    return out.astype(np.float32, copy=False)
