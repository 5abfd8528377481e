"""The CPU this process runs on: its model name, the flags that decide int8/bf16 speed, and
the cores it may use.

The one reader of /proc/cpuinfo for every stage (the runtime's engine choice, the exporter's
int8 speed verdict, the trainer's precision choice, the benchmarks' machine record and run
name), and the one count of usable cores (`usable_cpus`, which honours the CPU affinity
mask where `os.cpu_count()` does not). Elsewhere than Linux the flags are unknown and every
feature reads as absent, so nothing is ever assumed of a CPU.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

# /proc/cpuinfo flags worth naming next to a figure, in the order they matter.
FLAGS_OF_INTEREST = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
CPUINFO = Path("/proc/cpuinfo")


def read_cpuinfo(cpuinfo: Path = CPUINFO) -> tuple[str, set[str] | None]:
    """(model name, flags); flags is None when the file cannot be read (not Linux)."""
    model, flags = platform.processor() or platform.machine() or "unknown", None
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return model, None
    named = False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip() and not named:
            model, named = value.strip(), True
        elif key in ("flags", "Features") and flags is None:
            flags = set(value.split())
    return model, flags


def usable_cpus() -> int:
    """The cores this process may use: its affinity mask (taskset, cgroups cpusets), as
    onnxruntime counts them; `os.cpu_count()` where the platform has no affinity call."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The CPU's feature flags, or None when they cannot be read (not Linux, no /proc)."""
    _, flags = read_cpuinfo(cpuinfo)
    return frozenset(flags) if flags is not None else None


def cpu_features(cpuinfo: Path = CPUINFO) -> dict:
    """Model, the flags of interest, and what they mean for bf16 and int8 inference."""
    if cpuinfo == CPUINFO:
        return dict(_this_cpu())
    return _features(cpuinfo)


@lru_cache(maxsize=1)
def _this_cpu() -> dict:  # the CPU does not change while a process runs
    return _features(CPUINFO)


def _features(cpuinfo: Path) -> dict:
    model, flags = read_cpuinfo(cpuinfo)
    have = {f: f in flags for f in FLAGS_OF_INTEREST} if flags is not None else {}
    vnni = bool(have.get("avx512_vnni") or have.get("avx_vnni"))
    amx = bool(have.get("amx_int8"))
    bf16 = bool(have.get("avx512_bf16") or have.get("amx_bf16"))
    amx_bf16 = bool(have.get("amx_bf16"))
    if flags is None:
        int8_summary = "int8 features unknown (no /proc/cpuinfo)"
        bf16_summary = "bf16 features unknown"
    else:
        int8 = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if have.get(f)]
        bf = [f for f in ("avx512_bf16", "amx_bf16") if have.get(f)]
        int8_summary = "int8: " + (", ".join(int8) if int8 else "no VNNI, no AMX")
        bf16_summary = "bf16: " + (", ".join(bf) if bf else "none")
    return {
        "cpu": model,
        "vnni": vnni,
        "amx": amx,
        "bf16": bf16,
        "amx_bf16": amx_bf16,
        "flags": have,
        "int8_summary": int8_summary,
        "summary": f"{int8_summary}; {bf16_summary}",
    }
