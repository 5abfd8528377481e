"""Glue for the sections that need files or subprocesses: profiles, cold start, server."""

from __future__ import annotations

from pathlib import Path

from benchmarks.inference import coldstart, profiles
from benchmarks.inputs import Images, encode_png
from benchmarks.serving import server


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
    from benchmarks.serving.grpc_bench import (
        bench_grpc,  # gRPC beside REST on one process (issue 21)
    )

    exe, image = coldstart.venv_bin(venv, "cifar-serve"), images.arrays[0]
    seconds, most = (0.5, 200) if quick else (6.0, 50_000)
    out["grpc"] = bench_grpc(exe, onnx_path, image, env, work, seconds, most, threads)
    return out


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
