"""The REST drain on SIGTERM (serving/http/drain.py): its state machine and DrainingServer's
signal handling in process, then a real `cifar-serve` on 127.0.0.1 (one worker and two)
with clients sending across the signal on keep-alive and new connections.

Every answer during the drain is a 200 (accepted work) or the documented 503 "shutting
down" JSON; none is a reset, a refused connection or an empty reply. Waits are events (an
answer, a log line, the process's exit) with generous bounds; nothing is timed.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from serve_process import ServeProcess, start_request_inside_the_app
from serve_samples import sample_pngs

from cifar10_runtime.serving.http import drain
from cifar10_runtime.serving.http.drain import SHUTTING_DOWN, Drain, DrainingServer

BOUND = 30.0
CLIENTS = 6  # half keep their connection alive, half open one per request
MAX_REQUESTS = 10_000  # per client: bounded, the drain refuses long before
PNG = {"Content-Type": "image/png"}
FLAGS = ("--threads", "1")


# --- in process --------------------------------------------------------------------------
def test_drain_ends_after_a_quiet_period_or_at_the_cap() -> None:
    state = Drain(quiet=0.5, linger=3.0)
    assert not state.finished(100.0, 0) and not state.refuses("/v1/predict")
    state.start(10.0)
    assert not state.finished(10.4, 0)  # the listener stays open for the quiet period
    assert state.finished(10.5, 0)
    state.arrived(10.4)  # an arrival restarts the quiet period
    assert not state.finished(10.8, 0) and state.finished(10.9, 0)
    assert not state.finished(12.9, 1)  # a request in progress holds the drain open ...
    assert state.finished(13.0, 1)  # ... up to the cap
    state.start(50.0)  # a second start changes nothing
    assert state.started == 10.0 and state.finished(13.0, 0)


def test_drain_refuses_everything_but_healthz_and_notes_arrivals() -> None:
    state = Drain(quiet=0.5, linger=3.0)
    state.start(0.0)
    assert state.refuses("/v1/predict") and state.refuses("/readyz") and state.refuses("/")
    assert state.last_arrival > 0.0  # time.monotonic() of the refused request
    assert not state.refuses("/healthz")


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError("no request reaches this app")


def test_first_signal_drains_second_ends_the_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drain, "DRAIN", Drain(quiet=0.5, linger=3.0))
    server = DrainingServer(uvicorn.Config(_app))
    server.started = True
    server.handle_exit(signal.SIGTERM, None)
    assert drain.DRAIN.draining and not server.should_exit  # draining, still serving
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit and not server.force_exit  # uvicorn's graceful shutdown now
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit  # as uvicorn: a SIGINT during its shutdown forces the exit


def test_drain_hands_the_signal_to_uvicorn_once_finished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    monkeypatch.setattr(drain, "DRAIN", Drain(quiet=0.0, linger=3.0))
    server = DrainingServer(uvicorn.Config(_app))
    server.started = True
    server.handle_exit(signal.SIGTERM, None)
    assert asyncio.run(server.on_tick(1)) is True  # quiet for 0 s: uvicorn's shutdown
    assert server.should_exit and server.pending_signal is None


def test_a_signal_before_startup_is_uvicorns_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drain, "DRAIN", Drain())
    server = DrainingServer(uvicorn.Config(_app))
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit and not drain.DRAIN.draining


# --- a real cifar-serve --------------------------------------------------------------------
def _post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, dict[str, str], bytes]:
    conn.request("POST", "/v1/predict", body=body, headers=PNG)
    response = conn.getresponse()
    data = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def _assert_refused(status: int, headers: dict[str, str], data: bytes) -> None:
    assert status == 503, (status, data[:300])
    assert json.loads(data) == {"error": SHUTTING_DOWN}
    assert "\n" not in SHUTTING_DOWN and "shutting down" in SHUTTING_DOWN
    assert headers["connection"] == "close" and headers["retry-after"] == "1"
    assert headers["content-type"] == "application/json"


def _clients_across_sigterm(srv: ServeProcess) -> list[list[Any]]:
    """CLIENTS threads post in a loop, each until the server refuses it; SIGTERM is sent
    once every one has had a 200. Returns each client's outcomes (answers or errors)."""
    body = sample_pngs(1)[0]
    outcomes: list[list[Any]] = [[] for _ in range(CLIENTS)]
    answered = threading.Semaphore(0)

    def client(n: int) -> None:
        keep_alive = n % 2 == 0
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=BOUND)
        try:
            for i in range(MAX_REQUESTS):
                if not keep_alive:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=BOUND)
                try:
                    answer = _post(conn, body)
                except OSError as exc:  # reset, refused, empty reply (RemoteDisconnected)
                    outcomes[n].append(exc)
                    return
                outcomes[n].append(answer)
                if i == 0:
                    answered.release()
                if answer[0] != 200:
                    return
        finally:
            conn.close()
            answered.release()  # never leave the main thread waiting

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for _ in range(CLIENTS):
        assert answered.acquire(timeout=BOUND)
    srv.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(BOUND)
        assert not thread.is_alive()
    return outcomes


