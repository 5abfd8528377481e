"""An asyncio HTTP/1.1 load generator: N keep-alive connections in one thread.

One event loop drives every client with raw sockets (no HTTP library: the request bytes are
built once, responses are framed by Content-Length or chunked), so the whole load costs at most one
core and little of it, leaving the server the cores it needs. Loops are bounded by count
and by time; any non-200 or transport error is counted, never retried silently.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np

from benchmarks.serving.modes import HOST
from benchmarks.timing import percentile


def build_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def v2_binary_request(image: np.ndarray) -> bytes:
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
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    return build_request("/v2/models/cifar10/infer", head + raw, headers)


def v2_json_request(image: np.ndarray) -> bytes:
    tensor = {"name": "image", "shape": [1, 32, 32, 3], "datatype": "UINT8"}
    body = json.dumps({"inputs": [{**tensor, "data": image.ravel().tolist()}]}).encode()
    return build_request("/v2/models/cifar10/infer", body, {"Content-Type": "application/json"})


async def _one_client(
    port: int, request: bytes, stop_at: float, quota: int, out: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while len(out) < quota and time.monotonic() < stop_at:
            t0 = time.perf_counter_ns()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, chunked = 0, False
            for line in head.split(b"\r\n"):
                name = line[:18].lower()
                if name.startswith(b"content-length:"):
                    length = int(line[15:])
                elif name == b"transfer-encoding:" and b"chunked" in line.lower():
                    chunked = True  # e.g. KServe's binary answers
            payload = await (_read_chunked(reader) if chunked else reader.readexactly(length))
            if status != 200:
                errors.append(f"HTTP {status}: {payload[:200]!r}")
                if b"connection: close" in head.lower():
                    break
                continue
            out.append((time.perf_counter_ns() - t0) / 1e9)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        writer.close()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append((await reader.readexactly(size + 2))[:-2])
    await reader.readuntil(b"\r\n")  # the empty trailer
    return b"".join(parts)


async def _run(
    port: int, request: bytes, clients: int, seconds: float, max_requests: int, client=None
) -> dict:  # noqa: ANN001 - client: a coroutine function shaped like _one_client
    one_client = client or _one_client  # grpc_bench.py passes its gRPC client
    per_client = max(1, max_requests // clients)
    results: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    t0 = time.perf_counter()
    stop_at = time.monotonic() + seconds
    await asyncio.wait_for(
        asyncio.gather(
            *(
                one_client(port, request, stop_at, per_client, results[i], errors)
                for i in range(clients)
            )
        ),
        seconds + 60,
    )
    wall = time.perf_counter() - t0
    lat = sorted(x for r in results for x in r)
    return _row(clients, lat, errors, wall)


def _row(clients: int, lat: list[float], errors: list[str], wall: float) -> dict:
    return {
        "clients": clients,
        "requests": len(lat),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": wall,
        "requests_per_s": len(lat) / wall if wall else 0.0,
        "p50_ms": percentile(lat, 50) * 1e3 if lat else None,
        "p99_ms": percentile(lat, 99) * 1e3 if lat else None,
        "latencies": lat,
    }


def merge_windows(windows: list[dict]) -> dict:
    """One row from several windows of the same cell: pooled latencies, total time."""
    lat = sorted(x for w in windows for x in w["latencies"])
    errors = [w["first_error"] for w in windows if w["first_error"]]
    errors += [""] * (sum(w["errors"] for w in windows) - len(errors))
    row = _row(windows[0]["clients"], lat, errors, sum(w["seconds"] for w in windows))
    del row["latencies"]  # kept out of the results file
    row["windows"] = len(windows)
    return row


def load(
    port: int,
    request: bytes,
    clients: int,
    seconds: float,
    max_requests: int,
    warmup: int,
    client=None,  # noqa: ANN001 - see _run
) -> dict:
    """Warm up (connections, first runs), then `clients` connections back to back."""
    asyncio.run(_run(port, request, min(clients, 4), 5.0, warmup, client))
    return asyncio.run(_run(port, request, clients, seconds, max_requests, client))


def record_errors(modes: dict, out: dict) -> None:
    """Every cell (mode x clients) with errors into out["errors"], and the summary line that
    says so: the target is 0 in every cell, whatever the section."""
    errors = {
        f"{mode} x{r['clients']}": r["errors"]
        for mode, v in modes.items()
        for r in v.get("results", [])
        if r["errors"]
    }
    out["errors"] = errors
    out["lines"].append(f"errors: {errors or 0} (target 0 in every cell)")
