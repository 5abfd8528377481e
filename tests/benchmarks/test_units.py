"""Fast checks of the benchmark's arithmetic (FLOPs from an ONNX graph, percentiles) and of
what it refuses to report (busy machine, impossible shares of peak)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bare `pytest` does not put the repository root on sys.path
    sys.path.insert(0, str(REPO))

from benchmarks import report, sanity  # noqa: E402
from benchmarks.inference.flops import count_macs  # noqa: E402
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


def _results(share: float, drift: float = 1.0, start: float = 200.0, end: float = 200.0) -> dict:
    peak = {"gflops": max(start, end), "gflops_start": start, "gflops_end": end}
    row = {"engine": "ort", "batch": 256, "gflops": share * peak["gflops"], "share_of_peak": share}
    return {
        "machine": {"peak": peak},
        "baseline_drift": {"256": {"end_over_start": drift}},
        "latency": [row],
    }


def test_a_share_of_peak_over_100_percent_is_withheld_and_flagged() -> None:
    results = _results(1.7, start=27.0, end=27.0)
    warnings = sanity.check(results)
    assert len(warnings) == 1 and "BUSY MACHINE" in warnings[0] and "170%" in warnings[0]
    assert results["latency"][0]["share_of_peak"] is None
    assert results["latency"][0]["share_of_peak_untrusted"] == 1.7
    assert results["machine"]["peak"]["trusted"] is False
    assert "UNDER-MEASURED" in report.header.peak_text(results["machine"]["peak"])


def test_a_steady_run_keeps_its_figures_and_has_no_warning() -> None:
    results = _results(0.86, drift=1.05)
    assert sanity.check(results) == []
    assert results["latency"][0]["share_of_peak"] == 0.86
    assert results["machine"]["peak"]["trusted"] is True


def test_a_moved_baseline_marks_the_run_busy() -> None:
    results = _results(0.4, drift=0.54, start=56.0, end=120.0)
    warnings = sanity.check(results)
    assert len(warnings) == 2 and all(w.startswith("BUSY MACHINE") for w in warnings)
    assert "56" in warnings[0] and "120" in warnings[0] and "0.54x" in warnings[1]
    assert results["latency"][0]["share_of_peak"] == 0.4  # possible, so still reported


def test_int8_above_the_float32_peak_is_possible_and_not_flagged() -> None:
    results = _results(0.8)
    int8 = {"engine": "ort_int8", "batch": 256, "gflops": 300.0, "share_of_peak": 1.5}
    results["latency"].append(int8)
    assert sanity.check(results) == []  # VNNI integer dot products can beat a float32 matmul
    assert int8["share_of_peak"] == 1.5 and results["machine"]["peak"]["trusted"] is True


def test_the_16_client_bar_follows_what_batching_buys_on_the_cpu() -> None:
    """Issue 26: >= 1.0x the non-batching handler everywhere, 1.25x where the engine's
    batch 16 runs >= 1.5x its batch 1, 1.5x where >= 2x; unknown: the strictest."""
    from benchmarks.serving.server import _ladder, batching_target

    assert batching_target({"1": 14440.0, "16": 19845.0})[0] == 1.0  # 1.37x: AVX-512 int8
    assert batching_target({"1": 1540.0, "16": 2400.0})[0] == 1.25  # 1.56x
    assert batching_target({"1": 1000.0, "16": 2000.0})[0] == 1.5
    assert batching_target(None) == (1.5, "the server's batch ladder was not reported")
    assert batching_target({"1": 0.0, "16": 5.0})[0] == 1.5  # damaged figures: the strictest
    meta = b'{"server": {"max_batch_size_choice": {"images_per_s": {"1": 10.0, "16": 30.0}}}}'
    assert _ladder(meta) == {"1": 10.0, "16": 30.0}
    assert _ladder(b'{"server": {}}') is None and _ladder(b"not json") is None
