"""`cifar-train` help and user errors: one line on stderr, the right exit code, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cifar10_trainer.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_help_lists_every_parameter() -> None:
    res = run("--help")
    assert res.returncode == 0
    for flag in (
        "--config",
        "--output-dir",
        "--resume",
        "--quiet",
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--momentum",
        "--augment-flip / --no-augment-flip",
        "--device",
        "--mixed-precision",
        "--strategy",
        "--cpu-replicas",
        "--seed",
        "--data-dir",
        "--dataset",
        "--validation-split",
    ):
        assert flag in res.stdout, flag


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--epochs", "abc"], 2, "'abc' is not a valid integer"),
        (["--no-such-flag"], 2, "No such option"),
        (
            ["--optimizer", "rmsprop"],
            2,
            "error: optimizer must be one of ['sgd', 'adam']. Received: optimizer='rmsprop'",
        ),
        (["--config", "missing.toml"], 2, "error: parameters file missing.toml not found"),
        (
            ["--data-dir", "/nonexistent/cifar"],
            3,
            "error: --data-dir /nonexistent/cifar does not exist; pass --data-dir DIR",
        ),
        (["--resume"], 2, "error: --resume needs a run folder with config.json"),
    ],
)
def test_user_errors_are_one_line(args: list[str], code: int, message: str, tmp_path: Path) -> None:
    res = run(*args, "--output-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert res.returncode == code, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    if code != 2 or message.startswith("error:"):
        errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, res.stderr
    assert not (tmp_path / "run" / "model.keras").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "gpu"], "TensorFlow sees no GPU"),
        (["--device", "cpu", "--mixed-precision"], "--mixed-precision needs a GPU"),
    ],
)
def test_gpu_flags_without_a_gpu_are_one_line_errors(
    args: list[str], message: str, tensorflow_gpus: int, tmp_path: Path
) -> None:
    # With --device cpu the mixed-precision error holds on GPU machines too.
    if tensorflow_gpus and args == ["--device", "gpu"]:
        pytest.skip(f"TensorFlow sees {tensorflow_gpus} GPU(s): --device gpu is valid here")
    # --epochs 1: should a GPU appear after all, the run stays short instead of 50 epochs.
    res = run("--dataset", "synthetic", "--epochs", "1", *args, "--output-dir", str(tmp_path))
    assert res.returncode == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "model.keras").exists()


def test_list_flags_parse(tmp_path: Path) -> None:
    # A bad value after a good list flag proves --filters/--dropout reached the config checks.
    res = run("--filters", "16,32,64", "--dropout", "0.1,0.2", "--dataset", "synthetic")
    assert res.returncode == 2
    assert "dropout needs one rate per block (3). Received: dropout=[0.1, 0.2]" in res.stderr


def test_resume_needs_output_dir() -> None:
    res = run("--resume")
    assert (
        res.returncode == 2
        and res.stderr == "error: --resume needs --output-dir RUN_FOLDER (the run to continue)\n"
    )


def test_resume_refuses_new_parameters(tmp_path: Path) -> None:
    res = run("--resume", "--output-dir", str(tmp_path), "--epochs", "9")
    assert res.returncode == 2 and "drop ['--epochs']" in res.stderr
