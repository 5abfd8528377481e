"""`python -m benchmarks [--quick] [--name NAME] [--model M.onnx --keras M.keras] [--out DIR]`.

Runs every measurement of the benchmark in one go and writes <out>/<name>.json|.md|.png.
Without --model it first trains briefly with cifar-train and exports with cifar-export
(INT8 included) into --work-dir, so it works from a fresh clone.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("latency", "profiles", "coldstart", "footprint", "server", "training")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny counts, tiny training data: checks the code runs (< ~1 min)",
    )
    p.add_argument("--name", help="results file name [default: quick, or <host>-<date>]")
    p.add_argument("--model", type=Path, help="ONNX model to measure [default: train + export]")
    p.add_argument("--int8", type=Path, help="INT8 twin [default: MODEL's .int8.onnx if there]")
    p.add_argument("--keras", type=Path, help="Keras model for the Keras rows and cold start")
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "results",
        help="folder for <name>.json/.md/.png [default: benchmarks/results]",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="scratch folder for models, data and logs [default: build/benchmarks/<name>]",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads for every engine [default: usable cores]",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="CIFAR-10 python folder [default: ../shared/data/cifar-10-subset, "
        "synthetic when absent]",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs for the training comparison [default: 2, quick: 1]",
    )
    p.add_argument("--skip", default="", help=f"comma-separated sections to skip: {SECTIONS}")
    args = p.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(SECTIONS)
    if unknown:
        p.error(f"--skip: unknown sections {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    if args.keras and not args.model:
        p.error("--keras needs --model too (the ONNX export of that Keras model)")
    return args


def set_thread_env(threads: int) -> dict[str, str]:
    """Same thread count for every library, in this process and in every child process.

    Must run before numpy, onnxruntime or TensorFlow is imported: OpenBLAS and TensorFlow read
    these once at start-up.
    """
    for key in (
        "OPENBLAS_NUM_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
    ):
        os.environ[key] = str(threads)
    # TensorFlow's inter-op pool runs independent ops side by side; a CNN is a chain, and
    # onnxruntime runs sequentially, so both get one.
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    # Every measurement runs on the CPU; level 3 also hides TensorFlow's `failed call to
    # cuInit` error about a GPU it was not asked to use.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return dict(os.environ)


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = args.threads or default_threads()
    env = set_thread_env(threads)
    name = args.name or ("quick" if args.quick else default_name())
    work = (args.work_dir or REPO / "build" / "benchmarks" / name).resolve()
    work.mkdir(parents=True, exist_ok=True)

    from benchmarks.run import run_all  # imports numpy: only after the thread variables are set

    t0 = time.perf_counter()
    results = run_all(args, name, threads, env, work)
    print(f"done in {time.perf_counter() - t0:.0f} s: {results['run']['outputs']['md']}")
    return 0


def default_name() -> str:
    """e.g. `amd-epyc-2c-20261124`: the CPU and core count say more than a VM's host name."""
    from cifar10_runtime.engines.cpu import read_cpuinfo  # after set_thread_env: loads numpy

    model, _ = read_cpuinfo()
    words = re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*", " ", model.lower()).split()
    slug = "-".join(re.sub(r"[^a-z0-9]", "", w) for w in words[:3]) or "cpu"
    return f"{slug}-{default_threads()}c-{datetime.now(UTC).strftime('%Y%m%d')}"


if __name__ == "__main__":
    sys.exit(main())
