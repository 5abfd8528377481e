"""`cifar-serve` on loopback: requests/s and latency, one client alone and 16 and 32 at once.

Servers are subprocesses bound to 127.0.0.1 on a free port, run one after the other:

- `cifar-serve` with its defaults (adaptive batching: a lone request runs at once, those
  that arrive during a run form the next one), on /v1/predict (a PNG) and on the Open
  Inference Protocol with binary tensors (/v2/models/cifar10/infer, uint8 in, float32 out);
- `cifar-serve --max-batch-size 1` (batching off), the lone-client reference;
- `cifar-serve --workers 2` (two processes, onnxruntime threads split between them);
- a naive per-request server (naive_server.py: same model, same decoding, same uvicorn,
  one `session.run` per request, no batcher), the baseline.

All servers are up together and every (server, API, clients) cell is measured in
interleaved rounds (`rounds`, alternating direction), its windows pooled: a change in the
machine's load then hits every mode alike. The load comes from loadgen.py: an asyncio
client, keep-alive raw sockets, one thread, so it costs the server at most one of the
machine's cores (and little of it). Every loop is
bounded in both requests and seconds, and each server is stopped (SIGTERM, then SIGKILL)
whatever happens.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from .loadgen import build_request, load, merge_windows

HOST = "127.0.0.1"  # loopback only, never another address
CONCURRENCY = (1, 16, 32)
NAIVE_SERVER = Path(__file__).with_name("naive_server.py")


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


def _v2_binary_request(image: np.ndarray) -> bytes:
    raw = np.ascontiguousarray(image[None], dtype=np.uint8).tobytes()
    header = {
        "inputs": [
            {
                "name": "image",
                "shape": [1, 32, 32, 3],
                "datatype": "UINT8",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header).encode()
    headers = {"Inference-Header-Content-Length": str(len(head))}
    return build_request("/v2/models/cifar10/infer", head + raw, headers)


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
    rounds: int = 3,
) -> dict:  # noqa: ANN001 - a print-like callable
    """Every server, each API it speaks, at each concurrency (see the module doc)."""
    from cifar10_runtime.images import load_image

    v1 = build_request("/v1/predict", body, {"Content-Type": "image/png"})
    v2 = _v2_binary_request(load_image(body))
    common = ["--host", HOST, "--threads", str(threads), "--no-access-log"]
    python = serve_exe.with_name("python")
    servers = {
        "default": ([str(serve_exe), str(model), *common], {"v1": v1, "v2_binary": v2}),
        "max_batch_1": (
            [str(serve_exe), str(model), *common, "--max-batch-size", "1"],
            {"v1": v1},
        ),
        "workers_2": (
            [str(serve_exe), str(model), "--host", HOST, "--no-access-log", "--workers", "2"],
            {"v1": v1},
        ),
        "naive_baseline": ([str(python), str(NAIVE_SERVER), str(model)], {"v1": v1}),
    }
    out: dict = {
        "modes": {},
        "payload_bytes": len(body),
        "threads": threads,
        "load_generator": "benchmarks/loadgen.py: asyncio, keep-alive raw sockets, one thread",
        "rounds": rounds,
    }
    cells = []  # (mode, port, request, clients)
    with ExitStack() as stack:
        # Every server is up at once and the cells are measured in interleaved rounds, so a
        # change in the machine's load hits every mode alike instead of whichever ran then.
        for server, (base, apis) in servers.items():
            port = free_port()
            if server == "naive_baseline":
                cmd = [*base, str(port), str(threads)]
            else:
                cmd = [*base, "--port", str(port)]
            stack.enter_context(running_server(cmd, port, env, work / f"serve-{server}.log"))
            info = _get(port, "/readyz")[1]
            for api, request in apis.items():
                mode = f"{server} {api}"
                out["modes"][mode] = {"command": " ".join(cmd), "readyz": _maybe_json(info)}
                cells += [(mode, port, request, clients) for clients in CONCURRENCY]
        windows: dict = {(mode, clients): [] for mode, _, _, clients in cells}
        for round_ in range(rounds):
            order = cells if round_ % 2 == 0 else cells[::-1]
            for mode, port, request, clients in order:
                window = load(
                    port, request, clients, seconds / rounds, max_requests // rounds, 2 * clients
                )
                windows[(mode, clients)].append(window)
    for (mode, clients), parts in windows.items():
        row = merge_windows(parts)
        out["modes"][mode].setdefault("results", []).append(row)
        log(
            f"  server {mode:<20} {clients:>2} clients: "
            f"{row['requests_per_s']:7.1f} req/s, p50 {row['p50_ms'] or 0:7.2f} ms, "
            f"p99 {row['p99_ms'] or 0:7.2f} ms"
            f"{', ' + str(row['errors']) + ' errors' if row['errors'] else ''}"
        )
    out["summary"] = _summary(out["modes"])
    for line in out["summary"]["lines"]:
        log(f"  server {line}")
    return out


def _summary(modes: dict) -> dict:
    def row(mode: str, clients: int) -> dict:
        return next(r for r in modes[mode]["results"] if r["clients"] == clients)

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    lone = ratio(row("default v1", 1)["p50_ms"], row("max_batch_1 v1", 1)["p50_ms"])
    out: dict = {"lone_p50_default_over_batch1": lone, "lines": []}
    out["lines"].append(f"lone client p50, default / --max-batch-size 1: {lone or 0:.2f}x")
    for clients in CONCURRENCY[1:]:
        rps = row("default v1", clients)["requests_per_s"]
        vs_off = ratio(rps, row("max_batch_1 v1", clients)["requests_per_s"])
        vs_naive = ratio(rps, row("naive_baseline v1", clients)["requests_per_s"])
        out[f"throughput_{clients}_over_batch1"] = vs_off
        out[f"throughput_{clients}_over_naive"] = vs_naive
        out["lines"].append(
            f"{clients} clients req/s, default / --max-batch-size 1: {vs_off or 0:.2f}x, "
            f"default / naive: {vs_naive or 0:.2f}x"
        )
    return out


def _maybe_json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:200].decode(errors="replace")


def main() -> None:
    """`python -m benchmarks.server MODEL [SECONDS] [THREADS]`: this section alone."""
    import io
    import os
    import sys
    import tempfile

    from PIL import Image

    model = Path(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 6.0
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else (os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    exe = Path(sys.executable).with_name("cifar-serve")
    with tempfile.TemporaryDirectory() as work:
        out = bench_server(
            exe, model, buffer.getvalue(), dict(os.environ), Path(work), seconds, 50_000, threads
        )
    print(json.dumps(out["summary"], indent=1))


if __name__ == "__main__":
    main()
