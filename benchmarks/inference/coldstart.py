"""Cold start (process start to first prediction), import time, and installed footprint.

"Cold" here means a new process with a warm OS page cache, as after a server restart: one
unrecorded run goes first so that disk reads do not make whichever engine runs first look worse.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FULL_VENV = REPO / ".venv"
RUNTIME_VENV = REPO / ".venv-runtime"
# What a user installs (`pip install "./runtime[serve]"`, nothing else): `make bench` builds it.
# .venv-runtime also carries the test tools (pytest, playwright, tritonclient), so it would
# overstate the footprint; it is measured only when this one is absent.
BARE_RUNTIME_VENV = REPO / "build" / "venv-runtime-bare"
# The runtime with the openvino extra, as a user installs it (Makefile bench target).
OPENVINO_RUNTIME_VENV = REPO / "build" / "venv-runtime-openvino"

# The TensorFlow path a user would write: load the .keras file, decode the image, one direct
# call (quicker than model.predict for one image, so the comparison favours TensorFlow).
TF_SCRIPT = """
import json, sys
import numpy as np
from PIL import Image
import keras
model = keras.saving.load_model(sys.argv[1], compile=False)
x = np.asarray(Image.open(sys.argv[2]).convert("RGB"))[None]
p = np.asarray(model(x, training=False))[0]
print(json.dumps({"class": int(p.argmax()), "probability": float(p.max())}), flush=True)
"""

IMPORT_SCRIPT = """
import time
t0 = time.perf_counter()
{stmt}
print(time.perf_counter() - t0, flush=True)
"""


def venv_bin(venv: Path, name: str) -> Path:
    return venv / "bin" / name


def runtime_venv_ready() -> bool:
    return venv_bin(RUNTIME_VENV, "cifar-predict").is_file()


def time_to_first_line(cmd: list[str], env: dict[str, str], timeout: float = 300) -> dict:
    """Seconds from spawning `cmd` to its first line on stdout, and to its exit."""
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    t_first = time.perf_counter_ns()
    rest, err = proc.communicate(timeout=timeout)
    t_exit = time.perf_counter_ns()
    if proc.returncode != 0 or not first.strip():
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {' | '.join(tail)}")
    return {
        "first_output_s": (t_first - t0) / 1e9,
        "exit_s": (t_exit - t0) / 1e9,
        "output": (first + rest).decode(errors="replace").strip()[:300],
    }


def _repeat(cmd: list[str], env: dict[str, str], reps: int, warmup: int) -> dict:
    for _ in range(warmup):
        time_to_first_line(cmd, env)
    runs = [time_to_first_line(cmd, env) for _ in range(reps)]
    firsts = [r["first_output_s"] for r in runs]
    shown = [("<script>" if "\n" in str(c) else str(c)) for c in cmd]
    return {
        "command": " ".join(shown),
        "reps": reps,
        "warmup": warmup,
        "median_s": statistics.median(firsts),
        "min_s": min(firsts),
        "max_s": max(firsts),
        "median_exit_s": statistics.median(r["exit_s"] for r in runs),
        "sample_output": runs[0]["output"],
    }


def cold_start(
    onnx_model: Path,
    keras_model: Path,
    image_png: Path,
    env: dict[str, str],
    reps: int,
    warmup: int,
    threads: int,
) -> dict:
    """`cifar-predict --json` (runtime venv when built) against the TensorFlow/Keras script.

    "runtime" is a load after the first on this machine: the engine timings come from the
    route cache (cifar10_runtime.engines.timing_cache; the unrecorded warm-up run writes it), the
    golden check runs as always. "runtime_first_load" turns the cache off, so every run
    times the engines, as the very first load of a model on a machine does."""
    from cifar10_runtime.engines.timing_cache import ENV as ROUTE_CACHE_ENV

    rt_venv = RUNTIME_VENV if runtime_venv_ready() else FULL_VENV
    runtime_cmd = [
        str(venv_bin(rt_venv, "cifar-predict")),
        str(onnx_model),
        str(image_png),
        "--json",
        "--threads",
        str(threads),
    ]
    tf_cmd = [sys.executable, "-c", TF_SCRIPT, str(keras_model), str(image_png)]
    cache = tempfile.mkdtemp(prefix="cifar10-bench-route-cache-")
    cached_env = {**env, ROUTE_CACHE_ENV: cache}
    result = {
        "runtime_venv": str(rt_venv.relative_to(REPO)),
        "runtime_venv_is_runtime_only": rt_venv == RUNTIME_VENV,
        "runtime": _repeat(runtime_cmd, cached_env, reps, warmup),
        "runtime_first_load": _repeat(runtime_cmd, {**env, ROUTE_CACHE_ENV: "off"}, reps, 0),
        "tensorflow": _repeat(tf_cmd, env, reps, warmup),
        "tensorflow_script": TF_SCRIPT.strip(),
        "python_startup": _repeat(
            [str(venv_bin(rt_venv, "python")), "-c", "print(1)"], env, reps, warmup
        ),
    }
    result["tf_over_runtime"] = result["tensorflow"]["median_s"] / result["runtime"]["median_s"]
    result["tf_over_runtime_first_load"] = (
        result["tensorflow"]["median_s"] / result["runtime_first_load"]["median_s"]
    )
    shutil.rmtree(cache, ignore_errors=True)
    return result


def import_times(env: dict[str, str], reps: int, with_tensorflow: bool, warmup: int = 1) -> dict:
    """Wall time of imports in a fresh interpreter (median of `reps`), in seconds."""
    rt_python = str(venv_bin(RUNTIME_VENV if runtime_venv_ready() else FULL_VENV, "python"))
    cases = {
        "cifar10_runtime": (rt_python, "import cifar10_runtime"),
        "cifar10_runtime.Predictor": (rt_python, "from cifar10_runtime import Predictor"),
        "onnxruntime": (rt_python, "import onnxruntime"),
    }
    if with_tensorflow:
        cases["keras (TensorFlow backend)"] = (sys.executable, "import keras")
    out = {"python": rt_python}
    for label, (python, stmt) in cases.items():
        values = []
        for _ in range(reps + warmup):  # warm-up runs only warm the page cache
            cmd = [python, "-c", IMPORT_SCRIPT.format(stmt=stmt)]
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO
            )
            if proc.returncode != 0:
                raise RuntimeError(f"{stmt!r} failed: {proc.stderr.strip()[-300:]}")
            values.append(float(proc.stdout.strip().splitlines()[-1]))
        out[label] = statistics.median(values[warmup:])
    return out


def importtime_top(
    env: dict[str, str], stmt: str = "from cifar10_runtime import Predictor", top: int = 8
) -> list[dict]:
    """The slowest modules by cumulative import time (`python -X importtime`): the evidence
    for where a runtime cold start goes."""
    python = str(venv_bin(RUNTIME_VENV if runtime_venv_ready() else FULL_VENV, "python"))
    proc = subprocess.run(
        [python, "-X", "importtime", "-c", stmt],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    rows = []
    for line in proc.stderr.splitlines():
        # "import time:   self_us |   cumulative_us | <two spaces per nesting level>module"
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cum_us, name = line.removeprefix("import time:").split("|", 2)
        rows.append(
            {
                "module": name.strip(),
                "self_ms": int(self_us) / 1e3,
                "cumulative_ms": int(cum_us) / 1e3,
                "top_level": not name[1:].startswith(" "),
            }
        )
    tops = [r for r in rows if r["top_level"]]
    return sorted(tops, key=lambda r: -r["cumulative_ms"])[:top]


def _tree_size(root: Path) -> tuple[int, int]:
    """(apparent bytes, files) under root, not following symlinks."""
    total = files = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
                files += 1
            except OSError:
                pass
    return total, files


def _site_packages(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python*/site-packages"))
    return found[0] if found else None


def _largest(site: Path, top: int = 6) -> list[dict]:
    sizes = []
    for entry in site.iterdir():
        if entry.is_dir() and not entry.name.endswith((".dist-info", ".egg-info")):
            sizes.append({"package": entry.name, "mb": _tree_size(entry)[0] / 1e6})
    return sorted(sizes, key=lambda s: -s["mb"])[:top]


def footprint() -> dict:
    """Installed size (apparent bytes) of the runtime-only venv against the full toolkit venv."""
    out: dict = {}
    bare = BARE_RUNTIME_VENV if _site_packages(BARE_RUNTIME_VENV) else RUNTIME_VENV
    venvs = (("runtime", bare), ("runtime_openvino", OPENVINO_RUNTIME_VENV), ("toolkit", FULL_VENV))
    for label, venv in venvs:
        site = _site_packages(venv)
        if site is None:
            out[label] = None
            continue
        venv_bytes, venv_files = _tree_size(venv)
        site_bytes, _ = _tree_size(site)
        out[label] = {
            "venv": str(venv.relative_to(REPO)),
            "venv_mb": venv_bytes / 1e6,
            "venv_files": venv_files,
            "site_packages_mb": site_bytes / 1e6,
            "largest_packages": _largest(site),
        }
    if out.get("runtime") and out.get("toolkit"):
        out["runtime_over_toolkit_venv"] = out["runtime"]["venv_mb"] / out["toolkit"]["venv_mb"]
        out["runtime_over_toolkit_site_packages"] = (
            out["runtime"]["site_packages_mb"] / out["toolkit"]["site_packages_mb"]
        )
    return out
