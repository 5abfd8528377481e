"""A model trained under mixed_bfloat16 exports to a float32 ONNX.

One real `cifar-train --precision mixed_bfloat16` epoch on a slice of the subset, then a default
`cifar-export`: no bfloat16/float16 tensor or cast anywhere in the graph, parity passed, and the
card names the training precision. The same model converted WITHOUT the float32 rebuild does
carry bfloat16 casts, so the first check can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory: pytest.TempPathFactory, data_slice: Path) -> Path:
    run = tmp_path_factory.mktemp("bf16") / "run"
    cmd = [sys.executable, "-m", "cifar10_trainer.cli", "--data-dir", str(data_slice)]
    cmd += ["--precision", "mixed_bfloat16", "--epochs", "1", "--batch-size", "32", "--quiet"]
    res = subprocess.run(
        [*cmd, "--output-dir", str(run)], capture_output=True, text=True, env=ENV, timeout=600
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return run


def sixteen_bit(proto) -> list[str]:  # noqa: ANN001 - an onnx.ModelProto
    """Every initializer, typed value or Cast in the graph (subgraphs included) in 16 bits."""
    from onnx import TensorProto

    bad = {TensorProto.BFLOAT16, TensorProto.FLOAT16}
    found: list[str] = []

    def walk(graph) -> None:  # noqa: ANN001
        found.extend(f"initializer {t.name}" for t in graph.initializer if t.data_type in bad)
        values = [*graph.input, *graph.output, *graph.value_info]
        found.extend(f"value {v.name}" for v in values if v.type.tensor_type.elem_type in bad)
        for node in graph.node:
            for attr in node.attribute:
                if node.op_type == "Cast" and attr.name == "to" and attr.i in bad:
                    found.append(f"Cast {node.name}")
                if attr.type == attr.GRAPH:
                    walk(attr.g)
                elif attr.type == attr.TENSOR and attr.t.data_type in bad:
                    found.append(f"constant {node.name}")

    walk(proto.graph)
    return found


def test_mixed_bfloat16_model_exports_to_float32_with_parity(
    bf16_run: Path, data_slice: Path, tmp_path: Path
) -> None:
    import onnx

    metrics = json.loads((bf16_run / "metrics.json").read_text())
    assert metrics["precision"] == "mixed_bfloat16"
    out = tmp_path / "model.onnx"
    cmd = [sys.executable, "-m", "cifar10_exporter.cli", str(out)]
    cmd += ["--model", str(bf16_run / "model.keras"), "--data-dir", str(data_slice)]
    # One epoch on 360 images is near chance: the accuracy floor is not what is tested here.
    cmd += ["--samples", "100", "--min-accuracy", "0", "--quantize", "none"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "model trained under mixed_bfloat16: rebuilt to compute in float32" in res.stdout
    assert sixteen_bit(onnx.load(str(out))) == []
    parity = json.loads(out.with_name("model.parity.json").read_text())
    assert parity["passed"] is True and parity["max_abs_diff"] <= parity["tolerances"]["atol"]
    card = out.with_name("model.md").read_text()
    assert "Training precision mixed_bfloat16; exported in float32 (float32 weights" in card


def test_without_the_rebuild_bfloat16_would_reach_the_graph(bf16_run: Path) -> None:
    from cifar10_exporter.from_keras.convert import convert_to_onnx
    from cifar10_exporter.from_keras.float32_graph import as_float32
    from cifar10_exporter.from_keras.inspection import inspect_model
    from cifar10_exporter.from_keras.model import load_keras_model

    model = load_keras_model(bf16_run / "model.keras")
    spec = inspect_model(model, source="bf16")
    assert sixteen_bit(convert_to_onnx(model, spec, 17)) != []  # what the rebuild prevents
    rebuilt, trained_in = as_float32(model)
    assert trained_in == "mixed_bfloat16"
    assert {layer.dtype_policy.name for layer in rebuilt.layers} == {"float32"}
    for a, b in zip(model.get_weights(), rebuilt.get_weights(), strict=True):
        assert a.dtype == b.dtype == "float32" and (a == b).all()
    assert as_float32(rebuilt) == (rebuilt, None)  # a float32 model comes back untouched
