"""The sections of a run: each one run so a failure is a line in the report, and the glue of
those that need engines, files or subprocesses (latency, profiles, cold start, server,
training)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import machine, sanity
from benchmarks.inference import coldstart, latency, profiles
from benchmarks.inputs import Images, encode_png
from benchmarks.serving import server
from benchmarks.timing import Budget
from benchmarks.training import precision as training_precision
from benchmarks.training import speed as training


def log(msg: str) -> None:
    print(msg, flush=True)


def run_section(results: dict, key: str, fn: Callable[[], object]) -> None:
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
        summary = section_summary(key, results)
        log(f"  {summary}" if summary else f"  done in {time.perf_counter() - t0:.1f} s")
    results.setdefault("section_seconds", {})[key] = round(time.perf_counter() - t0, 1)


def latency_section(  # noqa: PLR0913
    results: dict,
    models: tuple[Path, Path | None, Path | None],
    threads: int,
    images: Images,
    budget: Budget,
    peak_reps: int,
    flops: float,
) -> tuple[list[dict], list]:
    """The latency rows and the engines that made them: onnxruntime first (before TensorFlow
    is imported), then Keras; the peak measured again after them, then the baseline re-timed."""
    onnx_path, int8_path, keras_path = models
    rows: list[dict] = []
    engines: list = []

    def onnx_rows() -> list[dict]:
        from benchmarks.inference.engines import engine_rows

        engines.extend(latency.onnx_engines(onnx_path, int8_path, threads, images))
        engines.extend(engine_rows(onnx_path, int8_path, threads, images, results["notes"]))
        return latency.run_engines(engines, budget, log=log)

    run_section(results, "latency_onnxruntime", onnx_rows)
    rows += results.pop("latency_onnxruntime", None) or []
    if keras_path:

        def keras_rows() -> list[dict]:
            configure_tensorflow(threads)
            return latency.run_engines(latency.keras_engines(keras_path, images), budget, log=log)

        run_section(results, "latency_keras", keras_rows)
        rows += results.pop("latency_keras", None) or []
    log("[peak] float32 matmul, after the latency rows")
    peak_end = machine.measure_peak(threads, size=4096, reps=peak_reps)
    results["machine"]["peak"] = machine.combine_peaks(results["machine"]["peak"], peak_end)
    log(f"  best of {peak_reps}: {peak_end['gflops']:.0f} GFLOP/s")
    latency.add_ratios(rows, flops, results["machine"]["peak"]["gflops"])
    if engines and rows:
        run_section(
            results,
            "baseline_drift",
            lambda: sanity.retime_baseline(engines[0], rows, budget, log),
        )
    return rows, engines


def configure_tensorflow(threads: int) -> None:
    """TensorFlow on the CPU with the run's thread count, its start-up notices silenced."""
    from cifar10_trainer.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()  # its start-up notices are not results
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # already initialised (the environment variables did it)
        pass


def profiles_section(
    onnx_path: Path, threads: int, images: Images, macs_by_op: dict, engines: list, quick: bool
) -> dict:
    """onnxruntime's profiler at batch 256 and 1, cProfile of the Predictor at batch 1."""
    out = {
        "ort_batch256": profiles.ort_operator_profile(
            onnx_path, threads, images.arrays, 2 if quick else 20, macs_by_op
        ),
        "ort_batch1": profiles.ort_operator_profile(
            onnx_path, threads, images.arrays[:1], 20 if quick else 2000, macs_by_op
        ),
    }
    by_name = {e.name: e for e in engines}
    if "predictor" in by_name:
        out["predictor_batch1"] = profiles.python_profile(
            by_name["predictor"].make_call(1), 50 if quick else 5000
        )
    if "predictor_png32" in by_name:
        out["predictor_png32_batch1"] = profiles.python_profile(
            by_name["predictor_png32"].make_call(1), 20 if quick else 2000
        )
    return out


