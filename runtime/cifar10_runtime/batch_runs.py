"""What the micro-batcher records of its runs: the counters `stats()` reports, the observer's
events, and what its inline decision reads: the run-time estimate of single-request runs,
and the time of a hand-off to the worker thread and back (`time_hand_off`).

`RunLedger` is MicroBatcher's base class (cifar10_runtime.batcher), so the counters stay
attributes of the batcher (`batcher.images`, `.largest_batch`, ...).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from concurrent.futures import Executor
from typing import Protocol

from cifar10_runtime.errors import CifarError

log = logging.getLogger("cifar10_runtime.batcher")
EWMA = 0.2  # weight of the newest run in the single-request run-time estimate
HAND_OFF_TRIPS = 15  # no-op trips timed at start: about a millisecond in all


class UnavailableError(CifarError):
    """The server cannot take the request now (queue full, not started, shutting down)."""

    exit_code = 1


class BatchObserver(Protocol):
    """What the batcher reports, e.g. to Prometheus (cifar10_runtime.serving.metrics)."""

    def queued(self, seconds: float) -> None: ...  # one request's wait before its run
    def ran(self, images: int, requests: int, seconds: float, ok: bool) -> None: ...
    def depth(self, pending: int) -> None: ...


class RunLedger:
    """Counts runs, images and failures, and tells the observer."""

    def __init__(self, observer: BatchObserver | None) -> None:
        self.observer = observer
        self.solo_seconds: float | None = None  # seconds per image of a single-request run
        self.last_requests = 0  # requests in the last run
        self.batches = 0
        self.images = 0
        self.largest_batch = 0
        self.failed_batches = 0
        self.inline_runs = 0

    def report_depth(self, pending: int) -> None:
        if self.observer is not None:
            self.observer.depth(pending)

    def failed(self, size: int, requests: int, started: float, exc: Exception) -> None:
        self.failed_batches += 1
        log.error("a run of %d images failed: %s: %s", size, type(exc).__name__, exc)
        if self.observer is not None:
            self.observer.ran(size, requests, time.perf_counter() - started, False)

    def succeeded(self, size: int, requests: int, started: float, seconds: float) -> None:
        self.last_requests = requests
        if self.observer is not None:
            self.observer.ran(size, requests, time.perf_counter() - started, True)
        self.batches += 1
        self.images += size
        self.largest_batch = max(self.largest_batch, size)
        if requests == 1:
            per_image = seconds / size
            solo = self.solo_seconds
            self.solo_seconds = per_image if solo is None else EWMA * per_image + (1 - EWMA) * solo

    def counts(self) -> dict[str, int]:
        return {
            "batches": self.batches,
            "inline_runs": self.inline_runs,
            "failed_batches": self.failed_batches,
            "images": self.images,
            "largest_batch": self.largest_batch,
        }


async def time_hand_off(loop: asyncio.AbstractEventLoop, executor: Executor) -> float:
    """The median seconds of a no-op's trip to `executor`'s thread and back, made as a run
    makes it (one submit, one call_soon_threadsafe back); the first trip, which may start
    the thread, is not counted."""
    trips = []
    for trip in range(HAND_OFF_TRIPS + 1):
        back: asyncio.Future[None] = loop.create_future()
        started = time.perf_counter()
        work = executor.submit(_nothing)
        work.add_done_callback(lambda _, back=back: loop.call_soon_threadsafe(_arrived, back))
        await back
        if trip:
            trips.append(time.perf_counter() - started)
    return statistics.median(trips)


def _nothing() -> None:
    return None


def _arrived(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
