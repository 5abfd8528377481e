"""Labels in the check: `--input-scale auto` by evidence, the accuracy gate, the model card.

The models (conftest `raw_models`) were trained on float pixels in [0, 255] with no rescaling
layer: the case where "image / 255" passes parity and scores chance.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from cifar10_exporter.errors import ParityError
from cifar10_runtime import Predictor
from cifar10_runtime.contract import CIFAR10_CLASS_NAMES

pytestmark = pytest.mark.slow


def _export(cli, out, model, *extra):
    return cli(out, "--model", model, "--threads", 1, "--quantize", "none", *extra)


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def raw_export(raw_models, subset_dir, tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("raw_export") / "model.onnx"
    return out, _export(cli, out, raw_models["raw"], "--data-dir", subset_dir)


def test_default_export_picks_raw_by_evidence_and_onnx_scores_as_keras(
    raw_export, raw_models, subset_test_images
):
    out, result = raw_export
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.with_name("model.parity.json").read_text())
    pre = report["preprocessing"]
    assert pre["chosen"] == "raw/RGB" and pre["decided_by"] == "evidence", pre
    assert pre["why"].startswith("clear winner raw/RGB") and "z=" in pre["why"]
    assert [c["name"] for c in pre["candidates"]] == [
        f"{s}/{o}" for s in ("unit", "raw", "standardize") for o in ("RGB", "BGR")
    ]
    assert "clear winner raw/RGB" in result.stdout  # printed, not only recorded
    for cand in pre["candidates"]:
        assert f"{cand['name']:<16} accuracy {cand['accuracy']:.3f}" in result.stdout

    accuracy = report["accuracy"]
    assert accuracy["measured"] and accuracy["n"] == 500 and accuracy["split"] == "test"
    assert accuracy["data"].endswith("cifar-10-batches-py") and accuracy["dataset"] == "cifar10"
    keras_acc = raw_models["accuracy"]
    assert keras_acc > 0.2  # clearly above chance, or the test says nothing
    assert accuracy["keras"]["overall"] == pytest.approx(keras_acc, abs=1e-9)
    assert accuracy["onnx"]["overall"] == pytest.approx(keras_acc, abs=1e-9)
    assert set(accuracy["onnx"]["per_class_accuracy"]) == set(CIFAR10_CLASS_NAMES)
    assert np.array(accuracy["onnx"]["confusion_matrix"]).sum() == 500
    assert report["accuracy_gate"]["applied"] and report["accuracy_gate"]["passed"]

    images, labels = subset_test_images
    # uint8 RGB in: the contract; float32 engine: the export's own graph
    probs = Predictor(out, threads=1, engine="onnxruntime").predict_array(images)
    assert float((probs.argmax(1) == labels).mean()) == pytest.approx(keras_acc, abs=1e-9)
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    metrics = json.loads(meta["metrics"])
    assert metrics["accuracy"] == accuracy["onnx"]["overall"]
    assert (metrics["images"], metrics["split"]) == (500, "test")
    assert json.loads(meta["preprocessing"])["chosen"] == "raw/RGB"
    assert json.loads(meta["export_wrapper"])["input_scale"] == "raw"


def test_model_card_names_the_figures_of_the_parity_report(raw_export):
    out, _ = raw_export
    card = out.with_name("model.md").read_text()
    report = json.loads(out.with_name("model.parity.json").read_text())
    accuracy = report["accuracy"]
    assert f"Top-1 accuracy on {accuracy['n']} labelled images of the cifar10 test split" in card
    assert f"| overall | {100 * accuracy['keras']['overall']:.1f}% |" in card
    for name, value in accuracy["onnx"]["per_class_accuracy"].items():
        assert f"| {name} | " in card and f"{100 * value:.1f}%" in card
    for cand in report["preprocessing"]["candidates"]:
        assert f"| {cand['name']} | {100 * cand['accuracy']:.1f}% |" in card
    assert f"max |diff| {report['max_abs_diff']:.3g}" in card
    assert f"on {report['n']} images" in card
    assert "uint8 `[N, 32, 32, 3]`, RGB" in card and "Intended use and limits" in card


def test_verify_only_regenerates_the_card(raw_export, raw_models, subset_dir, tmp_path, cli):
    out, _ = raw_export
    copy = tmp_path / "model.onnx"
    shutil.copy(out, copy)
    result = _export(cli, copy, raw_models["raw"], "--data-dir", subset_dir, "--verify-only")
    assert result.exit_code == 0, result.stderr
    assert copy.with_name("model.md").read_text() == out.with_name("model.md").read_text()


def test_bgr_trained_model_picks_bgr(raw_models, subset_dir, tmp_path, cli):
    out = tmp_path / "model.onnx"
    result = _export(cli, out, raw_models["bgr"], "--data-dir", subset_dir)
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.with_name("model.parity.json").read_text())
    assert report["preprocessing"]["chosen"] == "raw/BGR", report["preprocessing"]["why"]
    assert report["accuracy"]["onnx"]["overall"] == pytest.approx(raw_models["accuracy"])


@pytest.mark.parametrize("name", ["random", "shuffled"])
def test_hopeless_model_is_refused_with_one_line(raw_models, subset_dir, tmp_path, cli, name):
    out = tmp_path / "model.onnx"
    result = _export(cli, out, raw_models[name], "--data-dir", subset_dir)
    assert result.exit_code == ParityError.exit_code
    line = _one_line(result)
    assert line.startswith(f"error: accuracy gate failed for {out}: ONNX accuracy 0.")
    assert "below 0.20 (2x chance)" in line
    assert "--input-scale" in line and "--class-names" in line and "not written" in line
    assert not out.exists() and not out.with_name("model.md").exists()
    report = json.loads(out.with_name("model.parity.json").read_text())
    assert report["passed"] is True  # parity held: only labels could see the problem
    assert report["accuracy_gate"]["passed"] is False


def test_shuffled_class_order_is_fixed_by_class_names(raw_models, subset_dir, tmp_path, cli):
    out = tmp_path / "model.onnx"
    names = ",".join(np.roll(np.array(CIFAR10_CLASS_NAMES), 5))
    result = _export(
        cli, out, raw_models["shuffled"], "--data-dir", subset_dir, "--class-names", names
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.with_name("model.parity.json").read_text())
    assert report["accuracy"]["onnx"]["overall"] == pytest.approx(raw_models["accuracy"])


@pytest.mark.parametrize(("claimed", "passes"), [(0.10, False), (0.02, True)])
def test_trainer_run_accuracy_is_the_bar_on_the_same_split(
    raw_models, subset_dir, tmp_path, cli, claimed, passes
):
    """A run folder that recorded a test accuracy: more than 5 points below it fails."""
    run = tmp_path / "runs" / "20260101T000000Z"
    run.mkdir(parents=True)
    shutil.copy(raw_models["raw"], run / "model.keras")
    recorded = raw_models["accuracy"] + claimed
    (run / "config.json").write_text(
        json.dumps(
            {
                "parameters": {"dataset": "cifar10", "data_dir": str(subset_dir), "epochs": 5},
                "data": {"source": str(subset_dir / "cifar-10-batches-py"), "test_images": 500},
            }
        )
    )
    (run / "metrics.json").write_text(
        json.dumps({"test_accuracy": recorded, "test_loss": 2.0, "test_images": 500})
    )
    out = tmp_path / "model.onnx"
    result = _export(cli, out, run / "model.keras")  # check images: the run's data_dir
    if passes:
        assert result.exit_code == 0, result.stderr
        assert "within 5 points of the run 20260101T000000Z" in result.stdout
        card = out.with_name("model.md").read_text()
        assert "Trainer run `20260101T000000Z`" in card and "| epochs | 5 |" in card
        meta = {p.key: p.value for p in onnx.load(out).metadata_props}
        assert json.loads(meta["metrics"])["trainer"]["test_accuracy"] == recorded
        return
    assert result.exit_code == ParityError.exit_code
    line = _one_line(result)
    assert "more than 5 points below the run 20260101T000000Z's recorded test accuracy" in line
    assert not out.exists()


def test_unlabelled_check_says_accuracy_not_measured(raw_models, tmp_path, cli):
    out = tmp_path / "model.onnx"
    result = _export(cli, out, raw_models["raw"], "--dataset", "synthetic", "--samples", 0)
    assert result.exit_code == 0, result.stderr
    assert "no labelled check images: kept today's rule, unit RGB" in result.stdout
    report = json.loads(out.with_name("model.parity.json").read_text())
    assert report["accuracy"] == {
        "measured": False,
        "note": "accuracy not measured: no labelled check images",
    }
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert json.loads(meta["metrics"])["accuracy"] is None
    assert "accuracy not measured" in out.with_name("model.md").read_text()
