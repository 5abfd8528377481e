"""cifar10_runtime.guards in-process: the accept-error log limiter and the body deadline."""

from __future__ import annotations

import asyncio
import errno
import logging

import pytest
from starlette.exceptions import HTTPException

from cifar10_runtime.guards import BodyTimeout, limit_accept_errors

EMFILE = {
    "message": "socket.accept() out of system resource",
    "exception": OSError(errno.EMFILE, "Too many open files"),
}


def test_accept_errors_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    others: list[dict] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: others.append(context))
        limit_accept_errors(loop, interval=3600)
        for _ in range(1000):
            loop.call_exception_handler(EMFILE)
        loop.call_exception_handler({"message": "something else"})

    with caplog.at_level(logging.ERROR, logger="cifar10_runtime.server"):
        asyncio.run(scenario())
    lines = [r for r in caplog.records if r.name == "cifar10_runtime.server"]
    assert len(lines) == 1 and "cannot accept connections" in lines[0].getMessage()
    assert others == [{"message": "something else"}]  # the previous handler still gets the rest


def test_a_body_that_does_not_arrive_in_time_is_408() -> None:
    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await receive()

    async def never() -> dict:
        await asyncio.Event().wait()  # a client that sends nothing more
        return {}

    guarded = BodyTimeout(app, seconds=0.0)
    with pytest.raises(HTTPException) as caught:
        asyncio.run(guarded({"type": "http"}, never, None))
    assert caught.value.status_code == 408 and caught.value.headers == {"Connection": "close"}
