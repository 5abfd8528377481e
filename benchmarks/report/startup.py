"""Start-up and size: cold start (process start to first prediction), import times, and the
footprint of the runtime and toolkit venvs."""

from __future__ import annotations

from benchmarks.report.fmt import num, short, table

_NO_RT_VENV = " (runtime venv not built: full venv used)"


def cold_start(results: dict) -> list[str]:
    cs = results.get("cold_start")
    if not cs:
        return []
    lines = [
        "## Cold start (process start to first prediction printed)",
        "",
        f"Median of {cs['runtime']['reps']} runs after {cs['runtime']['warmup']} "
        f"unrecorded run(s) (warm page cache). Runtime from `{cs['runtime_venv']}`"
        f"{'' if cs['runtime_venv_is_runtime_only'] else _NO_RT_VENV}"
        "; `cifar-predict MODEL IMAGE --json`. TensorFlow path: `python -c <script>` "
        "that imports keras, loads the .keras model, decodes the PNG with Pillow and "
        "makes one direct call (the script is in the JSON). *runtime* is any load after the "
        "first on a machine (engine timings from the route cache, golden check run); "
        "*runtime_first_load* times the engines as the first load does "
        "(`CIFAR10_ROUTE_CACHE=off`).",
        "",
    ]
    rows = [
        [
            k,
            num(cs[k]["median_s"], "{:.3f}"),
            num(cs[k]["min_s"], "{:.3f}"),
            num(cs[k]["median_exit_s"], "{:.3f}"),
            f"`{short(cs[k]['command'])}`",
        ]
        for k in ("runtime", "runtime_first_load", "tensorflow", "python_startup")
        if k in cs
    ]
    return lines + table(["path", "median s", "min s", "to exit s", "command"], rows)


def import_times(results: dict) -> list[str]:
    imports = results.get("import_times")
    if not imports:
        return []
    rows = [[k, num(v, "{:.3f}")] for k, v in imports.items() if k != "python"]
    lines = ["Import time in a fresh interpreter (median, seconds):", ""]
    return lines + table(["import", "s"], rows)


def footprint(results: dict) -> list[str]:
    fp = results.get("footprint")
    if not fp or not (fp.get("runtime") or fp.get("toolkit")):
        return []
    lines = ["## Footprint (apparent size of the whole venv and of its site-packages)", ""]
    rows = []
    for k in ("runtime", "runtime_openvino", "toolkit"):
        v = fp.get(k)
        if v:
            big = ", ".join(f"{p['package']} {p['mb']:.0f}" for p in v["largest_packages"][:4])
            rows.append(
                [
                    k,
                    v["venv"],
                    num(v["venv_mb"], "{:.0f}"),
                    num(v["site_packages_mb"], "{:.0f}"),
                    big,
                ]
            )
        else:
            rows.append([k, "not built", "", "", ""])
    return lines + table(["venv", "path", "venv MB", "site-packages MB", "largest (MB)"], rows)
