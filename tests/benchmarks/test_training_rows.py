"""The training rows' arithmetic and Markdown (benchmarks.training.speed, .training_precision)."""

from __future__ import annotations

import pytest

from benchmarks.training.precision import precision_lines
from benchmarks.training.speed import best_of, compare, cpu_ratio


def _row(ips: float, ipcs: float | None, **kw: object) -> dict:
    return {"train_images_per_s": ips, "train_images_per_cpu_s": ipcs, **kw}


def test_best_of_keeps_every_run_and_the_best_per_cpu_second() -> None:
    best = best_of([_row(500, 900), _row(600, 850), _row(400, None)])
    assert best["train_images_per_s"] == 600 and best["all_images_per_s"] == [500, 600, 400]
    assert best["all_images_per_cpu_s"] == [900, 850, None]
    assert best["best_images_per_cpu_s"] == 900


def test_compare_wall_and_cpu_ratios() -> None:
    toolkit, plain, det = best_of([_row(480, 960)]), _row(600, 1000), _row(500, 800)
    out = compare(toolkit, plain, det)
    assert out["cifar_train_over_plain_fit"] == pytest.approx(0.8)
    assert out["cifar_train_over_plain_fit_cpu"] == pytest.approx(0.96)
    assert out["determinism_cost"] == pytest.approx(500 / 600)
    assert out["determinism_cost_cpu"] == pytest.approx(0.8)
    assert out["cifar_train_over_plain_fit_deterministic_cpu"] == pytest.approx(1.2)
    assert cpu_ratio(_row(1, None), plain) is None  # a row without CPU time has no CPU ratio


def test_precision_table_names_what_ran_and_what_did_not() -> None:
    rows = {
        "float32": {**best_of([_row(600, 650)]), "precision": "float32"},
        "auto": {**best_of([_row(700, 760)]), "precision": "mixed_bfloat16"},
    }
    for r in rows.values():
        r.update(
            precision_reason="why", test_accuracy=0.4, over_float32=r["train_images_per_s"] / 600
        )
        r["over_float32_cpu"] = cpu_ratio(r, rows["float32"])
    section = {
        "recipe": "trainer/configs/default.toml",
        "epochs": 2,
        "rows": rows,
        "not_run": {"mixed_float16": "needs a GPU"},
    }
    lines = precision_lines(section)
    assert lines[0] == "## Training precision (trainer/configs/default.toml, 2 epoch(s), same seed)"
    assert "| auto | mixed_bfloat16 (why) | 700 | 700 | 1.17x | 760 | 1.17x | 0.400 |" in lines
    assert "| mixed_float16 | not run: needs a GPU | | | | | | |" in lines
    assert precision_lines(None) == [] and precision_lines({"rows": {}}) == []


def test_issue_17_targets_from_the_rows() -> None:
    from benchmarks.targets import _target
    from benchmarks.training.precision import targets

    results = {
        "training_precisions": {
            "rows": {
                "float32": {"precision": "float32", "over_float32": 1.0},
                "auto": {
                    "precision": "mixed_bfloat16",
                    "over_float32": 0.9,
                    "over_float32_cpu": 1.7,
                },
            }
        },
        "training": {"cifar_train_over_plain_fit": 0.99, "cifar_train_over_plain_fit_cpu": 1.01},
    }
    by_name = {t["target"]: t for t in targets(results, _target)}
    speed = by_name["Default cifar-train vs --precision float32 (default recipe)"]
    assert speed["value"] == 1.7 and speed["measured"] == "1.70x per CPU second"
    plain = by_name["cifar-train float32 vs a plain model.fit"]
    assert plain["status"] == "met" and plain["measured"] == "0.99x (1.01x per CPU second)"
    assert {t["status"] for t in targets({}, _target)} == {"not measured"}
