"""`cifar-train` help and user errors: one line on stderr, the right exit code, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from cifar10_trainer.config import TrainConfig, field_types


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cifar10_trainer.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_help_lists_every_parameter() -> None:
    res = run("--help")
    assert res.returncode == 0
    # Built from the dataclass, so a new TrainConfig field without its flag fails here.
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if field_types()[f.name] is bool:
            flag += f" / --no-{f.name.replace('_', '-')}"
        assert flag in res.stdout, flag
    for flag in ("--config", "--output-dir", "--resume", "--local-workers", "--quiet"):
        assert flag in res.stdout, flag
    assert "--mixed-precision" not in res.stdout  # replaced: hidden, kept only to say so


def test_every_parameter_flag_reaches_the_config(tmp_path: Path) -> None:
    """Each flag, given a value other than the default, arrives in TrainConfig as typed."""
    from click.testing import CliRunner

    from cifar10_trainer import cli

    seen: dict[str, TrainConfig] = {}

    def fake_train(cfg: TrainConfig, *args: object, **kwargs: object) -> None:
        seen["cfg"] = cfg
        raise SystemExit(0)

    args, expected = [], {}
    for f in fields(TrainConfig):
        value = _other_value(f.name, f.default, field_types()[f.name])
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{f.name.replace('_', '-')}")
        else:
            args += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
        expected[f.name] = value
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("cifar10_trainer.train.train", fake_train)
        mp.setattr(cli, "import_tensorflow_quietly", lambda: None)
        res = runner.invoke(cli.main, [*args, "--output-dir", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    got = seen["cfg"]
    assert {name: getattr(got, name) for name in expected} == expected


def _other_value(name: str, default: object, kind: object) -> object:
    """A valid value for field `name` that differs from its default."""
    special = {
        "dataset": "synthetic",
        "data_dir": "/data/cifar",
        "optimizer": "adam",
        "lr_schedule": "cosine",
        "device": "cpu",
        "precision": "float32",
        "strategy": "mirrored",  # cpu_replicas > 1 needs it
        "filters": (8, 16, 24),
        "dropout": (0.05, 0.15, 0.25),
        "validation_split": 0.25,
        "momentum": 0.5,
        "label_smoothing": 0.05,
        "dense_dropout": 0.1,
        "bn_momentum": 0.9,
        "ema_momentum": 0.99,
        "cpu_replicas": 2,
        "keep": "best",
    }
    if name in special:
        return special[name]
    if kind is bool:
        return not default
    if kind is int:
        return int(default) + 3
    if kind is float:
        return float(default) * 2 + 0.001
    raise AssertionError(f"no test value for {name}: {kind}")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--epochs", "abc"], 2, "'abc' is not a valid integer"),
        (["--no-such-flag"], 2, "No such option"),
        (
            ["--optimizer", "rmsprop"],
            2,
            "error: optimizer must be one of ['sgd', 'adam']; pick one of them. "
            "Received: optimizer='rmsprop'",
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
        (["--device", "cpu", "--precision", "mixed_float16"], "mixed_float16 needs a GPU"),
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
        and res.stderr
        == "error: --resume needs --output-dir RUN_FOLDER (the run to continue). "
        "Received: --resume without --output-dir\n"
    )


def test_resume_refuses_new_parameters(tmp_path: Path) -> None:
    res = run("--resume", "--output-dir", str(tmp_path), "--epochs", "9")
    assert res.returncode == 2 and "drop ['--epochs']" in res.stderr


@pytest.mark.parametrize("flag", ["--mixed-precision", "--no-mixed-precision"])
def test_mixed_precision_flag_names_its_replacement(flag: str, tmp_path: Path) -> None:
    res = run("--dataset", "synthetic", flag, "--output-dir", str(tmp_path / "r"))
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith(f"error: {flag} was replaced by --precision mixed_float16 ")
    assert res.stderr.endswith(f"Received: {flag}\n") and len(res.stderr.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_mixed_precision_key_names_its_replacement(tmp_path: Path) -> None:
    (tmp_path / "old.toml").write_text("mixed_precision = true\n")
    res = run("--config", str(tmp_path / "old.toml"), "--output-dir", str(tmp_path / "r"))
    assert res.returncode == 2, res.stderr
    assert "mixed_precision was replaced by precision (" in res.stderr
    assert res.stderr.rstrip().endswith("Received: mixed_precision=True")
    assert len(res.stderr.splitlines()) == 1


def test_bad_precision_is_one_line(tmp_path: Path) -> None:
    res = run("--precision", "bfloat16", "--output-dir", str(tmp_path / "r"))
    assert res.returncode == 2, res.stderr
    assert res.stderr == (
        "error: precision must be one of ['auto', 'float32', 'mixed_bfloat16', "
        "'mixed_float16']; pick one of them. Received: precision='bfloat16'\n"
    )


def test_resume_in_another_precision_is_refused_in_one_line(
    tmp_path: Path, tensorflow_gpus: int
) -> None:
    """A run recorded as mixed_float16 (a GPU's auto) resumed where auto is not float16."""
    if tensorflow_gpus:
        pytest.skip("with a GPU, auto may pick mixed_float16 here: no mismatch to refuse")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = {
        "parameters": {"dataset": "synthetic", "epochs": 2, "precision": "auto"},
        "precision": "mixed_float16",
        "distributed": {"strategy": "none", "workers": 1, "replicas": 1, "global_batch": 32},
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    state = {"epoch": 1, "best_val_accuracy": 0.5, "best_epoch": 1, "history": [{}]}
    (run_dir / "state.json").write_text(json.dumps(state))
    (run_dir / "checkpoint.keras").write_bytes(b"")  # never opened: refused before
    res = run("--resume", "--output-dir", str(run_dir))
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith(f"error: {run_dir} was trained in mixed_float16 and would ")
    assert len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr
    assert res.stdout.startswith("cifar-train: resuming on cpu x1")
