"""The profiles: onnxruntime's operator profile and cProfile of the Predictor, one line each."""

from __future__ import annotations

from benchmarks.report.fmt import num


def profiles(results: dict) -> list[str]:
    prof = results.get("profiles")
    if not prof:
        return []
    lines = ["## Profiles", ""]
    for key, p in prof.items():
        if "ops" in p:
            ops = ", ".join(
                f"{o['op']} {100 * o['share_of_kernel_time']:.1f}%" for o in p["ops"][:6]
            )
            lines.append(
                f"- `{key}` (onnxruntime profiler, {p['runs']} runs at batch {p['batch']}): "
                f"{p['wall_s_per_run'] * 1e3:.3f} ms per run, "
                f"{100 * (p['outside_kernels_share'] or 0):.0f}% outside kernels; kernel "
                f"time: {ops}; Conv {num(p['conv_gflops'], '{:.0f}')} GFLOP/s, dense "
                f"{num(p['dense_gflops'], '{:.0f}')} GFLOP/s."
            )
        elif "top_self_time" in p:
            top = ", ".join(
                f"{t['function']} {t['self_us_per_call']:.1f} us" for t in p["top_self_time"][:5]
            )
            lines.append(
                f"- `{key}` (cProfile, {p['calls']} calls): "
                f"{100 * (p['inside_session_run_share'] or 0):.0f}% inside "
                f"InferenceSession.run; self time per call: {top} (cProfile inflates "
                "Python-side time)."
            )
    return lines + [""]
