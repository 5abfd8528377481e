"""What the gRPC benchmark (grpc_bench.py) reports: its summary ratios, its Markdown rows and
the issue's gRPC targets, all computed from the rows of one run (never asserted).

Modes: `rest_v2_binary` and `grpc` are one cifar-serve process, `kserve_grpc` is KServe's
ModelServer; each row holds requests/s, p50/p99, errors and each process's CPU per request.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.serving.loadgen import record_errors

# The figures (reported, never asserted).
KSERVE_RPS_16 = 1.8  # cifar-serve gRPC req/s at 16 clients, at least this x KServe's gRPC
LONE_P50 = 1.0  # cifar-serve gRPC lone-client p50, at most this x KServe's gRPC
CPU_OVER_REST = 1.3  # cifar-serve CPU per gRPC request, at most this x per REST binary one


def _row(modes: dict, mode: str, clients: int) -> dict | None:
    found = modes.get(mode, {}).get("results", [])
    return next((r for r in found if r["clients"] == clients), None)


def _get(modes: dict, mode: str, clients: int, key: str) -> float | None:
    row = _row(modes, mode, clients)
    return row.get(key) if row else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _x(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "n/a"


def _cell(r: dict | None) -> str:
    if r is None:
        return "not measured"
    errors = f", {r['errors']} errors" if r["errors"] else ""
    cpu = r.get("server_cpu_us_per_request")
    cpu_text = f", server {cpu:.0f} us CPU/req" if cpu else ""
    return f"{r['requests_per_s']:.0f} req/s (p50 {r['p50_ms'] or 0:.2f} ms{cpu_text}{errors})"


def summary(modes: dict, clients_list: tuple[int, ...]) -> dict:
    """The ratios within this run (None where a mode was not measured) and a line each."""
    out: dict = {"lines": []}
    for clients in clients_list:
        g, r = _row(modes, "grpc", clients), _row(modes, "rest_v2_binary", clients)
        ratio = _ratio(
            _get(modes, "grpc", clients, "requests_per_s"),
            _get(modes, "rest_v2_binary", clients, "requests_per_s"),
        )
        cpu_ratio = _ratio(
            _get(modes, "grpc", clients, "server_cpu_us_per_request"),
            _get(modes, "rest_v2_binary", clients, "server_cpu_us_per_request"),
        )
        out[f"grpc_over_rest_{clients}"] = ratio
        out[f"grpc_over_rest_server_cpu_{clients}"] = cpu_ratio
        cpu_text = f"; server CPU per request {cpu_ratio:.2f}x REST's" if cpu_ratio else ""
        out["lines"].append(
            f"{clients:>2} clients, one process: gRPC {_cell(g)}, REST binary v2 {_cell(r)}: "
            f"{_x(ratio)}{cpu_text}"
        )
    for clients in clients_list:
        k = _row(modes, "kserve_grpc", clients)
        ratio = _ratio(
            _get(modes, "grpc", clients, "requests_per_s"),
            _get(modes, "kserve_grpc", clients, "requests_per_s"),
        )
        out[f"grpc_over_kserve_grpc_{clients}"] = ratio
        out["lines"].append(
            f"{clients:>2} clients, gRPC: cifar-serve {_cell(_row(modes, 'grpc', clients))}, "
            f"KServe {_cell(k)}: {_x(ratio)} the req/s"
        )
    lone = _ratio(_get(modes, "grpc", 1, "p50_ms"), _get(modes, "kserve_grpc", 1, "p50_ms"))
    out["lone_p50_grpc_over_kserve_grpc"] = lone
    cpu = [out.get(f"grpc_over_rest_server_cpu_{c}") for c in clients_list]
    out["lines"] += [
        f"gRPC req/s at 16 clients, cifar-serve / KServe: "
        f"{_x(out.get('grpc_over_kserve_grpc_16'))} (target >= {KSERVE_RPS_16}x)",
        f"gRPC lone client p50, cifar-serve / KServe: {_x(lone)} (target <= {LONE_P50:.2f}x)",
        "cifar-serve's server CPU per gRPC request / per REST binary request: "
        + ", ".join(f"{_x(v)} at {c} client(s)" for c, v in zip(clients_list, cpu, strict=True))
        + f" (target <= {CPU_OVER_REST}x)",
    ]
    record_errors(modes, out)
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
        "### gRPC: `cifar-serve --grpc-port` beside its REST and KServe's gRPC "
        "(one uint8 image per request)",
        "",
        "rest_v2_binary and grpc: one cifar-serve process; kserve_grpc: KServe's ModelServer "
        "(same model class as its REST rows, same ONNX file and threads). REST: binary v2 "
        "over loadgen's sockets; gRPC: ModelInfer, raw contents, grpc.aio, the same request "
        "bytes for both servers. *server CPU* and *client CPU* are each process's CPU time "
        "per request (all its threads): the clients share the cores with the server, and "
        "grpc.aio's client costs several times loadgen's, so the server's column is the one "
        "that compares the serving paths.",
        "",
    ]
    header = ["mode", "clients", "req/s", "p50 ms", "p99 ms", "server CPU us/req"]
    header += ["client CPU us/req", "requests", "errors"]
    lines += table(header, rows) + [f"- {line}" for line in out["summary"]["lines"]]
    return lines + [f"- {note}" for note in out.get("notes", [])] + [""]


def targets(results: dict, target: Callable[..., dict]) -> list[dict]:
    """The issue's gRPC targets from this run's rows (`target` builds one verdict)."""
    grpc = (results.get("server") or {}).get("grpc") or {}
    modes, s = grpc.get("modes") or {}, grpc.get("summary") or {}

    def figures(mode: str, clients: int) -> str:
        r = _row(modes, mode, clients) or {}
        return (
            f"{r.get('requests_per_s') or 0:.0f} req/s, p50 {r.get('p50_ms') or 0:.2f} ms, "
            f"server {r.get('server_cpu_us_per_request') or 0:.0f} us CPU per request"
        )

    rps = s.get("grpc_over_kserve_grpc_16")
    lone = s.get("lone_p50_grpc_over_kserve_grpc")
    cpu = [s.get(f"grpc_over_rest_server_cpu_{c}") for c in (1, 16)]
    worst = None if None in cpu else max(cpu)  # type: ignore[type-var]
    out = [
        target(
            "gRPC vs KServe's gRPC, 16 clients",
            f">= {KSERVE_RPS_16}x KServe's requests/s",
            rps,
            "{:.2f}x",
            None if rps is None else rps >= KSERVE_RPS_16,
            f"cifar-serve {figures('grpc', 16)}; KServe {figures('kserve_grpc', 16)}. The "
            "grpc.aio clients share the cores with both servers (the gRPC table's client CPU "
            "column), so both figures are lower bounds."
            if rps
            else "",
        ),
        target(
            "gRPC lone-client p50 vs KServe's gRPC",
            "<= KServe's p50",
            lone,
            "{:.2f}x",
            None if lone is None else lone <= LONE_P50,
            f"cifar-serve {figures('grpc', 1)}; KServe {figures('kserve_grpc', 1)}."
            if lone
            else "",
        ),
    ]
    cpu_target = target(
        "Server CPU per gRPC request vs per REST binary request",
        f"<= {CPU_OVER_REST}x (cifar-serve, one process, 1 and 16 clients)",
        worst,
        "{:.2f}x",
        None if worst is None else worst <= CPU_OVER_REST,
        f"alone: gRPC {figures('grpc', 1)}, REST {figures('rest_v2_binary', 1)}; 16 clients: "
        f"gRPC {figures('grpc', 16)}, REST {figures('rest_v2_binary', 16)}. Both protocols "
        "share the dataplane, batcher and model in one process, so the difference is the "
        "gRPC transport's own cost per call in the server (grpc.aio, protobuf)."
        if worst
        else "",
    )
    if worst is not None:
        cpu_target["measured"] = f"{cpu[0]:.2f}x alone, {cpu[1]:.2f}x at 16 clients"
    return [*out, cpu_target]
