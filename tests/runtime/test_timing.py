"""The one best-of-N timing loop (cifar10_runtime.engines.timing.best_seconds), shared by the
runtime's engine choice and the exporter's int8 speed and engine evidence (checked in
tests/exporter/test_engine_evidence.py: this folder runs without the exporter)."""

from __future__ import annotations

from collections.abc import Callable

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
