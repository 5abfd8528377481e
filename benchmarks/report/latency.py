"""The inference latency and throughput table (one row per engine and batch size)."""

from __future__ import annotations

from benchmarks.report.fmt import num, table

HEAD = [
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
]


def latency(results: dict, png_name: str) -> list[str]:
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
                num(r["p50_ms"], "{:.3f}"),
                num(r["p90_ms"], "{:.3f}"),
                num(r["p99_ms"], "{:.3f}"),
                f"{min(rp):.3f}-{max(rp):.3f}",
                num(r["images_per_s"], "{:,.0f}"),
                num(r.get("p50_vs_ort"), "{:.2f}x"),
                num(r.get("share_of_peak"), "{:.1%}"),
                str(r["runs"]),
            ]
        )
    lines += table(HEAD, rows)
    lines += ["Engines:", ""]
    seen = set()
    for r in results["latency"]:
        if r["engine"] not in seen:
            seen.add(r["engine"])
            lines.append(f"- `{r['engine']}`: {r['description']}")
    return lines + [""]
