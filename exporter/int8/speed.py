"""Where INT8 pays: the CPU's int8 features and images/s measured on the exporting machine.

INT8 is faster than float32 only when the CPU has int8 dot-product instructions (VNNI, AMX)
that onnxruntime's kernels use; elsewhere a quantized model can be slower. So the exporter
measures both models here, with few repetitions (a figure to report, never a test verdict),
and says what it measured and on what.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from cifar10_runtime.contract import INPUT_NAME
from cifar10_runtime.engines.cpu import CPUINFO, cpu_features
from cifar10_runtime.engines.timing import best_seconds

INT8_SPEED_BATCH = 256  # the batch the recipes are timed and the verdict is given at
SPEEDUP_NOISE = 1.05  # a speed-up below this is timing noise: not "faster"


def cpu_int8_features(cpuinfo: Path = CPUINFO) -> dict:
    """The CPU model and its int8-relevant flags (cifar10_runtime.engines.cpu's features),
    summarised for int8 (Linux; elsewhere: unknown)."""
    cpu = cpu_features(cpuinfo)
    return {**cpu, "summary": cpu["int8_summary"]}


def session(model: bytes, threads: int | None):
    from cifar10_runtime.engines.sessions import cpu_session

    return cpu_session(model, threads or None)


def images_per_s(
    model: bytes,
    images: np.ndarray,
    *,
    batch: int = INT8_SPEED_BATCH,
    threads: int | None = None,
    repeats: int = 3,
    budget_s: float = 2.0,
) -> float:
    """Best-of-`repeats` images/s of `InferenceSession.run` at `batch` (after one warm-up),
    stopping early past `budget_s`: the best run is the least disturbed by other processes."""
    sess = session(model, threads)
    reps = int(np.ceil(batch / max(len(images), 1)))
    feed = {INPUT_NAME: np.ascontiguousarray(np.tile(images, (reps, 1, 1, 1))[:batch])}
    sess.run(None, feed)
    until = time.perf_counter() + budget_s
    return batch / best_seconds(lambda: sess.run(None, feed), runs=max(repeats, 1), until=until)


def best_speeds(
    models: dict[Any, bytes],
    images: np.ndarray,
    *,
    batch: int = INT8_SPEED_BATCH,
    threads: int | None = None,
    rounds: int = 2,
) -> dict[Any, float]:
    """Each model's best images/s at `batch` over `rounds` rounds, the models timed in turn
    within each round so that a burst of load from other processes hits all alike."""
    best = {key: 0.0 for key in models}
    for _ in range(rounds):
        for key, model in models.items():
            speed = images_per_s(model, images, batch=batch, threads=threads, repeats=2)
            best[key] = max(best[key], speed)
    return best


def compare_speed(
    fp32: bytes,
    int8: bytes,
    images: np.ndarray,
    *,
    batch: int,
    threads: int | None = None,
    rounds: int = 2,
) -> dict:
    """fp32 and int8 images/s at `batch`, timed in alternation (best of `rounds` each) so
    that a burst of load from other processes hits both alike."""
    models = {"fp32": fp32, "int8": int8}
    best = best_speeds(models, images, batch=batch, threads=threads, rounds=rounds)
    return {
        "fp32_images_per_s": best["fp32"],
        "int8_images_per_s": best["int8"],
        "speedup": best["int8"] / best["fp32"],
    }


def speed_verdict(speedup: float, cpu: dict, batch: int = INT8_SPEED_BATCH) -> str:
    """One line for the log and the model card: measured speed-up and what to serve."""
    where = f"{cpu['cpu']}, {cpu['summary']}"
    if speedup >= SPEEDUP_NOISE:
        return f"int8 runs {speedup:.2f}x fp32 images/s at batch {batch} here ({where})"
    return (
        f"int8 is NOT faster here: {speedup:.2f}x fp32 images/s at batch {batch} ({where}); "
        "serve the fp32 model on this CPU, the int8 one only where int8 is measured faster"
    )
