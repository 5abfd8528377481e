"""`--tta flip`: the graph averages each image with its mirror image, every check holds, and
the card states what the averaging buys and costs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from cifar10_exporter.config import ExportConfig
from cifar10_exporter.int8.graph import float_nodes
from cifar10_exporter.wrapper import WrapperSpec
from cifar10_runtime.engines.sessions import cpu_session
from cifar10_runtime.errors import ConfigError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tta_export(trained_model, subset_dir, tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("tta") / "model.onnx"
    args = ("--data-dir", subset_dir, "--samples", 100, "--threads", 1, "--quantize", "none")
    return out, cli(out, "--model", trained_model, "--tta", "flip", *args)


def _run(path, images: np.ndarray) -> np.ndarray:
    return cpu_session(path.read_bytes(), 1).run(None, {"image": images})[0]


def test_the_graph_averages_each_image_with_its_mirror(tta_export, exported, subset_test_images):
    (out, result), (plain, plain_result) = tta_export, exported
    assert result.exit_code == 0 and plain_result.exit_code == 0, result.stderr
    images = np.ascontiguousarray(subset_test_images[0][:40])
    # Any batch size, odd ones included: the two halves are split by the graph's own batch.
    for batch in (images[:1], images[:7], images):
        expected = (_run(plain, batch) + _run(plain, np.ascontiguousarray(batch[:, :, ::-1]))) / 2
        np.testing.assert_allclose(_run(out, batch), expected, atol=1e-5)
    assert not np.allclose(_run(out, images), _run(plain, images), atol=1e-3)  # it does change


def test_records_card_and_metadata_state_the_averaging(tta_export):
    out, result = tta_export
    report = json.loads(out.with_name("model.parity.json").read_text())
    assert report["passed"] is True
    tta = report["tta"]
    assert tta["mode"] == "flip" and tta["images"] == 100 and tta["split"] == "test"
    assert 0.0 <= tta["accuracy_without"] <= 1.0 and 0.0 <= tta["accuracy_with"] <= 1.0
    # The averaged figure is the one the gate judged (ONNX reproduces the averaged Keras).
    assert tta["accuracy_with"] == pytest.approx(report["accuracy"]["onnx"]["overall"])
    assert tta["images_per_s_with"] > 0 and tta["images_per_s_without"] > 0
    card = out.with_suffix(".md").read_text()
    assert "## Test-time augmentation" in card and "averaged with its mirror image" in card
    assert f"{tta['accuracy_without']:.2%} without" in card
    assert f"{tta['accuracy_with']:.2%} with" in card
    assert "tta flip: top-1" in result.stdout
    settings = json.loads(out.with_name("model.export.json").read_text())
    assert settings["config"]["tta"] == "flip" and settings["model_spec"]["tta"] == "flip"
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert json.loads(meta["export_wrapper"])["tta"] == "flip"


def test_verify_only_checks_the_averaged_graph(tta_export, trained_model, subset_dir, cli):
    out, _ = tta_export
    args = ("--data-dir", subset_dir, "--samples", 100, "--threads", 1, "--quantize", "none")
    # No --tta: the graph's recorded wrapper says how Keras must be wrapped to match it.
    result = cli(out, "--model", trained_model, "--verify-only", *args)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "averaged with its mirror image" in result.stdout


def test_int8_keeps_the_averaging_float_and_finds_the_image_cast(tta_export):
    out, _ = tta_export
    model = onnx.load(out)
    kept = set(float_nodes(model, False, False))
    nodes = {n.name: n for n in model.graph.node}
    # The image's Cast now follows the Concat of the images and their mirror images, and is
    # still found (so uint8-input recipes can feed the quantizer the uint8 pixels).
    concat = next(n for n in nodes.values() if n.op_type == "Concat" and "image" in n.input)
    cast = next(n for n in nodes.values() if n.op_type == "Cast" and concat.output[0] in n.input)
    scale = next(n for n in nodes.values() if cast.output[0] in n.input)
    assert {cast.name, scale.name} <= kept
    # After the Softmax: the two half Slices, their Add and the halving, all kept float.
    softmax = next(n for n in nodes.values() if n.op_type == "Softmax")
    after = sorted(nodes[k].op_type for k in kept - {cast.name, scale.name, softmax.name})
    assert after == ["Add", "Mul", "Slice", "Slice"]


def test_unknown_tta_is_refused_and_old_records_mean_none(tmp_path):
    with pytest.raises(ConfigError, match=r"--tta must be one of .*Received: --tta=mirror"):
        ExportConfig(output=tmp_path / "m.onnx", tta="mirror")
    old = WrapperSpec("uint8", (None, 32, 32, 3), "none", False, "float32", "last layer").to_dict()
    del old["tta"]  # written before --tta existed
    assert WrapperSpec.from_dict(old).tta == "none"
