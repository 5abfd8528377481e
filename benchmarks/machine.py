"""The machine a run was made on, and its measured float32 peak.

The peak is a large square float32 matrix product in numpy (OpenBLAS), timed in the same
process with the same thread count as the engines: it is the practical ceiling for dense
float32 arithmetic on this CPU, against which each engine's FLOPs per second are compared.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

from cifar10_runtime.engines.cpu import (
    FLAGS_OF_INTEREST,
    cpu_features,
    read_cpuinfo,
    usable_cpus,
)

PACKAGES = (
    "onnxruntime",
    "onnx",
    "numpy",
    "pillow",
    "tensorflow",
    "keras",
    "tf2onnx",
    "starlette",
    "uvicorn",
    "cifar10-runtime",
    "cifar10-toolkit",
    "onnxruntime-ep-openvino",
    "openvino",
)


def cpu_info() -> dict:
    """CPU model, core count, SIMD flags of interest, and load at the start of the run."""
    # The one /proc/cpuinfo reader (cifar10_runtime.engines.cpu): the engines choose by the
    # same flags.
    model, found = read_cpuinfo()
    flags = found or set()
    info = {
        "model": model,
        "logical_cpus": os.cpu_count(),  # the machine's, whatever this process may use
        "usable_cpus": usable_cpus(),
        "flags": {f: f in flags for f in FLAGS_OF_INTEREST},
        "int8_bf16_features": cpu_features()["summary"],
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "hypervisor": "hypervisor" in flags,
    }
    try:
        info["lscpu_model"] = _lscpu_field("Model name")
    except (OSError, subprocess.SubprocessError):
        pass
    info["load_average_at_start"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    info["memory_gib"] = _memory_gib()
    return info


def _lscpu_field(name: str) -> str | None:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def versions() -> dict:
    """Python and the versions of the packages the engines use (None when not installed)."""
    from cifar10_runtime.versions import package_versions, python_version

    return {"python": python_version(), **package_versions(PACKAGES)}


def blas_info() -> dict:
    """Which BLAS numpy uses: the peak is only as good as that library."""
    import numpy as np

    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return {"name": blas.get("name"), "version": blas.get("version")}
    except Exception:  # noqa: BLE001 - informational only; numpy's config format changes
        return {}


# Set on some of these machines because older OpenBLAS builds crash or compute wrong results on
# their CPUs; they pin a current numpy's OpenBLAS to an older kernel (e.g. Haswell: AVX2 on an
# AVX-512 CPU), which under-measures the peak. The peak alone is measured without them.
PEAK_UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def measure_peak(threads: int, size: int = 4096, reps: int = 3) -> dict:
    """Best-of-`reps` GFLOP/s of a size x size float32 matmul (2*n^3 FLOPs), after a warm-up,
    in a child process with OPENBLAS_NUM_THREADS=`threads` and without PEAK_UNSET (which
    variables were dropped is recorded).

    The best, not the mean: a shared machine only ever makes a product slower, so the fastest
    repeat is the closest to what the CPU can do.
    """
    import json
    import sys

    env = {k: v for k, v in os.environ.items() if k not in PEAK_UNSET}
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    code = (
        "import json, sys; from benchmarks.machine import matmul_peak; "
        "print(json.dumps(matmul_peak(*map(int, sys.argv[1:]))))"
    )
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code, str(threads), str(size), str(reps)],
        env=env,
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the matmul peak child failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["env_unset"] = [k for k in PEAK_UNSET if k in os.environ]
    return result


def matmul_peak(threads: int, size: int, reps: int) -> dict:
    """measure_peak's child: the timing itself (numpy imported here, after the environment
    was set, since OpenBLAS reads it once when it loads)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: page faults, thread start, clock ramp
    times = []
    for _ in range(max(reps, 1)):
        t0 = time.perf_counter_ns()
        np.matmul(a, b, out=out)
        times.append((time.perf_counter_ns() - t0) / 1e9)
    best = min(times)
    return {
        "size": size,
        "reps": len(times),
        "threads": threads,
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "best_s": best,
        "median_s": sorted(times)[len(times) // 2],
        "gflops": 2 * size**3 / best / 1e9,
        "gflops_each": [round(2 * size**3 / t / 1e9, 1) for t in times],
    }


def combine_peaks(start: dict, end: dict) -> dict:
    """One peak from the measurements before and after the latency rows: the best of all
    repeats, with both sides kept so a baseline that moved during the run can be flagged."""
    best = start if start["gflops"] >= end["gflops"] else end
    return {
        **best,
        "reps": start["reps"] + end["reps"],
        "gflops_start": start["gflops"],
        "gflops_end": end["gflops"],
        "gflops_each": start["gflops_each"] + end["gflops_each"],
    }
