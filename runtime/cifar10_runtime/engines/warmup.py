"""Warm-up: every batch size a caller can form, run once before serving on the engines that
compile per input shape.

OpenVINO's CPU plugin compiles and caches kernels for each new input shape on its first call
(the runners mark it `Runner.per_shape`); a server that met a new batch size under load would
pay that compile inside a request's latency. So a server runs, before it reports ready, every
batch size its batcher can form on the runner the plan gives that size. To keep that set small
whatever `--max-batch-size` says, a batch larger than RUN_CAP runs in chunks of at most
RUN_CAP images on plans with such an engine (`run_cap`; each chunk goes to the plan's runner
for its own size), so the sizes to warm are at most 1..RUN_CAP. Plans without a per-shape
engine (onnxruntime alone) have nothing to warm and run batches whole, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cifar10_runtime.engines.plan import BatchPlan
from cifar10_runtime.engines.timing import TIMING_BATCHES

# The largest batch a per-shape engine is given: the largest size the plan's timings measured
# (nothing says a bigger batch runs faster per image), and a bound on the warm-up's length.
RUN_CAP = TIMING_BATCHES[-1]


@dataclass
class WarmUp:
    """What a warm-up ran: the batch sizes per runner, for which largest batch, how long."""

    sizes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # runner name -> sizes
    max_batch: int = 0
    seconds: float = 0.0
    stopped: bool = False  # cut short (the server was stopping)

    def describe(self) -> str:
        """One line: e.g. "openvino/int8 at batch 8-32 (25 sizes) in 1.23 s"."""
        if not self.sizes:
            return "nothing to warm (no engine compiles per input shape)"
        parts = [f"{name} at batch {_span(sizes)}" for name, sizes in self.sizes.items()]
        total = sum(len(s) for s in self.sizes.values())
        cut = "; cut short by shutdown" if self.stopped else ""
        return (
            f"{', '.join(parts)} ({total} sizes, every run of up to {self.max_batch} images) "
            f"in {self.seconds:.2f} s{cut}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "by_engine": {name: list(sizes) for name, sizes in self.sizes.items()},
            "max_batch": self.max_batch,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
        }


def sizes_text(sizes: dict[str, list[int]]) -> str:
    """`sizes_to_warm`'s answer in words: e.g. "openvino/int8 at 25 batch sizes (8-32)"."""
    return ", ".join(
        f"{name} at {len(s)} batch sizes ({_span(tuple(s))})" for name, s in sizes.items()
    )


def _span(sizes: tuple[int, ...]) -> str:
    if len(sizes) > 1 and sizes[-1] - sizes[0] == len(sizes) - 1:
        return f"{sizes[0]}-{sizes[-1]}"
    return ", ".join(map(str, sizes))


def run_cap(plan: BatchPlan) -> int | None:
    """The largest batch one call gets on this plan: RUN_CAP when a runner compiles per input
    shape, else None (batches run whole)."""
    return RUN_CAP if any(r.per_shape for _, r in plan.steps) else None


def sizes_to_warm(plan: BatchPlan, max_batch: int, fixed: int | None = None) -> dict[str, list]:
    """{runner name: batch sizes} a caller running batches of 1..max_batch makes the plan's
    per-shape runners see (chunked at run_cap; a fixed-batch model only ever runs `fixed`)."""
    cap = run_cap(plan)
    if cap is None:
        return {}
    reachable = [fixed] if fixed else range(1, min(max_batch, cap) + 1)
    out: dict[str, list] = {}
    for n in reachable:
        runner = plan.runner_for(n)
        if runner.per_shape:
            out.setdefault(runner.name, []).append(n)
    return out


def warm_up(
    plan: BatchPlan,
    max_batch: int,
    feed: Callable[[int], np.ndarray],
    fixed: int | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> WarmUp:
    """Run each size of `sizes_to_warm` once on its runner (`feed(n)`: n images as the runner
    takes them); stops between sizes when `stopping()` says so."""
    started = time.perf_counter()
    record = WarmUp(max_batch=max_batch)
    by_name = {r.name: r for _, r in plan.steps}
    for name, sizes in sizes_to_warm(plan, max_batch, fixed).items():
        done: list[int] = []
        for n in sizes:
            if stopping():
                record.stopped = True
                break
            by_name[name].run(feed(n))
            done.append(n)
        record.sizes[name] = tuple(done)
        if record.stopped:
            break
    record.seconds = time.perf_counter() - started
    return record
