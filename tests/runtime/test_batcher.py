"""MicroBatcher on its own: adaptive grouping, caps, queue limit, failures, draining on close.

Event-driven: a gated fake model holds a run open while the test queues requests behind it
(`await asyncio.sleep(0)` only yields to the loop, it never waits for time to pass).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cifar10_runtime import ConfigError, batch_runs, limits
from cifar10_runtime import batcher as batcher_module
from cifar10_runtime.batcher import MicroBatcher, UnavailableError


class Recorder:
    """A fake model: returns row i = [value of image i] * 10 and records each run's size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.entered.set()
        self.gate.wait(5)
        self.sizes.append(len(x))
        self.threads.add(threading.current_thread().name)
        return np.repeat(x[:, 0, 0, :1].astype(np.float32), 10, axis=1)


def _images(*values: int) -> np.ndarray:
    out = np.zeros((len(values), 32, 32, 3), np.uint8)
    out[:, 0, 0, 0] = values
    return out


async def _entered(model: Recorder) -> None:
    """Wait (off the loop) until the model is inside a run."""
    assert await asyncio.get_running_loop().run_in_executor(None, model.entered.wait, 10)


async def _queue_behind_a_running_request(batcher: MicroBatcher, model: Recorder, *requests):  # type: ignore[no-untyped-def]
    """Start one request, hold it inside the model, queue `requests` behind it."""
    model.gate.clear()
    first = asyncio.ensure_future(batcher.submit(_images(100)))
    await _entered(model)
    queued = [asyncio.ensure_future(batcher.submit(r)) for r in requests]
    await asyncio.sleep(0)  # let each submit() put its request on the queue
    assert batcher.pending == len(requests)
    return first, queued


def test_a_lone_request_runs_at_once_even_with_a_long_delay() -> None:
    model = Recorder()

    async def scenario() -> tuple:
        # Were the lone request to wait for company, it would wait 10 minutes: the bound
        # below fails the test long before that.
        batcher = MicroBatcher(model, max_batch_size=32, max_delay_ms=600_000)
        await batcher.start()
        result = await asyncio.wait_for(batcher.submit(_images(7)), 30)
        await batcher.close()
        return result

    probs, run_size = asyncio.run(scenario())
    assert model.sizes == [1] and run_size == 1 and probs[0, 0] == 7


def test_requests_that_arrive_during_a_run_form_the_next_one() -> None:
    model = Recorder()

    async def scenario() -> list:
        batcher = MicroBatcher(model, max_batch_size=32)  # default max_delay_ms: 0
        assert batcher.max_delay == 0
        await batcher.start()
        first, queued = await _queue_behind_a_running_request(
            batcher, model, _images(1), _images(2), _images(3, 4)
        )
        model.gate.set()
        results = [await first, *[await q for q in queued]]
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    assert model.sizes == [1, 4]
    assert [size for _, size in results] == [1, 4, 4, 4]
    assert [list(p[:, 0]) for p, _ in results] == [[100], [1], [2], [3, 4]]


def test_a_batch_that_cannot_be_assembled_fails_its_requests_and_serving_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = Recorder()
    odd = np.zeros((1, 16, 16, 3), np.uint8)  # cannot be concatenated with 32x32 images

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_size=32)
        await batcher.start()
        first, (good, bad) = await _queue_behind_a_running_request(batcher, model, _images(1), odd)
        model.gate.set()
        await first
        for request in (good, bad):
            with pytest.raises(ValueError):
                await request
        assert batcher.running and batcher.failed_batches == 1
        probs, _ = await asyncio.wait_for(batcher.submit(_images(9)), 30)
        assert probs[0, 0] == 9
        await batcher.close()

    with caplog.at_level(logging.ERROR, logger="cifar10_runtime.batcher"):
        asyncio.run(scenario())
    failures = [r for r in caplog.records if r.name == "cifar10_runtime.batcher"]
    assert len(failures) == 1 and "a run of 2 images failed" in failures[0].getMessage()
    assert failures[0].exc_info is None  # one line, no traceback


