"""Holding up against slow and vanishing clients, at the ASGI level (any HTTP parser).

- `BodyTimeout`: the whole body must arrive within `seconds` of the request head, else
  408 and the connection is closed (a body trickled in slowly no longer pins a connection
  and a worker). One timer per request, armed only while the app waits for body bytes.
- `limit_accept_errors`: when the process runs out of file descriptors asyncio logs
  "socket.accept() out of system resource" on every retry; this keeps one line per
  interval and counts the rest. uvloop (libuv) says nothing at all and drops the
  connections it cannot accept, so `FdWatch` logs (once per interval) when the open
  connections reach the process's descriptor limit.
- A client that disconnects mid-body is one log line (see server.py), never a traceback.
The connection-level guards (header deadline, concurrency limit, lingering close, JSON
answers for the parser's own errors) are in connections.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("cifar10_runtime.serving.app")
ACCEPT_ERROR_INTERVAL = 10.0
FD_SLACK = 2  # descriptors short of the limit that count as out of them (libuv keeps one)


class InFlight:
    """How many HTTP requests the app has in progress (len()): the batcher's crowd signal."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __len__(self) -> int:
        return self.count


class BodyTimeout:
    """ASGI middleware: 408 (and close) when a request body takes longer than `seconds`.

    It also counts the requests in progress into `in_flight`, when given.
    """

    def __init__(self, app: ASGIApp, seconds: float, in_flight: InFlight | None = None) -> None:
        self.app = app
        self.seconds = seconds
        self.in_flight = in_flight if in_flight is not None else InFlight()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight.count += 1
        try:
            await self._guarded(scope, receive, send)
        finally:
            self.in_flight.count -= 1

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        deadline = time.monotonic() + self.seconds
        done = False

        async def receive_in_time() -> Message:
            nonlocal done
            if done:  # after the body only a disconnect can come: wait for it as long as it takes
                return await receive()
            # No wait_for (a task per call): the request's own task is cancelled at the
            # deadline, and that cancellation is turned into the 408 here.
            task = asyncio.current_task()
            assert task is not None
            fired = []

            def expire() -> None:
                fired.append(True)
                task.cancel()

            left = max(0.0, deadline - time.monotonic())
            timer = asyncio.get_running_loop().call_later(left, expire)
            try:
                message = await receive()
            except asyncio.CancelledError:
                if not fired:
                    raise
                task.uncancel()
                raise HTTPException(
                    408,
                    f"the request body did not arrive within {self.seconds:g} s. "
                    "Send it at once (or raise --body-timeout).",
                    headers={"Connection": "close"},
                ) from None
            finally:
                timer.cancel()
            done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, receive_in_time, send)


def limit_accept_errors(
    loop: asyncio.AbstractEventLoop, interval: float = ACCEPT_ERROR_INTERVAL
) -> None:
    """Log "socket.accept() out of system resource" at most once per `interval` seconds."""
    previous = loop.get_exception_handler()
    state = {"last": -float("inf"), "suppressed": 0}

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not str(context.get("message", "")).startswith("socket.accept() out of system"):
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - state["last"] < interval:
            state["suppressed"] += 1
            return
        exc = context.get("exception")
        log.error(
            "cannot accept connections: %s (out of file descriptors? see --limit-concurrency "
            "and ulimit -n); %d more such errors in the last %g s not logged",
            exc,
            state["suppressed"],
            interval,
        )
        state["last"], state["suppressed"] = now, 0

    loop.set_exception_handler(handler)


class FdWatch:
    """Logs when a process's connections use up its file descriptors (ulimit -n)."""

    def __init__(self, interval: float = ACCEPT_ERROR_INTERVAL) -> None:
        self.interval = interval
        self.limit: int | None = None
        self.baseline: int | None = None  # descriptors open besides connections
        self.logged_at = -float("inf")

    def check(self, connections: int) -> None:
        """Call with the open connections (this one included) as each one is made."""
        if self.baseline is None:  # measured once, at the first connection
            self.limit, open_now = _fd_limit(), _open_fds()
            self.baseline = max(0, open_now - connections) if open_now else 0
        if self.limit is None or connections + self.baseline < self.limit - FD_SLACK:
            return
        now = time.monotonic()
        if now - self.logged_at >= self.interval:
            self.logged_at = now
            log.error(
                "cannot accept connections: %d connections open and this process may hold %d "
                "files (ulimit -n); new ones are dropped until some close. Raise ulimit -n or "
                "lower --limit-concurrency.",
                connections,
                self.limit,
            )


def _fd_limit() -> int | None:
    try:
        import resource
    except ImportError:  # not on this platform: nothing to watch
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir itself holds
    except OSError:
        return 0
