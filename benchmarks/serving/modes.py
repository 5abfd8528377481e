"""Which servers the server benchmark runs, how each starts and stops, what each speaks.

Every server serves the same ONNX file with the same onnxruntime thread count, on
127.0.0.1 and a free port:

    server              what                                                PNG  v2 bin  v2 JSON
    default             `cifar-serve` with its defaults (1 worker)          yes  yes     yes
    workers_2           `cifar-serve --workers 2`                           yes  yes     yes
    max_batch_1         `cifar-serve --max-batch-size 1` (batching off)     yes
    naive_baseline      naive_server.py: decode + one run per request       yes
    minimal_h11         minimal_server.py, uvicorn + h11 (asyncio)               yes     yes
    minimal_httptools   minimal_server.py, uvicorn + httptools + uvloop          yes     yes
    kserve              KServe ModelServer + onnxruntime (peers venv)            yes     yes
    mlserver            MLServer custom runtime, adaptive batching                       yes

MLServer's REST has no binary tensor extension (JSON only); KServe's REST parses Triton's
binary tensors. KServe and MLServer run from build/venv-peers (`make bench` installs it
from benchmarks/serving/peers/requirements.txt); without it their rows are left out, saying so.
"""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"  # loopback only, never another address
HERE = Path(__file__).resolve().parent
PEERS_VENV = HERE.parents[1] / "build" / "venv-peers"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def peers_ready() -> bool:
    probe = PEERS_VENV / "lib"
    return (PEERS_VENV / "bin" / "python").is_file() and any(
        probe.glob("python*/site-packages/kserve")
    )


def server_table(serve_exe: Path, model: Path, threads: int) -> tuple[dict, list[str]]:
    """{name: (command with {port}, apis, ready path)}, and notes on what was left out."""
    python = str(serve_exe.with_name("python"))
    serve = [str(serve_exe), str(model), "--host", HOST, "--no-access-log", "--port", "{port}"]
    pinned = [*serve, "--threads", str(threads)]
    minimal = [python, str(HERE / "minimal_server.py"), str(model), "{port}", str(threads)]
    every = ("v1", "v2_binary", "v2_json")
    table: dict = {
        "default": (pinned, every, "/readyz"),
        # onnxruntime threads split between the workers by cifar-serve itself.
        "workers_2": ([*serve, "--workers", "2"], every, "/readyz"),
        "max_batch_1": ([*pinned, "--max-batch-size", "1"], ("v1",), "/readyz"),
        "naive_baseline": (
            [python, str(HERE / "naive_server.py"), str(model), "{port}", str(threads)],
            ("v1",),
            "/readyz",
        ),
        "minimal_h11": ([*minimal, "h11"], ("v2_binary", "v2_json"), "/readyz"),
        "minimal_httptools": ([*minimal, "httptools"], ("v2_binary", "v2_json"), "/readyz"),
    }
    notes = []
    if peers_ready():
        peer = str(PEERS_VENV / "bin" / "python")
        kserve = [peer, str(HERE / "peers" / "kserve_server.py"), str(model), "{port}"]
        table["kserve"] = ([*kserve, str(threads)], ("v2_binary", "v2_json"), "/v2/health/ready")
        mlserver = [peer, str(HERE / "peers" / "mlserver_runtime.py"), str(model.resolve())]
        mlserver += ["{port}", str(threads), str(free_port()), str(free_port())]
        table["mlserver"] = (mlserver, ("v2_json",), "/v2/health/ready")
    else:
        notes.append(
            f"KServe and MLServer not measured: no peers venv at {PEERS_VENV} "
            "(`make bench` builds it from benchmarks/serving/peers/requirements.txt)"
        )
    return table, notes


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@contextmanager
def running_server(
    cmd: list[str],
    port: int,
    env: dict[str, str],
    log_path: Path,
    ready_timeout: float = 90.0,
    ready_path: str = "/readyz",
):
    """Start `cmd`, wait for GET `ready_path` == 200, yield, then stop the process."""
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{Path(cmd[1]).name} exited with {proc.returncode} before it was ready; "
                    f"log: {log_path}: {log_path.read_text(errors='replace')[-400:]}"
                )
            try:
                if http_get(port, ready_path)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[1]} not ready after {ready_timeout:.0f} s; {log_path}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        log.close()
