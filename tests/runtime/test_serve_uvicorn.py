"""`cifar-serve` for real: uvicorn on 127.0.0.1, 16 concurrent clients, bad bodies, shutdown.

Only loopback traffic; every wait is bounded.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cifar10_runtime import Predictor

pytestmark = pytest.mark.slow
CLIENTS = 16
REQUESTS_PER_CLIENT = 8
PNG = {"Content-Type": "image/png"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, model: Path, log: Path, *flags: str) -> None:
        script = Path(sys.executable).with_name("cifar-serve")
        if not script.exists():
            pytest.skip(f"cifar-serve is not installed next to {sys.executable}")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [str(script), str(model), "--port", str(self.port), "--no-access-log", *flags]
        with open(log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"cifar-serve exited:\n{log.read_text()}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"cifar-serve not ready within 30 s:\n{log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


@pytest.fixture()
def server(valid_model: Path, tmp_path: Path) -> Iterator[Server]:
    srv = Server(valid_model, tmp_path / "serve.log", "--max-body-mb", "1", "--threads", "1")
    yield srv
    srv.stop()


def test_sixteen_clients_get_exactly_the_predictor_answers(
    server: Server, predictor: Predictor, subset_pngs: Path
) -> None:
    files = sorted(subset_pngs.glob("*.png"))
    bodies = [f.read_bytes() for f in files]
    expected = [predictor.predict(b, top_k=3).to_dict() for b in bodies]

    def client(worker: int) -> list[tuple[int, int, dict]]:
        answers = []
        with httpx.Client(base_url=server.url, timeout=20) as http:
            for i in range(REQUESTS_PER_CLIENT):
                index = (worker * REQUESTS_PER_CLIENT + i) % len(bodies)
                r = http.post("/v1/predict?top_k=3", content=bodies[index], headers=PNG)
                answers.append((index, r.status_code, r.json()))
        return answers

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = [a for answers in pool.map(client, range(CLIENTS)) for a in answers]
    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT
    assert [status for _, status, _ in results] == [200] * len(results)
    for index, _, body in results:
        assert body == {"predictions": [expected[index]], "model_version": "tiny-1.0"}

    multipart = httpx.post(
        f"{server.url}/v1/predict",
        files=[("f", (f.name, f.read_bytes(), "image/png")) for f in files[:4]],
        timeout=20,
    )
    assert multipart.status_code == 200
    assert multipart.json()["predictions"] == [predictor.predict(f).to_dict() for f in files[:4]]


def test_bad_bodies_get_4xx_and_the_server_stays_ready(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as http:
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
    assert "Finished server process" in server.log.read_text()


def test_shutdown_finishes_in_flight_requests(
    valid_model: Path, subset_pngs: Path, tmp_path: Path
) -> None:
    # A long batching delay keeps the requests waiting inside the server when SIGTERM lands.
    srv = Server(valid_model, tmp_path / "serve.log", "--max-delay-ms", "2000", "--threads", "1")
    body = (subset_pngs / "000.png").read_bytes()
    statuses: list[int] = []

    def post() -> None:
        r = httpx.post(f"{srv.url}/v1/predict", content=body, headers=PNG, timeout=20)
        statuses.append(r.status_code)

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until all three are inside the batcher
        server_stats = httpx.get(f"{srv.url}/v1/metadata", timeout=5).json()["server"]
        if server_stats["in_flight"] == 3:
            break
        time.sleep(0.02)
    assert server_stats["in_flight"] == 3 and statuses == []  # waiting in the batch window
    assert srv.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    for t in threads:
        t.join(20)
    log = srv.log.read_text()
    assert statuses == [200, 200, 200], log
    assert "Waiting for connections to close" in log and "Finished server process" in log
