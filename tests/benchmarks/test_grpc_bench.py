"""The gRPC benchmark row runs against a real cifar-serve (shape of the results only: no
timing is asserted, DESIGN.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.serving.grpc_bench import CLIENTS, bench_grpc, markdown_lines

pytestmark = pytest.mark.slow


def test_grpc_and_rest_rows_from_one_server(fixtures_dir: Path, tmp_path: Path) -> None:
    model = fixtures_dir / "runtime" / "valid.onnx"
    if not model.is_file():
        pytest.skip(f"no runtime test model at {model}: run `make fixtures`")
    exe = Path(sys.executable).with_name("cifar-serve")
    image = np.zeros((32, 32, 3), np.uint8)
    lines: list[str] = []
    out = bench_grpc(exe, model, image, dict(os.environ), tmp_path, 0.3, 60, 1, lines.append, 1)
    assert set(out["modes"]) == {"rest_v2_binary", "grpc"}
    for mode in out["modes"].values():
        assert [r["clients"] for r in mode["results"]] == list(CLIENTS)
        assert all(r["requests"] > 0 and r["errors"] == 0 for r in mode["results"])
    assert out["summary"]["grpc_over_rest_16"] > 0
    for mode in out["modes"].values():  # each process's CPU per request, both measured
        for r in mode["results"]:
            assert r["server_cpu_us_per_request"] > 0 and r["client_cpu_us_per_request"] > 0
    assert sum("gRPC" in line and "REST binary v2" in line for line in lines) == len(CLIENTS)
    from benchmarks.report.fmt import num, table

    md = "\n".join(markdown_lines(out, table, num))
    assert md.count("| grpc |") == md.count("| rest_v2_binary |") == len(CLIENTS)
