"""`--quantize int8`: static QDQ model beside the fp32 one, same contract and metadata, own check.

The model is a narrow network of the trainer's layout fitted for a few seconds on the
synthetic dataset, so its predictions are confident: a barely trained CIFAR model has top-2
margins so small that any quantization flips a few percent of them, which says nothing
about the exporter.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from cifar10_runtime import Predictor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synthetic_model(tmp_path_factory) -> str:
    """The trainer's layout (uint8 in, Rescaling, conv blocks, softmax `probabilities`), narrow
    and without BatchNorm (whose moving statistics need more steps than a test can afford)."""
    import keras
    from keras import layers

    from cifar10_trainer.data import load_synthetic

    keras.utils.set_random_seed(0)
    data = load_synthetic(n_train=1500, n_test=10)
    inp = keras.Input((32, 32, 3), dtype="uint8", name="image")
    x = layers.Rescaling(1 / 255)(inp)
    for filters in (8, 16):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Dense(32, activation="relu")(layers.Flatten()(x))
    model = keras.Model(inp, layers.Dense(10, activation="softmax", name="probabilities")(x))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(data.x_train, data.y_train, epochs=2, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("synthetic_run") / "model.keras"
    model.save(path)
    return path


def test_int8_export_meets_its_check(synthetic_model, tmp_path, cli):
    out = tmp_path / "model.onnx"
    result = cli(
        out,
        "--model",
        synthetic_model,
        "--dataset",
        "synthetic",
        "--samples",
        300,
        "--quantize",
        "int8",
        "--calibration-samples",
        200,
        "--threads",
        1,
    )
    assert result.exit_code == 0, result.stderr
    int8_path = tmp_path / "model.int8.onnx"
    assert "int8 check (vs fp32 ONNX)" in result.stdout and f"wrote {int8_path}" in result.stdout

    report = json.loads((tmp_path / "model.int8.parity.json").read_text())
    assert report["kind"] == "int8" and report["passed"], report["failures"]
    assert report["n"] == 300
    assert report["top1_agreement"] >= 0.98 and report["accuracy_drop"] <= 0.01
    assert report["size_bytes"]["int8"] < report["size_bytes"]["fp32"]
    assert json.loads((tmp_path / "model.parity.json").read_text())["passed"]  # fp32 separate

    model = onnx.load(int8_path)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    (inp,), (outp,) = model.graph.input, model.graph.output
    assert (inp.name, inp.type.tensor_type.elem_type) == ("image", onnx.TensorProto.UINT8)
    assert (outp.name, outp.type.tensor_type.elem_type) == ("probabilities", onnx.TensorProto.FLOAT)
    meta = {p.key: p.value for p in model.metadata_props}
    fp32_meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    for key in ("class_names", "input_spec", "source_sha256", "metrics", "producer_versions"):
        assert meta[key] == fp32_meta[key]
    assert meta["model_version"] == fp32_meta["model_version"] + "+int8"
    assert json.loads(meta["quantization"])["format"] == "QDQ"
    assert json.loads(meta["parity"])["passed"] is True

    images = np.random.default_rng(5).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    probs = Predictor(int8_path, threads=1).predict_array(images)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)  # softmax stays float

    verify = cli(
        out,
        "--verify-only",
        "--quantize",
        "int8",
        "--model",
        synthetic_model,
        "--dataset",
        "synthetic",
        "--samples",
        300,
        "--threads",
        1,
    )
    assert verify.exit_code == 0, verify.stderr
