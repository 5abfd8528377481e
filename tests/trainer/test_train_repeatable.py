"""A seeded CPU run repeats exactly in another process, even with the cores busy, at every CPU
precision (same seed, precision, threads and CPU: same weights).

What decides the float rounding is the number of threads each op splits its sums over, not
the load: `threads` pins it, so a run on fewer cores still gives the same weights.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# Small and quick, with every augmentation on (random ops inside the parallel tf.data map).
TOML = """\
dataset = "synthetic"
filters = [8, 16]
dropout = [0.0, 0.1]
dense_units = 16
optimizer = "adam"
learning_rate = 0.003
lr_schedule = "cosine"
epochs = 1
batch_size = 64
augment_flip = true
augment_crop_padding = 2
augment_cutout = 6
device = "cpu"
threads = 2
seed = 3
"""


def _train(tmp_path: Path, name: str, prefix: list[str]) -> dict:
    cmd = [*prefix, sys.executable, "-m", "cifar10_trainer.cli", "--config", "repeat.toml"]
    cmd += ["--output-dir", name, "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads((tmp_path / name / "metrics.json").read_text())


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_same_weights_in_another_process_with_busy_cores(precision: str, tmp_path: Path) -> None:
    (tmp_path / "repeat.toml").write_text(f'{TOML}precision = "{precision}"\n')
    first = _train(tmp_path, "a", [])
    # The second run competes with two busy loops and, where taskset exists, gets one core.
    one_core = ["taskset", "-c", "0"] if shutil.which("taskset") and os.cpu_count() else []
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        second = _train(tmp_path, "b", one_core)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    assert len(first["weights_sha256"]) == 64
    assert first["precision"] == second["precision"] == precision
    assert second["weights_sha256"] == first["weights_sha256"]
    assert second["test_loss"] == first["test_loss"]
