"""Fast checks of the benchmark's arithmetic: FLOPs from an ONNX graph and percentiles."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bare `pytest` does not put the repository root on sys.path
    sys.path.insert(0, str(REPO))

from benchmarks.flops import count_macs  # noqa: E402
from benchmarks.timing import percentile, summarize  # noqa: E402


def _tiny_model(path: Path) -> None:
    """Conv 3->8 (3x3, pad 1) on 32x32, then Gemm 8192->10, with a dynamic batch."""
    w = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    g = numpy_helper.from_array(np.zeros((8 * 32 * 32, 10), np.float32), "g")
    shape = numpy_helper.from_array(np.array([-1, 8 * 32 * 32], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "g"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        initializer=[w, g, shape],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_macs_are_counted_per_image_from_the_graph(tmp_path: Path) -> None:
    _tiny_model(tmp_path / "tiny.onnx")
    result = count_macs(tmp_path / "tiny.onnx")
    conv = 8 * 3 * 3 * 3 * 32 * 32
    gemm = 8 * 32 * 32 * 10
    assert result["by_op"] == {"Conv": conv, "Gemm": gemm}
    assert result["flops"] == 2 * (conv + gemm)


def test_percentiles_interpolate_and_summary_counts_items() -> None:
    values = [0.001 * i for i in range(1, 101)]  # 1..100 ms
    assert percentile(values, 50) == np.percentile(values, 50)
    assert abs(percentile(values, 99) - np.percentile(values, 99)) < 1e-12
    s = summarize(values, items_per_call=8)
    assert s["runs"] == 100 and abs(s["p50_ms"] - 50.5) < 1e-9
    assert abs(s["items_per_s"] - 8 / 0.0505) < 1e-6
