"""Decide how a Keras image classifier is wrapped into the ONNX contract (a WrapperSpec).

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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cifar10_exporter.checks.samples import edge_cases
from cifar10_exporter.from_keras.model import keras_outputs
from cifar10_exporter.wrapper import WrapperSpec, with_preprocessing
from cifar10_runtime.contract import IMAGE_SHAPE, NUM_CLASSES
from cifar10_runtime.errors import ModelError

HEIGHT, WIDTH, CHANNELS = IMAGE_SHAPE
CONTRACT_INPUT = f"one image input of shape (N, {HEIGHT}, {WIDTH}, {CHANNELS}) (RGB, NHWC)"
CONTRACT_OUTPUT = f"one output of shape (N, {NUM_CLASSES}) (one score per class)"
INPUT_DTYPES = (
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
)
# What a user can do about a model that does not fit: the same advice for every shape error.
REBUILD = (
    f"rebuild it with keras.Input(shape={IMAGE_SHAPE}) and a final "
    f"Dense({NUM_CLASSES}) (softmax or logits), then save it with model.save()"
)


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


def _check_io(model, source: str) -> tuple[tuple[Any, ...], str, str]:
    """The input shape and dtype and the output dtype; ModelError for a model that cannot
    meet the contract, naming what it has and what to do."""
    received = f"Received: --model={source}"
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError) as exc:
        raise ModelError(
            f"{source} has no defined input (subclassed or unbuilt model); the ONNX contract "
            f"needs {CONTRACT_INPUT}: build it from keras.Input(shape={IMAGE_SHAPE}). "
            f"{received}"
        ) from exc
    if len(inputs) != 1:
        found = ", ".join(f"{_shape(t)} {_dtype(t)}" for t in inputs)
        raise ModelError(
            f"{source} has {len(inputs)} inputs ({found}); the ONNX contract needs "
            f"{CONTRACT_INPUT}: {REBUILD}. {received}"
        )
    shape, dtype = _shape(inputs[0]), _dtype(inputs[0])
    spatial_ok = (
        len(shape) == 4
        and all(d in (None, size) for d, size in zip(shape[1:3], (HEIGHT, WIDTH), strict=True))
        and shape[3] == CHANNELS
    )
    if not spatial_ok:
        raise ModelError(
            f"{source} has input shape {shape} ({dtype}); the ONNX contract needs "
            f"{CONTRACT_INPUT}: {REBUILD}. {received}"
        )
    if dtype not in INPUT_DTYPES:
        raise ModelError(
            f"{source} has a {dtype} input; the ONNX contract needs an integer or float "
            f"image input: {REBUILD}. {received}"
        )
    if len(outputs) != 1:
        found = ", ".join(str(_shape(t)) for t in outputs)
        raise ModelError(
            f"{source} has {len(outputs)} outputs ({found}); the ONNX contract needs "
            f"{CONTRACT_OUTPUT}: {REBUILD}. {received}"
        )
    oshape = _shape(outputs[0])
    if len(oshape) != 2 or oshape[1] != NUM_CLASSES:
        raise ModelError(
            f"{source} has output shape {oshape}; the ONNX contract needs {CONTRACT_OUTPUT}: "
            f"{REBUILD}. {received}"
        )
    out_dtype = _dtype(outputs[0])
    if not out_dtype.startswith(("float", "bfloat")):
        raise ModelError(
            f"{source} gives {out_dtype} outputs; the ONNX contract needs float scores: end "
            f"the model with a float Dense({NUM_CLASSES}). {received}"
        )
    return shape, dtype, out_dtype


def inspect_model(
    model,
    *,
    input_scale: str = "auto",
    output_kind: str = "auto",
    source: str = "model",
    channel_order: str = "auto",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> WrapperSpec:
    """Check `model` can meet the contract and decide the wrapping; ModelError if it cannot."""
    shape, dtype, out_dtype = _check_io(model, source)
    spec = WrapperSpec(dtype, shape, "none", False, out_dtype, "forced")
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
    probe = keras_outputs(model, spec, edge_cases())
    is_probs = bool(
        np.all(probe >= -1e-6)
        and np.all(probe <= 1 + 1e-6)
        and np.allclose(probe.sum(axis=1), 1.0, atol=1e-3)
    )
    kind = "probabilities" if is_probs else "logits"
    return _with_softmax(spec, not is_probs, f"probe: outputs look like {kind}")


def _float_scaling(model, spec, input_scale, channel_order, mean, std) -> WrapperSpec:
    """Scale and channel order of a float-input model, from flags or the model's first layer;
    still open (today's rule: unit RGB, until labelled images decide) otherwise."""
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


def _with_softmax(spec: WrapperSpec, add: bool, why: str) -> WrapperSpec:
    return spec.replace(add_softmax=add, decided_by=why)
