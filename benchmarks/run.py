"""The order of a run: machine and peak, model preparation, then each section, then reports.

onnxruntime rows run before TensorFlow is imported; the subprocess sections (cold start,
server, training) run after all in-process timings so their CPU use cannot overlap them.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import machine, report, sanity, targets
from benchmarks.inference import coldstart
from benchmarks.inference.flops import count_macs
from benchmarks.inputs import DEFAULT_SUBSET, Images, load_images
from benchmarks.prepare import model_record, pick_data, prepare_models, rel
from benchmarks.sections import (
    coldstart_section,
    latency_section,
    log,
    profiles_section,
    run_section,
    server_section,
    training_sections,
)
from benchmarks.timing import FULL, QUICK, Budget


def run_all(
    args: argparse.Namespace, name: str, threads: int, env: dict[str, str], work: Path
) -> dict:
    quick = args.quick
    budget = QUICK if quick else FULL
    epochs = args.epochs or (1 if quick else 2)
    results: dict = {"run": _run_record(name, quick, threads, budget, work), "notes": []}
    log(f"benchmark '{name}' ({results['run']['mode']}), {threads} threads, work dir {work}")
    # Several repeats even when quick: one product on a busy machine can read far below the
    # peak.
    peak_reps = 3 if quick else 5
    results["machine"] = _machine(threads, peak_reps)

    data_dir, results["data"] = pick_data(args, work)
    models = prepare_models(args, data_dir, epochs, env, work, threads, quick, results)
    macs = count_macs(models[0])
    results["model"] = model_record(models, macs)
    images = load_images(256, args.data_dir or DEFAULT_SUBSET)
    results["data"]["inference_images"] = (
        f"{'SYNTHETIC' if images.synthetic else 'real CIFAR-10 test'} images ({images.source})"
    )

    rows: list[dict] = []
    engines: list = []
    if "latency" not in args.skip:
        rows, engines = latency_section(
            results, models, threads, images, budget, peak_reps, macs["flops"]
        )
    results["latency"] = rows
    _process_sections(args, results, models, images, engines, macs["by_op"], env, work)
    if "training" not in args.skip:
        training_sections(results, data_dir, epochs, work, env, quick)
    results.pop("_cifar_train", None)
    _conclude(args, name, results, rows)
    return results


def _run_record(name: str, quick: bool, threads: int, budget: Budget, work: Path) -> dict:
    """The report's `run`: what ran, how long each cell is timed, the load at the start."""
    return {
        "name": name,
        "mode": "quick" if quick else "full",
        "threads": threads,
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            [os.path.basename(sys.executable), "-m", "benchmarks", *(sys.argv[1:])]
        ),
        "budget": (
            f"per engine and batch size: {budget.warmup} warm-up calls, then at "
            f"least {budget.min_runs} timed calls and {budget.seconds:g} s "
            f"(at most {budget.max_runs} calls; slow cells stop at "
            f"{budget.hard_seconds:g} s with >= 10 calls)"
            + (
                f", interleaved over {budget.rounds} rounds (every engine and batch "
                "size once per round, samples pooled)"
                if budget.rounds > 1
                else ""
            )
            + "; time.perf_counter_ns, garbage collector paused while timing"
        ),
        "load_start": list(os.getloadavg()),
        "work_dir": str(work),
    }


def _machine(threads: int, peak_reps: int) -> dict:
    """The CPU, versions, BLAS, and the float32 matmul peak measured before any row."""
    record = {
        "cpu": machine.cpu_info(),
        "versions": machine.versions(),
        "blas": machine.blas_info(),
    }
    log("[peak] float32 matmul, before the latency rows")
    # 4096 even when quick: smaller squares do not reach OpenBLAS' best kernels.
    record["peak"] = machine.measure_peak(threads, size=4096, reps=peak_reps)
    log(f"  best of {peak_reps}: {record['peak']['gflops']:.0f} GFLOP/s")
    return record


def _process_sections(  # noqa: PLR0913
    args: argparse.Namespace,
    results: dict,
    models: tuple[Path, Path | None, Path | None],
    images: Images,
    engines: list,
    macs_by_op: dict,
    env: dict[str, str],
    work: Path,
) -> None:
    """Profiles, cold start, footprint and the server: after every in-process timing."""
    onnx_path, _, keras_path = models
    threads, quick = results["run"]["threads"], args.quick
    if "profiles" not in args.skip and engines:
        run_section(
            results,
            "profiles",
            lambda: profiles_section(onnx_path, threads, images, macs_by_op, engines, quick),
        )
    if "coldstart" not in args.skip:
        run_section(
            results,
            "cold_start",
            lambda: coldstart_section(
                onnx_path, keras_path, images, env, work, quick, threads, results
            ),
        )
    if "footprint" not in args.skip:
        run_section(results, "footprint", coldstart.footprint)
        if not coldstart.runtime_venv_ready():
            results["notes"].append(
                "runtime-only venv not built (`make runtime-venv`): no "
                "footprint ratio; cold start used the full venv"
            )
    if "server" not in args.skip:
        run_section(
            results, "server", lambda: server_section(onnx_path, images, env, work, quick, threads)
        )


def _conclude(args: argparse.Namespace, name: str, results: dict, rows: list[dict]) -> None:
    """Warnings, targets and headlines, then the JSON, Markdown and plot files."""
    results["warnings"] = sanity.check(results)
    for warning in results["warnings"]:
        log(warning)
    results["targets"] = targets.evaluate(results)
    results["headlines"] = targets.headlines(results)
    results["run"]["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["run"]["load_end"] = list(os.getloadavg())
    out = args.out.resolve()
    paths = {k: out / f"{name}.{k}" for k in ("json", "md", "png")}
    results["run"]["outputs"] = {k: rel(v) for k, v in paths.items()}
    report.write_json(paths["json"], results)
    if rows:
        report.plot(paths["png"], results)
    report.write_markdown(paths["md"], results, paths["png"].name)
    for t in results["targets"]:
        log(f"  target {t['target']}: {t['measured']} ({t['goal']}) {t['status']}")
