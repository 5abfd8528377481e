"""The HTTP server rows: requests/s and latency per serving mode and client count."""

from __future__ import annotations

from benchmarks.report.fmt import num, table


def server(results: dict) -> list[str]:
    srv = results.get("server")
    if not srv:
        return []
    lines = [
        "## Server (on 127.0.0.1: cifar-serve, minimal handler, naive, KServe, MLServer)",
        "",
        "Load: benchmarks/serving/loadgen.py (asyncio, keep-alive sockets, one thread) on the same "
        "cores as the server, so these are lower bounds for a server on its own machine. "
        "naive_baseline: one session.run per request, no batcher; minimal_*: the minimal "
        "Starlette handler; MLServer's REST has no binary tensors (JSON rows only).",
        "",
    ]
    rows = []
    for mode, v in srv["modes"].items():
        for r in v["results"]:
            rows.append(
                [
                    mode,
                    str(r["clients"]),
                    num(r["requests_per_s"], "{:.0f}"),
                    num(r["p50_ms"]),
                    num(r["p99_ms"]),
                    str(r["requests"]),
                    str(r["errors"]),
                ]
            )
    head = ["mode", "clients", "req/s", "p50 ms", "p99 ms", "requests", "errors"]
    lines += table(head, rows)
    lines += [f"- {line}" for line in srv.get("summary", {}).get("lines", [])]
    lines += [f"- {note}" for note in srv.get("notes", [])] + [""]
    if srv.get("grpc"):  # gRPC beside REST and KServe's gRPC (benchmarks/serving/grpc_bench.py)
        from benchmarks.serving.grpc_report import markdown_lines

        lines += markdown_lines(srv["grpc"], table, num)
    return lines
