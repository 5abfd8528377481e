"""`cifar-serve --grpc-port` beside its own REST API and beside KServe's gRPC server:
requests/s, latency and server CPU per request, one client and 16.

One `cifar-serve` process serves both its protocols (one model, one micro-batcher), so its
two rows differ only by the wire: REST is /v2/models/cifar10/infer with Triton's binary
tensor extension (loadgen.py: raw keep-alive sockets), gRPC is ModelInfer with
raw_input_contents (grpc_client.py: grpc.aio, one channel per client, each on its own
connection). KServe's ModelServer (peers/kserve_server.py: the REST peer's model class, same
ONNX file and threads, its gRPC server on) gets the very same gRPC request bytes from the
same client code. Requests are built once as bytes, one uint8 image each, so no client pays
for protobuf or JSON per call, and each server's answer is checked once (probabilities of
the right shape) before it is measured. Cells run in interleaved rounds (alternating order),
their windows pooled, as in server.py; loops are bounded in requests and seconds, every
server is stopped whatever happens. KServe runs from build/venv-peers; without it its row is
left out, saying so.

The clients do not cost the same (grpc.aio spends several times the CPU per call of
loadgen's raw sockets) and they share the cores with the servers, so each cell also records
the CPU time per request of the server process and of the client process: the server's
figure is the one that compares serving paths.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from benchmarks.serving.grpc_client import check_answer, grpc_client, grpc_request
from benchmarks.serving.grpc_report import summary
from benchmarks.serving.loadgen import load, merge_windows, v2_binary_request
from benchmarks.serving.modes import HERE, HOST, PEERS_VENV, free_port, peers_ready, running_server

CLIENTS = (1, 16)
GRPC_LINE = re.compile(rf"gRPC \(Open Inference Protocol\) on {re.escape(HOST)}:(\d+)")

# mode -> (port or "host:port", request bytes, loadgen client slot or None for HTTP, server pid)
Target = tuple[int | str, bytes, object, int]


def bench_grpc(
    serve_exe: Path,
    model: Path,
    image: np.ndarray,
    env: dict[str, str],
    work: Path,
    seconds: float,
    max_requests: int,
    threads: int,
    log=print,  # noqa: ANN001 - a print-like callable
    rounds: int = 3,
) -> dict:
    """cifar-serve's REST (binary v2) and gRPC, and KServe's gRPC, at 1 and 16 clients."""
    port = free_port()
    log_path = work / "serve-grpc.log"
    cmd = [str(serve_exe), str(model), "--host", HOST, "--port", str(port)]
    cmd += ["--grpc-port", "0", "--threads", str(threads), "--no-access-log"]
    rest, grpc_bytes = v2_binary_request(image), grpc_request(image)
    out: dict = {"command": " ".join(cmd), "rounds": rounds, "notes": []}
    out["modes"] = {"rest_v2_binary": {}, "grpc": {}}
    with ExitStack() as stack:
        proc = stack.enter_context(running_server(cmd, port, env, log_path))
        found = GRPC_LINE.search(log_path.read_text(errors="replace"))
        if found is None:
            raise RuntimeError(f"cifar-serve did not report its gRPC port; log: {log_path}")
        address = f"{HOST}:{found.group(1)}"
        targets: dict[str, Target] = {
            "rest_v2_binary": (port, rest, None, proc.pid),
            "grpc": (address, grpc_bytes, grpc_client, proc.pid),
        }
        kserve = _start_kserve(stack, model, threads, env, work) if peers_ready() else None
        if kserve is None:
            out["notes"].append(
                f"KServe's gRPC not measured: no peers venv at {PEERS_VENV} "
                "(`make bench` builds it from benchmarks/serving/peers/requirements.txt)"
            )
        else:
            kserve_address, kserve_pid, kserve_cmd = kserve
            out["modes"]["kserve_grpc"] = {"command": kserve_cmd}
            targets["kserve_grpc"] = (kserve_address, grpc_bytes, grpc_client, kserve_pid)
        for target, request, client, _ in targets.values():
            if client is not None:  # a gRPC server: its answer checked before it is timed
                check_answer(str(target), request)
        windows, cpu = _measure(targets, seconds, max_requests, rounds)
    for (mode, clients), parts in windows.items():
        row = merge_windows(parts)
        server_s, client_s, requests = cpu[(mode, clients)]
        row["server_cpu_us_per_request"] = 1e6 * server_s / requests if requests else None
        row["client_cpu_us_per_request"] = 1e6 * client_s / requests if requests else None
        out["modes"][mode].setdefault("results", []).append(row)
    out["summary"] = summary(out["modes"], CLIENTS)
    for line in out["summary"]["lines"] + out["notes"]:
        log(f"  server {line}")
    return out


def _start_kserve(
    stack: ExitStack, model: Path, threads: int, env: dict[str, str], work: Path
) -> tuple[str, int, str]:
    """KServe's ModelServer with its gRPC server on a free loopback port (stopped when
    `stack` closes): its gRPC address, process id and command."""
    http_port, grpc_port = free_port(), free_port()
    script = HERE / "peers" / "kserve_server.py"
    cmd = [str(PEERS_VENV / "bin" / "python"), str(script), str(model.resolve())]
    cmd += [str(http_port), str(threads), str(grpc_port)]
    log_path = work / "serve-kserve-grpc.log"
    proc = stack.enter_context(
        running_server(cmd, http_port, env, log_path, ready_path="/v2/health/ready")
    )
    return f"{HOST}:{grpc_port}", proc.pid, " ".join(cmd)


def _measure(
    targets: dict[str, Target], seconds: float, max_requests: int, rounds: int
) -> tuple[dict, dict]:
    """Every (mode, clients) cell's load windows, one per round, and its CPU spent:
    [server s, client s, requests] (the warm-up's requests included, as its CPU is)."""
    windows: dict = {(mode, c): [] for mode in targets for c in CLIENTS}
    cpu: dict = {cell: [0.0, 0.0, 0] for cell in windows}
    cells = list(windows)
    for round_ in range(rounds):
        for mode, clients in cells if round_ % 2 == 0 else cells[::-1]:
            target, request, client, pid = targets[mode]
            args = (clients, seconds / rounds, max_requests // rounds, 2 * clients)
            server0, client0 = process_cpu_s(pid), time.process_time()
            # loadgen's driver for every cell; the gRPC cells put grpc_client in each slot.
            window = load(target, request, *args, client=client)  # type: ignore[arg-type]
            windows[(mode, clients)].append(window)
            spent = cpu[(mode, clients)]
            spent[0] += process_cpu_s(pid) - server0
            spent[1] += time.process_time() - client0
            spent[2] += window["requests"] + 2 * clients
    return windows, cpu


def process_cpu_s(pid: int) -> float:
    """CPU seconds the threads of process `pid` have run so far (their schedstat: a window
    of a fraction of a second is below /proc/PID/stat's 10 ms ticks), 0 where unreadable."""
    from cifar10_runtime.engines.load import schedstat_s

    return schedstat_s(0, pid)


def main() -> None:
    """`python -m benchmarks.serving.grpc_bench MODEL [SECONDS] [THREADS]`: this row alone."""
    import json
    import sys
    import tempfile

    from cifar10_runtime.engines.cpu import usable_cpus

    model = Path(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 6.0
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else usable_cpus()
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    exe = Path(sys.executable).with_name("cifar-serve")
    with tempfile.TemporaryDirectory() as work:
        out = bench_grpc(exe, model, image, dict(os.environ), Path(work), seconds, 50_000, threads)
    for mode, data in out["modes"].items():
        for row in data["results"]:
            print(mode, json.dumps(row))
    print(json.dumps({k: v for k, v in out["summary"].items() if k != "lines"}, indent=1))


if __name__ == "__main__":
    main()
