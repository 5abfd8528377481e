"""`cifar-serve` for real: uvicorn on 127.0.0.1, 16 concurrent clients on each API, bad
bodies, graceful shutdown, several workers.

Event-driven: the server is known ready from its log, requests are known to be inside the
app from HTTP's own `100 Continue`, shutdown is known to have begun when the server closes
an idle keep-alive connection. Every wait is bounded; nothing depends on log wording
except uvicorn's startup line (serve_process.py).
"""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_process import ServeProcess, start_request_inside_the_app
from serve_samples import sample_images, sample_pngs

from cifar10_runtime import Predictor

pytestmark = pytest.mark.slow
CLIENTS = 16
REQUESTS_PER_CLIENT = 8
PNG = {"Content-Type": "image/png"}
BOUND = 30.0


@pytest.fixture()
def server(valid_model: Path, tmp_path: Path) -> Iterator[ServeProcess]:
    srv = ServeProcess(valid_model, tmp_path / "serve.log", "--max-body-mb", "1", "--threads", "1")
    yield srv
    srv.stop()


def _sixteen_clients(url: str, call) -> list:  # type: ignore[no-untyped-def]
    def client(worker: int) -> list:
        with httpx.Client(base_url=url, timeout=BOUND) as http:
            return [
                call(http, worker * REQUESTS_PER_CLIENT + i) for i in range(REQUESTS_PER_CLIENT)
            ]

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [a for answers in pool.map(client, range(CLIENTS)) for a in answers]


def test_sixteen_clients_on_each_api_get_exactly_the_predictor_answers(
    server: ServeProcess, predictor: Predictor
) -> None:
    bodies = sample_pngs(32)
    expected = [predictor.predict(b, top_k=3).to_dict() for b in bodies]

    def v1(http: httpx.Client, n: int) -> tuple[int, int, dict]:
        r = http.post("/v1/predict?top_k=3", content=bodies[n % 32], headers=PNG)
        return n % 32, r.status_code, r.json()

    results = _sixteen_clients(server.url, v1)
    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT
    assert [status for _, status, _ in results] == [200] * len(results)
    for index, _, body in results:
        want = {"file": "request body", **expected[index]}
        assert body == {"predictions": [want], "model_version": "tiny-1.0"}

    images = sample_images(32)
    probs = predictor.predict_array(images)

    def v2(http: httpx.Client, n: int) -> tuple[int, int, list]:
        x = images[n % 32]
        tensor = {"name": "image", "shape": [1, 32, 32, 3], "datatype": "UINT8"}
        r = http.post(
            "/v2/models/cifar10/infer", json={"inputs": [{**tensor, "data": x.ravel().tolist()}]}
        )
        return n % 32, r.status_code, r.json()["outputs"][0]["data"]

    results = _sixteen_clients(server.url, v2)
    assert [status for _, status, _ in results] == [200] * len(results)
    for index, _, data in results:
        assert np.abs(np.asarray(data, np.float32) - probs[index]).max() <= 1e-6

    files = [("f", (f"{i}.png", bodies[i], "image/png")) for i in range(4)]
    multipart = httpx.post(f"{server.url}/v1/predict", files=files, timeout=BOUND)
    assert multipart.status_code == 200
    assert [p["label"] for p in multipart.json()["predictions"]] == [
        predictor.predict(b).label for b in bodies[:4]
    ]


def test_bad_bodies_get_4xx_and_the_server_stays_ready(server: ServeProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=BOUND) as http:
        broken = http.post("/v1/predict", content=b"not a png", headers=PNG)
        assert broken.status_code == 400 and "request body" in broken.json()["error"]
        too_big = http.post("/v1/predict", content=b"\x00" * (3 * 2**20), headers=PNG)
        assert too_big.status_code == 413 and "limit" in too_big.json()["error"]
        wrong_type = http.post("/v1/predict", content=b"{}", headers={"Content-Type": "text/csv"})
        assert wrong_type.status_code == 415
        assert http.get("/readyz").status_code == 200
        assert http.get("/healthz").json() == {"status": "ok"}
    # uvicorn re-raises the signal after a clean shutdown; 130 is cli_errors' Ctrl+C exit.
    assert server.stop(signal.SIGINT) in (0, 130, -signal.SIGINT)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_shutdown_finishes_in_flight_requests(valid_model: Path, tmp_path: Path) -> None:
    srv = ServeProcess(valid_model, tmp_path / "serve.log", "--threads", "1")
    body = sample_pngs(1)[0]
    idle = socket.create_connection(("127.0.0.1", srv.port), timeout=BOUND)
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = b""
    while not first.endswith(b'{"status":"ok"}'):  # the whole answer: now an idle connection
        first += idle.recv(65536) or pytest.fail(f"closed early: {first!r}")
    in_flight = [start_request_inside_the_app(srv.port, body) for _ in range(3)]
    srv.process.send_signal(signal.SIGTERM)
    assert _read_all(idle) == b""  # closed by the shutdown: it has begun
    for sock in in_flight:  # the bodies arrive after SIGTERM: still answered
        sock.sendall(body)
    answers = [_read_all(sock) for sock in in_flight]
    for sock in [idle, *in_flight]:
        sock.close()
    assert srv.stop() in (0, -signal.SIGTERM), srv.text()  # uvicorn re-raises the signal
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"][0]["file"]


def test_two_workers_share_the_port(valid_model: Path, tmp_path: Path) -> None:
    srv = ServeProcess(valid_model, tmp_path / "serve.log", "--workers", "2", ready_lines=2)
    try:
        bodies = sample_pngs(4)

        def call(http: httpx.Client, n: int) -> int:
            return http.post("/v1/predict", content=bodies[n % 4], headers=PNG).status_code

        assert set(_sixteen_clients(srv.url, call)) == {200}
        assert httpx.get(f"{srv.url}/readyz", timeout=BOUND).status_code == 200
    finally:
        code = srv.stop()
    assert code in (0, -signal.SIGTERM), srv.text()
    assert srv.count("ready: Predictor(") == 2  # each worker loaded its own model
    # The resolved config is logged once, by cifar-serve itself, not once per worker.
    assert srv.count("cifar-serve config: ") == 1
    (line,) = [x for x in srv.text().splitlines() if x.startswith("cifar-serve config: ")]
    config = json.loads(line.removeprefix("cifar-serve config: "))
    assert config["workers"] == 2 and config["threads"] >= 1  # the cores split between them
