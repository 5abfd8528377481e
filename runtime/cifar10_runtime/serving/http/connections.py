"""Connection guards that work on any of uvicorn's HTTP parsers (httptools or h11).

`GuardedProtocol` wraps the parser's own asyncio protocol: it sees the connection's
bytes and its transport, and it sees each request at the ASGI level (it hands the parser
a per-connection app), never a parser's internal state. So the same guards hold whichever
parser runs (httptools on uvloop by default, h11 as the pure-Python fallback):

- Header deadline: a connection must bring a complete request head within
  `header_timeout` seconds of opening, or of its previous request's end; idle sockets and
  heads sent byte by byte are closed (one log line). Between requests uvicorn's own
  `timeout_keep_alive` closes idle keep-alive connections.
- Drain on shutdown: while drain.py's DRAIN drains, a request gets its 503 "shutting down"
  (and every answer `Connection: close`), and new connections count as arrivals.
- Concurrency limit: with more than `limit_concurrency` connections open, or that many
  requests in progress, a request gets a JSON 503 (process.py keeps the counts and the
  settings `configure` gives, per process).
- The parser's own answers (a 400 for bytes that are not HTTP) leave as JSON
  `{"error": ...}` too: a status >= 400 written while the app is not sending is the
  server's, and is rewritten before it goes out.
- Out of file descriptors: each new connection is counted against the process's
  descriptor limit (guards.FdWatch), since uvloop drops connections it cannot accept
  without a word.
- Lingering close: closing a connection whose request body was not read (a 413, a 408, an
  unparseable request) first half-closes it and drops what still arrives for up to
  LINGER_SECONDS, as nginx does: closing at once would reset the connection and the
  client could lose the answer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cifar10_runtime.serving.http.answers import complete, is_error_answer, json_error_answer
from cifar10_runtime.serving.http.drain import DRAIN, closing
from cifar10_runtime.serving.http.process import PROCESS, configure

log = logging.getLogger("cifar10_runtime.serving.app")
LINGER_SECONDS = 2.0
PROTOCOL = "cifar10_runtime.serving.http.connections:GuardedProtocol"
__all__ = ["PROTOCOL", "GuardedProtocol", "configure"]  # configure: process.py's, for the CLI


class _Request:
    __slots__ = ("scope", "body_done")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.body_done = False

    def body_left(self) -> bool:
        """Whether the client may still be sending this request's body."""
        if self.body_done:
            return False
        for name, value in self.scope["headers"]:
            if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                return True
        return False


class GuardedProtocol(asyncio.Protocol):
    """One connection: the parser's protocol inside, the guards around it."""

    def __init__(self, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        if PROCESS.parser is None:  # not configured (an app run by plain uvicorn): defaults
            configure()
        parser = PROCESS.parser
        assert parser is not None
        self.loop = _loop or asyncio.get_event_loop()
        self.inner: Any = parser(config, server_state, app_state, _loop)  # type: ignore[misc]
        if not hasattr(self.inner, "app"):
            raise RuntimeError(
                f"{parser.__name__} has no `app` attribute: this uvicorn version is not "
                "supported by cifar10_runtime.serving.http.connections. Pin uvicorn to a tested "
                "version."
            )
        self.app: ASGIApp = self.inner.app
        self.inner.app = self._guarded_app
        self.transport: asyncio.Transport | None = None
        self.client: str = "client"
        self.active = 0  # requests of this connection inside the app
        self.current: _Request | None = None
        self.sending = False  # the app is inside send(): its writes are its own
        self.foreign: list[bytes] | None = None  # a server-made error answer being collected
        self.lingering = False
        self.header_timer: asyncio.TimerHandle | None = None
        self.linger_timer: asyncio.TimerHandle | None = None
        self.open = False

    # --- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:  # uvloop's is not asyncio.Transport
        self.transport = transport
        self.open = True
        PROCESS.connections += 1
        PROCESS.fds.check(PROCESS.connections)
        if DRAIN.draining:
            DRAIN.arrived(time.monotonic())
        _no_delay(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = f"{peer[0]}:{peer[1]}"
        self.inner.connection_made(_GuardedTransport(transport, self))
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if not self.lingering:  # while lingering, the rest of an unwanted upload is dropped
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.lingering and self.transport is not None:
            self.transport.close()  # the client read the answer and finished: done
            return None
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open:
            self.open = False
            PROCESS.connections -= 1
        for timer in (self.header_timer, self.linger_timer):
            if timer is not None:
                timer.cancel()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # --- the app, per request ------------------------------------------------------------
    async def _guarded_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = self.current = _Request(scope)
        self.active += 1
        PROCESS.requests += 1
        try:

            async def send_marked(message: Message) -> None:
                if DRAIN.draining and message["type"] == "http.response.start":
                    message = closing(message)
                self.sending = True
                try:
                    await send(message)
                finally:
                    self.sending = False

            if DRAIN.refuses(scope["path"]):
                await DRAIN.refuse(send_marked)
                return
            if PROCESS.over_limit():
                await PROCESS.refuse_busy(send_marked)
                return

            async def receive_tracked() -> Message:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    request.body_done = True
                return message

            await self.app(scope, receive_tracked, send_marked)
        finally:
            PROCESS.requests -= 1
            self.active -= 1
            if not self.active:
                self._arm_header_timer()

    # --- timers and closing --------------------------------------------------------------
    def _arm_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
        self.header_timer = self.loop.call_later(PROCESS.header_timeout, self._header_late)

    def _header_late(self) -> None:
        self.header_timer = None
        real = self.transport
        if self.active or real is None or real.is_closing():
            return
        log.info(
            "%s - closed: no complete request head in %g s", self.client, PROCESS.header_timeout
        )
        real.close()

    def write(self, data: bytes) -> None:
        """Every write of the parser's protocol comes here (see _GuardedTransport)."""
        assert self.transport is not None
        if self.foreign is not None:
            self.foreign.append(data)
        elif not self.sending and is_error_answer(data):
            self.foreign = [data]  # the parser's own answer: JSON once it is complete
        else:
            self.transport.write(data)
            return
        raw = b"".join(self.foreign)
        if complete(raw):  # framed by Content-Length; else it ends with the close
            self.foreign = None
            self.transport.write(json_error_answer(raw))

    def close(self) -> None:
        real = self.transport
        if real is None or self.lingering or real.is_closing():
            return
        foreign = self.foreign is not None
        if self.foreign is not None:
            real.write(json_error_answer(b"".join(self.foreign)))
            self.foreign = None
        unread = foreign or (self.current is not None and self.current.body_left())
        if not unread or not real.can_write_eof():
            real.close()
            return
        self.lingering = True
        real.write_eof()  # after the answer already queued: the client reads it, then EOF
        real.resume_reading()
        self.linger_timer = self.loop.call_later(LINGER_SECONDS, real.close)


class _GuardedTransport:
    """The transport the parser's protocol sees: writes and close go through the guards."""

    def __init__(self, transport: asyncio.Transport, guard: GuardedProtocol) -> None:
        self._transport = transport
        self._guard = guard
        self._closed = False
        self.write = guard.write

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def writelines(self, data: Any) -> None:
        self.write(b"".join(data))

    def close(self) -> None:
        self._closed = True
        self._guard.close()

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
