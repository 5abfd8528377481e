"""`cifar-serve --grpc-port` beside its REST API: requests/s and latency, one client and 16.

One `cifar-serve` process serves both protocols (one model, one micro-batcher), so the two
rows differ only by the wire: REST is /v2/models/cifar10/infer with Triton's binary tensor
extension (loadgen.py: raw keep-alive sockets), gRPC is ModelInfer with raw_input_contents
(here: grpc.aio, one channel per client, each on its own connection). Both requests are
built once as bytes, one uint8 image each, so neither client pays for protobuf or JSON per
call. Cells run in interleaved rounds (alternating order), their windows pooled, as in
server.py; loops are bounded in requests and seconds, the server is stopped whatever happens.

The two clients do not cost the same (grpc.aio spends several times the CPU per call of
loadgen's raw sockets) and they share the cores with the server, so each cell also records
the CPU time per request of the server process and of the client process: the server's
figure is the one that compares the two protocols' serving paths.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np

from benchmarks.serving.loadgen import load, merge_windows, v2_binary_request
from benchmarks.serving.modes import HOST, free_port, running_server

CLIENTS = (1, 16)
INFER = "/inference.GRPCInferenceService/ModelInfer"
GRPC_LINE = re.compile(rf"gRPC \(Open Inference Protocol\) on {re.escape(HOST)}:(\d+)")


def grpc_request(image: np.ndarray) -> bytes:
    """A serialized ModelInferRequest for one uint8 image (raw contents, as tritonclient)."""
    from cifar10_runtime.serving.grpc.protocol import protocol

    p = protocol()
    x = np.ascontiguousarray(image[None], dtype=np.uint8)
    tensor = p.ModelInferRequest.InferInputTensor(name="image", datatype="UINT8", shape=x.shape)
    request = p.ModelInferRequest(model_name="cifar10", inputs=[tensor])
    request.raw_input_contents.append(x.tobytes())
    return request.SerializeToString()


async def _grpc_client(
    address: str, request: bytes, stop_at: float, quota: int, out: list[float], errors: list[str]
) -> None:
    import grpc

    # A channel of its own (own connection): 16 clients are 16 connections, as over REST.
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        call = channel.unary_unary(INFER)  # bytes in, bytes out: no per-call serialization
        while len(out) < quota and time.monotonic() < stop_at:
            t0 = time.perf_counter_ns()
            try:
                await call(request, timeout=30)
            except grpc.aio.AioRpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")
                continue
            out.append((time.perf_counter_ns() - t0) / 1e9)


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
    """REST (binary v2) and gRPC on one cifar-serve, at 1 and 16 clients (module doc)."""
    port = free_port()
    log_path = work / "serve-grpc.log"
    cmd = [str(serve_exe), str(model), "--host", HOST, "--port", str(port)]
    cmd += ["--grpc-port", "0", "--threads", str(threads), "--no-access-log"]
    rest, grpc_bytes = v2_binary_request(image), grpc_request(image)
    out: dict = {"command": " ".join(cmd), "rounds": rounds, "modes": {"rest_v2_binary": {}}}
    out["modes"]["grpc"] = {}
    windows: dict = {(mode, c): [] for mode in out["modes"] for c in CLIENTS}
    cpu: dict = {cell: [0.0, 0.0, 0] for cell in windows}  # server s, client s, requests
    with running_server(cmd, port, env, log_path) as proc:
        found = GRPC_LINE.search(log_path.read_text(errors="replace"))
        if found is None:
            raise RuntimeError(f"cifar-serve did not report its gRPC port; log: {log_path}")
        address = f"{HOST}:{found.group(1)}"
        cells = list(windows)
        for round_ in range(rounds):
            for mode, clients in cells if round_ % 2 == 0 else cells[::-1]:
                args = (clients, seconds / rounds, max_requests // rounds, 2 * clients)
                server0, client0 = process_cpu_s(proc.pid), _own_cpu_s()
                if mode == "grpc":  # loadgen's driver, with the gRPC client in each slot
                    window = load(address, grpc_bytes, *args, client=_grpc_client)  # type: ignore[arg-type]
                else:
                    window = load(port, rest, *args)
                windows[(mode, clients)].append(window)
                spent = cpu[(mode, clients)]
                spent[0] += process_cpu_s(proc.pid) - server0
                spent[1] += _own_cpu_s() - client0
                spent[2] += window["requests"] + 2 * clients  # the warm-up's requests too
    for (mode, clients), parts in windows.items():
        row = merge_windows(parts)
        server_s, client_s, requests = cpu[(mode, clients)]
        row["server_cpu_us_per_request"] = 1e6 * server_s / requests if requests else None
        row["client_cpu_us_per_request"] = 1e6 * client_s / requests if requests else None
        out["modes"][mode].setdefault("results", []).append(row)
    out["summary"] = _summary(out["modes"])
    for line in out["summary"]["lines"]:
        log(f"  server {line}")
    return out


def process_cpu_s(pid: int) -> float:
    """CPU seconds the threads of process `pid` have run so far: the sum of their
    /proc/PID/task/TID/schedstat (nanoseconds; a window of a fraction of a second is below
    /proc/PID/stat's 10 ms ticks), 0 where unreadable (not Linux)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as handle:
                total += int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended between the listing and the read
    return total / 1e9


def _own_cpu_s() -> float:
    return time.process_time()


def _summary(modes: dict) -> dict:
    def row(mode: str, clients: int) -> dict:
        return next(x for x in modes[mode]["results"] if x["clients"] == clients)

    def cell(r: dict) -> str:
        errors = f", {r['errors']} errors" if r["errors"] else ""
        return f"{r['requests_per_s']:.0f} req/s (p50 {r['p50_ms'] or 0:.2f} ms{errors})"

    out: dict = {"lines": []}
    for clients in CLIENTS:
        g, r = row("grpc", clients), row("rest_v2_binary", clients)
        ratio = g["requests_per_s"] / r["requests_per_s"] if r["requests_per_s"] else None
        out[f"grpc_over_rest_{clients}"] = ratio
        g_cpu, r_cpu = g.get("server_cpu_us_per_request"), r.get("server_cpu_us_per_request")
        cpu_ratio = g_cpu / r_cpu if g_cpu and r_cpu else None
        out[f"grpc_over_rest_server_cpu_{clients}"] = cpu_ratio
        cpu_text = f"; server CPU per request {cpu_ratio:.2f}x REST's" if cpu_ratio else ""
        out["lines"].append(
            f"{clients:>2} clients, one process: gRPC {cell(g)}, REST binary v2 {cell(r)}: "
            f"{ratio or 0:.2f}x{cpu_text}"
        )
    return out


def markdown_lines(out: dict, table, fmt) -> list[str]:  # noqa: ANN001 - the report's helpers
    """The report's rows for this benchmark (report.server passes its table and format)."""
    rows = [
        [
            mode,
            str(r["clients"]),
            fmt(r["requests_per_s"], "{:.0f}"),
            fmt(r["p50_ms"]),
            fmt(r["p99_ms"]),
            fmt(r.get("server_cpu_us_per_request"), "{:.0f}"),
            fmt(r.get("client_cpu_us_per_request"), "{:.0f}"),
            str(r["requests"]),
            str(r["errors"]),
        ]
        for mode, data in out["modes"].items()
        for r in data["results"]
    ]
    lines = [
        "### gRPC beside REST (one `cifar-serve --grpc-port`, one uint8 image per request)",
        "",
    ]
    lines += [
        "REST: binary v2 over loadgen's sockets; gRPC: ModelInfer, raw contents, grpc.aio. "
        "*server CPU* and *client CPU* are each process's CPU time per request (all its "
        "threads): the clients share the cores with the server, and grpc.aio's client "
        "costs several times loadgen's, so the server's column is the one that compares "
        "the serving paths.",
        "",
    ]
    header = ["protocol", "clients", "req/s", "p50 ms", "p99 ms", "server CPU us/req"]
    header += ["client CPU us/req", "requests", "errors"]
    return lines + table(header, rows) + [f"- {line}" for line in out["summary"]["lines"]] + [""]


def main() -> None:
    """`python -m benchmarks.serving.grpc_bench MODEL [SECONDS] [THREADS]`: this row alone."""
    import json
    import os
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
