"""Timing engines: the one best-of-N loop, and the load-time timing of the candidates.

`best_seconds` is the loop every stage times a call with (the runtime's engine choice, the
exporter's int8 speed and engine evidence): the shortest of repeated calls, since a shared
machine only ever makes a call slower, so the fastest is the least disturbed.
`time_runners` times the candidates that passed the golden check at TIMING_BATCHES,
interleaved, within a fixed budget (engines.plan turns the figures into a BatchPlan).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from cifar10_runtime.engines.runners import Runner

# Batch sizes timed at load; each range between their geometric midpoints goes to the fastest
# (1-7 and 8+). Few: OpenVINO compiles kernels for each new input shape on its first call.
TIMING_BATCHES = (1, 64)
TIMING_BUDGET_S = 0.25  # all timed calls together, well inside the 1.5 s load budget
TIMING_CAP_S = 0.6  # past this (a very busy machine), one call per remaining cell
TIMING_ROUNDS = 2


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


def time_runners(runners: list[Runner], images: np.ndarray) -> dict[str, dict[int, float]]:
    """Best images/s of each runner at each TIMING_BATCHES size: TIMING_ROUNDS rounds of
    every cell in turn, so a burst of load from other processes hits every runner alike, and
    the best call of a cell is the one least disturbed. Bounded: each cell gets its share of
    TIMING_BUDGET_S, and past TIMING_CAP_S (a very busy machine) only one call per cell."""
    feeds = {
        b: np.ascontiguousarray(np.resize(images, (b, *images.shape[1:]))) for b in TIMING_BATCHES
    }
    cell_budget = TIMING_BUDGET_S / (TIMING_ROUNDS * len(runners) * len(TIMING_BATCHES))
    best = {r.name: {b: math.inf for b in TIMING_BATCHES} for r in runners}
    cap = time.perf_counter() + TIMING_CAP_S
    for rnd in range(TIMING_ROUNDS):
        for b in TIMING_BATCHES:
            for r in runners:
                if rnd == 0:  # a new batch size allocates on its first call: never timed
                    r.run(feeds[b])
                deadline = min(time.perf_counter() + cell_budget, cap)
                seconds = best_seconds(lambda r=r, b=b: r.run(feeds[b]), until=deadline)
                best[r.name][b] = min(best[r.name][b], seconds)
    return {name: {b: b / s for b, s in cells.items()} for name, cells in best.items()}
