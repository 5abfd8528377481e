"""Keras models the trainer did not build: float inputs, logits, residual blocks, legacy .h5;
and models that cannot meet the contract, refused with one line and no file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from cifar10_exporter.from_keras.inspection import inspect_model
from cifar10_exporter.from_keras.model import keras_outputs, load_keras_model
from cifar10_runtime import Predictor
from cifar10_runtime.errors import ModelError

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("name", "input_scale", "add_softmax"),
    [
        ("residual_logits_float", "unit", True),
        ("raw_float_softmax", "raw", False),
        ("raw_float_softmax_h5", "raw", False),
        ("uint8_sequential", "none", False),
    ],
)
def test_outside_models_export_and_pass(
    keras_models, tmp_path, cli, name, input_scale, add_softmax
):
    out = tmp_path / "model.onnx"
    result = cli(
        out,
        "--model",
        keras_models[name],
        "--dataset",
        "synthetic",
        "--samples",
        64,
        "--threads",
        1,
        "--quantize",
        "none",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "model.parity.json").read_text())
    assert report["passed"] and report["max_abs_diff"] <= 1e-4
    assert report["source"].startswith("synthetic test split")
    accuracy = report["accuracy"]  # synthetic images are labelled too: measured, not gated
    assert accuracy["measured"] and accuracy["dataset"] == "synthetic" and accuracy["n"] == 64
    assert accuracy["keras"]["overall"] == accuracy["onnx"]["overall"]
    assert report["accuracy_gate"]["applied"] is False
    assert "synthetic check images say nothing" in report["accuracy_gate"]["note"]
    model = onnx.load(out)
    meta = {p.key: p.value for p in model.metadata_props}
    wrapper = json.loads(meta["export_wrapper"])
    assert (wrapper["input_scale"], wrapper["add_softmax"]) == (input_scale, add_softmax)
    assert [model.graph.input[0].name, model.graph.output[0].name] == ["image", "probabilities"]
    images = np.random.default_rng(3).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    probs = Predictor(out, threads=1, engine="onnxruntime").predict_array(images)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_logits_float_model_matches_softmax_of_keras_on_scaled_input(keras_models, tmp_path, cli):
    """The ONNX graph is softmax(model(image / 255)), computed here independently."""
    import tensorflow as tf

    path = keras_models["residual_logits_float"]
    out = tmp_path / "model.onnx"
    args = ("--model", path, "--dataset", "synthetic", "--samples", 8, "--quantize", "none")
    assert cli(out, *args).exit_code == 0
    model = load_keras_model(path)
    images = np.random.default_rng(4).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    expected = tf.nn.softmax(model(images.astype(np.float32) / 255.0, training=False)).numpy()
    got = Predictor(out, threads=1, engine="onnxruntime").predict_array(images)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_output_kind_is_probed_when_the_last_layer_does_not_say(keras_models):
    model = load_keras_model(keras_models["uint8_sequential"])  # ends in a Softmax layer
    assert inspect_model(model).add_softmax is False
    spec = inspect_model(model, output_kind="logits")
    assert spec.add_softmax and spec.decided_by == "--output-kind=logits"
    probe = keras_outputs(model, spec, np.zeros((2, 32, 32, 3), np.uint8))
    assert probe.shape == (2, 10)


@pytest.mark.parametrize(
    ("name", "found", "needed"),
    [
        ("mnist_28x28x1", "input shape (None, 28, 28, 1)", "(N, 32, 32, 3)"),
        ("two_inputs", "2 inputs", "one image input"),
        ("five_outputs", "output shape (None, 5)", "(N, 10)"),
        ("two_outputs", "2 outputs", "one output"),
    ],
)
def test_incompatible_models_are_refused_with_one_line(
    keras_models, tmp_path, cli, name, found, needed
):
    out = tmp_path / "model.onnx"
    result = cli(out, "--model", keras_models[name], "--dataset", "synthetic")
    assert result.exit_code == ModelError.exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert found in lines[0] and needed in lines[0] and "Received: --model=" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no OUTPUT, no reports, no temporary files


def test_console_script_refuses_28x28_model_without_traceback(keras_models, tmp_path):
    """The real console script, in a fresh process: one stderr line, exit 4, no file."""
    out = tmp_path / "mnist.onnx"
    script = Path(sys.executable).with_name("cifar-export")
    cmd = [str(script), str(out), "--model", str(keras_models["mnist_28x28x1"])]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == [
        f"error: {keras_models['mnist_28x28x1']} has input shape (None, 28, 28, 1) (float32); "
        "the ONNX contract needs one image input of shape (N, 32, 32, 3) (RGB, NHWC): "
        "rebuild it with keras.Input(shape=(32, 32, 3)) and a final Dense(10) (softmax or "
        "logits), then save it with model.save(). "
        f"Received: --model={keras_models['mnist_28x28x1']}"
    ]
    assert not out.exists()


def test_standardize_bgr_flags_are_built_into_the_graph(keras_models, tmp_path, cli):
    """softmax(model(reverse_channels((image - mean) / std))), computed here independently."""
    import tensorflow as tf

    path = keras_models["residual_logits_float"]
    out = tmp_path / "model.onnx"
    flags = ["--input-scale", "standardize", "--channel-order", "bgr"]
    flags += ["--input-mean", "120,121,110", "--input-std", "60,61,62"]
    flags += ["--quantize", "none"]
    result = cli(out, "--model", path, "--dataset", "synthetic", "--samples", 8, *flags)
    assert result.exit_code == 0, result.stderr
    model = load_keras_model(path)
    images = np.random.default_rng(6).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    x = (images.astype(np.float32) - [120, 121, 110]) / np.array([60, 61, 62], np.float32)
    expected = tf.nn.softmax(model(x[..., ::-1].astype(np.float32), training=False)).numpy()
    # uint8 RGB in, as the contract says; float32 engine: the export's own graph
    got = Predictor(out, threads=1, engine="onnxruntime").predict_array(images)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    wrapper = json.loads({p.key: p.value for p in onnx.load(out).metadata_props}["export_wrapper"])
    assert (wrapper["input_scale"], wrapper["channel_order"]) == ("standardize", "BGR")
    assert wrapper["mean"] == [120, 121, 110] and wrapper["std"] == [60, 61, 62]