def _assert_drained(srv: ServeProcess, outcomes: list[list[Any]], workers: int) -> None:
    code = srv.stop()
    assert code in (0, -signal.SIGTERM), srv.text()  # uvicorn re-raises the signal
    for answers in outcomes:
        errors = [a for a in answers if isinstance(a, BaseException)]
        assert not errors, f"{errors!r}\n{srv.text()}"
        *accepted, last = answers
        for status, _, data in accepted:
            assert status == 200, data[:300]
            assert json.loads(data)["predictions"][0]["label"]
        _assert_refused(*last)
    assert srv.count("drained: ") == workers, srv.text()
    assert "Traceback" not in srv.text()


@pytest.mark.parametrize("parser", ["auto", "h11"])
def test_requests_across_sigterm_are_answered_or_refused_503(
    valid_model: Path, tmp_path: Path, parser: str
) -> None:
    srv = ServeProcess(valid_model, tmp_path / "serve.log", *FLAGS, "--http", parser)
    _assert_drained(srv, _clients_across_sigterm(srv), workers=1)


def test_two_workers_drain_on_sigterm(valid_model: Path, tmp_path: Path) -> None:
    srv = ServeProcess(valid_model, tmp_path / "serve.log", *FLAGS, "--workers", "2", ready_lines=2)
    _assert_drained(srv, _clients_across_sigterm(srv), workers=2)


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, dict[str, str], bytes]:
    conn.request("GET", path)
    response = conn.getresponse()
    data = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def test_drain_keeps_healthz_refuses_readyz_and_finishes_work_in_progress(
    valid_model: Path, tmp_path: Path
) -> None:
    srv = ServeProcess(valid_model, tmp_path / "serve.log", *FLAGS)
    body = sample_pngs(1)[0]
    idle = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=BOUND)
    assert _get(idle, "/healthz")[0] == 200  # now an idle keep-alive connection
    in_flight = start_request_inside_the_app(srv.port, body)  # holds the drain open
    srv.process.send_signal(signal.SIGTERM)
    for _ in range(MAX_REQUESTS):  # until the drain has begun (each on a new connection)
        ready = _get(http.client.HTTPConnection("127.0.0.1", srv.port, timeout=BOUND), "/readyz")
        if ready[0] != 200:
            break
    _assert_refused(*ready)
    health = _get(http.client.HTTPConnection("127.0.0.1", srv.port, timeout=BOUND), "/healthz")
    assert health[0] == 200 and health[1]["connection"] == "close", health
    _assert_refused(*_post(idle, body))  # the keep-alive connection opened before: a 503
    in_flight.sendall(body)  # the request in progress at the signal: answered
    answer = b""
    while chunk := in_flight.recv(65536):
        answer += chunk
    in_flight.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert srv.stop() in (0, -signal.SIGTERM), srv.text()
    assert "Traceback" not in srv.text()
