"""Timing engines: the one best-of-N loop, and the load-time timing of the candidates.

`best_seconds` is the loop every stage times a call with (the runtime's engine choice, the
exporter's int8 speed and engine evidence): the shortest of repeated calls, since a shared
machine only ever makes a call slower, so the fastest is the least disturbed.
`time_cells` is the interleaved timing of several calls within a budget; `time_runners` uses
it on the candidates that passed the golden check at TIMING_BATCHES (engines.plan turns the
figures into a BatchPlan), engines.batch_sizes on the chosen plan at a ladder of batch sizes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from cifar10_runtime.engines.runners import Runner

# Batch sizes timed at load; each range between their geometric midpoints goes to the fastest
# (1-7 and 8+). Few: OpenVINO compiles kernels for each new input shape on its first call.
TIMING_BATCHES = (1, 64)
# All timed calls together. Each cell (runner x batch) gets an equal share of it per round,
# as a number of calls set from its own first call, so a cheap cell (batch 1) makes many calls
# and a dear one (batch 64 on a slow CPU) still makes one per round: a fixed time slice gave
# such cells one or two calls in all, and the choice between engines 10-30% apart was noise.
TIMING_BUDGET_S = 0.5
# Interleaved rounds: a burst of load from other processes hits every runner alike, and each
# cell's best call comes from at least this many attempts spread over the timing.
TIMING_ROUNDS = 4
# Past this (a very busy machine), the remaining rounds are skipped and the timings are not
# cached (engines.timing_cache), so a later load measures again.
TIMING_CAP_S = 1.5

K = TypeVar("K")


def best_seconds(
    call: Callable[[], object],
    *,
    runs: int | None = None,
    until: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """The shortest wall time of repeated `call()`s: at least one call, then more until
    `runs` calls were made or `clock()` reached `until` (whichever comes first; neither
    given: one call). Warm-up calls are the caller's business."""
    if runs is None and until is None:
        runs = 1
    best, made = math.inf, 0
    while True:
        t0 = clock()
        call()
        t1 = clock()
        best, made = min(best, t1 - t0), made + 1
        if (runs is not None and made >= runs) or (until is not None and t1 >= until):
            return best


def time_runners(
    runners: list[Runner],
    images: np.ndarray,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict[int, float]]:
    """Best images/s of each runner at each TIMING_BATCHES size (time_cells: interleaved
    rounds, every cell's calls counted from its own first call, bounded by TIMING_CAP_S)."""
    feeds = {
        b: np.ascontiguousarray(np.resize(images, (b, *images.shape[1:]))) for b in TIMING_BATCHES
    }
    calls = {
        (r.name, b): (lambda r=r, b=b: r.run(feeds[b])) for b in TIMING_BATCHES for r in runners
    }
    best = time_cells(calls, clock=clock)
    return {r.name: {b: images_per_s(b, best[r.name, b]) for b in TIMING_BATCHES} for r in runners}


def images_per_s(batch: int, seconds: float) -> float:
    """Images per second of a call on `batch` images that took `seconds` (a clock too coarse
    to see it counts as a nanosecond, not a division by zero)."""
    return batch / max(seconds, 1e-9)


def time_cells(
    calls: dict[K, Callable[[], object]],
    *,
    budget: float = TIMING_BUDGET_S,
    cap: float = TIMING_CAP_S,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[K, float]:
    """The best seconds of each cell's call: a first call per cell (untimed: a new batch size
    allocates, a per-shape engine compiles) and one timed call that sets how many calls the
    cell makes per round (its share of `budget`, at least one), then TIMING_ROUNDS rounds of
    every cell in turn, so a burst of load from other processes hits every cell alike and
    each cell's best call is its least disturbed. Past `cap` seconds, no further rounds."""
    share = budget / (TIMING_ROUNDS * max(1, len(calls)))
    ends = clock() + cap
    best: dict[K, float] = {}
    runs: dict[K, int] = {}
    for key, call in calls.items():
        call()
        best[key] = best_seconds(call, clock=clock)
        runs[key] = cell_calls(share, best[key])
    for _ in range(TIMING_ROUNDS):
        if clock() >= ends:
            break
        for key, call in calls.items():
            best[key] = min(best[key], best_seconds(call, runs=runs[key], clock=clock))
    return best


def cell_calls(share: float, first_call_s: float) -> int:
    """Calls a cell makes per round: as many as fit its share of the budget, at least one.
    At most 1,000, so a clock too coarse to see a call cannot make it loop for long."""
    if first_call_s <= 0:
        return 1000
    return max(1, min(1000, int(share / first_call_s)))