def test_the_observer_sees_queue_waits_runs_and_depth() -> None:
    model = Recorder()
    seen: dict[str, list] = {"queued": [], "ran": [], "depth": []}

    class Observer:
        def queued(self, seconds: float) -> None:
            seen["queued"].append(seconds)

        def ran(self, images: int, requests: int, seconds: float, ok: bool) -> None:
            seen["ran"].append((images, requests, ok))

        def depth(self, pending: int) -> None:
            seen["depth"].append(pending)

    async def scenario() -> None:
        batcher = MicroBatcher(model, observer=Observer())
        await batcher.start()
        first, queued = await _queue_behind_a_running_request(batcher, model, _images(1, 2))
        model.gate.set()
        await first
        await queued[0]
        await batcher.close()

    asyncio.run(scenario())
    assert seen["ran"] == [(1, 1, True), (2, 1, True)]
    assert len(seen["queued"]) == 2 and all(s >= 0 for s in seen["queued"])
    assert max(seen["depth"]) == 1 and seen["depth"][-1] == 0


def test_requests_queued_together_share_one_run() -> None:
    model = Recorder()

    async def scenario() -> list:
        batcher = MicroBatcher(model, max_batch_size=32)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(_images(i)) for i in range(5)))
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    assert model.sizes == [5]
    assert model.threads == {"cifar-batch_0"}  # never the event loop's thread
    for i, (probs, run_size) in enumerate(results):
        assert run_size == 5 and probs.shape == (1, 10) and probs[0, 0] == i


def test_batches_are_capped_and_never_split_a_request() -> None:
    model = Recorder()

    async def scenario() -> list:
        batcher = MicroBatcher(model, max_batch_size=4, max_delay_ms=100)
        await batcher.start()
        sizes = [3, 2, 1, 6]  # 3 then 2 would overflow 4: the 2 starts the next run
        requests = [_images(*range(10 * n, 10 * n + n)) for n in sizes]
        results = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    # 6 images alone exceed the cap: run in chunks of 4 and 2.
    assert model.sizes == [3, 3, 4, 2]
    assert [len(probs) for probs, _ in results] == [3, 2, 1, 6]
    assert list(results[3][0][:, 0]) == [60, 61, 62, 63, 64, 65]


def test_batch_size_one_turns_batching_off() -> None:
    model = Recorder()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_size=1, max_delay_ms=50)
        await batcher.start()
        await asyncio.gather(*(batcher.submit(_images(i)) for i in range(4)))
        await batcher.close()

    asyncio.run(scenario())
    assert model.sizes == [1, 1, 1, 1]


def test_full_queue_and_closed_batcher_are_unavailable() -> None:
    model = Recorder()
    model.gate.clear()  # hold the first run so the queue fills behind it

    async def scenario() -> list:
        batcher = MicroBatcher(model, max_batch_size=1, max_delay_ms=0, max_queue=2)
        with pytest.raises(UnavailableError, match="not started"):
            await batcher.submit(_images(0))
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(_images(1)))
        await _entered(model)  # taken by the collector, blocked in the run
        queued = [asyncio.ensure_future(batcher.submit(_images(i))) for i in (2, 3)]
        await asyncio.sleep(0)  # yield once: both submits queue their request
        assert batcher.pending == 2
        with pytest.raises(UnavailableError, match="max_queue=2"):
            await batcher.submit(_images(4))
        model.gate.set()
        closing = asyncio.ensure_future(batcher.close())  # drains what is queued
        await asyncio.sleep(0)
        assert not batcher.running
        with pytest.raises(UnavailableError, match="shutting down"):
            await batcher.submit(_images(5))
        await closing
        return [await first, *[await q for q in queued]]

    results = asyncio.run(scenario())
    assert [probs[0, 0] for probs, _ in results] == [1, 2, 3]


def test_a_failing_run_fails_its_requests_only() -> None:
    calls = []

    def flaky(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return np.zeros((len(x), 10), np.float32)

    async def scenario() -> None:
        batcher = MicroBatcher(flaky, max_batch_size=8, max_delay_ms=0)
        await batcher.start()
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(_images(1))
        probs, _ = await batcher.submit(_images(2))
        assert probs.shape == (1, 10)
        await batcher.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "kwargs",
    [{"max_batch_size": 0}, {"max_delay_ms": -1}, {"max_queue": 0}, {"max_batch_size": 2.5}],
)
def test_bad_settings_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        MicroBatcher(Recorder(), **kwargs)


