"""INT8: try the static QDQ recipes, keep the fastest that passes the gate, say what it costs.

`quantize_int8` quantizes the fp32 model with each recipe of `config.int8_recipes` (see
`int8.recipes`), checks each against the fp32 ONNX model on the check images (int8.check:
top-1 agreement >= 98% on the dataset images, accuracy drop <= 1 point on the labelled ones),
measures each one's images/s here, and keeps the fastest that passes; recipes that build the
same graph run at the same speed, so among those the most faithful one wins. The returned
Report holds the recipe table, the choice, the CPU's int8 features and the speed-up; when no
recipe passes it fails naming the best one's figures. The uint8 `image` input is kept, so
the contract holds; the metadata of the fp32 model is copied over.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cifar10_exporter.checks.agreement import agrees, keeps_accuracy
from cifar10_exporter.checks.parity import Report, make_runner, run_batched
from cifar10_exporter.checks.samples import Samples, calibration_images
from cifar10_exporter.config import ExportConfig
from cifar10_exporter.int8.check import check_twin
from cifar10_exporter.int8.recipes import RECIPES, Recipe, quantize_recipe
from cifar10_exporter.int8.speed import (
    INT8_SPEED_BATCH,
    SPEEDUP_NOISE,
    best_speeds,
    compare_speed,
    cpu_int8_features,
    speed_verdict,
)
from cifar10_exporter.outputs.metadata import get_metadata, set_int8_metadata
from cifar10_runtime.errors import ModelError
from cifar10_trainer.run import Run

Log = Callable[[str], None]


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
    """images/s at INT8_SPEED_BATCH of fp32 and of one model per graph structure, timed in
    alternation (best of `rounds`) so that load from other processes hits all alike; every
    row gets its structure's figure. Returns fp32's."""
    reps: dict[tuple, bytes] = {}
    for row in rows:
        if row["recipe"] in models:
            reps.setdefault(row["structure"], models[row["recipe"]][0])
    best = best_speeds({"fp32": fp32_model, **reps}, images, threads=threads, rounds=rounds)
    for row in rows:
        if row["structure"] in best:
            row["images_per_s"] = best[row["structure"]]
            row["speedup"] = row["images_per_s"] / best["fp32"]
    return best["fp32"]


def choose_recipe(rows: list[dict]) -> dict | None:
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
    near = [r for r in ok if speed[r["structure"]] * SPEEDUP_NOISE >= top]
    return max(near, key=lambda r: (r["top1_agreement"], -r.get("accuracy_drop", 0.0)))


def _best_failed(rows: list[dict]) -> dict | None:
    tried = [r for r in rows if "top1_agreement" in r]
    return max(tried, key=lambda r: (r["top1_agreement"], -r.get("accuracy_drop", 0)), default=None)


def no_pass_line(rows: list[dict], config: ExportConfig) -> str:
    """The one line `--quantize auto` logs when no recipe passes: the recipes tried and how
    far the best one is from the gate."""
    best = _best_failed(rows)
    if best is None:
        why = f"none could be built ({rows[0].get('error', '?') if rows else 'no recipe'})"
    else:
        agree, drop = best["top1_agreement"], best.get("accuracy_drop")
        ok = agrees(agree, config.int8_min_agreement)
        parts = [
            f"{100 * agree:.2f}% agreement {'>=' if ok else '<'} "
            f"{100 * config.int8_min_agreement:g}%"
        ]
        if drop is not None:
            kept = keeps_accuracy(drop, config.int8_max_accuracy_drop)
            parts.append(
                f"accuracy drop {100 * drop:.2f} {'<=' if kept else '>'} "
                f"{100 * config.int8_max_accuracy_drop:g} points"
            )
        why = f"best: {best['recipe']} {', '.join(parts)}"
    tried = ", ".join(r["recipe"] for r in rows)
    return (
        f"int8: no recipe passed its gate ({len(rows)} tried: {tried}; {why}); "
        "no twin written, the fp32 model answers"
    )


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
    rows, models = _try_recipes(recipes, images, fp32_model, fp32_probs, samples, config, log)
    fp32_speed = _time_structures(rows, models, fp32_model, check_images, threads)
    _log_table(rows, fp32_speed, log)
    if not models:
        raise ModelError(
            f"no int8 recipe could be built ({rows[0]['recipe']}: {rows[0]['error']}); try "
            f"other --int8-recipes, or export with --quantize none. "
            f"Received: --int8-recipes={','.join(config.int8_recipes)}"
        )
    chosen = choose_recipe(rows)
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


def _try_recipes(recipes, images, fp32_model, fp32_probs, samples, config, log: Log):
    """Quantize with each recipe and check it: (a row per recipe, {name: (bytes, Report)})."""
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
    return rows, models


def _log_table(rows: list[dict], fp32_speed: float, log: Log) -> None:
    speed = f"speed (batch {INT8_SPEED_BATCH})"
    log(f"  {'recipe':<30} {'agree':>7}  {'drop':>6} pts  {speed:>14}")
    log(f"  {'fp32':<30} {'':>7}  {'':>6}      {fp32_speed:8.0f} img/s")
    for row in rows:
        log(_row_text(row))


def _spread(images: np.ndarray, recipe: Recipe, config: ExportConfig) -> np.ndarray:
    n = min(len(images), config.calibration_samples * recipe.calibration_factor)
    return images[np.linspace(0, len(images) - 1, n).round().astype(int)]


def _finish_report(report, rows, pick, passed, models, check_images, cpu, threads=None) -> None:
    """Recipe table, choice, speed-up at batch 32 and INT8_SPEED_BATCH and the CPU into the
    Report."""
    fp32_model, data = models
    # The big batch was timed with every structure; batch 32 only for the chosen model.
    big = str(INT8_SPEED_BATCH)
    f_big = report.stats.get("fp32_images_per_s") or 0.0
    i_big = pick.get("images_per_s") or 0.0
    speedups = {
        "32": compare_speed(fp32_model, data, check_images, batch=32, threads=threads),
        big: {
            "fp32_images_per_s": f_big,
            "int8_images_per_s": i_big,
            "speedup": i_big / f_big if f_big else 0.0,
        },
    }
    verdict = speed_verdict(speedups[big]["speedup"], cpu)
    table = [{k: v for k, v in r.items() if k != "structure"} for r in rows]
    report.stats.update(
        recipe=pick["recipe"],
        recipe_settings=RECIPES[pick["recipe"]].describe(),
        recipes=table,
        speed=speedups,
        cpu=cpu,
        verdict=verdict,
        int8_recommended=speedups[big]["speedup"] >= SPEEDUP_NOISE,
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
