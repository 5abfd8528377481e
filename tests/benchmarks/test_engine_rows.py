"""The benchmark's engine x precision rows (benchmarks/inference/engines.py): which rows,
and why not."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bare `pytest` does not put the repository root on sys.path
    sys.path.insert(0, str(REPO))

from benchmarks import sanity  # noqa: E402
from benchmarks.inference.engines import engine_rows  # noqa: E402
from benchmarks.inputs import Images  # noqa: E402
from cifar10_runtime.engines import runners as runtime_engines  # noqa: E402


def _images() -> Images:
    rng = np.random.default_rng(0)
    return Images(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), "generated", True)


def test_rows_name_what_runs_and_notes_say_what_is_missing(engines_dir: Path) -> None:
    notes: list[str] = []
    model = engines_dir / "model.onnx"
    rows = engine_rows(model, model.with_name("model.int8.onnx"), 1, _images(), notes)
    names = [r.name for r in rows]
    assert names[-1] == "predictor_auto" and any("predictor_auto chose" in n for n in notes)
    backend, missing = runtime_engines.openvino_backend()
    if backend is None:
        assert names == ["predictor_auto"] and any(missing in n for n in notes)
    else:
        assert "openvino_fp32" in names and "openvino_int8" in names
        assert ("openvino_bf16" in names) == (not runtime_engines.bf16_missing())
    for row in rows:  # every row runs and returns the probabilities
        out = row.make_call(4)()
        assert np.asarray(out).shape == (4, 10)


@pytest.mark.parametrize(("model", "flagged"), [("fp32", True), ("bf16", False), ("int8", False)])
def test_only_float32_rows_above_the_peak_flag_the_peak(model: str, flagged: bool) -> None:
    row = {"engine": f"openvino_{model}", "model": model, "batch": 32, "share_of_peak": 1.5}
    results = {"latency": [row], "machine": {"peak": {"gflops": 100.0}}, "baseline_drift": {}}
    row["gflops"] = 150.0
    warnings = sanity.check(results)
    assert any("peak was under-measured" in w for w in warnings) is flagged
