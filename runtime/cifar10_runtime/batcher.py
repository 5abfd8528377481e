"""Adaptive micro-batching: requests that arrive while a run is busy share the next one.

One asyncio task collects queued requests. A request that finds the queue empty runs at
once, alone: a lone client never waits for company. Requests that arrive while a run is
in progress pile up in the queue and form the next run (up to `max_batch_size` images),
which may wait at most `max_delay_ms` more for others (default 0: take what is queued).
Runs execute on a single worker thread, so the event loop never blocks and onnxruntime
gets one large call instead of many small ones competing for the cores. `max_batch_size=1`
turns batching off (every request runs alone, still in arrival order).

Whatever goes wrong with a run (assembling the batch or running it) fails only the
requests in that run, is logged once, and the collector goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from .errors import CifarError, ConfigError

log = logging.getLogger("cifar10_runtime.batcher")
_STOP = object()


class UnavailableError(CifarError):
    """The server cannot take the request now (queue full, not started, shutting down)."""

    exit_code = 1


class BatchObserver(Protocol):
    """What the batcher reports, e.g. to Prometheus (cifar10_runtime.metrics)."""

    def queued(self, seconds: float) -> None: ...  # one request's wait before its run
    def ran(self, images: int, requests: int, seconds: float, ok: bool) -> None: ...
    def depth(self, pending: int) -> None: ...


class MicroBatcher:
    """Queue of pending requests in front of a `run(uint8 [N,32,32,3]) -> [N,10]` function."""

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int = 32,
        max_delay_ms: float = 0.0,
        max_queue: int = 256,
        observer: BatchObserver | None = None,
    ) -> None:
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int):
            raise ConfigError(f"max_batch_size must be an integer. Received: {max_batch_size!r}.")
        if max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be at least 1. Received: {max_batch_size}.")
        if not max_delay_ms >= 0:
            raise ConfigError(f"max_delay_ms must be 0 or more. Received: {max_delay_ms!r}.")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ConfigError(f"max_queue must be a positive integer. Received: {max_queue!r}.")
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay_ms / 1000
        self.max_queue = max_queue
        self.observer = observer
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self.in_flight = 0  # submitted and not yet answered (queued, collecting or running)
        self.batches = 0
        self.images = 0
        self.largest_batch = 0
        self.failed_batches = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing

    @property
    def pending(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        """Start the collector task on the running event loop (call from the app lifespan)."""
        if self._task is not None:
            return
        self._closing = False
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cifar-batch")
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="batcher")

    async def close(self) -> None:
        """Stop taking requests, finish every queued one, then stop the worker thread."""
        if self._task is None or self._queue is None:
            return
        self._closing = True
        self._queue.put_nowait(_STOP)  # after everything already queued: those still run
        await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._task = self._executor = None

    async def submit(self, images: np.ndarray) -> tuple[np.ndarray, int]:
        """Queue uint8 [k,32,32,3]; returns ([k,10] probabilities, size of the run they were in)."""
        if self._queue is None or not self.running:
            state = "shutting down" if self._closing else "not started"
            raise UnavailableError(f"the prediction queue is {state}; retry on another replica.")
        if self._queue.qsize() >= self.max_queue:
            raise UnavailableError(
                f"server busy: {self._queue.qsize()} requests already queued "
                f"(max_queue={self.max_queue}). Retry shortly."
            )
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((images, future, time.perf_counter()))
        self._report_depth()
        self.in_flight += 1
        try:
            return await future
        finally:
            self.in_flight -= 1

    def _report_depth(self) -> None:
        if self.observer is not None:
            self.observer.depth(self.pending)

    async def _collect(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        carry = None
        stopping = False
        while not stopping:
            if carry is not None:
                item, carry, backlog = carry, None, True
            else:
                # A request that finds the queue empty is alone: it runs at once. One that
                # was already waiting arrived during the last run, with others maybe close.
                backlog = not self._queue.empty()
                item = await self._queue.get()
            if item is _STOP:
                break
            batch, size = [item], len(item[0])
            deadline = loop.time() + (self.max_delay if backlog else 0.0)
            while size < self.max_batch_size:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if nxt is _STOP:
                    stopping = True
                    break
                if size + len(nxt[0]) > self.max_batch_size:
                    carry = nxt  # would overflow this run: it starts the next one
                    break
                batch.append(nxt)
                size += len(nxt[0])
            self._report_depth()
            await self._execute(batch, loop)

    async def _execute(self, batch: list, loop: asyncio.AbstractEventLoop) -> None:
        live = [entry for entry in batch if not entry[1].done()]  # skip cancelled requests
        if not live:
            return
        started = time.perf_counter()
        if self.observer is not None:
            for _, _, queued_at in live:
                self.observer.queued(started - queued_at)
        size = sum(len(images) for images, _, _ in live)
        try:
            # Assembling the batch is inside the try: a request whose array cannot join the
            # others (wrong shape or dtype) must fail this run, not kill the collector.
            x = live[0][0] if len(live) == 1 else np.concatenate([e[0] for e in live])
            probs = await loop.run_in_executor(self._executor, self._run_chunked, x)
            if len(probs) != size:
                raise RuntimeError(f"the model returned {len(probs)} rows for {size} images")
        except Exception as exc:  # delivered to each waiting request, the loop goes on
            self.failed_batches += 1
            log.error("a run of %d images failed: %s: %s", size, type(exc).__name__, exc)
            self._observe_run(size, len(live), started, ok=False)
            for _, fut, _ in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self._observe_run(size, len(live), started, ok=True)
        self.batches += 1
        self.images += size
        self.largest_batch = max(self.largest_batch, size)
        offset = 0
        for images, fut, _ in live:
            if not fut.done():
                fut.set_result((probs[offset : offset + len(images)], size))
            offset += len(images)

    def _observe_run(self, images: int, requests: int, started: float, ok: bool) -> None:
        if self.observer is not None:
            self.observer.ran(images, requests, time.perf_counter() - started, ok)

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
            "pending": self.pending,
            "in_flight": self.in_flight,
            "batches": self.batches,
            "failed_batches": self.failed_batches,
            "images": self.images,
            "largest_batch": self.largest_batch,
        }
