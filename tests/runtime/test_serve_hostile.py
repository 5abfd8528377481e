"""Hostile clients against a real `cifar-serve` on 127.0.0.1: idle and slow connections,
huge images, cut and oversize bodies, vanishing clients, Host-header redirects, no fds.

Raw sockets, so the test controls every byte. Each wait is an event (the server closing
the socket, an answer, a log line) with a generous bound; the server's timeouts are set
to 1 s so that the events come quickly. Every test runs on both HTTP parsers (httptools,
the default, and h11): the guards must not depend on either one's internals.
"""

from __future__ import annotations

import json
import resource
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from runtime_samples import png_header_only
from serve_process import ServeProcess
from serve_samples import sample_pngs

pytestmark = pytest.mark.slow
BOUND = 30.0
FLAGS = ("--threads", "1", "--header-timeout", "1", "--body-timeout", "1")
FLAGS += ("--timeout-keep-alive", "1", "--max-body-mb", "0.05")
PARSERS = ["httptools", "h11"]


@pytest.fixture(scope="module", params=PARSERS)
def http(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def server(
    valid_model: Path, tmp_path_factory: pytest.TempPathFactory, http: str
) -> Iterator[ServeProcess]:
    log = tmp_path_factory.mktemp(f"hostile-{http}") / "serve.log"
    srv = ServeProcess(valid_model, log, *FLAGS, "--http", http)
    assert f"HTTP: {http} on " in srv.text()
    yield srv
    srv.stop()


def _connect(server: ServeProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=BOUND)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by BOUND)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _assert_ready(server: ServeProcess) -> None:
    assert httpx.get(f"{server.url}/readyz", timeout=BOUND).status_code == 200


def test_an_idle_connection_is_closed(server: ServeProcess) -> None:
    with _connect(server) as sock:
        assert _read_until_closed(sock) == b""  # closed by the server, nothing sent
    _assert_ready(server)


