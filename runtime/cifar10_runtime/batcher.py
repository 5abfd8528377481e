"""Adaptive micro-batching: requests that arrive while a run is busy share the next one.

No collector task and no per-request thread hop: `submit` appends the request to a deque
and, when the model is idle, schedules a run for the next turn of the event loop (so the
requests that arrive in the same turn, e.g. from one burst of socket reads, share it). A
run takes up to `max_batch_size` images and goes to a single worker thread in one hop;
its completion comes back to the loop in one callback, which answers every request of the
run and starts the next run at once from what piled up meanwhile. A request that finds
the model idle runs at once, alone: a lone client never waits for company. A run formed
from a backlog may wait at most `max_delay_ms` more for others (default 0: take what is
queued). `max_batch_size=1` turns batching off (every request runs alone, in order).

A lone request on a fast model runs right on the event loop (`inline_ms`): when nothing
else is in flight (the model idle, nothing queued, `crowd()` at most 1, the last run not
shared) and its run is estimated (the measured per-image time of single-request runs, times
its images) under `inline_ms`, handing it to the worker thread and back costs a sizeable
part of the run (thread wake-ups, GIL hand-offs, both dearer on a busy machine), and nobody
waits on the loop meanwhile. `inline_ms=None` sets it at start from that very cost:
limits.INLINE_HAND_OFFS times the median of a few no-op trips to the worker thread and back
(at most limits.INLINE_CAP_MS), so it follows the machine rather than one CPU's figure.
The decision is made when the run starts, one loop turn after `submit`,
so requests read in the same turn count as company. Every run while others are in flight
goes to the worker thread, so the loop keeps reading the next requests while the model
works (running small batches on the loop too measured slower with many clients); 0 sends
every run there.

Whatever goes wrong with a run (assembling the batch or running it) fails only the
requests in that run, is logged once, and serving goes on.

`start(warm_up=...)` runs a warm-up (engines.warmup) on the worker thread before any run:
meanwhile `running`, which every readiness answer reads, is False, and requests taken wait.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from cifar10_runtime import limits
from cifar10_runtime.batch_runs import (
    BatchObserver,
    RunLedger,
    UnavailableError,
    log,
    time_hand_off,
)
from cifar10_runtime.errors import ConfigError

__all__ = ["BatchObserver", "MicroBatcher", "UnavailableError"]


class MicroBatcher(RunLedger):
    """Pending requests in front of a `run(uint8 [N,32,32,3]) -> [N,10]` function."""

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int = limits.MAX_BATCH_SIZE,
        max_delay_ms: float = limits.MAX_DELAY_MS,
        max_queue: int = limits.MAX_QUEUE,
        observer: BatchObserver | None = None,
        inline_ms: float | None = 0.0,  # off unless asked; None: set from a timed hand-off
        crowd: Callable[[], int] | None = None,
    ) -> None:
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int):
            raise ConfigError(f"max_batch_size must be an integer. Received: {max_batch_size!r}.")
        if max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be at least 1. Received: {max_batch_size}.")
        if not max_delay_ms >= 0:
            raise ConfigError(f"max_delay_ms must be 0 or more. Received: {max_delay_ms!r}.")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ConfigError(f"max_queue must be a positive integer. Received: {max_queue!r}.")
        if inline_ms is not None and not inline_ms >= 0:
            raise ConfigError(f"inline_ms must be 0 or more. Received: {inline_ms!r}.")
        super().__init__(observer)
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay_ms / 1000
        self.max_queue = max_queue
        self.inline_auto = inline_ms is None
        self.inline_max = 0.0 if inline_ms is None else inline_ms / 1000
        self.hand_off_s: float | None = None  # the timed hand-off (inline_ms=None), seconds
        self._crowd = crowd  # requests the server has in progress (e.g. HTTP), if known
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque = deque()  # (images, future, queued_at)
        self._pending_images = 0
        self._busy = False  # a run is on the worker thread
        self._scheduled: asyncio.Handle | None = None  # a run is about to start
        self._idle = asyncio.Event()
        self._warm_done = asyncio.Event()
        self._started = False
        self._closing = False
        self.warming = False  # a warm-up holds the worker thread; not ready until it is done
        self.warm_up_result: Any = None  # what the warm-up returned (or raised)
        self.in_flight = 0  # submitted and not yet answered (queued or running)

    @property
    def running(self) -> bool:
        """Ready: taking requests and running them (started, warm, not shutting down)."""
        return self._started and not self._closing and not self.warming

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self, warm_up: Callable[[Callable[[], bool]], Any] | None = None) -> None:
        """Start taking requests on the running event loop (call from the app lifespan).

        `warm_up(stopping)` runs on the worker thread first (`stopping()` turns True when
        close() is called); runs wait for it and `running` is False meanwhile. Returns at
        once: `await warmed()` waits for the warm-up.
        """
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._warm_done = asyncio.Event()
        self._warm_done.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cifar-batch")
        if self.inline_auto:
            self.hand_off_s = await time_hand_off(self._loop, self._executor)
            cap = limits.INLINE_CAP_MS / 1000
            self.inline_max = min(limits.INLINE_HAND_OFFS * self.hand_off_s, cap)
        self._started = True
        if warm_up is None:
            return
        self.warming = self._busy = True
        self._warm_done.clear()
        work = self._executor.submit(warm_up, lambda: self._closing)
        loop = self._loop
        work.add_done_callback(lambda w: loop.call_soon_threadsafe(self._warmed, w))

    def _warmed(self, work: Any) -> None:
        exc = work.exception()
        if exc is not None:  # serve anyway: a run that cannot work fails its own requests
            log.error("warm-up failed, serving without it: %s: %s", type(exc).__name__, exc)
        self.warm_up_result = exc if exc is not None else work.result()
        self.warming = self._busy = False
        self._warm_done.set()
        self._start_run(True)

    async def warmed(self) -> Any:
        """Wait until the warm-up (if any) is done; its result, or the exception it raised."""
        await self._warm_done.wait()
        return self.warm_up_result

    async def close(self) -> None:
        """Stop taking requests, finish every queued one, then stop the worker thread."""
        if not self._started:
            return
        self._closing = True
        while self._busy or self._pending or self._scheduled is not None:
            self._idle.clear()
            await self._idle.wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._executor = None
        self._started = False

    async def submit(self, images: np.ndarray) -> tuple[np.ndarray, int]:
        """Queue uint8 [k,32,32,3]; returns ([k,10] probabilities, size of the run they were in)."""
        if not self._started or self._closing:  # taken while warming: they wait for it
            state = "shutting down" if self._closing else "not started"
            raise UnavailableError(f"the prediction queue is {state}; retry on another replica.")
        if len(self._pending) >= self.max_queue:
            raise UnavailableError(
                f"server busy: {len(self._pending)} requests already queued "
                f"(max_queue={self.max_queue}). Retry shortly."
            )
        assert self._loop is not None
        future = self._loop.create_future()
        self._pending.append((images, future, time.perf_counter()))
        self._pending_images += len(images)
        self.report_depth(len(self._pending))
        if not self._busy:
            if self._scheduled is None:
                self._scheduled = self._loop.call_soon(self._start_run, False)
            elif self._pending_images >= self.max_batch_size:  # waiting for company: full now
                self._scheduled.cancel()
                self._scheduled = self._loop.call_soon(self._start_run, False)
        self.in_flight += 1
        try:
            return await future
        finally:
            self.in_flight -= 1

    def _alone(self, batch: list, size: int) -> bool:
        """Whether this run may go on the loop: one request, nobody else, a short run."""
        solo = self.solo_seconds
        if len(batch) != 1 or solo is None or solo * size > self.inline_max:
            return False  # shared, not timed yet, or too slow for the loop (inline_ms=0)
        if self._pending or self.last_requests > 1:  # clients are many, not one
            return False
        return self._crowd is None or self._crowd() <= 1

    def _start_run(self, backlog: bool) -> None:
        self._scheduled = None
        assert self._loop is not None
        if self._busy:
            return
        if not self._pending:
            self._idle.set()
            return
        if backlog and self.max_delay > 0 and self._pending_images < self.max_batch_size:
            # A run formed from a backlog may wait a little for company (--max-delay-ms).
            self._scheduled = self._loop.call_later(self.max_delay, self._start_run, False)
            return
        batch, size = [], 0
        while self._pending:
            images, future, queued_at = self._pending[0]
            if batch and size + len(images) > self.max_batch_size:
                break  # would overflow this run: it starts the next one
            self._pending.popleft()
            self._pending_images -= len(images)
            if future.done():  # cancelled: its client is gone
                continue
            batch.append((images, future, queued_at))
            size += len(images)
        self.report_depth(len(self._pending))
        if not batch:
            self._start_run(backlog)
            return
        started = time.perf_counter()
        if self.observer is not None:
            for _, _, queued_at in batch:
                self.observer.queued(started - queued_at)
        try:
            # Assembling the batch is inside the try: a request whose array cannot join the
            # others (wrong shape or dtype) must fail this run, not the server.
            x = batch[0][0] if len(batch) == 1 else np.concatenate([e[0] for e in batch])
        except Exception as exc:
            self._deliver_failure(batch, size, started, exc)
            self._start_run(True)
            return
        if self._alone(batch, size):
            try:
                probs, seconds = self._timed(x)
            except Exception as exc:
                self._deliver_failure(batch, size, started, exc)
            else:
                self._deliver(batch, size, started, probs, seconds)
                self.inline_runs += 1
            self._start_run(True)
            return
        self._busy = True
        assert self._executor is not None
        work = self._executor.submit(self._timed, x)
        loop = self._loop

        def done(work: Any) -> None:  # on the worker thread: one hop back for the whole run
            loop.call_soon_threadsafe(self._finished, batch, size, started, work)

        work.add_done_callback(done)

    def _timed(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        probs = self._checked(x)
        return probs, time.perf_counter() - started

    def _finished(self, batch: list, size: int, started: float, work: Any) -> None:
        self._busy = False
        try:
            probs, seconds = work.result()
        except Exception as exc:  # delivered to each waiting request, serving goes on
            self._deliver_failure(batch, size, started, exc)
        else:
            self._deliver(batch, size, started, probs, seconds)
        self._start_run(True)

    def _deliver(
        self, batch: list, size: int, started: float, probs: np.ndarray, seconds: float
    ) -> None:
        self.succeeded(size, len(batch), started, seconds)
        offset = 0
        for images, future, _ in batch:
            if not future.done():
                future.set_result((probs[offset : offset + len(images)], size))
            offset += len(images)

    def _deliver_failure(self, batch: list, size: int, started: float, exc: Exception) -> None:
        self.failed(size, len(batch), started, exc)
        for _, future, _ in batch:
            if not future.done():
                future.set_exception(exc)

    def _checked(self, x: np.ndarray) -> np.ndarray:
        probs = self._run_chunked(x)
        if len(probs) != len(x):
            raise RuntimeError(f"the model returned {len(probs)} rows for {len(x)} images")
        return probs

    def _run_chunked(self, x: np.ndarray) -> np.ndarray:
        # A single request may carry more images than max_batch_size; keep runs capped.
        if len(x) <= self.max_batch_size:
            return self._run(x)
        parts = [
            self._run(x[i : i + self.max_batch_size]) for i in range(0, len(x), self.max_batch_size)
        ]
        return np.concatenate(parts)

    def stats(self) -> dict[str, int | float]:
        return {
            "max_batch_size": self.max_batch_size,
            "max_delay_ms": self.max_delay * 1000,
            "max_queue": self.max_queue,
            "inline_ms": round(self.inline_max * 1000, 3),
            "pending": self.pending,
            "in_flight": self.in_flight,
            **self.counts(),
        }
