"""Training throughput (cifar-train against a plain model.fit) and preparing the model to serve.

One `cifar-train --config configs/seed.toml --precision float32` run does double duty: its
metrics.json gives the toolkit's training images/s against the plain float32 `fit`, and its
model.keras is exported (with INT8) for the inference rows when no model was given.
`precisions` adds the rows per training precision on the default recipe (issue 17): float32,
mixed_bfloat16, and the default (`auto`), in interleaved rounds, with their test accuracy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cifar10_trainer.run import CONFIG, MODEL, STATE, Run

REPO = Path(__file__).resolve().parent.parent
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


def cpu_has_bf16() -> bool:
    from cifar10_trainer.precision import BF16_FLAGS, cpu_flags

    return bool(set(BF16_FLAGS) & (cpu_flags() or frozenset()))


def precisions(
    data_dir: Path | None, epochs: int, work: Path, env: dict[str, str], repeats: int = 2
) -> dict:
    """The default recipe (configs/default.toml) per training precision, same data and seed:
    float32, mixed_bfloat16 (on every CPU: without BF16 instructions it shows the loss that
    makes `auto` avoid it) and the default, `auto`. Rounds interleave the rows, the best round
    of each is kept; images/s and test accuracy, with each row's ratio to float32.
    mixed_float16 needs a GPU and is recorded as not run on a CPU-only machine."""
    names = ("float32", "mixed_bfloat16", "auto")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            prec = None if name == "auto" else name
            runs[name].append(
                cifar_train(
                    data_dir,
                    epochs,
                    work / f"precision-{name}-{i}",
                    env,
                    precision=prec,
                    config=DEFAULT_CONFIG,
                )
            )
    rows = {name: best_of(r) for name, r in runs.items()}
    base = rows["float32"]["train_images_per_s"]
    for row in rows.values():
        row["over_float32"] = row["train_images_per_s"] / base if base else None
        row["over_float32_cpu"] = _ratio(row, rows["float32"])
    return {
        "recipe": str(DEFAULT_CONFIG.relative_to(REPO)),
        "epochs": epochs,
        "cpu_has_bf16": cpu_has_bf16(),
        "rows": rows,
        "not_run": {"mixed_float16": "needs a GPU of compute capability >= 7.0; none here"},
    }


def precision_lines(section: dict | None) -> list[str]:
    """The Markdown of `precisions` (called by the report, which owns the page)."""
    if not section or not section.get("rows"):
        return []
    lines = [
        f"## Training precision ({section['recipe']}, {section['epochs']} epoch(s), same seed)",
        "",
        "| precision | ran as | images/s (best) | every run | vs float32 | images per CPU s "
        "| vs float32 (CPU s) | test accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in section["rows"].items():
        every = ", ".join(f"{x:.0f}" for x in r.get("all_images_per_s", []))
        ratio, cpu_ratio = r.get("over_float32"), r.get("over_float32_cpu")
        acc, cpu = r.get("test_accuracy"), r.get("best_images_per_cpu_s")
        lines.append(
            f"| {name} | {r.get('precision')} ({r.get('precision_reason')}) | "
            f"{r['train_images_per_s']:.0f} | {every} | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}x'} | "
            f"{'n/a' if cpu is None else f'{cpu:.0f}'} | "
            f"{'n/a' if cpu_ratio is None else f'{cpu_ratio:.2f}x'} | "
            f"{'n/a' if acc is None else f'{acc:.3f}'} |"
        )
    for name, why in (section.get("not_run") or {}).items():
        lines.append(f"| {name} | not run: {why} | | | | | | |")
    lines += [
        "",
        "Images per CPU second count the training process's CPU time over the training steps "
        "(every thread): on a shared machine the steadier ratio; wall-time images/s move with "
        "the other load.",
    ]
    return [*lines, ""]


def reference_fit(
    data_dir: Path | None, epochs: int, env: dict[str, str], work: Path, deterministic: bool = False
) -> dict:
    """The plain `model.fit` on numpy float32 arrays (benchmarks.fit_reference), a subprocess.

    deterministic=True adds TensorFlow's op determinism, which cifar-train turns on for CPU
    runs: the difference between the two plain runs is what determinism alone costs.
    """
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.fit_reference",
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
        "cifar_train_over_plain_fit_cpu": _ratio(toolkit, reference),
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
        out["determinism_cost_cpu"] = _ratio(deterministic, reference)
        out["cifar_train_over_plain_fit_deterministic_cpu"] = _ratio(toolkit, deterministic)
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


def _ratio(row: dict, base: dict) -> float | None:
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
