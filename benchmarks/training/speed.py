"""Training throughput (cifar-train against a plain model.fit) and preparing the model to serve.

One `cifar-train --config configs/seed.toml --precision float32` run does double duty: its
metrics.json gives the toolkit's training images/s against the plain float32 `fit`, and its
model.keras is exported (with INT8) for the inference rows when no model was given.
The rows per training precision are in benchmarks.training.precision.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cifar10_trainer.run import CONFIG, MODEL, STATE, Run

REPO = Path(__file__).resolve().parents[2]
SEED_CONFIG = REPO / "trainer" / "configs" / "seed.toml"  # package data of cifar10_trainer
DEFAULT_CONFIG = REPO / "trainer" / "configs" / "default.toml"


def _tool(name: str) -> str:
    # The console scripts live beside the interpreter running the benchmark (.venv/bin).
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else name


def _run(cmd: list[str], env: dict[str, str], log_path: Path, timeout: float) -> float:
    """Run a command with its output in `log_path`; seconds taken. Raises with the log tail."""
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.run(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, timeout=timeout
        )
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"{Path(cmd[0]).name} exited {proc.returncode}: " + " | ".join(tail))
    return time.perf_counter() - t0


def data_args(data_dir: Path | None) -> list[str]:
    return ["--data-dir", str(data_dir)] if data_dir else ["--dataset", "synthetic"]


def cifar_train(  # noqa: PLR0913
    data_dir: Path | None,
    epochs: int,
    out: Path,
    env: dict[str, str],
    extra: tuple[str, ...] = (),
    *,
    precision: str | None = "float32",
    config: Path = SEED_CONFIG,
) -> dict:
    """`cifar-train` with the reference recipe; returns its metrics plus our wall time.

    precision float32 by default, like the plain `fit` it is compared with; None leaves the
    run's default (auto). `out` is this benchmark's own scratch folder: a previous run's
    output there is removed, since cifar-train refuses to start over a finished run.
    """
    if (out / STATE).exists() or (out / CONFIG).exists():
        shutil.rmtree(out)
    cmd = [
        _tool("cifar-train"),
        "--config",
        str(config),
        *data_args(data_dir),
        "--epochs",
        str(epochs),
        "--output-dir",
        str(out),
        "--quiet",
        *(("--precision", precision) if precision else ()),
        *extra,
    ]
    wall = _run(cmd, env, out.parent / f"{out.name}.log", timeout=3600)
    metrics = Run.load(out).metrics or {}  # the run folder's one reader
    return {
        "command": " ".join(cmd),
        "process_wall_s": wall,
        "train_images_per_s": metrics.get("train_images_per_s"),
        "train_images_per_cpu_s": metrics.get("train_images_per_cpu_s"),
        "train_seconds": metrics.get("train_seconds"),
        "epochs": metrics.get("epochs"),
        "test_accuracy": metrics.get("test_accuracy"),
        "synthetic": metrics.get("synthetic"),
        "dataset": metrics.get("dataset"),
        "device": metrics.get("device"),
        "model": str(out / MODEL),
        "precision": metrics.get("precision"),
        "precision_reason": metrics.get("precision_reason"),
        "deterministic": metrics.get("deterministic"),
        "workers": metrics.get("workers", 1),
        "replicas": metrics.get("replicas", 1),
        "global_batch": metrics.get("global_batch"),
    }


# One global batch (the seed recipe's 32) three ways. --batch-size is the global batch for
# none/mirrored and the per-replica batch for multi-worker (tf.distribute's convention).
STRATEGIES = (
    ("none", ()),
    ("mirrored_2_logical_cpus", ("--strategy", "mirrored", "--cpu-replicas", "2")),
    ("multi_worker_2_local", ("--local-workers", "2", "--batch-size", "16")),
)


def strategies(
    data_dir: Path | None,
    epochs: int,
    work: Path,
    env: dict[str, str],
    precisions: tuple[str, ...] = ("float32",),
) -> dict:
    """Training images/s with no strategy, MirroredStrategy over 2 logical CPUs and 2 local
    MultiWorkerMirroredStrategy workers, same recipe and global batch, at each precision
    (rows after the first are named `<strategy> <precision>`).

    On a 2-core machine this is a correctness figure (all three run, and what distribution
    costs), not a speed-up: the replicas share the same two cores.
    """
    rows = {}
    for i, prec in enumerate(precisions):
        for name, extra in STRATEGIES:
            key = name if i == 0 else f"{name} {prec}"
            folder = work / f"strategy-{name}-{prec}"
            rows[key] = cifar_train(data_dir, epochs, folder, env, extra, precision=prec)
    base = rows["none"]["train_images_per_s"]
    for row in rows.values():
        row["relative_to_none"] = row["train_images_per_s"] / base if base else None
    return rows


def reference_fit(
    data_dir: Path | None, epochs: int, env: dict[str, str], work: Path, deterministic: bool = False
) -> dict:
    """The plain `model.fit` on numpy float32 arrays (benchmarks.training.fit_reference), in a
    subprocess.

    deterministic=True adds TensorFlow's op determinism, which cifar-train turns on for CPU
    runs: the difference between the two plain runs is what determinism alone costs.
    """
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.training.fit_reference",
        *data_args(data_dir),
        "--epochs",
        str(epochs),
        "--config",
        str(SEED_CONFIG),
    ]
    if deterministic:
        cmd.append("--deterministic")
    log = work / f"fit_reference{'_deterministic' if deterministic else ''}.log"
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"fit_reference exited {proc.returncode}: {proc.stderr[-400:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - t0
    result["command"] = " ".join(cmd)
    return result


def best_of(runs: list[dict]) -> dict:
    """The fastest of repeated runs, with every run's images/s kept beside it."""
    best = dict(max(runs, key=lambda r: r["train_images_per_s"]))
    best["all_images_per_s"] = [r["train_images_per_s"] for r in runs]
    # Per CPU second of the training process: steadier than wall time on a shared machine.
    cpu = [r.get("train_images_per_cpu_s") for r in runs]
    best["all_images_per_cpu_s"] = cpu
    best["best_images_per_cpu_s"] = max((c for c in cpu if c), default=None)
    return best


