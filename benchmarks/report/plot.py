"""The report's PNG: latency (p50 per call) and throughput against batch size, log-log."""

from __future__ import annotations

from pathlib import Path


def plot(path: Path, results: dict) -> None:
    """Latency (p50 per call) and throughput against batch size, log-log, one line per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cifar10_trainer.outputs import save_figure

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
    save_figure(fig, path)
