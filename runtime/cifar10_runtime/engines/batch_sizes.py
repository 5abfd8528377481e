"""The largest batch a server's runs should take, measured on this machine's plan at start.

A micro-batcher that takes up to N queued images per run helps only while bigger runs cost
less per image, and where that stops depends on the CPU (its caches above all) and on the
engine. On the fixture model, onnxruntime float32 on a 2-core AMD EPYC with AVX-512 VNNI ran
4,959 images/s at batch 4 and 2,286 at batch 64, while int8 peaked at batch 8-16; on an
AVX2-only EPYC float32 still grew up to batch 256. No constant is right everywhere, so
`tune` times the plan at 1, 2, 4, ... up to a ceiling (interleaved, engines.timing) and
takes the largest size whose images/s is within KNEE of the best one: beyond it a bigger run
does not serve more images, it only makes each of its requests wait longer.

The result is kept per machine in the timing cache (engines.timing_cache: the same key as the
engine timings plus the plan and the sizes), so only the first start on a machine times it,
and a new CPU, core count, thread count, model or engine version times again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cifar10_runtime.contract import IMAGE_SHAPE
from cifar10_runtime.engines import timing_cache
from cifar10_runtime.engines.load import Stopwatch
from cifar10_runtime.engines.plan import BatchPlan
from cifar10_runtime.engines.timing import images_per_s, time_cells

# Within 15% of the best images/s counts as the best: on a quiet 2-core AMD EPYC three
# ladders in a row, of int8 runs whose speed hardly depends on the batch, gave figures
# within +-10% of each other and, at a 5% knee, chose 2, 16 and 4. Among equals the larger
# batch amortises the server's own per-run work, which the ladder does not time (the hop to
# the worker thread, assembling the batch, answering each request); where bigger runs do
# cost, they cost far more than 15% (float32: 4,959 images/s at batch 4, 2,286 at 64).
KNEE = 0.85
# The whole ladder's timed calls: 1..32 images is 63 images a round, a few ms on any CPU.
LADDER_BUDGET_S = 0.3
LADDER_CAP_S = 1.0  # a very busy machine: no further rounds, and nothing cached


@dataclass(frozen=True)
class BatchTuning:
    """The batch size chosen, the images/s it was chosen from and where they came from."""

    size: int
    speeds: dict[int, float] = field(default_factory=dict)
    source: str = "asked for"

    def describe(self) -> str:
        """One phrase for the start line, e.g. 'max 8 images (images/s at batch 1: 4,087, ...,
        32: 2,917; timed at start)', or 'max 1 images (asked for)'."""
        if not self.speeds:
            return f"max {self.size} images ({self.source})"
        cells = ", ".join(f"{b}: {v:,.0f}" for b, v in self.speeds.items())
        return f"max {self.size} images (images/s at batch {cells}; {self.source})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_batch_size": self.size,
            "images_per_s": {str(b): round(v, 1) for b, v in self.speeds.items()},
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, record: Any) -> BatchTuning | None:
        """`to_dict`'s record read back (how cifar-serve hands its choice to its workers);
        None when it is not one."""
        try:
            size = record["max_batch_size"]
            speeds = {int(b): float(v) for b, v in record["images_per_s"].items()}
            source = record["source"]
        except (TypeError, KeyError, ValueError, AttributeError):
            return None
        if not isinstance(size, int) or isinstance(size, bool) or not isinstance(source, str):
            return None
        return cls(size, speeds, source)


def ladder(ceiling: int) -> list[int]:
    """1, 2, 4, ... below `ceiling`, then `ceiling` itself."""
    if ceiling < 1:
        raise ValueError(f"the ceiling must be at least 1. Received: {ceiling}")
    sizes = [1 << i for i in range(ceiling.bit_length()) if 1 << i < ceiling]
    return [*sizes, ceiling]


def choose(speeds: dict[int, float], knee: float = KNEE) -> int:
    """The largest batch size whose images/s is at least `knee` times the best one."""
    best = max(speeds.values())
    return max(b for b, v in speeds.items() if v >= knee * best)


def tune(
    run: Callable[[np.ndarray], object],
    plan: BatchPlan,
    ceiling: int,
    threads: int | None,
    *,
    clock: Callable[[], float] = time.perf_counter,
    others: Callable[[], float] | None = None,  # None: load.others_cpu_s
    cpus: int | None = None,  # None: cpu.usable_cpus()
) -> BatchTuning:
    """The batch size for a server running `run` (the Predictor's predict_array on `plan`):
    from the cache when this machine has timed this plan before, else timed now (and kept
    unless other processes used the CPUs meanwhile: load.Stopwatch)."""
    sizes = ladder(ceiling)
    if ceiling == 1:
        return BatchTuning(1, {}, "the ceiling is 1")
    runners = [r for _, r in plan.steps]
    steps = [[start, r.name] for start, r in plan.steps]
    key = timing_cache.machine_key(runners, threads, {"ladder": sizes, "plan": steps})
    cached = _cached(key, sizes)
    if cached is not None:
        return cached
    zeros = np.zeros((ceiling, *IMAGE_SHAPE), dtype=np.uint8)
    calls = {b: (lambda b=b: run(zeros[:b])) for b in sizes}
    watch = Stopwatch(clock, others, cpus)
    best = time_cells(calls, budget=LADDER_BUDGET_S, cap=LADDER_CAP_S, clock=clock)
    speeds = {b: images_per_s(b, best[b]) for b in sizes}
    if not watch.cacheable(LADDER_CAP_S):
        return BatchTuning(choose(speeds), speeds, "timed at start, on a busy machine: not kept")
    timing_cache.remember(key, {"ladder": {str(b): v for b, v in speeds.items()}})
    return BatchTuning(choose(speeds), speeds, "timed at start")


def _cached(key: str | None, sizes: list[int]) -> BatchTuning | None:
    found = timing_cache.recall(key)
    if found is None:
        return None
    entry, where = found
    when = timing_cache.measured_when(entry)
    try:
        speeds = {b: float(entry["ladder"][str(b)]) for b in sizes}
    except (TypeError, KeyError, ValueError, OverflowError):
        return None
    if when is None or not timing_cache.usable_speeds(speeds.values()):
        return None
    return BatchTuning(choose(speeds), speeds, f"timings from {when} {where}")
