"""`python -m benchmarks --quick` runs end to end, so the benchmark code cannot rot.

Only the shape of the results is checked: no timing is asserted here (DESIGN.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifar10_trainer.precision import choose, cpu_flags

REPO = Path(__file__).resolve().parents[2]
API_V2 = ("v2_binary", "v2_json")
ENGINES = {
    "ort",
    "predictor",
    "predictor_png32",
    "predictor_jpeg640",
    "keras_predict",
    "keras_call",
}


@pytest.mark.slow
def test_quick_benchmark_writes_a_complete_report(tmp_path: Path) -> None:
    out, work = tmp_path / "results", tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out), "--work-dir", str(work)],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "quick.json").read_text())
    assert not results.get("errors"), results.get("errors")

    rows = results["latency"]
    assert ENGINES <= {r["engine"] for r in rows}
    assert {r["batch"] for r in rows} == {1, 8, 32, 256}
    for r in rows:
        assert r["runs"] >= 3 and r["p50_ms"] > 0 and r["images_per_s"] > 0
        assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
    # The network of the trainer: about 50 MFLOP per image, counted from the graph.
    assert 1e6 < results["model"]["flops_per_image"] < 1e9
    assert results["machine"]["peak"]["gflops"] > 0
    assert results["cold_start"]["runtime"]["median_s"] > 0
    assert results["cold_start"]["runtime_first_load"]["median_s"] > 0
    assert results["cold_start"]["tensorflow"]["median_s"] > 0
    assert results["footprint"]["toolkit"]["venv_mb"] > 0
    modes = results["server"]["modes"]
    own = {"default", "workers_2"}
    expected = {f"{server} {api}" for server in own for api in ("v1", "v2_binary", "v2_json")}
    expected |= {"max_batch_1 v1", "naive_baseline v1"}
    expected |= {f"minimal_{http} {api}" for http in ("h11", "httptools") for api in API_V2}
    if not results["server"]["notes"]:  # the peers venv is there: KServe and MLServer ran
        expected |= {"kserve v2_binary", "kserve v2_json", "mlserver v2_json"}
    assert set(modes) == expected
    for mode in modes.values():
        assert [r["clients"] for r in mode["results"]] == [1, 16, 32]
        assert all(r["requests"] > 0 and r["errors"] == 0 for r in mode["results"])
    summary = results["server"]["summary"]
    assert summary["lone_p50_default_over_minimal_httptools"] > 0
    assert summary["errors"] == {}
    grpc = results["server"]["grpc"]  # cifar-serve's REST and gRPC, and KServe's gRPC
    grpc_modes = {"rest_v2_binary", "grpc"}
    if not results["server"]["notes"]:
        grpc_modes.add("kserve_grpc")
    assert set(grpc["modes"]) == grpc_modes and grpc["summary"]["errors"] == {}
    for mode in grpc["modes"].values():
        assert all(r["requests"] > 0 and r["errors"] == 0 for r in mode["results"])
    tr = results["training"]
    toolkit, plain = tr["cifar_train"], tr["plain_fit"]
    assert toolkit["precision"] == plain["precision"] == "float32"  # like with like
    assert tr["cifar_train_over_plain_fit"] == pytest.approx(
        toolkit["train_images_per_s"] / plain["train_images_per_s"]
    )
    assert plain["train_images_per_s"] == pytest.approx(
        plain["train_images"] * plain["epochs"] / plain["train_seconds"]
    )
    precisions = results["training_precisions"]["rows"]
    assert set(precisions) == {"float32", "mixed_bfloat16", "auto"}
    auto = choose("auto", use_gpu=False, flags=cpu_flags())
    assert [precisions[k]["precision"] for k in ("float32", "mixed_bfloat16", "auto")] == [
        "float32",
        "mixed_bfloat16",
        auto.policy,
    ]
    base = precisions["float32"]["train_images_per_s"]
    for row in precisions.values():
        assert row["over_float32"] == pytest.approx(row["train_images_per_s"] / base)
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["epochs"] == 1
    assert {t["status"] for t in results["targets"]} <= {"met", "MISSED", "not measured"}

    md = (out / "quick.md").read_text()
    assert "## Targets" in md and "| predictor |" in md
    assert "## Training precision (trainer/configs/default.toml, 1 epoch(s), same seed)" in md
    assert (out / "quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The quick run writes only where it was told to.
    assert not (REPO / "benchmarks" / "results" / "quick.json").exists()
