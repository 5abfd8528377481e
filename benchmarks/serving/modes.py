"""Which servers the server benchmark runs, how each starts, and which encodings each speaks.

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

import socket
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
