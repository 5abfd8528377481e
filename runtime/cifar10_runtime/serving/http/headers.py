"""Headers every answer carries: `X-Content-Type-Options: nosniff`.

Without it a browser may guess that a JSON answer echoing client text (an error naming a
file, a request id) is HTML and render it. The page's own files set it already (ui.py);
this adds it to every other answer, JSON and /metrics included, unless already present.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

NOSNIFF = (b"x-content-type-options", b"nosniff")

ASGIApp = Callable[..., Awaitable[None]]


class NoSniffMiddleware:
    """Pure ASGI middleware: adds NOSNIFF to each response start that lacks it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_nosniff(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == NOSNIFF[0] for name, _ in headers):
                    headers.append(NOSNIFF)
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_nosniff)
