"""Training rows per precision: the default recipe at float32, mixed_bfloat16 and
the default (`auto`), same data and seed, interleaved rounds, images/s and test accuracy."""

from __future__ import annotations

from pathlib import Path

from benchmarks.training.speed import DEFAULT_CONFIG, REPO, best_of, cifar_train, cpu_ratio


def cpu_has_bf16() -> bool:
    from cifar10_trainer.precision import BF16_FLAGS, cpu_flags

    return bool(set(BF16_FLAGS) & (cpu_flags() or frozenset()))


def precisions(
    data_dir: Path | None, epochs: int, work: Path, env: dict[str, str], repeats: int = 2
) -> dict:
    """The default recipe (configs/default.toml) per training precision, same data and seed:
    float32, mixed_bfloat16 (on every CPU: without BF16 instructions it shows the loss that
    makes `auto` avoid it) and the default, `auto`. Rounds interleave the rows, the best round
    of each is kept; images/s and test accuracy, with each row's ratio to float32.
    mixed_float16 needs a GPU and is recorded as not run on a CPU-only machine."""
    names = ("float32", "mixed_bfloat16", "auto")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            prec = None if name == "auto" else name
            runs[name].append(
                cifar_train(
                    data_dir,
                    epochs,
                    work / f"precision-{name}-{i}",
                    env,
                    precision=prec,
                    config=DEFAULT_CONFIG,
                )
            )
    rows = {name: best_of(r) for name, r in runs.items()}
    base = rows["float32"]["train_images_per_s"]
    for row in rows.values():
        row["over_float32"] = row["train_images_per_s"] / base if base else None
        row["over_float32_cpu"] = cpu_ratio(row, rows["float32"])
    return {
        "recipe": str(DEFAULT_CONFIG.relative_to(REPO)),
        "epochs": epochs,
        "cpu_has_bf16": cpu_has_bf16(),
        "rows": rows,
        "not_run": {"mixed_float16": "needs a GPU of compute capability >= 7.0; none here"},
    }


def precision_lines(section: dict | None) -> list[str]:
    """The Markdown of `precisions` (called by the report, which owns the page)."""
    if not section or not section.get("rows"):
        return []
    lines = [
        f"## Training precision ({section['recipe']}, {section['epochs']} epoch(s), same seed)",
        "",
        "| precision | ran as | images/s (best) | every run | vs float32 | images per CPU s "
        "| vs float32 (CPU s) | test accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in section["rows"].items():
        every = ", ".join(f"{x:.0f}" for x in r.get("all_images_per_s", []))
        ratio, cpu_ratio = r.get("over_float32"), r.get("over_float32_cpu")
        acc, cpu = r.get("test_accuracy"), r.get("best_images_per_cpu_s")
        lines.append(
            f"| {name} | {r.get('precision')} ({r.get('precision_reason')}) | "
            f"{r['train_images_per_s']:.0f} | {every} | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}x'} | "
            f"{'n/a' if cpu is None else f'{cpu:.0f}'} | "
            f"{'n/a' if cpu_ratio is None else f'{cpu_ratio:.2f}x'} | "
            f"{'n/a' if acc is None else f'{acc:.3f}'} |"
        )
    for name, why in (section.get("not_run") or {}).items():
        lines.append(f"| {name} | not run: {why} | | | | | | |")
    lines += [
        "",
        "Images per CPU second count the training process's CPU time over the training steps "
        "(every thread): on a shared machine the steadier ratio; wall-time images/s move with "
        "the other load.",
    ]
    return [*lines, ""]


def targets(results: dict, target) -> list[dict]:  # noqa: ANN001 - targets._target
    """The training-precision targets from this run's rows (`target` builds one verdict)."""
    from cifar10_trainer.precision import cpu_flags

    out = []
    rows = (results.get("training_precisions") or {}).get("rows") or {}
    auto, f32 = rows.get("auto"), rows.get("float32")
    amx = "amx_bf16" in (cpu_flags() or frozenset())
    ratio = (auto.get("over_float32_cpu") or auto.get("over_float32")) if auto and f32 else None
    out.append(
        target(
            "Default cifar-train vs --precision float32 (default recipe)",
            ">= 1.6x images/s on a CPU with AMX-BF16",
            ratio,
            "{:.2f}x" + (" per CPU second" if auto and auto.get("over_float32_cpu") else ""),
            None if ratio is None or not amx else ratio >= 1.6,
            f"auto ran {auto.get('precision')} ({auto.get('precision_reason')})." if auto else "",
        )
    )
    if auto and not cpu_has_bf16():
        out.append(
            target(
                "auto on a CPU without BF16",
                "picks float32",
                None,
                "",
                auto.get("precision") == "float32",
                f"auto picked {auto.get('precision')}",
            )
        )
    tr = results.get("training") or {}
    over = tr.get("cifar_train_over_plain_fit")
    out.append(
        target(
            "cifar-train float32 vs a plain model.fit",
            ">= 0.98x images/s",
            over,
            "{:.2f}x"
            + (
                f" ({tr['cifar_train_over_plain_fit_cpu']:.2f}x per CPU second)"
                if tr.get("cifar_train_over_plain_fit_cpu")
                else ""
            ),
            None if over is None else over >= 0.98,
            "wall-time images/s on a shared machine move with the other load; the per CPU "
            "second ratio in the training section is the steadier figure."
            if over
            else "",
        )
    )
    return out
