"""Is a run's result believable? Flags a busy machine and withholds figures that cannot be right.

A share of peak above 100% (equivalently, measured points above the "compute bound" line)
means the peak was under-measured, typically because another process took the CPU while the
matmul ran; such shares are not printed as results. A baseline that moved during the run
(the peak, or bare onnxruntime re-timed at the end) marks the whole run BUSY MACHINE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.timing import Budget, summarize, time_calls

# Beyond these ratios between the start and the end of a run, the machine's speed moved.
PEAK_MOVED = 1.15
DRIFT_MOVED = 1.25


def check(results: dict) -> list[str]:
    """Warnings for the report; rows whose share of peak is impossible lose it (kept aside)."""
    warnings: list[str] = []
    peak = results["machine"]["peak"]
    start, end = peak.get("gflops_start"), peak.get("gflops_end")
    if start and end and max(start, end) / min(start, end) > PEAK_MOVED:
        warnings.append(
            f"BUSY MACHINE: the float32 matmul peak moved from {start:.0f} GFLOP/s at the start "
            f"to {end:.0f} GFLOP/s after the latency rows; compare rows with care."
        )
    for batch, drift in (results.get("baseline_drift") or {}).items():
        ratio = drift["end_over_start"]
        if max(ratio, 1 / ratio) > DRIFT_MOVED:
            warnings.append(
                f"BUSY MACHINE: bare onnxruntime at batch {batch} took {ratio:.2f}x its start "
                "p50 when re-timed at the end of the latency rows."
            )
    # INT8 and bf16 rows are shown against the float32 peak for scale, but integer dot products
    # (VNNI, AMX) and bf16 ones can legitimately beat it: only float32 rows above 100% prove
    # the peak under-measured (a row's "model" is its precision; "fp32+int8" is a mixed route).
    over = [
        r
        for r in results.get("latency") or []
        if (r.get("share_of_peak") or 0) > 1.0
        and not r["engine"].endswith("_int8")
        and r.get("model", "fp32") == "fp32"
    ]
    if over:
        worst = max(over, key=lambda r: r["share_of_peak"])
        warnings.append(
            f"BUSY MACHINE: {worst['engine']} at batch {worst['batch']} computed "
            f"{worst['gflops']:.0f} GFLOP/s, {worst['share_of_peak']:.0%} of the measured "
            f"{peak['gflops']:.0f} GFLOP/s peak, which cannot be: the peak was under-measured. "
            "Shares of peak and the compute-bound line are not reported for this run."
        )
        peak["trusted"] = False
        for row in results["latency"]:
            row["share_of_peak_untrusted"] = row.pop("share_of_peak", None)
            row["share_of_peak"] = None
    else:
        peak.setdefault("trusted", True)
    return warnings


def retime_baseline(
    baseline: Any, rows: list[dict], budget: Budget, log: Callable[[str], None]
) -> dict:
    """Bare onnxruntime timed again after every other row: on a shared machine, a p50 that
    moved between the start and the end of the latency section says the load changed."""
    out = {}
    for batch in (1, 256):
        before = next(r for r in rows if r["engine"] == baseline.name and r["batch"] == batch)
        after = summarize(time_calls(baseline.make_call(batch), budget), batch)
        out[str(batch)] = {
            "p50_ms_start": before["p50_ms"],
            "p50_ms_end": after["p50_ms"],
            "end_over_start": after["p50_ms"] / before["p50_ms"],
        }
        log(
            f"  ort batch {batch}: p50 {before['p50_ms']:.3f} ms at start, "
            f"{after['p50_ms']:.3f} ms after the other rows"
        )
    return out
