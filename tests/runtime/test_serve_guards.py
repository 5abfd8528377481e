"""cifar10_runtime.serving.http.guards and .answers in-process: the accept-error log limiter,
the body deadline, the in-flight count, and the parser's own error answers rewritten as JSON."""

from __future__ import annotations

import asyncio
import errno
import json
import logging

import pytest
from starlette.exceptions import HTTPException

from cifar10_runtime.serving.http.answers import complete, is_error_answer, json_error_answer
from cifar10_runtime.serving.http.guards import BodyTimeout, InFlight, limit_accept_errors

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

    with caplog.at_level(logging.ERROR, logger="cifar10_runtime.serving.app"):
        asyncio.run(scenario())
    lines = [r for r in caplog.records if r.name == "cifar10_runtime.serving.app"]
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


def test_the_parsers_own_answers_become_json_whatever_their_framing() -> None:
    by_length = (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 29\r\nconnection: close\r\n\r\nInvalid HTTP request received."
    )
    chunked = (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked"
        b"\r\n\r\n1d\r\nInvalid HTTP request received.\r\n0\r\n\r\n"
    )
    by_close = b"HTTP/1.1 400 Bad Request\r\nserver: x\r\n\r\nInvalid HTTP request received."
    for raw in (by_length, chunked, by_close):
        assert is_error_answer(raw)
        head, _, body = json_error_answer(raw).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 400 Bad Request"
        fields = dict(line.split(b": ", 1) for line in lines[1:])
        assert fields[b"content-type"] == b"application/json"
        assert fields[b"connection"] == b"close" and b"transfer-encoding" not in fields
        assert int(fields[b"content-length"]) == len(body)
        error = json.loads(body)["error"]
        assert "not valid HTTP/1.1 (Invalid HTTP request received)" in error
    assert complete(by_length) and not complete(by_close) and not complete(by_length[:-3])
    assert not is_error_answer(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert not is_error_answer(b"HTTP/1.1 200 OK\r\n\r\n")


def test_in_flight_counts_requests_inside_the_app() -> None:
    seen = []
    in_flight = InFlight()

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        seen.append(len(in_flight))
        if len(seen) == 1:  # the first request is still inside while the second comes in
            await guarded({"type": "http"}, receive, send)

    guarded = BodyTimeout(app, seconds=1.0, in_flight=in_flight)
    asyncio.run(guarded({"type": "http"}, None, None))
    assert seen == [1, 2] and len(in_flight) == 0
