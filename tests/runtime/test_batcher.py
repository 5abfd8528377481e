"""MicroBatcher on its own: grouping, caps, queue limit, draining on close."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from cifar10_runtime import ConfigError
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


def test_requests_within_the_delay_share_one_run() -> None:
    model = Recorder()

    async def scenario() -> list:
        batcher = MicroBatcher(model, max_batch_size=32, max_delay_ms=200)
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
        while not model.entered.is_set():  # taken by the collector, blocked in the run
            await asyncio.sleep(0.001)
        queued = [asyncio.ensure_future(batcher.submit(_images(i))) for i in (2, 3)]
        await asyncio.sleep(0.01)
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
