"""Profiles that explain the numbers: onnxruntime's per-operator profiler and cProfile.

They run after the timed rows (profiling slows every call) and only feed the report's
"why" section: where batch-256 time goes against the FLOPs each operator type does, how much
of a batch-1 call is spent outside kernels, and what the Predictor adds in Python.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np


def ort_operator_profile(
    model: Path, threads: int, x: np.ndarray, runs: int, macs_by_op: dict[str, int]
) -> dict:
    """Per-op-type kernel time at batch len(x), and each type's achieved GFLOP/s.

    onnxruntime rewrites the graph (Conv+Relu fusion, NCHWc layouts on AVX-512), so op types
    in the profile are the executed ones; FLOPs are attributed by family (any *Conv* kernel
    gets the Conv MACs, any *Gemm*/*MatMul* kernel the dense ones).
    """
    import onnxruntime as ort

    from cifar10_runtime.engines.sessions import session_options

    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        opts = session_options(threads)  # the runtime's recipe, plus profiling
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}
        for _ in range(3):
            sess.run(None, feed)
        wall = 0.0
        for _ in range(runs):
            t0 = time.perf_counter()
            sess.run(None, feed)
            wall += time.perf_counter() - t0
        events = json.loads(Path(sess.end_profiling()).read_text())
    # Keep the last `runs` runs only (warm-up runs are profiled too).
    run_events = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start_after = run_events[-runs]["ts"] if len(run_events) >= runs else 0
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if e["ts"] < start_after:
            continue
        op = e.get("args", {}).get("op_name", "?")
        by_op[op] = by_op.get(op, 0.0) + e["dur"] / 1e6
    kernel_total = sum(by_op.values())
    conv_macs = sum(v for k, v in macs_by_op.items() if "Conv" in k)
    dense_macs = sum(v for k, v in macs_by_op.items() if "Gemm" in k or "MatMul" in k)
    conv_s = sum(v for k, v in by_op.items() if "Conv" in k)
    dense_s = sum(v for k, v in by_op.items() if "Gemm" in k or "MatMul" in k)
    n_images = len(x) * runs
    ops = [
        {"op": op, "seconds_per_run": s / runs, "share_of_kernel_time": s / kernel_total}
        for op, s in sorted(by_op.items(), key=lambda kv: -kv[1])
    ]
    return {
        "batch": len(x),
        "runs": runs,
        "wall_s_per_run": wall / runs,
        "kernel_s_per_run": kernel_total / runs,
        "outside_kernels_share": max(0.0, 1 - kernel_total / wall) if wall else None,
        "ops": ops,
        "conv_gflops": 2 * conv_macs * n_images / conv_s / 1e9 if conv_s else None,
        "dense_gflops": 2 * dense_macs * n_images / dense_s / 1e9 if dense_s else None,
        "conv_share_of_kernel_time": conv_s / kernel_total if kernel_total else None,
    }


def python_profile(fn, calls: int, top: int = 8) -> dict:  # noqa: ANN001 - any callable
    """cProfile `calls` calls of fn: share of time inside InferenceSession.run, top functions."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    run_s = 0.0
    for (filename, _, name), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        label = f"{Path(filename).name}:{name}" if filename != "~" else name
        # The C++ run of the pybind session: time spent in onnxruntime itself.
        if (
            name.startswith("<built-in method onnxruntime")
            and name.endswith(".run>")
            or ("method 'run' of 'onnxruntime" in name)
        ):
            run_s = max(run_s, cumtime)
        rows.append({"function": label, "calls": ncalls, "self_s": tottime})
    rows.sort(key=lambda r: -r["self_s"])
    return {
        "calls": calls,
        "total_s": total,
        "inside_session_run_share": run_s / total if total else None,
        "top_self_time": [{**r, "self_us_per_call": r["self_s"] / calls * 1e6} for r in rows[:top]],
    }
