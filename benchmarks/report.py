"""Write a run's results: raw JSON, a Markdown report, and the latency plot (PNG)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cifar10_runtime.files import atomic_path, write_text

REPO = Path(__file__).resolve().parent.parent


def _portable(text: str) -> str:
    """Paths inside the clone become relative, ../shared stays ../shared: the committed report
    should not carry one machine's checkout location."""
    return text.replace(str(REPO) + "/", "").replace(str(REPO.parent / "shared"), "../shared")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: Path, results: dict) -> None:
    write_text(path, _portable(json.dumps(results, indent=2, default=_jsonable) + "\n"))


def write_markdown(path: Path, results: dict, png_name: str) -> None:
    write_text(path, _portable(markdown(results, png_name)))


def _f(value: Any, fmt: str = "{:.2f}", none: str = "n/a") -> str:
    return none if value is None else fmt.format(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def markdown(results: dict, png_name: str) -> str:
    m, run = results["machine"], results["run"]
    cpu, peak = m["cpu"], m["peak"]
    flags = ", ".join(k for k, v in cpu["flags"].items() if v) or "none"
    model = results["model"]
    data = results["data"]
    lines = [
        f"# Benchmark `{run['name']}`: {run['mode']} run, {run['finished_utc']}",
        "",
        *(f"> **{w}**" for w in results.get("warnings") or []),
        *([""] if results.get("warnings") else []),
        f"- **Machine**: {cpu.get('lscpu_model') or cpu['model']}, {cpu['usable_cpus']} usable "
        f"cores, {cpu.get('memory_gib')} GiB; flags {flags}"
        f"{' (VM)' if cpu.get('hypervisor') else ''}",
        f"- **Load**: {_load(run)}{_drift(results)}",
        f"- **Threads**: {run['threads']} intra-op threads for every engine "
        f"(onnxruntime, TensorFlow, OpenBLAS); onnxruntime inter-op 1 (sequential).",
        "- **Versions**: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
        f"- **Data**: training and export on {data['description']}; inference on "
        f"{data.get('inference_images', 'n/a')}",
        f"- **Model**: {model['onnx']} ({model['flops_per_image'] / 1e6:.1f} MFLOP per image "
        f"from the ONNX graph: Conv {model['macs_by_op'].get('Conv', 0) / 1e6:.1f} M MACs, "
        f"dense {_dense(model) / 1e6:.2f} M MACs; {model['parameters']:,} parameters)"
        f"{'; INT8: ' + str(model['int8']) if model.get('int8') else ''}",
        f"- **Peak**: {_peak(peak)}, best of {peak['reps']} float32 "
        f"{peak['size']}x{peak['size']} numpy matmuls ({m.get('blas', {}).get('name')}) in the "
        "same process with the same threads, before and after the latency rows.",
        f"- **Timing**: {run['budget']}",
        "",
        "## Targets (reported, not asserted)",
        "",
    ]
    lines += _table(
        ["target", "goal", "measured", "status"],
        [[t["target"], t["goal"], t["measured"], t["status"]] for t in results["targets"]],
    )
    missed = [t for t in results["targets"] if t["why"]]
    if missed:
        lines += ["### Why the missed targets are missed", ""]
        lines += [f"- **{t['target']}** ({t['measured']}): {t['why']}" for t in missed]
        lines += [""]
    lines += _latency_section(results, png_name)
    lines += _other_sections(results)
    notes = results.get("notes") or []
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def _peak(peak: dict) -> str:
    text = f"{peak['gflops']:.0f} GFLOP/s"
    if peak.get("gflops_start") is not None:
        text += f" ({peak['gflops_start']:.0f} at the start, {peak['gflops_end']:.0f} at the end)"
    if peak.get("trusted") is False:
        text += " -- UNDER-MEASURED (an engine beat it): shares of peak withheld"
    return text


def _load(run: dict) -> str:
    start, end = run.get("load_start"), run.get("load_end")
    text = "1/5/15-min load average " + (" / ".join(f"{v:.2f}" for v in start) if start else "?")
    text += " at start, " + (" / ".join(f"{v:.2f}" for v in end) if end else "?") + " at end"
    return text + (f"; {run['load_note']}" if run.get("load_note") else "")


def _drift(results: dict) -> str:
    drift = results.get("baseline_drift")
    if not drift:
        return ""
    parts = [f"batch {b} {v['end_over_start']:.2f}x" for b, v in drift.items()]
    return "; bare onnxruntime p50 re-timed after all other rows, end/start: " + ", ".join(parts)


def _dense(model: dict) -> int:
    return sum(v for k, v in model["macs_by_op"].items() if "Gemm" in k or "MatMul" in k)


def _latency_section(results: dict, png_name: str) -> list[str]:
    lines = [
        "## Inference latency and throughput",
        "",
        f"![latency against batch size]({png_name})",
        "",
        "Latency is per call (the whole batch). *vs ORT* divides p50 by bare onnxruntime's "
        "at the same batch size; *% peak* is images/s x FLOPs/image over the matmul peak "
        "(the INT8 rows are compared with the same float32 peak). Samples are pooled over "
        "interleaved rounds; *round p50s* is the range of the per-round p50s, i.e. how "
        "much the machine's speed moved during the run.",
        "",
    ]
    rows = []
    for r in results["latency"]:
        rp = r.get("round_p50_ms") or [r["p50_ms"]]
        rows.append(
            [
                r["engine"],
                str(r["batch"]),
                _f(r["p50_ms"], "{:.3f}"),
                _f(r["p90_ms"], "{:.3f}"),
                _f(r["p99_ms"], "{:.3f}"),
                f"{min(rp):.3f}-{max(rp):.3f}",
                _f(r["images_per_s"], "{:,.0f}"),
                _f(r.get("p50_vs_ort"), "{:.2f}x"),
                _f(r.get("share_of_peak"), "{:.1%}"),
                str(r["runs"]),
            ]
        )
    lines += _table(
        [
            "engine",
            "batch",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "round p50s ms",
            "images/s",
            "vs ORT",
            "% peak",
            "runs",
        ],
        rows,
    )
    lines += ["Engines:", ""]
    seen = set()
    for r in results["latency"]:
        if r["engine"] not in seen:
            seen.add(r["engine"])
            lines.append(f"- `{r['engine']}`: {r['description']}")
    return lines + [""]


_NO_RT_VENV = " (runtime venv not built: full venv used)"


def _other_sections(results: dict) -> list[str]:
    lines: list[str] = []
    cs = results.get("cold_start")
    if cs:
        lines += [
            "## Cold start (process start to first prediction printed)",
            "",
            f"Median of {cs['runtime']['reps']} runs after {cs['runtime']['warmup']} "
            f"unrecorded run(s) (warm page cache). Runtime from `{cs['runtime_venv']}`"
            f"{'' if cs['runtime_venv_is_runtime_only'] else _NO_RT_VENV}"
            "; `cifar-predict MODEL IMAGE --json`. TensorFlow path: `python -c <script>` "
            "that imports keras, loads the .keras model, decodes the PNG with Pillow and "
            "makes one direct call (the script is in the JSON).",
            "",
        ]
        rows = [
            [
                k,
                _f(cs[k]["median_s"], "{:.3f}"),
                _f(cs[k]["min_s"], "{:.3f}"),
                _f(cs[k]["median_exit_s"], "{:.3f}"),
                f"`{_short(cs[k]['command'])}`",
            ]
            for k in ("runtime", "tensorflow", "python_startup")
        ]
        lines += _table(["path", "median s", "min s", "to exit s", "command"], rows)
    imports = results.get("import_times")
    if imports:
        rows = [[k, _f(v, "{:.3f}")] for k, v in imports.items() if k != "python"]
        lines += ["Import time in a fresh interpreter (median, seconds):", ""]
        lines += _table(["import", "s"], rows)
    fp = results.get("footprint")
    if fp and (fp.get("runtime") or fp.get("toolkit")):
        lines += ["## Footprint (apparent size of the whole venv and of its site-packages)", ""]
        rows = []
        for k in ("runtime", "toolkit"):
            v = fp.get(k)
            if v:
                big = ", ".join(f"{p['package']} {p['mb']:.0f}" for p in v["largest_packages"][:4])
                rows.append(
                    [
                        k,
                        v["venv"],
                        _f(v["venv_mb"], "{:.0f}"),
                        _f(v["site_packages_mb"], "{:.0f}"),
                        big,
                    ]
                )
            else:
                rows.append([k, "not built", "", "", ""])
        lines += _table(["venv", "path", "venv MB", "site-packages MB", "largest (MB)"], rows)
    srv = results.get("server")
    if srv:
        lines += [
            "## Server (on 127.0.0.1: cifar-serve, minimal handler, naive, KServe, MLServer)",
            "",
            "Load: benchmarks/loadgen.py (asyncio, keep-alive sockets, one thread) on the same "
            "cores as the server, so these are lower bounds for a server on its own machine. "
            "naive_baseline: one session.run per request, no batcher; minimal_*: the minimal "
            "Starlette handler; MLServer's REST has no binary tensors (JSON rows only).",
            "",
        ]
        rows = []
        for mode, v in srv["modes"].items():
            for r in v["results"]:
                rows.append(
                    [
                        mode,
                        str(r["clients"]),
                        _f(r["requests_per_s"], "{:.0f}"),
                        _f(r["p50_ms"]),
                        _f(r["p99_ms"]),
                        str(r["requests"]),
                        str(r["errors"]),
                    ]
                )
        lines += _table(
            ["mode", "clients", "req/s", "p50 ms", "p99 ms", "requests", "errors"], rows
        )
        lines += [f"- {line}" for line in srv.get("summary", {}).get("lines", [])]
        lines += [f"- {note}" for note in srv.get("notes", [])] + [""]
    tr = results.get("training")
    if tr:
        lines += ["## Training throughput (same network, same epochs, same batch size 32)", ""]
        labels = (
            ("cifar_train", "cifar-train (tf.data, checkpoints, op determinism)"),
            ("plain_fit", "plain model.fit on float32 arrays (reference)"),
            ("plain_fit_deterministic", "the same plain model.fit with op determinism"),
        )
        trows = []
        for key, label in labels:
            v = tr.get(key)
            if v:
                every = ", ".join(f"{x:.0f}" for x in v.get("all_images_per_s", []))
                trows.append(
                    [
                        label,
                        _f(v["train_images_per_s"], "{:.0f}"),
                        every,
                        _f(v["train_seconds"], "{:.1f}"),
                        str(v["epochs"]),
                        _f(v["process_wall_s"], "{:.1f}"),
                    ]
                )
        lines += _table(
            ["path", "best images/s", "every run", "train s", "epochs", "process s"], trows
        )
        lines += [
            f"cifar-train / plain fit: {tr['cifar_train_over_plain_fit']:.2f}x "
            "(images/s counts training steps only, validation excluded, first epoch "
            "with its graph tracing included, for every row)."
            + (
                f" Op determinism alone: {tr['determinism_cost']:.2f}x of the plain fit's speed."
                if tr.get("determinism_cost")
                else ""
            ),
            "",
        ]
    lines += _strategy_lines(results.get("training_strategies"))
    prof = results.get("profiles")
    if prof:
        lines += ["## Profiles", ""]
        for key, p in prof.items():
            if "ops" in p:
                ops = ", ".join(
                    f"{o['op']} {100 * o['share_of_kernel_time']:.1f}%" for o in p["ops"][:6]
                )
                lines.append(
                    f"- `{key}` (onnxruntime profiler, {p['runs']} runs at batch {p['batch']}): "
                    f"{p['wall_s_per_run'] * 1e3:.3f} ms per run, "
                    f"{100 * (p['outside_kernels_share'] or 0):.0f}% outside kernels; kernel "
                    f"time: {ops}; Conv {_f(p['conv_gflops'], '{:.0f}')} GFLOP/s, dense "
                    f"{_f(p['dense_gflops'], '{:.0f}')} GFLOP/s."
                )
            elif "top_self_time" in p:
                top = ", ".join(
                    f"{t['function']} {t['self_us_per_call']:.1f} us"
                    for t in p["top_self_time"][:5]
                )
                lines.append(
                    f"- `{key}` (cProfile, {p['calls']} calls): "
                    f"{100 * (p['inside_session_run_share'] or 0):.0f}% inside "
                    f"InferenceSession.run; self time per call: {top} (cProfile inflates "
                    "Python-side time)."
                )
        lines.append("")
    return lines


def _short(cmd: str, width: int = 90) -> str:
    cmd = cmd.replace("\n", " ")
    return cmd if len(cmd) <= width else cmd[: width - 3] + "..."


def plot(path: Path, results: dict) -> None:
    """Latency (p50 per call) and throughput against batch size, log-log, one line per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_tp) = plt.subplots(1, 2, figsize=(13, 5.5))
    engines: dict[str, list[dict]] = {}
    for r in results["latency"]:
        engines.setdefault(r["engine"], []).append(r)
    for name, rows in engines.items():
        rows.sort(key=lambda r: r["batch"])
        style = (
            "--" if rows[0]["family"] == "keras" else ("-." if rows[0]["model"] == "int8" else "-")
        )
        xs = [r["batch"] for r in rows]
        ax.plot(xs, [r["p50_ms"] for r in rows], style, marker="o", label=name)
        ax_tp.plot(xs, [r["images_per_s"] for r in rows], style, marker="o", label=name)
    peak = results["machine"]["peak"]
    flops = results["model"]["flops_per_image"]
    batches = sorted({r["batch"] for r in results["latency"]})
    if peak.get("trusted", True):  # an under-measured peak would draw the bound below the data
        gflops = peak["gflops"]
        floor = f"compute bound at the {gflops:.0f} GFLOP/s matmul peak"
        ax.plot(
            batches,
            [b * flops / (gflops * 1e9) * 1e3 for b in batches],
            ":",
            color="black",
            label=floor,
        )
        ax_tp.axhline(gflops * 1e9 / flops, linestyle=":", color="black", label=floor)
    run = results["run"]
    data = " (SYNTHETIC data)" if results["data"].get("synthetic") else ""
    for axis, ylabel in (
        (ax, "p50 latency per call (ms, log scale)"),
        (ax_tp, "images/s (log scale)"),
    ):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xticks(batches, [str(b) for b in batches])
        axis.set_xlabel("batch size (images per call)")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
    ax.set_title("Latency against batch size")
    ax_tp.set_title("Throughput against batch size")
    ax.legend(fontsize=8)
    busy = " -- BUSY MACHINE" if results.get("warnings") else ""
    fig.suptitle(f"CIFAR-10 inference, {run['threads']} threads, {run['name']}{data}{busy}")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)


def _strategy_lines(rows: dict | None) -> list[str]:
    """Training images/s per tf.distribute strategy, at one global batch."""
    if not rows or "none" not in rows:
        return []
    trows = [
        [
            name.replace("_", " "),
            str(r.get("workers")),
            str(r.get("replicas")),
            str(r.get("global_batch")),
            _f(r["train_images_per_s"], "{:.0f}"),
            _f(r.get("relative_to_none"), "{:.2f}x"),
            _f(r.get("test_accuracy"), "{:.3f}"),
        ]
        for name, r in rows.items()
    ]
    head = ["strategy", "workers", "replicas", "global batch", "images/s", "vs none", "test acc"]
    return [
        "## Training by strategy (same recipe, same global batch)",
        "",
        *_table(head, trows),
        "On a 2-core machine this is a correctness figure, not a speed-up: every replica and "
        "worker shares the same two cores, so the rows show that each path trains and what "
        "distribution costs (all-reduce per step, gRPC between worker processes).",
        "",
    ]
