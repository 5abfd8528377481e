"""The order of a run: machine and peak, model preparation, then each section, then reports.

onnxruntime rows run before TensorFlow is imported; the subprocess sections (cold start,
server, training) run after all in-process timings so their CPU use cannot overlap them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import machine, report, sanity, targets
from benchmarks.inference import coldstart, latency
from benchmarks.inference.flops import count_macs, parameter_count
from benchmarks.inputs import DEFAULT_SUBSET, load_images, subset_available, write_mini_dataset
from benchmarks.timing import FULL, QUICK
from benchmarks.training import precision as training_precision
from benchmarks.training import speed as training

REPO = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(msg, flush=True)


def _section(results: dict, key: str, fn: Callable[[], object]) -> None:
    """Run one section; a failure is recorded in the report instead of losing the others.

    Its header is always followed by a line: what it found, that it had nothing to measure,
    or why it failed.
    """
    t0 = time.perf_counter()
    log(f"[{key}]")
    try:
        results[key] = fn()
    except Exception as exc:  # noqa: BLE001 - any failure becomes a line in the report
        results.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"
        results.setdefault("notes", []).append(
            f"section `{key}` failed: {type(exc).__name__}: {str(exc)[:300]}"
        )
        log(f"  FAILED: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    else:
        from benchmarks.sections import section_summary

        summary = section_summary(key, results)
        log(f"  {summary}" if summary else f"  done in {time.perf_counter() - t0:.1f} s")
    results.setdefault("section_seconds", {})[key] = round(time.perf_counter() - t0, 1)


def _data(args: argparse.Namespace, work: Path) -> tuple[Path | None, dict]:
    """The training/export data: a mini copy for --quick, the subset, or synthetic."""
    subset = args.data_dir or DEFAULT_SUBSET
    if args.quick:
        mini = write_mini_dataset(work / "mini-data", n_train=320, n_test=64, subset=subset)
        kind = "SYNTHETIC" if mini["synthetic"] else "real CIFAR-10"
        return Path(mini["path"]), {
            "synthetic": mini["synthetic"],
            "description": (
                f"{kind} mini set for --quick: {mini['train_images']} training, "
                f"{mini['test_images']} test images (in {mini['path']})"
            ),
        }
    if subset_available(subset):
        return subset, {"synthetic": False, "description": f"real CIFAR-10 subset from {subset}"}
    return None, {
        "synthetic": True,
        "description": "SYNTHETIC (no CIFAR-10 subset found): cifar10_trainer's generated dataset",
    }


def run_all(
    args: argparse.Namespace, name: str, threads: int, env: dict[str, str], work: Path
) -> dict:
    quick = args.quick
    budget = QUICK if quick else FULL
    epochs = args.epochs or (1 if quick else 2)
    started = datetime.now(UTC)
    results: dict = {
        "run": {
            "name": name,
            "mode": "quick" if quick else "full",
            "threads": threads,
            "started_utc": started.isoformat(timespec="seconds"),
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
        },
        "notes": [],
    }
    log(f"benchmark '{name}' ({results['run']['mode']}), {threads} threads, work dir {work}")
    results["machine"] = {
        "cpu": machine.cpu_info(),
        "versions": machine.versions(),
        "blas": machine.blas_info(),
    }
    log("[peak] float32 matmul, before the latency rows")
    # 4096 even when quick: smaller squares do not reach OpenBLAS' best kernels on 2 cores.
    # Several repeats even when quick: one product on a busy machine can read half the peak.
    peak_reps = 3 if quick else 5
    peak_start = machine.measure_peak(threads, size=4096, reps=peak_reps)
    results["machine"]["peak"] = peak_start
    log(f"  best of {peak_reps}: {peak_start['gflops']:.0f} GFLOP/s")

    data_dir, results["data"] = _data(args, work)
    onnx_path, int8_path, keras_path = _prepare_models(
        args, data_dir, epochs, env, work, threads, quick, results
    )
    macs = count_macs(onnx_path)
    results["model"] = {
        "onnx": _rel(onnx_path),
        "int8": _rel(int8_path) if int8_path else None,
        "keras": _rel(keras_path) if keras_path else None,
        "flops_per_image": macs["flops"],
        "macs_by_op": macs["by_op"],
        "layers": macs["layers"],
        "parameters": parameter_count(onnx_path),
    }
    images = load_images(256, args.data_dir or DEFAULT_SUBSET)
    results["data"]["inference_images"] = (
        f"{'SYNTHETIC' if images.synthetic else 'real CIFAR-10 test'} images ({images.source})"
    )

    rows: list[dict] = []
    engines: list = []
    if "latency" not in args.skip:

        def onnx_rows() -> list[dict]:
            from benchmarks.inference.engines import engine_rows

            engines.extend(latency.onnx_engines(onnx_path, int8_path, threads, images))
            engines.extend(engine_rows(onnx_path, int8_path, threads, images, results["notes"]))
            return latency.run_engines(engines, budget, log=log)

        _section(results, "latency_onnxruntime", onnx_rows)
        rows += results.pop("latency_onnxruntime", None) or []
        if keras_path:

            def keras_rows() -> list[dict]:
                _configure_tensorflow(threads)
                return latency.run_engines(
                    latency.keras_engines(keras_path, images), budget, log=log
                )

            _section(results, "latency_keras", keras_rows)
            rows += results.pop("latency_keras", None) or []
        log("[peak] float32 matmul, after the latency rows")
        peak_end = machine.measure_peak(threads, size=4096, reps=peak_reps)
        results["machine"]["peak"] = machine.combine_peaks(peak_start, peak_end)
        log(f"  best of {peak_reps}: {peak_end['gflops']:.0f} GFLOP/s")
        latency.add_ratios(rows, macs["flops"], results["machine"]["peak"]["gflops"])
        if engines and rows:
            _section(
                results,
                "baseline_drift",
                lambda: sanity.retime_baseline(engines[0], rows, budget, log),
            )
    results["latency"] = rows

    if "profiles" not in args.skip and engines:
        from benchmarks.sections import profiles_section

        _section(
            results,
            "profiles",
            lambda: profiles_section(onnx_path, threads, images, macs["by_op"], engines, quick),
        )

    if "coldstart" not in args.skip:
        from benchmarks.sections import coldstart_section

        _section(
            results,
            "cold_start",
            lambda: coldstart_section(
                onnx_path, keras_path, images, env, work, quick, threads, results
            ),
        )
    if "footprint" not in args.skip:
        _section(results, "footprint", coldstart.footprint)
        if not coldstart.runtime_venv_ready():
            results["notes"].append(
                "runtime-only venv not built (`make runtime-venv`): no "
                "footprint ratio; cold start used the full venv"
            )
    if "server" not in args.skip:
        from benchmarks.sections import server_section

        _section(
            results, "server", lambda: server_section(onnx_path, images, env, work, quick, threads)
        )
    if "training" not in args.skip:

        def train_section() -> dict:
            # Full runs repeat each path (interleaved) and keep the best: a 2-epoch run on
            # this VM varies by +-25% from one minute to the next. The determinism row
            # separates what op determinism costs from the rest of cifar-train's pipeline.
            repeats = 1 if quick else 2
            runs: dict[str, list[dict]] = {"toolkit": [], "plain": [], "det": []}
            for i in range(repeats):
                if i == 0 and results.get("_cifar_train"):
                    runs["toolkit"].append(results["_cifar_train"])
                else:
                    # Its own folder: work/train holds the model the other rows measured.
                    runs["toolkit"].append(
                        training.cifar_train(data_dir, epochs, work / f"train-{i}", env)
                    )
                runs["plain"].append(training.reference_fit(data_dir, epochs, env, work))
                if not quick:
                    runs["det"].append(
                        training.reference_fit(data_dir, epochs, env, work, deterministic=True)
                    )
            best = {k: training.best_of(v) for k, v in runs.items() if v}
            return training.compare(best["toolkit"], best["plain"], best.get("det"))

        _section(results, "training", train_section)
        # Per precision (issue 17): float32 and mixed_bfloat16 rows of every strategy.
        strategy_precisions = ("float32",) if quick else ("float32", "mixed_bfloat16")
        _section(
            results,
            "training_strategies",
            lambda: training.strategies(
                data_dir, 1 if quick else epochs, work, env, strategy_precisions
            ),
        )
        _section(
            results,
            "training_precisions",
            lambda: training_precision.precisions(
                data_dir, epochs, work, env, repeats=1 if quick else 2
            ),
        )
    results.pop("_cifar_train", None)

    results["warnings"] = sanity.check(results)
    for warning in results["warnings"]:
        log(warning)
    results["targets"] = targets.evaluate(results)
    results["headlines"] = targets.headlines(results)
    results["run"]["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["run"]["load_end"] = list(os.getloadavg())
    out = args.out.resolve()
    paths = {k: out / f"{name}.{k}" for k in ("json", "md", "png")}
    results["run"]["outputs"] = {k: _rel(v) for k, v in paths.items()}
    report.write_json(paths["json"], results)
    if rows:
        report.plot(paths["png"], results)
    report.write_markdown(paths["md"], results, paths["png"].name)
    for t in results["targets"]:
        log(f"  target {t['target']}: {t['measured']} ({t['goal']}) {t['status']}")
    return results


def _prepare_models(
    args: argparse.Namespace,
    data_dir: Path | None,
    epochs: int,
    env: dict[str, str],
    work: Path,
    threads: int,
    quick: bool,
    results: dict,
) -> tuple[Path, Path | None, Path | None]:
    if args.model:
        onnx_path = args.model.resolve()
        twin = onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + ".int8.onnx")
        int8 = args.int8 or (twin if twin.is_file() else None)
        keras_path = args.keras.resolve() if args.keras else None
        if keras_path is None:
            results["notes"].append(
                "no --keras given: Keras rows and TensorFlow cold start skipped"
            )
        results["preparation"] = {"given": True}
        return onnx_path, int8, keras_path
    log(f"[prepare] cifar-train ({epochs} epoch(s)) and cifar-export --quantize int8")
    trained = training.cifar_train(data_dir, epochs, work / "train", env)
    results["_cifar_train"] = trained
    exported = training.export(
        Path(trained["model"]), data_dir, work, env, threads, samples=64 if quick else 512
    )
    results["preparation"] = {
        "train_command": trained["command"],
        "test_accuracy": trained["test_accuracy"],
        "export_command": exported["command"],
        "parity": exported["parity"],
        "int8_check": exported["int8_check"],
    }
    check = exported["int8_check"]
    if exported["int8"] is None:
        results["notes"].append(
            "cifar-export produced no INT8 model, so there are no INT8 rows: "
            f"{training.last_error(work / 'export.log')}"
        )
    elif check and not check.get("passed"):
        results["notes"].append(
            "the INT8 model failed the exporter's accuracy check on this briefly trained model "
            f"(top-1 agreement {check.get('top1_agreement')}); it was kept with --force for "
            "its speed only"
        )
    return Path(exported["onnx"]), exported["int8"], Path(trained["model"])


def _configure_tensorflow(threads: int) -> None:
    from cifar10_trainer.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()  # its start-up notices are not results
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # already initialised (the environment variables did it)
        pass


def _rel(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)
