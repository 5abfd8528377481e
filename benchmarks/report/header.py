"""The report's run-level text: the header (machine, load, threads, versions, data, model,
peak, timing), the targets table with why the missed ones are missed, and the closing notes."""

from __future__ import annotations

from benchmarks.report.fmt import table


def header(results: dict) -> list[str]:
    m, run = results["machine"], results["run"]
    cpu, peak = m["cpu"], m["peak"]
    flags = ", ".join(k for k, v in cpu["flags"].items() if v) or "none"
    model = results["model"]
    data = results["data"]
    return [
        f"# Benchmark `{run['name']}`: {run['mode']} run, {run['finished_utc']}",
        "",
        *(f"> **{w}**" for w in results.get("warnings") or []),
        *([""] if results.get("warnings") else []),
        f"- **Machine**: {cpu.get('lscpu_model') or cpu['model']}, {cpu['usable_cpus']} usable "
        f"cores, {cpu.get('memory_gib')} GiB; flags {flags}"
        f"{' (VM)' if cpu.get('hypervisor') else ''}",
        f"- **Load**: {load(run)}{drift(results)}",
        f"- **Threads**: {run['threads']} intra-op threads for every engine "
        f"(onnxruntime, TensorFlow, OpenBLAS); onnxruntime inter-op 1 (sequential).",
        "- **Versions**: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
        f"- **Data**: training and export on {data['description']}; inference on "
        f"{data.get('inference_images', 'n/a')}",
        f"- **Model**: {model['onnx']} ({model['flops_per_image'] / 1e6:.1f} MFLOP per image "
        f"from the ONNX graph: Conv {model['macs_by_op'].get('Conv', 0) / 1e6:.1f} M MACs, "
        f"dense {dense_macs(model) / 1e6:.2f} M MACs; {model['parameters']:,} parameters)"
        f"{'; INT8: ' + str(model['int8']) if model.get('int8') else ''}",
        f"- **Peak**: {peak_text(peak)}, best of {peak['reps']} float32 "
        f"{peak['size']}x{peak['size']} numpy matmuls ({m.get('blas', {}).get('name')}) with the "
        "same threads, before and after the latency rows"
        + (
            f", in a child process without {' and '.join(peak['env_unset'])} (they pin OpenBLAS "
            "to an older kernel)."
            if peak.get("env_unset")
            else "."
        ),
        f"- **Timing**: {run['budget']}",
        "",
    ]


def targets(results: dict) -> list[str]:
    lines = ["## Targets (reported, not asserted)", ""]
    lines += table(
        ["target", "goal", "measured", "status"],
        [[t["target"], t["goal"], t["measured"], t["status"]] for t in results["targets"]],
    )
    missed = [t for t in results["targets"] if t["why"]]
    if missed:
        lines += ["### Why the missed targets are missed", ""]
        lines += [f"- **{t['target']}** ({t['measured']}): {t['why']}" for t in missed]
        lines += [""]
    return lines


def notes(results: dict) -> list[str]:
    found = results.get("notes") or []
    return ["## Notes", ""] + [f"- {n}" for n in found] + [""] if found else []


def peak_text(peak: dict) -> str:
    text = f"{peak['gflops']:.0f} GFLOP/s"
    if peak.get("gflops_start") is not None:
        text += f" ({peak['gflops_start']:.0f} at the start, {peak['gflops_end']:.0f} at the end)"
    if peak.get("trusted") is False:
        text += " -- UNDER-MEASURED (an engine beat it): shares of peak withheld"
    return text


def load(run: dict) -> str:
    start, end = run.get("load_start"), run.get("load_end")
    text = "1/5/15-min load average " + (" / ".join(f"{v:.2f}" for v in start) if start else "?")
    text += " at start, " + (" / ".join(f"{v:.2f}" for v in end) if end else "?") + " at end"
    return text + (f"; {run['load_note']}" if run.get("load_note") else "")


def drift(results: dict) -> str:
    found = results.get("baseline_drift")
    if not found:
        return ""
    parts = [f"batch {b} {v['end_over_start']:.2f}x" for b, v in found.items()]
    return "; bare onnxruntime p50 re-timed after all other rows, end/start: " + ", ".join(parts)


def dense_macs(model: dict) -> int:
    return sum(v for k, v in model["macs_by_op"].items() if "Gemm" in k or "MatMul" in k)
