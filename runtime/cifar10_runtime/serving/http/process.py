"""What every connection of this process shares: the HTTP parser, the guards' settings, the
counts of open connections and requests, and the JSON 503 answered over the limit.

`configure` sets them once per process (cifar-serve, before uvicorn serves); connections.py's
GuardedProtocol reads them for every connection and request. Concurrency limit: with more
than `limit_concurrency` connections open, or that many requests in progress, a request gets
503 `{"error": ...}` with `Retry-After` (the check uvicorn's --limit-concurrency makes,
answered in the API's own JSON instead of text), and a flood of them logs one line per
BUSY_LOG_INTERVAL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from starlette.types import Send

from cifar10_runtime.limits import HEADER_TIMEOUT, LIMIT_CONCURRENCY
from cifar10_runtime.serving.http.guards import FdWatch

log = logging.getLogger("cifar10_runtime.serving.app")
BUSY_LOG_INTERVAL = 10.0  # seconds between "concurrency limit" log lines under a flood
PARSERS = {
    "httptools": "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol",
    "h11": "uvicorn.protocols.http.h11_impl:H11Protocol",
}


class ProcessGuards:
    """This process's guard settings and counts (one instance: PROCESS)."""

    def __init__(self) -> None:
        self.header_timeout = HEADER_TIMEOUT
        self.limit_concurrency = LIMIT_CONCURRENCY
        self.parser: type[asyncio.Protocol] | None = None  # None: not configured yet
        self.connections = 0
        self.requests = 0
        self.busy_refused = 0
        self.busy_logged_at = -float("inf")
        self.fds = FdWatch()

    def over_limit(self) -> bool:
        """Whether a request now is one too many (connections or requests in progress)."""
        limit = self.limit_concurrency
        return self.connections > limit or self.requests > limit

    async def refuse_busy(self, send: Send) -> None:
        """Answer a request over the limit: 503 with Retry-After (logged once in a while)."""
        limit = self.limit_concurrency
        self.busy_refused += 1
        now = time.monotonic()
        if now - self.busy_logged_at >= BUSY_LOG_INTERVAL:
            log.warning(
                "concurrency limit reached (--limit-concurrency %d): %d requests answered 503 "
                "since the last such line",
                limit,
                self.busy_refused,
            )
            self.busy_logged_at, self.busy_refused = now, 0
        body = json.dumps(
            {
                "error": f"server busy: more than {limit} connections or requests at once "
                "(--limit-concurrency). Retry shortly."
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


PROCESS = ProcessGuards()


def resolve_parser(http: str) -> str:
    """'auto' is httptools when it is installed (as uvicorn's own auto), else h11."""
    if http == "auto":
        try:
            import httptools  # noqa: F401
        except ImportError:
            return "h11"
        return "httptools"
    if http not in PARSERS:
        raise ValueError(f"http must be auto, httptools or h11. Received: {http!r}.")
    return http


def configure(
    header_timeout: float = HEADER_TIMEOUT,
    limit_concurrency: int = LIMIT_CONCURRENCY,
    http: str = "auto",
) -> str:
    """Set this process's guards (before uvicorn serves); returns the parser's name."""
    from uvicorn.importer import import_from_string

    name = resolve_parser(http)
    PROCESS.header_timeout = header_timeout
    PROCESS.limit_concurrency = limit_concurrency
    PROCESS.parser = import_from_string(PARSERS[name])
    return name
