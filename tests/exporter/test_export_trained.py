"""Export a model trained briefly on the real subset: parity, contract, metadata, batch sizes,
and a tampered copy that `--verify-only` must reject."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import numpy as np
import onnx
import pytest
from export_samples import REQUIRED_KEYS
from onnx import numpy_helper

from cifar10_exporter.config import CIFAR10_CLASS_NAMES
from cifar10_runtime import Predictor

pytestmark = pytest.mark.slow


def test_export_passes_parity_on_real_images(exported):
    out, result = exported
    assert result.exit_code == 0, result.stderr
    assert "PASSED" in result.stdout and f"wrote {out}" in result.stdout
    report = json.loads(out.with_name("model.parity.json").read_text())
    assert report["passed"] and report["failures"] == []
    assert report["n"] == 506  # the subset's 500 test images + 6 edge cases
    assert report["source"].startswith("cifar10 test split")
    assert report["batch_sizes"] == [1, 506]
    assert report["max_abs_diff"] <= 1e-4
    for stats in report["per_batch"].values():
        assert stats["top1_agreement"] == 1.0 and stats["hard_disagreements"] == 0
    assert {"tensorflow", "tf2onnx", "onnxruntime", "onnx"} <= set(report["versions"])
    saved = json.loads(out.with_name("model.export.json").read_text())
    assert saved["config"]["atol"] == 1e-4 and saved["passed"] is True


def test_contract_and_metadata(exported, trained_model):
    out, _ = exported
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    (inp,), (outp,) = model.graph.input, model.graph.output
    assert (inp.name, outp.name) == ("image", "probabilities")
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert outp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["N", 32, 32, 3]
    assert [d.dim_param or d.dim_value for d in outp.type.tensor_type.shape.dim] == ["N", 10]
    meta = {p.key: p.value for p in model.metadata_props}
    assert set(REQUIRED_KEYS) <= set(meta)
    assert json.loads(meta["class_names"]) == list(CIFAR10_CLASS_NAMES)
    assert json.loads(meta["input_spec"])["dtype"] == "uint8"
    sha = hashlib.sha256(trained_model.read_bytes()).hexdigest()
    assert meta["source_sha256"] == sha
    assert meta["model_version"] == f"{trained_model.resolve().parent.name}-{sha[:8]}"
    run_metrics = json.loads((trained_model.parent / "metrics.json").read_text())
    metrics = json.loads(meta["metrics"])
    assert metrics["trainer"]["test_accuracy"] == run_metrics["test_accuracy"]
    report = json.loads(out.with_name("model.parity.json").read_text())
    assert metrics["accuracy"] == report["accuracy"]["onnx"]["overall"]
    assert metrics["images"] == 500 and metrics["split"] == "test"
    # the trainer scored the same 500 test images: the ONNX model must match it
    assert abs(metrics["accuracy"] - run_metrics["test_accuracy"]) < 1e-6
    versions = json.loads(meta["producer_versions"])
    assert versions["opset"] == 17 and {"tensorflow", "keras", "tf2onnx", "onnx"} <= set(versions)
    assert json.loads(meta["parity"])["passed"] is True
    predictor = Predictor(out, threads=1)  # the runtime accepts the hand-off
    assert predictor.class_names == CIFAR10_CLASS_NAMES


def test_batch_sizes_1_7_64_agree_with_each_other_and_keras(
    exported, trained_model, subset_test_images
):
    from cifar10_exporter.from_keras.inspection import inspect_model
    from cifar10_exporter.from_keras.model import keras_reference, load_keras_model

    out, _ = exported
    images = subset_test_images[0][:70]
    # The float32 engine: this pins the export's own graph (test_engines.py checks the others).
    predictor = Predictor(out, threads=1, engine="onnxruntime", precision="fp32")
    outputs = {
        size: np.concatenate(
            [predictor.predict_array(images[i : i + size]) for i in range(0, len(images), size)]
        )
        for size in (1, 7, 64)
    }
    model = load_keras_model(trained_model)
    keras_probs = keras_reference(model, inspect_model(model), images)
    for size, probs in outputs.items():
        assert probs.shape == (70, 10) and probs.dtype == np.float32
        np.testing.assert_allclose(probs, outputs[1], atol=1e-6, err_msg=f"batch {size}")
        np.testing.assert_array_equal(probs.argmax(1), outputs[1].argmax(1))
        assert np.abs(probs - keras_probs).max() <= 1e-4


def _tamper(src, dst, delta=0.5):
    """Change one weight of the first 4-D (conv) initializer."""
    model = onnx.load(src)
    tensor = next(t for t in model.graph.initializer if len(t.dims) == 4)
    weights = numpy_helper.to_array(tensor).copy()
    weights.flat[0] += delta
    tensor.CopyFrom(numpy_helper.from_array(weights, tensor.name))
    onnx.save(model, dst)


def test_verify_only_accepts_the_export_and_rejects_a_tampered_copy(
    exported, trained_model, subset_dir, tmp_path, cli
):
    out, _ = exported
    good = tmp_path / "good" / "model.onnx"
    good.parent.mkdir()
    shutil.copy(out, good)
    args = [
        "--verify-only",
        "--model",
        trained_model,
        "--data-dir",
        subset_dir,
        "--samples",
        128,
        "--threads",
        1,
    ]
    result = cli(good, *args)
    assert result.exit_code == 0, result.stderr
    assert "PASSED" in result.stdout

    bad = tmp_path / "bad" / "model.onnx"
    bad.parent.mkdir()
    _tamper(out, bad)
    before = bad.read_bytes()
    result = cli(bad, *args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: parity check failed")
    assert re.search(r"batch 1: max \|diff\|: [0-9.e+-]+ > atol 0\.0001", lines[0]), lines[0]
    assert "Traceback" not in result.stderr
    assert bad.read_bytes() == before  # verification never rewrites the model
    report = json.loads(bad.with_name("model.parity.json").read_text())
    assert report["passed"] is False and report["max_abs_diff"] > 1e-4
