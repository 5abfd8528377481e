"""INT8: try the static QDQ recipes, keep the fastest that passes the gate, say what it costs.

`quantize_int8` quantizes the fp32 model with each recipe of `config.int8_recipes` (see
`int8_recipes`), checks each against the fp32 ONNX model on the check images (top-1
agreement >= 98% on the dataset images, accuracy drop <= 1 point on the labelled ones),
measures each one's images/s here, and keeps the fastest that passes; recipes that build the
same graph run at the same speed, so among those the most faithful one wins. The returned
Report holds the recipe table, the choice, the CPU's int8 features and the speed-up; when no
recipe passes it fails naming the best one's figures. The uint8 `image` input is kept, so
the contract holds; the metadata of the fp32 model is copied over.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cifar10_exporter.checks.parity import (
    Report,
    check_versions,
    contract_checks,
    make_runner,
    run_batched,
)
from cifar10_exporter.checks.samples import Samples, calibration_images
from cifar10_exporter.checks.thresholds import INT8_MAX_ACCURACY_DROP, INT8_MIN_AGREEMENT
from cifar10_exporter.config import ExportConfig
from cifar10_exporter.int8.recipes import RECIPES, Recipe, quantize_recipe
from cifar10_exporter.int8.speed import (
    FASTER,
    compare_speed,
    cpu_int8_features,
    images_per_s,
    speed_verdict,
)
from cifar10_exporter.outputs.metadata import get_metadata, set_int8_metadata
from cifar10_runtime.errors import CifarError, ModelError
from cifar10_trainer.run import Run

Log = Callable[[str], None]


def _metrics(fp32: np.ndarray, int8: np.ndarray, samples: Samples) -> dict:
    """Agreement on the dataset images, accuracy on the labelled ones, |diff| everywhere."""
    n = int(samples.n_dataset)
    p32, p8 = fp32[:n].argmax(axis=1), int8[:n].argmax(axis=1)
    labelled = samples.labelled[:n]
    out = {
        "top1_agreement": float((p32 == p8).mean()) if n else float("nan"),
        "differ": int((p32 != p8).sum()),
        "max_abs_diff": float(np.abs(int8 - fp32).max()),
        "mean_abs_diff": float(np.abs(int8 - fp32).mean()),
        "n_labelled": int(labelled.sum()),
    }
    if labelled.any():
        truth = samples.labels[:n][labelled]
        acc32, acc8 = float((p32[labelled] == truth).mean()), float((p8[labelled] == truth).mean())
        out.update(accuracy_fp32=acc32, accuracy_int8=acc8, accuracy_drop=acc32 - acc8)
    return out


def _gate(report: Report, m: dict, n: int, min_agreement: float, max_drop: float) -> None:
    report.add(
        "top-1 agreement with fp32",
        m["top1_agreement"] >= min_agreement,
        f"{100 * m['top1_agreement']:.2f}% ({m['differ']} of {n} differ; "
        f"need >= {100 * min_agreement:g}%)",
    )
    if "accuracy_drop" not in m:
        report.add("accuracy drop", True, "accuracy not measured (no labelled images)")
        return
    report.add(
        "accuracy drop",
        m["accuracy_drop"] <= max_drop + 1e-12,
        f"{100 * m['accuracy_drop']:.2f} points (fp32 {100 * m['accuracy_fp32']:.2f}%, "
        f"int8 {100 * m['accuracy_int8']:.2f}%; need <= {100 * max_drop:g})",
    )


def _new_report(samples: Samples, min_agreement: float, max_drop: float) -> Report:
    tolerances = {"min_top1_agreement": min_agreement, "max_accuracy_drop": max_drop}
    return Report(
        "int8",
        samples.dataset_source,
        int(samples.n_dataset),
        tolerances,
        versions=check_versions(),
    )


def check_int8(
    fp32_model: bytes,
    int8_model: bytes,
    samples: Samples,
    *,
    min_agreement: float = INT8_MIN_AGREEMENT,
    max_accuracy_drop: float = INT8_MAX_ACCURACY_DROP,
    threads: int | None = None,
    fp32_probs: np.ndarray | None = None,
) -> Report:
    """Top-1 agreement with fp32 and accuracy drop on `samples`; a Report, never raises."""
    report = _new_report(samples, min_agreement, max_accuracy_drop)
    contract_checks(report, int8_model)
    if fp32_probs is None:
        fp32_probs = run_batched(make_runner(fp32_model, threads), samples.images, 0)
    try:
        int8 = run_batched(make_runner(int8_model, threads), samples.images, 0)
    except CifarError as exc:  # the runtime refuses the quantized graph
        report.add("runtime runs the int8 model", False, str(exc))
        return report
    m = _metrics(fp32_probs, int8, samples)
    report.stats.update({k: v for k, v in m.items() if k != "differ"})
    report.stats["size_bytes"] = {"fp32": len(fp32_model), "int8": len(int8_model)}
    _gate(report, m, int(samples.n_dataset), min_agreement, max_accuracy_drop)
    return report


def check_twin(
    fp32_model: bytes,
    int8_model: bytes,
    samples: Samples,
    config: ExportConfig,
    fp32_probs: np.ndarray | None = None,
) -> Report:
    """`check_int8` with the export's thresholds and threads (the recipe search and
    --verify-only check a twin the same way)."""
    return check_int8(
        fp32_model,
        int8_model,
        samples,
        min_agreement=config.int8_min_agreement,
        max_accuracy_drop=config.int8_max_accuracy_drop,
        threads=config.threads,
        fp32_probs=fp32_probs,
    )


def _row_text(row: dict) -> str:
    if "error" in row:
        return f"  {row['recipe']:<30} error: {row['error']}"
    drop = row.get("accuracy_drop")
    drop_text = "n/a" if drop is None else f"{100 * drop:+.2f}"
    return (
        f"  {row['recipe']:<30} {100 * row['top1_agreement']:6.2f}%  {drop_text:>6} pts  "
        f"{row['images_per_s']:8.0f} img/s  {'pass' if row['passed'] else 'FAIL'}"
    )


def _time_structures(rows, models, fp32_model, images, threads, rounds: int = 3) -> float:
    """images/s at batch 256 of fp32 and of one model per graph structure, timed in
    alternation (best of `rounds`) so that load from other processes hits all alike; every
    row gets its structure's figure. Returns fp32's."""
    reps: dict[tuple, bytes] = {}
    for row in rows:
        if row["recipe"] in models:
            reps.setdefault(row["structure"], models[row["recipe"]][0])
    best: dict = {}
    for _ in range(rounds):
        for key, model in [("fp32", fp32_model), *reps.items()]:
            speed = images_per_s(model, images, threads=threads, repeats=2)
            best[key] = max(best.get(key, 0.0), speed)
    for row in rows:
        if row["structure"] in best:
            row["images_per_s"] = best[row["structure"]]
            row["speedup"] = row["images_per_s"] / best["fp32"]
    return best["fp32"]


def _choose(rows: list[dict]) -> dict | None:
    """The fastest passing recipe; a recipe's speed is its structure's best timing (same
    graph, same speed), and within timing noise the higher agreement wins."""
    ok = [r for r in rows if r.get("passed")]
    if not ok:
        return None
    speed: dict[tuple, float] = {}
    for r in rows:
        if "images_per_s" in r:
            speed[r["structure"]] = max(speed.get(r["structure"], 0.0), r["images_per_s"])
    top = max(speed[r["structure"]] for r in ok)
    near = [r for r in ok if speed[r["structure"]] * FASTER >= top]
    return max(near, key=lambda r: (r["top1_agreement"], -r.get("accuracy_drop", 0.0)))


def _best_failed(rows: list[dict]) -> dict | None:
    tried = [r for r in rows if "top1_agreement" in r]
    return max(tried, key=lambda r: (r["top1_agreement"], -r.get("accuracy_drop", 0)), default=None)


def quantize_int8(
    fp32_model: bytes,
    samples: Samples,
    config: ExportConfig,
    log: Log = print,
    *,
    calibration: tuple[np.ndarray, str] | None = None,
    fp32_probs: np.ndarray | None = None,
    run: Run | None = None,
) -> tuple[bytes | None, Report]:
    """Search the recipes; returns (int8 model bytes, its Report). The bytes are the chosen
    recipe's model, or the best failing one's (for --force) with a failed Report; None when
    no recipe could even be built."""
    import onnx

    recipes = [RECIPES[name] for name in config.int8_recipes]
    most = config.calibration_samples * max(r.calibration_factor for r in recipes)
    images, where = calibration or calibration_images(config.replace(calibration_samples=most), run)
    threads = config.threads
    check_images = samples.images[: samples.n_dataset] if samples.n_dataset else samples.images
    if fp32_probs is None:
        fp32_probs = run_batched(make_runner(fp32_model, threads), samples.images, 0)
    cpu = cpu_int8_features()
    log(f"int8: trying {len(recipes)} static QDQ recipes ({cpu['cpu']}; {cpu['summary']})")
    rows, models = [], {}
    for i, recipe in enumerate(recipes, start=1):
        row: dict = {"recipe": recipe.name, "structure": recipe.structure}
        try:
            proto = quantize_recipe(fp32_model, _spread(images, recipe, config), recipe)
            data = proto.SerializeToString()
            report = check_twin(fp32_model, data, samples, config, fp32_probs)
            row.update(report.stats, passed=report.passed)
            models[recipe.name] = (data, report)
            log(f"  [{i}/{len(recipes)}] {recipe.name}: {100 * row['top1_agreement']:.2f}% agree")
        except ModelError as exc:
            row.update(passed=False, error=str(exc)[:200])
            log(f"  [{i}/{len(recipes)}] {recipe.name}: {row['error']}")
        rows.append(row)
    fp32_speed = _time_structures(rows, models, fp32_model, check_images, threads)
    log(f"  {'recipe':<30} {'agree':>7}  {'drop':>6} pts  {'speed (batch 256)':>14}")
    log(f"  {'fp32':<30} {'':>7}  {'':>6}      {fp32_speed:8.0f} img/s")
    for row in rows:
        log(_row_text(row))
    if not models:
        raise ModelError(
            f"no int8 recipe could be built ({rows[0]['recipe']}: {rows[0]['error']}); try "
            f"other --int8-recipes, or export without --quantize. "
            f"Received: --int8-recipes={','.join(config.int8_recipes)}"
        )
    chosen = _choose(rows)
    pick = chosen or _best_failed(rows)
    data, report = models[pick["recipe"]]
    report.stats["fp32_images_per_s"] = fp32_speed
    _finish_report(
        report, rows, pick, chosen is not None, (fp32_model, data), check_images, cpu, threads
    )
    if chosen is not None:
        log(
            f"int8: chose {pick['recipe']}, the fastest recipe that passes; "
            f"{report.stats['verdict']}"
        )
    proto = onnx.load_model_from_string(data)
    recipe = RECIPES[pick["recipe"]]
    used = len(_spread(images, recipe, config))
    where = where if used == len(images) else f"{used} evenly spread of the {where}"
    report.stats["calibration"] = where
    _copy_metadata(proto, fp32_model, recipe, where, report.stats)
    return proto.SerializeToString(), report


def _spread(images: np.ndarray, recipe: Recipe, config: ExportConfig) -> np.ndarray:
    n = min(len(images), config.calibration_samples * recipe.calibration_factor)
    return images[np.linspace(0, len(images) - 1, n).round().astype(int)]


def _finish_report(report, rows, pick, passed, models, check_images, cpu, threads=None) -> None:
    """Recipe table, choice, speed-up at batch 32 and 256 and the CPU into the Report."""
    fp32_model, data = models
    # Batch 256 was timed with every structure; batch 32 only for the chosen model.
    f256 = report.stats.get("fp32_images_per_s") or 0.0
    i256 = pick.get("images_per_s") or 0.0
    speedups = {
        "32": compare_speed(fp32_model, data, check_images, batch=32, threads=threads),
        "256": {
            "fp32_images_per_s": f256,
            "int8_images_per_s": i256,
            "speedup": i256 / f256 if f256 else 0.0,
        },
    }
    verdict = speed_verdict(speedups["256"]["speedup"], cpu)
    table = [{k: v for k, v in r.items() if k != "structure"} for r in rows]
    report.stats.update(
        recipe=pick["recipe"],
        recipe_settings=RECIPES[pick["recipe"]].describe(),
        recipes=table,
        speed=speedups,
        cpu=cpu,
        verdict=verdict,
        int8_recommended=speedups["256"]["speedup"] >= FASTER,
    )
    n = len(rows)
    if passed:
        detail = f"{pick['recipe']}: the fastest of the recipes that pass ({n} tried)"
    else:
        drop = pick.get("accuracy_drop")
        detail = (
            f"none of {n} recipes passes; best {pick['recipe']}: agreement "
            f"{100 * pick['top1_agreement']:.2f}%, accuracy drop "
            f"{'n/a' if drop is None else f'{100 * drop:.2f} points'}, "
            f"{pick['images_per_s']:.0f} img/s ({pick['speedup']:.2f}x fp32)"
        )
    report.add("recipe search", passed, detail)


def _copy_metadata(proto, fp32_model: bytes, recipe: Recipe, where: str, stats: dict) -> None:
    import onnx

    settings = {
        **recipe.settings(),
        "calibration": where,
        "speedup_vs_fp32": {b: round(s["speedup"], 3) for b, s in stats["speed"].items()},
        "cpu": f"{stats['cpu']['cpu']}; {stats['cpu']['summary']}",
    }
    set_int8_metadata(proto, get_metadata(onnx.load_model_from_string(fp32_model)), settings)
