"""What a gRPC connection and a call may hold, and for how long.

- Connections (`channel_options`, gRPC core's own settings): the HTTP/2 preface and settings
  within `Deadlines.handshake`, no call for `Deadlines.idle` closes it, any one is asked to
  reconnect after limits.GRPC_CONNECTION_AGE_SECONDS, a message over the limit is refused
  before it is buffered whole, and `max_connections` leaves REST its file descriptors.
- Receive deadline: a call's message must arrive within `receive_timeout` seconds of its
  headers (--body-timeout), else DEADLINE_EXCEEDED; a stream that sends headers and nothing
  else is cancelled instead of holding its slot for as long as its connection lives.
- Calls in progress: only calls whose message has arrived count against `limit`
  (--limit-concurrency), so streams still waiting for theirs (slow or hostile) never take
  the capacity a complete request needs; over it, RESOURCE_EXHAUSTED with our message. A
  call stops counting when its handler returns, before its answer is written: an answer the
  client never reads (an HTTP/2 window of 0) holds no slot.
- Drain: `drain` makes every new call, and every call still waiting for its message,
  UNAVAILABLE ("shutting down", as REST's 503), while `settle` lets the calls in
  progress finish and the clients learn.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from cifar10_runtime import limits
from cifar10_runtime.serving.grpc.codec import Aborted

SHUTTING_DOWN = "the server is shutting down; retry the call (another replica takes it)."


@dataclass(frozen=True)
class Deadlines:
    """The connections' and calls' deadlines, in seconds (cifar-serve's flags of the same
    meaning for REST)."""

    handshake: float = limits.HEADER_TIMEOUT  # --header-timeout: HTTP/2 preface and settings
    receive: float = limits.BODY_TIMEOUT  # --body-timeout: a call's message after its headers
    idle: float = limits.KEEP_ALIVE_TIMEOUT  # --timeout-keep-alive: a connection without calls


DEFAULT_DEADLINES = Deadlines()


def max_connections(limit_concurrency: int) -> int:
    """gRPC connections this process accepts: at most --limit-concurrency, and never more than
    the file descriptors REST's --limit-concurrency connections and the process's own files
    leave (the soft RLIMIT_NOFILE)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limit_concurrency
    return max(1, min(limit_concurrency, soft - limit_concurrency - limits.GRPC_FD_RESERVE))


def channel_options(
    max_message_bytes: int, max_streams: int, deadlines: Deadlines, reuse_port: bool
) -> list[tuple[str, int]]:
    """gRPC core's settings for every connection (see the module docstring)."""
    ms = 1000
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_concurrent_streams", max_streams),
        ("grpc.max_allowed_incoming_connections", max_connections(max_streams)),
        ("grpc.server_handshake_timeout_ms", int(deadlines.handshake * ms)),
        ("grpc.http2.settings_timeout", int(deadlines.handshake * ms)),
        ("grpc.max_connection_idle_ms", int(deadlines.idle * ms)),
        ("grpc.max_connection_age_ms", int(limits.GRPC_CONNECTION_AGE_SECONDS * ms)),
        ("grpc.max_connection_age_grace_ms", int(deadlines.receive * ms)),
        # Pings find peers that vanished without closing (their calls would hang otherwise).
        ("grpc.keepalive_time_ms", int(limits.GRPC_KEEPALIVE_SECONDS * ms)),
        ("grpc.keepalive_timeout_ms", int(deadlines.receive * ms)),
        # --workers N share the port (the kernel spreads connections); else a port in use
        # is an error, never silently shared with another server.
        ("grpc.so_reuseport", int(reuse_port)),
    ]


class Calls:
    """The calls of one gRPC server (the event loop's; nothing here is thread-safe)."""

    def __init__(self, limit: int, receive_timeout: float) -> None:
        self.limit = limit
        self.receive_timeout = receive_timeout
        self.active = 0
        self.draining = False
        self._drained: asyncio.Future[None] | None = None  # done once draining
        self.last_arrival = -float("inf")  # the loop's time of the latest call's headers

    async def receive(self, name: str, context: grpc.aio.ServicerContext) -> bytes:
        """The call's one message, within the receive deadline (else an Aborted status)."""
        self.last_arrival = asyncio.get_running_loop().time()
        if self.draining:
            raise Aborted(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        # The read is never cancelled (that would cancel the call under our status): a call
        # refused while its read is pending ends with our status, which ends the read.
        read = asyncio.ensure_future(context.read())
        read.add_done_callback(_consume)
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        done, _ = await asyncio.wait(
            {read, self._drained}, timeout=self.receive_timeout, return_when="FIRST_COMPLETED"
        )
        if self.draining:
            raise Aborted(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        if read not in done:
            raise Aborted(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the {name} request message did not arrive within {self.receive_timeout:g} s "
                "of its headers. Send it at once (or raise --body-timeout).",
            )
        data = read.result()
        if not isinstance(data, bytes):  # grpc.aio.EOF: the client closed without a message
            raise Aborted(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the {name} call ended without its request message; send exactly one.",
            )
        return data

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Count a call whose message arrived; refuse it over the limit or while draining."""
        if self.draining:
            raise Aborted(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
        if self.active >= self.limit:
            raise Aborted(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server busy: more than {self.limit} calls in progress "
                "(--limit-concurrency). Retry shortly.",
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    def drain(self) -> None:
        """Refuse new calls from now on; calls waiting for their message are refused now."""
        self.draining = True
        if self._drained is not None:
            self._drained.set_result(None)  # every waiting receive returns and sees `draining`

    async def settle(self, grace: float, quiet: float, linger: float) -> bool:
        """Wait, while draining, until no call is in progress and none arrived for `quiet`
        seconds (calls sent just after the signal are answered UNAVAILABLE rather than cut
        by the transport's close), the quiet wait for `linger` seconds at most and the calls
        in progress for `grace`. False: calls were still in progress after `grace`."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            now = loop.time()
            if self.active == 0 and (now - self.last_arrival >= quiet or now - start >= linger):
                return True
            if now - start >= grace:
                return False
            await asyncio.sleep(min(quiet, 0.05))


def _consume(read: asyncio.Future[Any]) -> None:
    """Retrieve a read's outcome, so a cancelled or failed read logs nothing."""
    if not read.cancelled():
        read.exception()
