"""A batch plan: which runner serves which batch sizes, chosen by timing at load.

The runners that passed the golden check are timed briefly at TIMING_BATCHES (engines.timing);
each batch range goes to the fastest, and the first runner (onnxruntime float32 when it is a
candidate) keeps a range unless another is SWITCH_MARGIN times faster there. `render` is the
one-block table logged at load.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from cifar10_runtime.engines.cpu import cpu_features, usable_cpus
from cifar10_runtime.engines.runners import Runner
from cifar10_runtime.engines.timing import TIMING_BATCHES

# A candidate replaces onnxruntime float32 only when this much faster (load-time timings on a
# shared machine wobble by a few percent; the target is "never below 0.95x").
SWITCH_MARGIN = 1.10


@dataclass
class BatchPlan:
    """The chosen runners by batch size and the evidence behind the choice."""

    steps: list[tuple[int, Runner]]  # (smallest batch, runner), ascending from 1
    table: list[dict[str, Any]] = field(default_factory=list)
    why: str = ""
    seconds: float = 0.0
    text: str = ""  # the table as logged
    # Where the timings came from ("timed at load", or the cache and when): part of `why` for
    # the log, kept apart so a record meant to last (the model card) can leave it out.
    timing: str = ""
    basis: str = ""  # `why` without `timing` (empty: `why` never named it)

    def runner_for(self, n: int) -> Runner:
        chosen = self.steps[0][1]
        for start, runner in self.steps:
            if n >= start:
                chosen = runner
        return chosen

    @property
    def name(self) -> str:
        if len(self.steps) == 1:
            return self.steps[0][1].name
        parts = []
        for i, (start, runner) in enumerate(self.steps):
            end = self.steps[i + 1][0] - 1 if i + 1 < len(self.steps) else None
            span = f"{start}-{end}" if end is not None else f"{start}+"
            parts.append(f"{runner.name} (batch {span})")
        return ", ".join(parts)

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "by_batch": [
                {"from_batch": start, "engine": r.name, "backend": r.backend}
                for start, r in self.steps
            ],
            "why": self.why,
            "timing": self.timing,
            "basis": self.basis or self.why,
            "candidates": self.table,
            "load_seconds": round(self.seconds, 3),
            "cpu": cpu_features()["cpu"],
            "cpu_features": cpu_features()["summary"],
        }


def build_steps(
    runners: list[Runner], speeds: dict[str, dict[int, float]]
) -> list[tuple[int, Runner]]:
    """The fastest runner per batch range; the first runner (onnxruntime float32 when it is a
    candidate) keeps a range unless another is SWITCH_MARGIN times faster there."""
    base = runners[0]
    by_name = {r.name: r for r in runners}
    winners = []
    for b in TIMING_BATCHES:
        name = max(speeds, key=lambda n: speeds[n][b])
        if name != base.name and speeds[name][b] < SWITCH_MARGIN * speeds[base.name][b]:
            name = base.name
        winners.append(by_name[name])
    steps: list[tuple[int, Runner]] = []
    for i, runner in enumerate(winners):
        start = 1 if i == 0 else math.ceil(math.sqrt(TIMING_BATCHES[i - 1] * TIMING_BATCHES[i]))
        if not steps or steps[-1][1] is not runner:
            steps.append((start, runner))
    return steps


def fmt(value: Any) -> str:
    return f"{value:.2g}" if isinstance(value, float) else "-"


def render(plan: BatchPlan, source: str, threads: int | None) -> str:
    """The choice as one block of text for the log."""
    cpu = cpu_features()
    # Timings taken while other processes hold the cores are worth less: say how busy it was.
    load = f"; load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    lines = [
        f"engine choice for {source} on {cpu['cpu']} ({cpu['summary']}; "
        f"threads {threads or 'default'}; {usable_cpus()} cores{load}):",
        f"  {'candidate':<17} {'golden |diff|':>13} {'tolerance':>9}  "
        + " ".join(f"{'b=' + str(b):>8}" for b in TIMING_BATCHES)
        + "  status",
    ]
    for row in plan.table:
        speeds = row.get("images_per_s", {})
        cells = " ".join(f"{speeds.get(str(b), '-'):>8}" for b in TIMING_BATCHES)
        tol = row.get("tolerance")
        note = f": {row['note']}" if row.get("note") else ""
        opened = f" (opened in {row['open_s']:.2f} s)" if "open_s" in row else ""
        lines.append(
            f"  {row['candidate']:<17} {fmt(row.get('golden_max_diff')):>13} "
            f"{(f'{tol:g}' if tol is not None else '-'):>9}  {cells}  {row['status']}{opened}{note}"
        )
    lines.append(f"  chosen: {plan.name} ({plan.why}; load {plan.seconds:.2f} s)")
    return "\n".join(lines)
