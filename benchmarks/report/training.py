"""Training: cifar-train against a plain model.fit, and images/s per tf.distribute strategy."""

from __future__ import annotations

from benchmarks.report.fmt import num, table

LABELS = (
    ("cifar_train", "cifar-train (tf.data, checkpoints, op determinism)"),
    ("plain_fit", "plain model.fit on float32 arrays (reference)"),
    ("plain_fit_deterministic", "the same plain model.fit with op determinism"),
)


def throughput(results: dict) -> list[str]:
    tr = results.get("training")
    if not tr:
        return []
    lines = ["## Training throughput (same network, same epochs, same batch size 32)", ""]
    trows = []
    for key, label in LABELS:
        v = tr.get(key)
        if v:
            every = ", ".join(f"{x:.0f}" for x in v.get("all_images_per_s", []))
            trows.append(
                [
                    label,
                    num(v["train_images_per_s"], "{:.0f}"),
                    every,
                    num(v["train_seconds"], "{:.1f}"),
                    str(v["epochs"]),
                    num(v["process_wall_s"], "{:.1f}"),
                ]
            )
    lines += table(["path", "best images/s", "every run", "train s", "epochs", "process s"], trows)
    return lines + [
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


def strategies(results: dict) -> list[str]:
    """Training images/s per tf.distribute strategy, at one global batch."""
    rows = results.get("training_strategies")
    if not rows or "none" not in rows:
        return []
    trows = [
        [
            name.replace("_", " "),
            str(r.get("workers")),
            str(r.get("replicas")),
            str(r.get("global_batch")),
            num(r["train_images_per_s"], "{:.0f}"),
            num(r.get("relative_to_none"), "{:.2f}x"),
            num(r.get("test_accuracy"), "{:.3f}"),
        ]
        for name, r in rows.items()
    ]
    head = ["strategy", "workers", "replicas", "global batch", "images/s", "vs none", "test acc"]
    return [
        "## Training by strategy (same recipe, same global batch)",
        "",
        *table(head, trows),
        "On a 2-core machine this is a correctness figure, not a speed-up: every replica and "
        "worker shares the same two cores, so the rows show that each path trains and what "
        "distribution costs (all-reduce per step, gRPC between worker processes).",
        "",
    ]


def precisions(results: dict) -> list[str]:
    """cifar-train per precision (benchmarks/training/precision.py writes the rows)."""
    from benchmarks.training.precision import precision_lines

    return precision_lines(results.get("training_precisions"))
