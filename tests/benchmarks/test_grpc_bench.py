"""The gRPC benchmark: its rows against a real cifar-serve (and KServe's gRPC when the peers
venv is built), the answer check and the targets from given rows. Shapes and verdicts only:
no timing is asserted (DESIGN.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.serving.grpc_bench import CLIENTS, bench_grpc
from benchmarks.serving.grpc_client import probabilities
from benchmarks.serving.grpc_report import markdown_lines, summary, targets
from benchmarks.serving.modes import peers_ready
from benchmarks.targets import _target


@pytest.mark.slow
def test_grpc_rest_and_kserve_rows(fixtures_dir: Path, tmp_path: Path) -> None:
    model = fixtures_dir / "runtime" / "valid.onnx"
    if not model.is_file():
        pytest.skip(f"no runtime test model at {model}: run `make fixtures`")
    exe = Path(sys.executable).with_name("cifar-serve")
    image = np.zeros((32, 32, 3), np.uint8)
    lines: list[str] = []
    out = bench_grpc(exe, model, image, dict(os.environ), tmp_path, 0.3, 60, 1, lines.append, 1)
    expected = {"rest_v2_binary", "grpc"} | ({"kserve_grpc"} if peers_ready() else set())
    assert set(out["modes"]) == expected
    if not peers_ready():  # left out, saying so
        assert any("KServe's gRPC not measured" in note for note in out["notes"])
    for mode in out["modes"].values():
        assert [r["clients"] for r in mode["results"]] == list(CLIENTS)
        assert all(r["requests"] > 0 and r["errors"] == 0 for r in mode["results"])
        for r in mode["results"]:  # each server's and the client's CPU per request
            assert r["server_cpu_us_per_request"] > 0 and r["client_cpu_us_per_request"] > 0
    assert out["summary"]["grpc_over_rest_16"] > 0 and out["summary"]["errors"] == {}
    if peers_ready():
        assert out["summary"]["grpc_over_kserve_grpc_16"] > 0
        assert out["summary"]["lone_p50_grpc_over_kserve_grpc"] > 0
    assert sum("gRPC" in line and "REST binary v2" in line for line in lines) == len(CLIENTS)
    from benchmarks.report.fmt import num, table

    md = "\n".join(markdown_lines(out, table, num))
    assert md.count("| grpc |") == md.count("| rest_v2_binary |") == len(CLIENTS)
    assert md.count("| kserve_grpc |") == (len(CLIENTS) if peers_ready() else 0)


def _answer(values: list[float], shape: tuple[int, ...] = (1, 10), dtype: str = "FP32") -> bytes:
    from cifar10_runtime.serving.grpc.protocol import protocol

    p = protocol()
    output = p.ModelInferResponse.InferOutputTensor(name="probabilities", datatype=dtype)
    output.shape.extend(shape)
    response = p.ModelInferResponse(model_name="cifar10", outputs=[output])
    response.raw_output_contents.append(np.asarray(values, np.float32).tobytes())
    return response.SerializeToString()


def test_an_answer_counts_only_when_it_is_one_probability_vector() -> None:
    assert probabilities(_answer([0.1] * 10)).shape == (1, 10)
    with pytest.raises(ValueError, match="FP32 \\[1, 10\\]"):
        probabilities(_answer([0.1] * 10, dtype="FP16"))
    with pytest.raises(ValueError, match="bytes"):
        probabilities(_answer([0.1] * 9))
    with pytest.raises(ValueError, match="not a probability vector"):
        probabilities(_answer([1.0] * 10))


def _modes(kserve_rps_16: float, kserve_p50_1: float, grpc_cpu_1: float) -> dict:
    def row(clients: int, rps: float, p50: float, cpu: float) -> dict:
        return {
            "clients": clients,
            "requests_per_s": rps,
            "p50_ms": p50,
            "p99_ms": 2 * p50,
            "errors": 0,
            "requests": 100,
            "server_cpu_us_per_request": cpu,
            "client_cpu_us_per_request": 100.0,
        }

    return {
        "rest_v2_binary": {"results": [row(1, 2000, 0.4, 400), row(16, 4000, 3.0, 300)]},
        "grpc": {"results": [row(1, 1000, 0.8, grpc_cpu_1), row(16, 2000, 6.0, 360)]},
        "kserve_grpc": {
            "results": [row(1, 900, kserve_p50_1, 900), row(16, kserve_rps_16, 12.0, 900)]
        },
    }


def test_the_issue_grpc_targets_from_the_rows() -> None:
    met = _modes(kserve_rps_16=1000, kserve_p50_1=0.9, grpc_cpu_1=480)
    results = {"server": {"grpc": {"modes": met, "summary": summary(met, CLIENTS)}}}
    verdicts = {t["target"]: t for t in targets(results, _target)}
    assert [t["status"] for t in verdicts.values()] == ["met"] * 3
    cpu = verdicts["Server CPU per gRPC request vs per REST binary request"]
    assert cpu["measured"] == "1.20x alone, 1.20x at 16 clients" and cpu["value"] == 1.2

    missed = _modes(kserve_rps_16=1500, kserve_p50_1=0.7, grpc_cpu_1=800)
    results = {"server": {"grpc": {"modes": missed, "summary": summary(missed, CLIENTS)}}}
    verdicts = {t["target"]: t for t in targets(results, _target)}
    assert [t["status"] for t in verdicts.values()] == ["MISSED"] * 3
    assert all(t["why"] for t in verdicts.values())  # each missed one carries its figures
    assert (
        "2.00x alone"
        in verdicts["Server CPU per gRPC request vs per REST binary request"]["measured"]
    )

    assert {t["status"] for t in targets({}, _target)} == {"not measured"}
    del met["kserve_grpc"]  # no peers venv: the KServe targets cannot be judged
    results = {"server": {"grpc": {"modes": met, "summary": summary(met, CLIENTS)}}}
    assert [t["status"] for t in targets(results, _target)] == ["not measured"] * 2 + ["met"]
