"""Holding up against slow, idle and vanishing clients.

- `GuardedH11Protocol`: uvicorn's h11 protocol plus a header deadline. A connection must
  deliver a complete request head within `header_timeout` seconds of opening (or of the
  previous response): idle sockets and headers sent byte by byte are closed. Between
  requests, uvicorn's own `timeout_keep_alive` closes idle keep-alive connections.
- `BodyTimeout`: the whole body must arrive within `body_timeout` seconds of the request
  head, else 408 and the connection is closed (a body trickled in slowly no longer pins
  a connection and a worker).
- Closing a connection whose request body was not read (a 413, a 408) first half-closes
  it and drops what still arrives for up to LINGER_SECONDS (a "lingering close", as nginx
  does): closing at once would reset the connection and the client could lose the answer.
- `limit_accept_errors`: when the process runs out of file descriptors asyncio logs
  "socket.accept() out of system resource" on every retry; this keeps one line per
  interval and counts the rest.
- A client that disconnects mid-body is one log line (see server.py), never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import h11
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from .limits import HEADER_TIMEOUT

log = logging.getLogger("cifar10_runtime.server")
ACCEPT_ERROR_INTERVAL = 10.0
LINGER_SECONDS = 2.0
PROTOCOL = "cifar10_runtime.guards:GuardedH11Protocol"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's H11Protocol that closes connections whose request head is too slow."""

    header_timeout = HEADER_TIMEOUT  # set per process by `configure` (cifar-serve flags)
    _header_timer: asyncio.TimerHandle | None = None
    _linger_timer: asyncio.TimerHandle | None = None
    _lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _no_delay(transport)
        self._real_transport = transport
        # Every close uvicorn makes (the request cycle's too) goes through _close.
        self.transport = _ClosingProxy(transport, self._close)  # type: ignore[assignment]
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._lingering:  # while lingering, the rest of an unwanted upload is dropped
            super().data_received(data)

    def _close(self) -> None:
        real = self._real_transport
        if self._lingering or real.is_closing():
            return
        if self.conn.their_state is not h11.SEND_BODY or not real.can_write_eof():
            real.close()
            return
        self._lingering = True
        real.write_eof()  # after the answer already queued: the client reads it, then EOF
        real.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, real.close)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a complete request head arrived
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        # Armed before the parent call: it may start a pipelined request, which disarms it.
        self._arm_header_timer()
        super().on_response_complete()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        waiting_for_head = self.cycle is None or self.cycle.response_complete
        if waiting_for_head and not self.transport.is_closing():
            if self.client:
                log.info(
                    "%s:%d - closed: no complete request head in %g s",
                    *self.client,
                    self.header_timeout,
                )
            self.transport.close()


class _ClosingProxy:
    """The transport, with close() replaced and is_closing() true once close() was called."""

    def __init__(self, transport: asyncio.Transport, close: Any) -> None:
        self._transport = transport
        self._close = close
        self._closed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._closed = True
        self._close()

    def is_closing(self) -> bool:
        return self._closed or self._transport.is_closing()


def _no_delay(transport: asyncio.Transport) -> None:
    # asyncio sets TCP_NODELAY only when the listening socket says IPPROTO_TCP; the socket
    # uvicorn binds for --workers says 0, and Nagle then holds every small answer for the
    # client's delayed ACK (a lone client measured 45 ms per request instead of 2).
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def configure(header_timeout: float = HEADER_TIMEOUT) -> None:
    """Set this process's header deadline (called before uvicorn starts serving)."""
    GuardedH11Protocol.header_timeout = header_timeout


class BodyTimeout:
    """ASGI middleware: 408 (and close) when a request body takes longer than `seconds`."""

    def __init__(self, app: Any, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.seconds
        done = False

        async def receive_in_time() -> dict[str, Any]:
            nonlocal done
            if done:  # after the body only a disconnect can come: wait for it as long as it takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"the request body did not arrive within {self.seconds:g} s. "
                    "Send it at once (or raise --body-timeout).",
                    headers={"Connection": "close"},
                ) from None
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
