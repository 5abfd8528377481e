"""Failures around training itself: a missing TensorFlow, warnings, a loss that goes NaN."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from cifar10_trainer.errors import TensorFlowMissing
from cifar10_trainer.quiet import import_tensorflow_quietly

NO_KERAS = "import sys; sys.modules['keras'] = None; from cifar10_trainer.cli import main; main()"


def test_quiet_import_leaves_the_warning_filters_alone() -> None:
    before = list(warnings.filters)
    import_tensorflow_quietly()
    assert warnings.filters == before  # our own and the user's UserWarnings still show


def test_missing_tensorflow_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keras", None)  # `import keras` now raises ImportError
    with pytest.raises(TensorFlowMissing, match="TensorFlow/Keras cannot be imported"):
        import_tensorflow_quietly()


def test_cli_without_tensorflow_is_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", NO_KERAS, "--dataset", "synthetic"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith("error: TensorFlow/Keras cannot be imported (ModuleNotFoundError")
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("precision", "lr"),
    # A learning rate this large makes the first updates overflow: loss inf, then NaN. Under
    # mixed_bfloat16 1e30 is not enough (BatchNorm, in float32, renormalises the huge
    # activations and the loss stays finite), 1e38 overflows the float32 weights themselves.
    [("float32", "1e30"), ("mixed_bfloat16", "1e38")],
)
def test_nan_loss_stops_with_one_line_and_never_becomes_latest(
    precision: str, lr: str, tmp_path: Path
) -> None:
    cmd = [sys.executable, "-m", "cifar10_trainer.cli", "--dataset", "synthetic", "--quiet"]
    cmd += ["--epochs", "3", "--learning-rate", lr, "--filters", "4,8", "--dense-units", "8"]
    cmd += ["--precision", precision]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith("error: training diverged: loss became "), res.stderr
    assert "was not made runs/latest" in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.rstrip().endswith(f"precision {precision}")
    runs = tmp_path / "runs"
    assert not (runs / "latest").exists()
    (run_dir,) = runs.iterdir()
    assert not (run_dir / "model.keras").exists() and not (run_dir / "metrics.json").exists()
    assert "NaN" not in (run_dir / "config.json").read_text()


@pytest.mark.slow
def test_runs_latest_that_cannot_be_swung_is_a_note_not_a_failure(tmp_path: Path) -> None:
    # As root a read-only runs root is still writable, so a folder named latest stands in
    # for any runs root where the link cannot be replaced: the finished run must stand.
    (tmp_path / "runs" / "latest").mkdir(parents=True)
    (tmp_path / "runs" / "latest" / "keep").write_text("x")
    cmd = [sys.executable, "-m", "cifar10_trainer.cli", "--dataset", "synthetic", "--quiet"]
    cmd += ["--epochs", "1", "--filters", "4,8", "--dense-units", "8", "--output-dir", "runs/r"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.startswith("note: could not point runs/latest at runs/r"), res.stderr
    assert (tmp_path / "runs" / "r" / "metrics.json").is_file()
