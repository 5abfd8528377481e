"""`cifar-serve` on loopback: requests/s and latency at 1, 8 and 32 concurrent clients.

The server is a subprocess bound to 127.0.0.1 on a free port; clients are threads in this
process using keep-alive `http.client` connections (the lightest client the stdlib has, so
client overhead eats as little of the shared CPU as it can). Every loop is bounded in both
requests and seconds, and the server is stopped (SIGTERM, then SIGKILL) whatever happens.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .timing import percentile

HOST = "127.0.0.1"  # loopback only, never another address
CONCURRENCY = (1, 8, 32)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@contextmanager
def running_server(
    cmd: list[str], port: int, env: dict[str, str], log_path: Path, ready_timeout: float = 90.0
):
    """Start `cmd`, wait for GET /readyz == 200, yield, then stop the process."""
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"cifar-serve exited with {proc.returncode} before it was ready; "
                    f"log: {log_path}: {log_path.read_text(errors='replace')[-400:]}"
                )
            try:
                if _get(port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"cifar-serve not ready after {ready_timeout:.0f} s; {log_path}")
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


def _client(
    port: int,
    body: bytes,
    deadline: list[float],
    max_requests: int,
    out: list[float],
    errors: list[str],
    start: threading.Barrier,
) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Content-Type": "image/png"}
    start.wait()
    stop_at = deadline[0]  # set by the main thread before it joined the barrier
    try:
        while len(out) < max_requests and time.monotonic() < stop_at:
            t0 = time.perf_counter_ns()
            try:
                conn.request("POST", "/v1/predict", body=body, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
                continue
            dt = (time.perf_counter_ns() - t0) / 1e9
            if resp.status != 200:
                errors.append(f"HTTP {resp.status}: {payload[:200]!r}")
                continue
            out.append(dt)
    finally:
        conn.close()


def load_test(
    port: int, body: bytes, clients: int, seconds: float, max_requests: int, warmup_requests: int
) -> dict:
    """`clients` threads send the same PNG back to back for `seconds` (bounded by count)."""
    # Warm-up: first requests pay for connection setup and the first onnxruntime runs.
    _run_clients(port, body, min(clients, 4), 5.0, warmup_requests)
    return _run_clients(port, body, clients, seconds, max_requests)


def _run_clients(port: int, body: bytes, clients: int, seconds: float, max_requests: int) -> dict:
    per_client = max(1, max_requests // clients)
    results: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = threading.Barrier(clients + 1)
    deadline = [0.0]
    threads = [
        threading.Thread(
            target=_client,
            daemon=True,
            args=(port, body, deadline, per_client, results[i], errors, start),
        )
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    deadline[0] = time.monotonic() + seconds
    start.wait()
    for t in threads:
        t.join(timeout=seconds + 60)
    wall = time.perf_counter() - t0
    lat = sorted(x for r in results for x in r)
    return {
        "clients": clients,
        "requests": len(lat),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": wall,
        "requests_per_s": len(lat) / wall if wall else 0.0,
        "p50_ms": percentile(lat, 50) * 1e3 if lat else None,
        "p99_ms": percentile(lat, 99) * 1e3 if lat else None,
    }


def bench_server(
    serve_exe: Path,
    model: Path,
    body: bytes,
    env: dict[str, str],
    work: Path,
    seconds: float,
    max_requests: int,
    threads: int,
    log=print,
) -> dict:  # noqa: ANN001 - a print-like callable
    """Micro-batching on (max batch 32, 2 ms) and off (max batch 1), at each concurrency."""
    modes = {
        "batching_on": ["--max-batch-size", "32", "--max-delay-ms", "2"],
        "batching_off": ["--no-batching"],
    }
    out: dict = {"modes": {}, "payload_bytes": len(body), "threads": threads}
    for mode, flags in modes.items():
        port = free_port()
        cmd = [
            str(serve_exe),
            str(model),
            "--host",
            HOST,
            "--port",
            str(port),
            "--threads",
            str(threads),
            *flags,
        ]
        rows = []
        with running_server(cmd, port, env, work / f"serve-{mode}.log"):
            status, info = _get(port, "/readyz")
            for clients in CONCURRENCY:
                row = load_test(
                    port, body, clients, seconds, max_requests, warmup_requests=2 * clients
                )
                rows.append(row)
                log(
                    f"  server {mode:<12} {clients:>2} clients: {row['requests_per_s']:7.1f} "
                    f"req/s, p50 {row['p50_ms'] or 0:7.2f} ms, p99 {row['p99_ms'] or 0:7.2f} ms"
                    f"{', ' + str(row['errors']) + ' errors' if row['errors'] else ''}"
                )
        out["modes"][mode] = {
            "command": " ".join(cmd),
            "results": rows,
            "readyz": _maybe_json(info),
        }
    return out


def _maybe_json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:200].decode(errors="replace")
