"""The one best-of-N timing loop (cifar10_runtime.engines.timing.best_seconds), shared by the
runtime's engine choice and the exporter's int8 speed and engine evidence (checked in
tests/exporter/test_engine_evidence.py: this folder runs without the exporter)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from cifar10_runtime.engines import timing


def _clock(*reads: float) -> Callable[[], float]:
    """A clock that returns `reads` in turn (two per call: before and after it)."""
    values = iter(reads)
    return lambda: next(values)


def test_best_of_n_calls_is_the_shortest() -> None:
    calls: list[int] = []
    clock = _clock(0, 3, 3, 4, 4, 6)  # calls of 3, 1 and 2 seconds
    assert timing.best_seconds(lambda: calls.append(1), runs=3, clock=clock) == 1
    assert len(calls) == 3


def test_the_loop_stops_at_its_deadline() -> None:
    calls: list[int] = []
    clock = _clock(0, 4, 4, 8, 8, 12, 12, 16)  # 4 s each: the third ends past 10
    assert timing.best_seconds(lambda: calls.append(1), runs=100, until=10, clock=clock) == 4
    assert len(calls) == 3


def test_a_deadline_already_past_still_times_one_call() -> None:
    calls: list[int] = []
    assert timing.best_seconds(lambda: calls.append(1), until=0, clock=_clock(5, 7)) == 2
    assert calls == [1]


def test_one_call_when_neither_runs_nor_deadline_is_given() -> None:
    calls: list[int] = []
    assert timing.best_seconds(lambda: calls.append(1)) >= 0.0
    assert calls == [1]


class _VirtualClock:
    """Time that moves only when a fake runner runs: the timing is exact and instant."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _FakeRunner:
    """Costs `per_image` seconds per image of virtual time; `slow` calls at the start cost
    `disturbed` times as much, as a burst of load from another process would."""

    def __init__(self, name: str, per_image: float, clock: _VirtualClock, slow: int = 0) -> None:
        self.name, self.per_image, self.clock, self.slow = name, per_image, clock, slow
        self.calls: dict[int, int] = {}

    def run(self, feed: np.ndarray) -> None:
        b = len(feed)
        self.calls[b] = self.calls.get(b, 0) + 1
        factor = 3.0 if self.slow > 0 else 1.0
        self.slow -= 1
        self.clock.now += self.per_image * b * factor


def test_a_dear_cell_still_runs_every_round_and_a_cheap_one_runs_many_times() -> None:
    clock = _VirtualClock()
    # Batch 64 at 1 ms an image is 64 ms: far more than a cell's share of the budget.
    a = _FakeRunner("a", 1e-3, clock)
    b = _FakeRunner("b", 0.8e-3, clock)
    timing.time_runners([a, b], np.zeros((3, 2), np.float32), clock=clock)
    big, small = max(timing.TIMING_BATCHES), min(timing.TIMING_BATCHES)
    for r in (a, b):
        # untimed first call + the call that sets the count + one per round
        assert r.calls[big] == 2 + timing.TIMING_ROUNDS
        assert r.calls[small] > 10 * timing.TIMING_ROUNDS


def test_the_least_disturbed_call_decides_so_a_burst_does_not_flip_the_choice() -> None:
    clock = _VirtualClock()
    # "fast" is 20% faster, but its first calls (at every batch size) ran during a burst.
    slow = _FakeRunner("slow", 1.2e-3, clock)
    fast = _FakeRunner("fast", 1e-3, clock, slow=4)
    speeds = timing.time_runners([slow, fast], np.zeros((3, 2), np.float32), clock=clock)
    for b in timing.TIMING_BATCHES:
        assert speeds["fast"][b] == pytest.approx(1 / 1e-3)
        assert speeds["slow"][b] == pytest.approx(1 / 1.2e-3)


def test_past_the_cap_no_further_rounds_are_run() -> None:
    clock = _VirtualClock()
    # 64 s per batch-64 call: the first calls alone run far past the cap.
    r = _FakeRunner("r", 1.0, clock)
    speeds = timing.time_runners([r], np.zeros((3, 2), np.float32), clock=clock)
    assert r.calls[max(timing.TIMING_BATCHES)] == 2
    assert speeds["r"][max(timing.TIMING_BATCHES)] == pytest.approx(1.0)


def test_calls_per_round_fit_the_share_and_are_bounded() -> None:
    assert timing.cell_calls(0.01, 0.001) == 10
    assert timing.cell_calls(0.01, 0.05) == 1
    assert timing.cell_calls(0.01, 0.0) == 1000
    assert timing.cell_calls(1.0, 1e-9) == 1000