class Clock:
    """A fake model that reports a chosen run time, so `inline_ms` decisions are exact."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.threads: list[str] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        return np.zeros((len(x), 10), np.float32)


def _fake_time(monkeypatch: pytest.MonkeyPatch, model: Clock) -> None:
    # Each run "takes" model.seconds: perf_counter advances by that much per call pair.
    ticks = iter(range(10**6))
    monkeypatch.setattr(
        "cifar10_runtime.batcher.time.perf_counter", lambda: next(ticks) * model.seconds
    )


@pytest.mark.parametrize(("run_ms", "on_loop"), [(0.2, True), (5.0, False)])
def test_a_lone_request_runs_on_the_loop_only_when_its_run_is_short(
    monkeypatch: pytest.MonkeyPatch, run_ms: float, on_loop: bool
) -> None:
    model = Clock(run_ms / 1000)
    _fake_time(monkeypatch, model)

    async def scenario() -> MicroBatcher:
        batcher = MicroBatcher(model, inline_ms=1.0, crowd=lambda: 1)
        await batcher.start()
        for _ in range(3):  # the first run measures, the others may go inline
            await batcher.submit(_images(1))
        await batcher.close()
        return batcher

    loop_thread = threading.current_thread().name
    batcher = asyncio.run(scenario())
    assert model.threads[0] == "cifar-batch_0"  # not measured yet: the worker thread
    assert (model.threads[1:] == [loop_thread] * 2) is on_loop
    assert batcher.inline_runs == (2 if on_loop else 0)


def test_a_crowd_keeps_runs_off_the_inline_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    model = Clock(0.0002)
    _fake_time(monkeypatch, model)

    async def scenario() -> list:
        batcher = MicroBatcher(model, inline_ms=1.0, crowd=lambda: 5)  # others are in flight
        await batcher.start()
        await batcher.submit(_images(1))
        results = await asyncio.gather(*(batcher.submit(_images(i)) for i in range(4)))
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    # Still batched: the four queued together share one run, on the worker thread.
    assert [size for _, size in results] == [4, 4, 4, 4]


@pytest.mark.parametrize(
    ("hand_off_s", "inline_ms"),
    [(1e-4, limits.INLINE_HAND_OFFS * 0.1), (1.0, limits.INLINE_CAP_MS)],
    ids=["hand-offs", "capped"],
)
def test_inline_ms_none_is_set_from_the_hand_off_timed_at_start(
    monkeypatch: pytest.MonkeyPatch, hand_off_s: float, inline_ms: float
) -> None:
    timed: list[object] = []

    async def hand_off(loop: asyncio.AbstractEventLoop, executor: object) -> float:
        timed.append(executor)
        return hand_off_s

    monkeypatch.setattr(batcher_module, "time_hand_off", hand_off)

    async def scenario() -> MicroBatcher:
        batcher = MicroBatcher(Recorder(), inline_ms=None)
        assert batcher.stats()["inline_ms"] == 0.0  # nothing timed before start
        await batcher.start()
        await batcher.close()
        return batcher

    batcher = asyncio.run(scenario())
    assert len(timed) == 1 and timed[0] is not None  # the batcher's own worker thread
    assert batcher.hand_off_s == hand_off_s
    assert batcher.stats()["inline_ms"] == pytest.approx(inline_ms)


def test_a_real_hand_off_is_timed_on_the_worker_thread() -> None:
    """No fakes: the trips go to the worker thread and back, and the figure is a duration."""

    async def scenario() -> tuple[float, list[str]]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1, thread_name_prefix="hand-off") as executor:
            seconds = await batch_runs.time_hand_off(loop, executor)
            names = [t.name for t in threading.enumerate() if t.name.startswith("hand-off")]
        return seconds, names

    seconds, names = asyncio.run(scenario())
    assert names == ["hand-off_0"]  # the executor's one thread made every trip
    assert 0 < seconds < 10