def test_a_request_head_that_never_ends_is_closed(server: ServeProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert _read_until_closed(sock) == b""
    _assert_ready(server)


def test_a_slow_body_gets_408_and_the_connection_closes(server: ServeProcess) -> None:
    with _connect(server) as sock:
        head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        sock.sendall(head + b"Content-Length: 1000\r\n\r\n" + b"\x89PNG")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"did not arrive within 1 s" in answer
    _assert_ready(server)


def test_a_slow_head_after_a_keep_alive_answer_is_closed(server: ServeProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nX-S")
        answer = _read_until_closed(sock)  # the first answer, then the unfinished head: closed
    assert answer.count(b"HTTP/1.1 200 ") == 1 and answer.endswith(b'{"status":"ok"}')


def _answer(raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = dict(line.lower().split(b": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), fields, body


def test_bytes_that_are_not_http_get_a_json_400_and_a_close(server: ServeProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        status, fields, body = _answer(_read_until_closed(sock))
    assert status == 400 and fields[b"content-type"] == b"application/json", fields
    assert fields[b"connection"] == b"close" and int(fields[b"content-length"]) == len(body)
    assert "not valid HTTP/1.1" in json.loads(body)["error"]
    _assert_ready(server)


def test_a_declared_body_over_the_limit_gets_413_before_it_is_sent(server: ServeProcess) -> None:
    with _connect(server) as sock:
        head = b"POST /v2/models/cifar10/infer HTTP/1.1\r\nHost: x\r\n"
        sock.sendall(head + b"Content-Length: 900000000\r\n\r\n" + b"\0" * 1000)
        answer = _read_until_closed(sock)  # answered and closed: the 900 MB never come
    status, fields, body = _answer(answer)
    assert status == 413 and fields[b"connection"] == b"close"
    assert "larger than the limit" in json.loads(body)["error"]
    _assert_ready(server)


def test_pipelined_requests_are_answered_in_order(server: ServeProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3 + b"GET /readyz HTTP/1.1\r\n")
        sock.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.count(b'{"status":"ok"}') == 3 and answer.endswith(b"}")
    assert answer.rindex(b'"status":"ready"') > answer.rindex(b'{"status":"ok"}')


def test_over_the_concurrency_limit_is_a_json_503(
    valid_model: Path, tmp_path: Path, http: str
) -> None:
    flags = ("--threads", "1", "--limit-concurrency", "1", "--http", http)
    srv = ServeProcess(valid_model, tmp_path / "serve.log", *flags)
    try:
        with _connect(srv) as first:
            first.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert first.recv(65536).startswith(b"HTTP/1.1 200 ")  # open and counted
            second = _connect(srv)
            second.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, fields, body = _answer(_read_until_closed(second))
            second.close()
        assert status == 503 and fields[b"content-type"] == b"application/json"
        assert fields[b"retry-after"] == b"1"
        assert "--limit-concurrency" in json.loads(body)["error"]
        assert srv.wait_for("concurrency limit reached (--limit-concurrency 1)")
    finally:
        srv.stop()
    assert "Traceback" not in srv.text()


def test_an_idle_keep_alive_connection_is_closed(server: ServeProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"status":"ok"}')


def test_a_huge_png_is_refused_from_its_header(server: ServeProcess) -> None:
    body = png_header_only(9400, 9400)  # the header of a 9400x9400 PNG, no pixel data
    response = httpx.post(
        f"{server.url}/v1/predict", content=body, headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 400
    assert "9400x9400 = 88360000 pixels is over this server's budget" in response.json()["error"]


def test_a_cut_multipart_body_is_400(server: ServeProcess) -> None:
    png = sample_pngs(1)[0]
    part = b'--B\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\n\r\n'
    body = part + png + b"\r\n" + part.replace(b"a.png", b"b.png") + png[:-30]
    headers = {"Content-Type": "multipart/form-data; boundary=B"}
    response = httpx.post(f"{server.url}/v1/predict", content=body, headers=headers)
    assert response.status_code == 400 and "closing boundary" in response.json()["error"]


def test_a_chunked_upload_over_the_limit_gets_413_and_is_closed(server: ServeProcess) -> None:
    with _connect(server) as sock:
        head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % 8192 + b"\0" * 8192 + b"\r\n"
        sock.sendall(chunk * 8)  # 64 KB: over the 0.05 MB limit; the upload never ends
        answer = _read_until_closed(sock)  # returns only because the server closes
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"connection: close" in answer.lower()
    _assert_ready(server)


def test_a_client_that_disconnects_mid_body_is_one_log_line(server: ServeProcess) -> None:
    before = server.count("client disconnected")
    with _connect(server) as sock:
        head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        sock.sendall(head + b"Content-Length: 20000\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 ")  # the app is reading the body
        sock.sendall(b"\x89PNG" * 100)
    assert server.wait_for("client disconnected", count=before + 1, timeout=BOUND)
    _assert_ready(server)
    log = server.text()
    assert "Exception in ASGI application" not in log and "Traceback" not in log


def test_no_redirect_is_built_from_the_host_header(server: ServeProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /readyz/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 404 ")
    assert b"location:" not in answer.lower() and b"evil.example" not in answer


def _low_fd_limit() -> None:  # runs in the server's process, before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))


def test_out_of_file_descriptors_is_logged_once_and_the_server_recovers(
    valid_model: Path, tmp_path: Path, http: str
) -> None:
    flags = (*FLAGS, "--http", http)
    srv = ServeProcess(valid_model, tmp_path / "serve.log", *flags, preexec_fn=_low_fd_limit)
    idle = []
    try:
        for _ in range(45):  # more than the server has descriptors for; all stay silent
            idle.append(_connect(srv))
        assert srv.wait_for("cannot accept connections", timeout=BOUND), srv.text()
        # The header deadline frees the accepted ones, the backlog is served, then readyz.
        for sock in idle:
            assert _read_until_closed(sock) == b""
        _assert_ready(srv)
    finally:
        for sock in idle:
            sock.close()
        srv.stop()
    log = srv.text()
    assert "socket.accept() out of system resource" not in log
    assert 1 <= srv.count("cannot accept connections") <= 5, log[-2000:]
