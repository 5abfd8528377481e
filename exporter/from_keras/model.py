"""Load a Keras model file, and run it as the exporter's wrapper feeds it.

`check_model_path` is the cheap check preflight runs before any heavy import;
`load_keras_model` loads without compiling and turns every failure into one ModelError;
`keras_outputs` / `keras_reference` run the model on uint8 images through the wrapper's
arithmetic (wrapper.py), which is what the ONNX graph must reproduce (the parity check).
How a model is wrapped is decided in inspection.py.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from cifar10_exporter.wrapper import WrapperSpec, mirrored, preprocess
from cifar10_runtime.contract import NUM_CLASSES
from cifar10_runtime.errors import ModelError, first_line

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


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
        raise ModelError(
            f"cannot read {path}: {exc.strerror or exc}; check the file's permissions or pass "
            f"another --model. {received}"
        ) from None
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


def keras_outputs(model, spec: WrapperSpec, images: np.ndarray, batch_size: int = 128):
    """The model's raw outputs (float32) for uint8 `images`, preprocessed as `spec` says."""
    import tensorflow as tf

    outs = []
    for start in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(preprocess(images[start : start + batch_size], spec))
        if spec.input_dtype == "bfloat16":
            x = tf.cast(x, tf.bfloat16)
        outs.append(np.asarray(tf.cast(model(x, training=False), tf.float32)))
    if not outs:
        return np.zeros((0, NUM_CLASSES), np.float32)
    return np.concatenate(outs).astype(np.float32, copy=False)


def keras_reference(model, spec: WrapperSpec, images: np.ndarray, batch_size: int = 128):
    """What the ONNX model must reproduce: Keras outputs, plus the softmax the wrapper adds,
    averaged with the mirror images' under `--tta flip` (as the graph does)."""
    out = _probabilities(model, spec, images, batch_size)
    if spec.tta == "flip":
        out = (out + _probabilities(model, spec, mirrored(images), batch_size)) / np.float32(2)
    return out.astype(np.float32, copy=False)


def _probabilities(model, spec: WrapperSpec, images: np.ndarray, batch_size: int):
    import tensorflow as tf

    out = keras_outputs(model, spec, images, batch_size)
    if spec.add_softmax:
        out = np.asarray(tf.nn.softmax(tf.convert_to_tensor(out), axis=-1))
    return out.astype(np.float32, copy=False)
