"""Timing loops and statistics shared by every measurement."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """How long to time one cell: warm-up calls, then runs until both floors are reached."""

    warmup: int
    min_runs: int
    max_runs: int
    seconds: float  # stop after this much timed work once min_runs are done
    hard_seconds: float  # slow cells (big JPEG batches) stop here with >= 10 runs
    rounds: int = 1  # engines are interleaved: each cell gets 1/rounds of this per round
    # Later rounds warm up for this long (at least one call): after another engine ran, the
    # first calls pay for parked worker threads and cold caches, which is not steady state.
    rewarm_seconds: float = 0.0


QUICK = Budget(warmup=2, min_runs=3, max_runs=20, seconds=0.15, hard_seconds=0.5)
# 40 rounds of ~0.1 s: this VM's speed changes state every few seconds, so short slices spread
# each state over every engine (see latency.run_engines).
FULL = Budget(
    warmup=10,
    min_runs=100,
    max_runs=5000,
    seconds=4.0,
    hard_seconds=12.0,
    rounds=40,
    rewarm_seconds=0.03,
)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples_s: Sequence[float], items_per_call: int = 1) -> dict:
    """p50/p90/p99/mean/min in milliseconds and items per second (from the mean)."""
    s = sorted(samples_s)
    mean = sum(s) / len(s)
    return {
        "runs": len(s),
        "p50_ms": percentile(s, 50) * 1e3,
        "p90_ms": percentile(s, 90) * 1e3,
        "p99_ms": percentile(s, 99) * 1e3,
        "mean_ms": mean * 1e3,
        "min_ms": s[0] * 1e3,
        "items_per_s": items_per_call / mean if mean > 0 else math.nan,
    }


def split(budget: Budget, rounds: int, first: bool) -> Budget:
    """One round's share of a cell's budget (full warm-up only in the first round)."""
    return Budget(
        warmup=budget.warmup if first else 1,
        min_runs=max(1, -(-budget.min_runs // rounds)),
        max_runs=max(1, -(-budget.max_runs // rounds)),
        seconds=budget.seconds / rounds,
        hard_seconds=budget.hard_seconds / rounds,
        rounds=rounds,
        rewarm_seconds=0.0 if first else budget.rewarm_seconds,
    )


def time_calls(fn: Callable[[], object], budget: Budget) -> list[float]:
    """Seconds per call of `fn`, after warm-up, with the garbage collector paused.

    The collector is paused so a gen-2 collection triggered by unrelated allocations does not
    land in one engine's p99 and not another's; it runs once before timing starts.
    """
    # Collect before the warm-up, not between it and the timed calls: a full collection with
    # TensorFlow loaded takes long enough for onnxruntime's workers to park again.
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    samples: list[float] = []
    try:
        t0 = time.perf_counter_ns()
        i = 0
        while i < budget.warmup or time.perf_counter_ns() - t0 < budget.rewarm_seconds * 1e9:
            fn()
            i += 1
            # A call slower than the whole budget (big JPEG batches) needs no long warm-up.
            if i >= 2 and time.perf_counter_ns() - t0 > budget.seconds * 1e9:
                break
        spent = 0
        limit_ns = int(budget.seconds * 1e9)
        hard_ns = int(budget.hard_seconds * 1e9)
        floor = min(budget.min_runs, -(-10 // budget.rounds))
        while len(samples) < budget.max_runs and (
            len(samples) < floor
            or (len(samples) < budget.min_runs and spent < hard_ns)
            or spent < limit_ns
        ):
            t0 = time.perf_counter_ns()
            fn()
            dt = time.perf_counter_ns() - t0
            spent += dt
            samples.append(dt / 1e9)
    finally:
        if was_enabled:
            gc.enable()
    return samples
