"""The REST drain on SIGTERM/SIGINT, before uvicorn's own shutdown.

uvicorn's shutdown closes the listening socket and the idle keep-alive connections at once,
so a client that sends (or connects) just then gets a reset instead of an answer. Instead,
the first signal starts a drain: the listener stays open, every new request (on a new or an
existing connection) is answered 503 `{"error": ...shutting down...}` with `Retry-After` and
`Connection: close` (connections.py asks `DRAIN.refuses`), `/readyz` is one of them (load
balancers stop routing) while `/healthz` stays 200, and requests already in progress finish
normally. The drain ends once no request is in progress and none arrived for
limits.SHUTDOWN_QUIET_SECONDS, or after limits.SHUTDOWN_LINGER_SECONDS whatever arrives (the
gRPC drain's constants); then uvicorn shuts down as it would have on the signal (lifespan:
gRPC drain, batcher drain). A second signal ends the drain at once, and is then uvicorn's
(a second SIGINT forces the exit).

`DrainingServer` is uvicorn's Server with the drain; `run` starts it as uvicorn.run would,
in this process or, with --workers N, in uvicorn's supervisor, whose workers run it too.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import Message, Send
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

from cifar10_runtime import limits
from cifar10_runtime.serving.http.process import PROCESS

log = logging.getLogger("cifar10_runtime.serving.app")
SHUTTING_DOWN = "the server is shutting down; retry the request (another replica takes it)."
HEALTH_PATH = "/healthz"  # liveness: the process still answers while it drains


class Drain:
    """This process's drain state (one instance: DRAIN); times are time.monotonic()'s."""

    def __init__(
        self,
        quiet: float = limits.SHUTDOWN_QUIET_SECONDS,
        linger: float = limits.SHUTDOWN_LINGER_SECONDS,
    ) -> None:
        self.quiet = quiet
        self.linger = linger
        self.draining = False
        self.started = 0.0
        self.last_arrival = 0.0
        self.refused = 0

    def start(self, now: float) -> None:
        """Begin draining (again: no change). The quiet period counts from now at least."""
        if not self.draining:
            self.draining = True
            self.started = self.last_arrival = now

    def arrived(self, now: float) -> None:
        """A connection or a request arrived while draining: the quiet period restarts."""
        self.last_arrival = now

    def finished(self, now: float, in_progress: int) -> bool:
        """Whether the drain is over: nothing in progress and nothing arrived for `quiet`
        seconds, or `linger` seconds since it began."""
        if not self.draining:
            return False
        if now - self.started >= self.linger:
            return True
        return in_progress == 0 and now - self.last_arrival >= self.quiet

    def refuses(self, path: str) -> bool:
        """Whether a request for `path` arriving now is refused (and notes its arrival)."""
        if not self.draining:
            return False
        self.arrived(time.monotonic())
        return path != HEALTH_PATH

    async def refuse(self, send: Send) -> None:
        """Answer a request that arrived while draining: 503, and close the connection."""
        self.refused += 1
        body = json.dumps({"error": SHUTTING_DOWN}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


DRAIN = Drain()


def closing(start: Message) -> Message:
    """An answer's `http.response.start` with `Connection: close` (while draining, every
    connection closes after its answer)."""
    headers = list(start.get("headers", ()))
    if not any(name.lower() == b"connection" for name, _ in headers):
        headers.append((b"connection", b"close"))
    return {**start, "headers": headers}


class DrainingServer(uvicorn.Server):
    """uvicorn's Server, whose first SIGTERM/SIGINT drains (see the module docstring)
    before it is handed to uvicorn's own handling."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.pending_signal: int | None = None  # the signal the drain holds back

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.pending_signal is not None:  # a second signal: the drain ends now
            self._end_drain(frame)
        elif self.started and not self.should_exit:
            self.pending_signal = sig
            DRAIN.start(time.monotonic())  # from here on, new requests are refused
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.pending_signal is not None:
            if DRAIN.finished(time.monotonic(), PROCESS.requests):
                self._end_drain(None)
        return await super().on_tick(counter)

    def _end_drain(self, frame: FrameType | None) -> None:
        sig, self.pending_signal = self.pending_signal, None
        assert sig is not None
        log.info(
            "drained: %d requests answered 503 (shutting down) in %.1f s",
            DRAIN.refused,
            time.monotonic() - DRAIN.started,
        )
        super().handle_exit(sig, frame)  # uvicorn's own shutdown, as on the signal


class DrainingProcess(multiprocess.Process):
    """A --workers child whose server is a DrainingServer."""

    @functools.cached_property
    def server(self) -> uvicorn.Server:  # type: ignore[override]
        return DrainingServer(config=self.config)


@contextmanager
def _draining_workers() -> Iterator[None]:
    # uvicorn's supervisor builds each worker (at start, on restart, after a crash) with its
    # module's `Process`: only swapping that name gives every one of them the drain.
    original = multiprocess.Process
    multiprocess.Process = DrainingProcess  # type: ignore[misc]
    try:
        yield
    finally:
        multiprocess.Process = original  # type: ignore[misc]


def run(app: Any, **options: Any) -> None:
    """Serve as uvicorn.run(app, **options) would, every process with the drain."""
    config = uvicorn.Config(app, **options)
    server = DrainingServer(config)
    try:
        if config.workers > 1:
            sock = config.bind_socket()
            with _draining_workers():
                multiprocess.Multiprocess(config, sockets=[sock]).run()
        else:
            server.run()
    except KeyboardInterrupt:  # uvicorn re-raises a handled SIGINT once it has shut down
        pass
    if config.workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)
