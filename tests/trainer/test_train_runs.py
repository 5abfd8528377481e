"""Real (short) training runs: outputs, accuracy above chance, resume after a kill, repeatability,
and MirroredStrategy over two logical CPU devices."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cifar10_trainer.config import REPO_CONFIGS
from cifar10_trainer.precision import choose, cpu_flags

pytestmark = pytest.mark.slow
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def train(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cifar10_trainer.cli", "--quiet", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory, subset_dir: Path) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "short"
    res = train("--data-dir", str(subset_dir), "--epochs", "3", "--output-dir", str(run_dir))
    (run_dir.parent / "stdout.txt").write_text(res.stdout)
    return run_dir


def test_precision_auto_is_recorded_everywhere(real_run: Path) -> None:
    """Default settings: the precision auto picks for this CPU, in the log's first line,
    config.json and metrics.json (mixed_bfloat16 with AVX512-BF16/AMX-BF16, else float32)."""
    auto = choose("auto", use_gpu=False, flags=cpu_flags())
    first = (real_run.parent / "stdout.txt").read_text().splitlines()[0]
    assert first == (
        f"cifar-train: training on cpu x1, {len(os.sched_getaffinity(0))} threads; precision "
        f"{auto.policy} ({auto.why}); op determinism on; run folder {real_run}"
    )
    config = json.loads((real_run / "config.json").read_text())
    metrics = json.loads((real_run / "metrics.json").read_text())
    for record in (config, metrics):
        assert (record["precision"], record["precision_reason"]) == (auto.policy, auto.why)
        assert record["deterministic"] is True
    assert config["parameters"]["precision"] == "auto"  # the setting; the record says what ran


def test_short_real_run_beats_chance_clearly(real_run: Path) -> None:
    metrics = json.loads((real_run / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.25, metrics  # chance is 0.10 on 10 classes
    assert metrics["test_images"] == 500 and metrics["synthetic"] is False
    assert metrics["epochs"] == 3 and 1 <= metrics["best_epoch"] <= 3
    assert (metrics["keep"], metrics["kept_epoch"]) == ("last", 3)  # the default recipe's


def test_all_outputs_present_and_well_formed(real_run: Path) -> None:
    names = {p.name for p in real_run.iterdir()}
    assert {
        "model.keras",
        "config.json",
        "history.csv",
        "metrics.json",
        "learning_curves.png",
        "confusion_matrix.png",
        "checkpoint.keras",
        "state.json",
    } <= names
    assert not [n for n in names if n.startswith(".")], "temporary files left behind"
    config = json.loads((real_run / "config.json").read_text())
    assert config["parameters"]["epochs"] == 3 and config["parameters"]["optimizer"] == "adam"
    assert config["data"]["train_images"] + config["data"]["validation_images"] == 5085
    assert {"tensorflow", "keras", "numpy"} <= set(config["versions"])
    rows = list(csv.DictReader((real_run / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert set(rows[0]) >= {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert float(rows[2]["learning_rate"]) < float(rows[0]["learning_rate"])  # cosine decays
    metrics = json.loads((real_run / "metrics.json").read_text())
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 500
    assert metrics["test_accuracy"] == pytest.approx(np.trace(cm) / 500, abs=1e-6)
    assert set(metrics["per_class_accuracy"]) == set(config["data"]["class_names"])
    threads = len(os.sched_getaffinity(0))
    assert metrics["device"] == f"cpu x1, {threads} threads"
    assert 0 < metrics["train_seconds"] <= metrics["wall_seconds"]
    seen = config["data"]["train_images"] * 3  # three epochs of every training image
    assert metrics["train_images_per_s"] == pytest.approx(seen / metrics["train_seconds"], 0.01)
    best = max(float(r["val_accuracy"]) for r in rows)  # history.csv keeps 6 digits
    assert metrics["best_val_accuracy"] == pytest.approx(best, abs=1e-6)
    for name in ("learning_curves.png", "confusion_matrix.png"):
        png = (real_run / name).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name
    assert (real_run.parent / "latest").resolve() == real_run.resolve()


def test_saved_model_takes_uint8_and_matches_test_accuracy(
    real_run: Path, subset_dir: Path
) -> None:
    import keras

    from cifar10_trainer.data import load_cifar10

    model = keras.models.load_model(real_run / "model.keras")
    data = load_cifar10(subset_dir)
    probs = model.predict(data.x_test, verbose=0)
    acc = float((probs.argmax(1) == data.y_test).mean())
    metrics = json.loads((real_run / "metrics.json").read_text())
    assert acc == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    # The recorded loss is the training loss (the run's label smoothing) on the whole test split.
    smoothing = json.loads((real_run / "config.json").read_text())["parameters"]["label_smoothing"]
    onehot = np.eye(10, dtype=np.float32)[data.y_test]
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)(onehot, probs)
    assert float(loss) == pytest.approx(metrics["test_loss"], rel=1e-3)


def kill_in_second_epoch(args: list[str]) -> int:
    """Start a run, SIGKILL it as soon as Keras announces epoch 2, return the finished epochs.

    "Epoch 2/N" is printed when epoch 2 begins, after every epoch-1 callback (state.json is
    written) has returned: an event, not a poll. The kill then lands seconds before epoch 2
    can end. A watchdog bounds the wait if the line never comes.
    """
    cmd = [sys.executable, "-m", "cifar10_trainer.cli", *args]
    env = {**ENV, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("Epoch 2/"):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    assert any(line.startswith("Epoch 2/") for line in seen), "".join(seen[-20:])
    run_dir = Path(args[args.index("--output-dir") + 1])
    return json.loads((run_dir / "state.json").read_text())["epoch"]


def test_resume_after_kill_continues_from_last_finished_epoch(tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    args = [
        "--config",
        str(REPO_CONFIGS / "seed.toml"),
        "--dataset",
        "synthetic",
        "--epochs",
        "3",
        "--output-dir",
        str(run_dir),
    ]
    done = kill_in_second_epoch(args)
    assert done == 1 and not (run_dir / "metrics.json").exists()
    before = list(csv.DictReader((run_dir / "history.csv").open()))

    train("--resume", "--output-dir", str(run_dir))
    after = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [r["epoch"] for r in after] == ["1", "2", "3"]
    assert after[:done] == before  # finished epochs kept as they were
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 3

    # --seed: a fresh run with the same seed repeats the killed run's first epoch exactly.
    again = tmp_path / "again"
    train(*args[:4], "--epochs", "1", "--output-dir", str(again))
    first = next(csv.DictReader((again / "history.csv").open()))
    assert {k: first[k] for k in ("loss", "val_loss", "val_accuracy")} == {
        k: before[0][k] for k in ("loss", "val_loss", "val_accuracy")
    }


def test_mirrored_strategy_over_two_logical_cpus(tmp_path: Path) -> None:
    run_dir = tmp_path / "mirrored"
    train(
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--strategy",
        "mirrored",
        "--cpu-replicas",
        "2",
        "--batch-size",
        "64",
        "--precision",
        "mixed_bfloat16",  # the strategy honours the precision (asked for, on any CPU)
        "--output-dir",
        str(run_dir),
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and "MirroredStrategy over 2" in metrics["device"]
    assert metrics["precision"] == "mixed_bfloat16"
    assert metrics["precision_reason"].startswith("asked for")  # "; ... slower" without BF16
    assert metrics["global_batch"] == 64 and metrics["train_images_per_epoch"] == 64 * (4500 // 64)
    # One epoch of ~70 steps: well above chance (0.10; 0.15 is ~5 standard errors on 1,000).
    assert metrics["synthetic"] is True and metrics["test_accuracy"] > 0.15


def test_weight_averaging_is_what_is_kept_and_resume_trains_on(tmp_path: Path) -> None:
    """model.keras holds the averaged weights validation scored; checkpoint.keras the trained
    weights and the optimizer's average, so --resume goes on from where it was."""
    import keras

    run_dir = tmp_path / "ema"
    args = ["--dataset", "synthetic", "--ema-momentum", "0.9", "--epochs", "2"]
    # Killed in epoch 2: epoch 1 is the best so far, so model.keras is from it too.
    assert kill_in_second_epoch([*args, "--output-dir", str(run_dir)]) == 1
    kept = keras.models.load_model(run_dir / "model.keras")
    ckpt = keras.models.load_model(run_dir / "checkpoint.keras")
    trained = [v.numpy() for v in ckpt.trainable_variables]
    pairs = zip(trained, kept.trainable_variables, strict=True)
    assert not all(np.array_equal(a, b.numpy()) for a, b in pairs)
    ckpt.optimizer.finalize_variable_values(ckpt.trainable_variables)  # the average, swapped in
    for averaged, saved in zip(ckpt.trainable_variables, kept.trainable_variables, strict=True):
        np.testing.assert_array_equal(averaged.numpy(), saved.numpy())
    first = next(csv.DictReader((run_dir / "history.csv").open()))
    train("--resume", "--output-dir", str(run_dir))
    after = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [r["epoch"] for r in after] == ["1", "2"] and after[0] == first