def coldstart_section(
    onnx_path: Path,
    keras_path: Path | None,
    images: Images,
    env: dict[str, str],
    work: Path,
    quick: bool,
    threads: int,
    results: dict,
) -> dict | None:
    """Cold start of both paths; import times and the import profile go in their own keys."""
    png = work / "coldstart.png"
    png.write_bytes(encode_png(images.arrays[:1])[0])
    reps, warmup = (1, 0) if quick else (7, 1)
    results["import_times"] = coldstart.import_times(
        env, reps=1 if quick else 5, with_tensorflow=not quick, warmup=0 if quick else 1
    )
    results["importtime_top"] = coldstart.importtime_top(env)
    if keras_path is None:
        return None
    return coldstart.cold_start(onnx_path, keras_path, png, env, reps, warmup, threads)


def server_section(
    onnx_path: Path, images: Images, env: dict[str, str], work: Path, quick: bool, threads: int
) -> dict:
    venv = coldstart.RUNTIME_VENV if coldstart.runtime_venv_ready() else coldstart.FULL_VENV
    body = encode_png(images.arrays[:1])[0]
    out = server.bench_server(
        coldstart.venv_bin(venv, "cifar-serve"),
        onnx_path,
        body,
        env,
        work,
        seconds=0.5 if quick else 6.0,
        max_requests=200 if quick else 50_000,
        threads=threads,
    )
    out["venv"] = str(venv)
    from benchmarks.serving.grpc_bench import bench_grpc  # gRPC: beside REST and KServe

    exe, image = coldstart.venv_bin(venv, "cifar-serve"), images.arrays[0]
    seconds, most = (0.5, 200) if quick else (6.0, 50_000)
    out["grpc"] = bench_grpc(exe, onnx_path, image, env, work, seconds, most, threads)
    return out


def training_sections(  # noqa: PLR0913
    results: dict, data_dir: Path | None, epochs: int, work: Path, env: dict[str, str], quick: bool
) -> None:
    """cifar-train against a plain model.fit, then the rows per strategy and per precision."""

    def train_section() -> dict:
        # Full runs repeat each path (interleaved) and keep the best: a short run's speed on a
        # shared VM moves a lot from one minute to the next. The determinism row separates
        # what op determinism costs from the rest of cifar-train's pipeline.
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

    run_section(results, "training", train_section)
    # Per precision: float32 and mixed_bfloat16 rows of every strategy.
    strategy_precisions = ("float32",) if quick else ("float32", "mixed_bfloat16")
    run_section(
        results,
        "training_strategies",
        lambda: training.strategies(
            data_dir, 1 if quick else epochs, work, env, strategy_precisions
        ),
    )
    run_section(
        results,
        "training_precisions",
        lambda: training_precision.precisions(
            data_dir, epochs, work, env, repeats=1 if quick else 2
        ),
    )


def section_summary(key: str, results: dict) -> str | None:
    """One line under a section's header in the log, so no header stands empty."""
    got = results.get(key)
    if key == "profiles" and got:
        ops = got["ort_batch256"]["ops"][:3]
        top = ", ".join(f"{o['op']} {100 * o['share_of_kernel_time']:.0f}%" for o in ops)
        return f"onnxruntime kernel time at batch 256: {top}"
    if key == "cold_start":
        imports = results.get("import_times") or {}
        if got is None:
            return f"no Keras model to compare with; import times measured: {sorted(imports)}"
        tf = got.get("tensorflow") or {}
        tf_s = f", TensorFlow path {tf['median_s']:.2f} s" if tf.get("median_s") else ""
        return f"cifar-predict to first prediction {got['runtime']['median_s']:.2f} s{tf_s}"
    if key == "footprint" and got:
        rt, full = got.get("runtime"), got.get("toolkit")
        full_mb = f"toolkit venv {full['venv_mb']:.0f} MB" if full else "no toolkit venv"
        if not rt:
            return f"{full_mb}; runtime-only venv not built (`make runtime-venv`)"
        ratio = got.get("runtime_over_toolkit_venv")
        share = f" = {ratio:.0%} of the {full_mb}" if ratio else ""
        return f"runtime-only venv {rt['venv_mb']:.0f} MB{share}"
    if key == "training" and got:
        return (
            f"cifar-train {got['cifar_train']['train_images_per_s']:.0f} images/s, plain "
            f"model.fit {got['plain_fit']['train_images_per_s']:.0f} images/s"
        )
    if key == "baseline_drift" and got:
        moved = ", ".join(f"batch {b} {v['end_over_start']:.2f}x" for b, v in got.items())
        return f"bare onnxruntime p50 end/start: {moved}"
    return None
