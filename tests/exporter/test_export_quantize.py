"""`--quantize auto|int8|none`: the twin by default when a recipe passes, never a failure.

auto (the default) writes the INT8 twin when a recipe passes its gate; when none passes, one
line says so, no twin is left beside OUTPUT (a stale one included) and the export succeeds.
none neither searches nor writes a twin; int8 fails without a passing twin (test_export_int8).
The card names the precision that answers in the runtime's own words. The unit tests need no
TensorFlow; the slow ones export small models on synthetic images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cifar10_exporter.config import QUANTIZE, ExportConfig
from cifar10_exporter.int8.quantize import no_pass_line
from cifar10_exporter.outputs.card import precision_section
from cifar10_exporter.outputs.files import ArtifactPaths
from cifar10_runtime import Predictor
from cifar10_runtime.errors import ModelError

slow = pytest.mark.slow
NO_PASS = "int8: no recipe passed its gate"


def test_auto_is_the_default_and_older_settings_mean_none(tmp_path: Path) -> None:
    config = ExportConfig(output=tmp_path / "m.onnx")
    assert QUANTIZE == ("auto", "int8", "none") and config.quantize == "auto"
    assert config.to_dict()["quantize"] == "auto"  # what .export.json records
    # Saved exports from before auto wrote null for "no twin": they still mean no twin.
    assert ExportConfig(output=tmp_path / "m.onnx", quantize=None).quantize == "none"
    # auto with no check images is not an error (the twin is skipped); int8 is.
    assert ExportConfig(output=tmp_path / "m.onnx", samples=0).quantize == "auto"


def test_the_no_pass_line_names_the_recipes_and_the_best_against_the_gate(tmp_path: Path) -> None:
    config = ExportConfig(output=tmp_path / "m.onnx")
    rows = [
        {"recipe": "minmax", "top1_agreement": 0.91, "accuracy_drop": 0.03, "passed": False},
        {"recipe": "minmax-ends-float", "top1_agreement": 0.972, "accuracy_drop": 0.004},
        {"recipe": "entropy", "passed": False, "error": "quantizer failed"},
    ]
    line = no_pass_line(rows, config)
    assert "\n" not in line and line.startswith(NO_PASS)
    assert "3 tried: minmax, minmax-ends-float, entropy" in line
    assert "best: minmax-ends-float 97.20% agreement < 98%" in line
    assert "accuracy drop 0.40 <= 1 points" in line
    assert line.endswith("the fp32 model answers")
    built_none = no_pass_line([rows[2]], config)
    assert "none could be built (quantizer failed)" in built_none


def test_the_card_names_the_precision_in_the_runtimes_words() -> None:
    answers = {
        "engine": "onnxruntime/int8 (batch 1-7), openvino/int8 (batch 8+)",
        "precision": "int8",
        "why": "fastest per batch range",
        "cpu": "Test CPU (int8: none)",
    }
    text = "\n".join(precision_section(answers, {"written": True}))
    assert "## Which precision answers" in text and "**int8**" in text
    assert f"`{answers['engine']}`" in text and "`--precision fp32`" in text
    note = {"written": False, "note": f"{NO_PASS} (1 tried: minmax; best: ...)"}
    text = "\n".join(precision_section({**answers, "precision": "fp32"}, note))
    assert "No INT8 twin: no recipe passed its gate (1 tried" in text
    refused = "\n".join(precision_section({"error": "golden set differs"}, None))
    assert "would not load this file here: golden set differs" in refused
    assert precision_section(None, None) == []


def _stale_twin(out: Path) -> ArtifactPaths:
    """A twin and its report from an earlier export of another model, beside OUTPUT."""
    paths = ArtifactPaths.for_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths.int8.write_bytes(b"an older model's twin")
    paths.int8_parity.write_text("{}")
    return paths


@slow
def test_auto_without_a_passing_recipe_succeeds_with_one_line_and_no_twin(
    outlier_model: Path, tmp_path: Path, cli
) -> None:
    out = tmp_path / "model.onnx"
    paths = _stale_twin(out)
    # The outlier model is untrained: --min-accuracy 0 lets its fp32 model past the accuracy
    # gate, so that the recipe search is what fails.
    args = ["--model", outlier_model, "--dataset", "synthetic", "--samples", 64, "--threads", 1]
    args += ["--min-accuracy", 0, "--int8-recipes", "minmax,minmax-ends-float"]
    result = cli(out, *args)
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith(NO_PASS)]
    assert len(lines) == 1, result.stdout
    assert "(2 tried: minmax, minmax-ends-float; best: " in lines[0]
    assert "% agreement < 98%" in lines[0]
    assert "error:" not in result.stderr
    assert out.is_file() and not paths.int8.exists() and not paths.int8_parity.exists()
    settings = json.loads(paths.config.read_text())
    assert settings["config"]["quantize"] == "auto" and settings["outputs"]["int8"] is None
    assert settings["passed"] is True
    record = json.loads(paths.parity.read_text())["int8"]
    assert record["written"] is False and record["note"] == lines[0]
    assert [r["recipe"] for r in record["recipes"]] == ["minmax", "minmax-ends-float"]
    card = paths.card.read_text()
    assert "**fp32**" in card and "No INT8 twin: no recipe passed its gate" in card
    assert Predictor(out, threads=1).precision == "fp32"

    # --verify-only: auto with no twin is no error; int8 asks for the twin that is not there.
    verify = ["--verify-only", "--model", outlier_model, "--dataset", "synthetic"]
    verify += ["--samples", 64, "--threads", 1, "--min-accuracy", 0]
    checked = cli(out, *verify)
    assert checked.exit_code == 0, checked.stdout + checked.stderr
    refused = cli(out, *verify, "--quantize", "int8")
    assert refused.exit_code == ModelError.exit_code
    err = refused.stderr.strip()
    assert "\n" not in err and f"no int8 model at {paths.int8}" in err


@slow
def test_none_neither_searches_nor_leaves_a_twin(keras_models, tmp_path: Path, cli) -> None:
    out = tmp_path / "model.onnx"
    paths = _stale_twin(out)
    args = ["--model", keras_models["uint8_sequential"], "--dataset", "synthetic"]
    result = cli(out, *args, "--samples", 16, "--threads", 1, "--quantize", "none")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "int8: trying" not in result.stdout  # no search at all
    assert out.is_file() and not paths.int8.exists() and not paths.int8_parity.exists()
    settings = json.loads(paths.config.read_text())
    assert settings["config"]["quantize"] == "none" and settings["outputs"]["int8"] is None
    assert "int8" not in json.loads(paths.parity.read_text())
    assert "**fp32**" in paths.card.read_text()


def _two_convs() -> bytes:
    """uint8 image -> Cast -> Mul(1/255) -> Transpose -> Conv -> Relu -> Conv -> Softmax."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.float32(1 / 255), "s"),
        numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=(4, 4, 3, 3)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "s"], ["u"]),
        helper.make_node("Transpose", ["u"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Softmax", ["c2"], ["out"], axis=1),
    ]
    for i, node in enumerate(nodes):
        node.name = f"{node.op_type}_{i}"  # the recipes keep nodes float by name
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 32, 32, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4, 32, 32])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def _conv_weights(proto) -> list[np.ndarray]:
    """The quantized weights of each Conv, in graph order."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    made = {n.output[0]: n for n in proto.graph.node}
    return [inits[made[n.input[1]].input[0]] for n in proto.graph.node if n.op_type == "Conv"]


@pytest.mark.parametrize(
    ("name", "first", "rest"),
    [
        ("minmax", (np.int8, 127), (np.int8, 127)),
        ("minmax-7bit", (np.int8, 64), (np.int8, 64)),
        ("minmax-7bit-first-u8", (np.uint8, 255), (np.int8, 64)),
    ],
)
def test_seven_bit_weights_and_a_uint8_first_conv(name: str, first, rest) -> None:
    """7-bit recipes keep int8 weights within -64..64 (no u8s8 pair sum saturates without
    VNNI); minmax-7bit-first-u8 gives the first Conv, which reads the whole 0..255 image,
    uint8 weights instead."""
    from cifar10_exporter.int8.recipes import RECIPES, quantize_recipe

    images = np.random.default_rng(1).integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
    weights = _conv_weights(quantize_recipe(_two_convs(), images, RECIPES[name]))
    assert len(weights) == 2
    for w, (dtype, top) in zip(weights, (first, rest), strict=True):
        assert w.dtype == dtype and int(np.abs(w.astype(np.int32)).max()) == top, (w.dtype, top)