def compare(toolkit: dict, reference: dict, deterministic: dict | None = None) -> dict:
    out = {
        "cifar_train": toolkit,
        "plain_fit": reference,
        "cifar_train_over_plain_fit": toolkit["train_images_per_s"]
        / reference["train_images_per_s"],
        "cifar_train_over_plain_fit_cpu": cpu_ratio(toolkit, reference),
    }
    if deterministic:
        out["plain_fit_deterministic"] = deterministic
        out["determinism_cost"] = (
            deterministic["train_images_per_s"] / reference["train_images_per_s"]
        )
        # cifar-train runs with op determinism on CPU (deterministic = true): against the
        # plain fit with determinism too, what is left is the toolkit's own overhead.
        out["cifar_train_over_plain_fit_deterministic"] = (
            toolkit["train_images_per_s"] / deterministic["train_images_per_s"]
        )
        out["determinism_cost_cpu"] = cpu_ratio(deterministic, reference)
        out["cifar_train_over_plain_fit_deterministic_cpu"] = cpu_ratio(toolkit, deterministic)
    return out


def export(
    keras_model: Path,
    data_dir: Path | None,
    out_dir: Path,
    env: dict[str, str],
    threads: int,
    samples: int,
) -> dict:
    """`cifar-export ... --quantize int8`; returns the paths (int8 None if not produced).

    --force keeps an INT8 model whose accuracy check failed (a briefly trained model has
    flat probabilities, so INT8 rounding flips more top-1 answers than a trained one would):
    its speed is what is measured here, and its check verdict is reported next to it. The
    fp32 model must pass parity, or the run stops.
    """
    onnx_path = out_dir / "model.onnx"
    cmd = [
        _tool("cifar-export"),
        str(onnx_path),
        "--model",
        str(keras_model),
        *data_args(data_dir),
        "--quantize",
        "int8",
        "--threads",
        str(threads),
        "--samples",
        str(samples),
        "--force",
    ]
    log = out_dir / "export.log"
    try:
        wall = _run(cmd, env, log, timeout=1800)
    except RuntimeError:
        wall = None  # exit 1 is also a failed INT8 check; the parity files say which
    parity = _read_json(out_dir / "model.parity.json")
    if not onnx_path.is_file() or not parity.get("passed"):
        raise RuntimeError(f"cifar-export did not produce a passing {onnx_path}; see {log}")
    int8 = out_dir / "model.int8.onnx"
    int8_check = _read_json(out_dir / "model.int8.parity.json")
    return {
        "command": " ".join(cmd),
        "process_wall_s": wall,
        "onnx": onnx_path,
        "int8": int8 if int8.is_file() else None,
        "parity": {k: parity.get(k) for k in ("passed", "n", "max_abs_diff", "source")},
        "int8_check": {
            k: int8_check.get(k)
            for k in (
                "passed",
                "top1_agreement",
                "accuracy_fp32",
                "accuracy_int8",
                "accuracy_drop",
                "failures",
            )
        },
    }


def cpu_ratio(row: dict, base: dict) -> float | None:
    """Images per CPU second of `row` over `base` (best of each), None if either lacks it."""
    a = row.get("best_images_per_cpu_s") or row.get("train_images_per_cpu_s")
    b = base.get("best_images_per_cpu_s") or base.get("train_images_per_cpu_s")
    return a / b if a and b else None


def last_error(log: Path) -> str:
    """The `error: ...` line a CLI ended with (or its last line)."""
    try:
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "(no log)"
    errors = [x for x in lines if x.startswith("error:")]
    return (errors or lines or ["(empty log)"])[-1][:300]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
