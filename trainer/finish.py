"""The end of a run: test metrics of the kept model, the plots, metrics.json, runs/latest."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from cifar10_runtime.files import write_json

from . import outputs
from .config import TrainConfig
from .data import Dataset
from .devices import Placement
from .pipeline import make_dataset
from .run import CONFUSION_MATRIX, LATEST, LEARNING_CURVES, METRICS, MODEL


def finish(
    cfg: TrainConfig,
    run_dir: Path,
    state: dict[str, Any],
    data: Dataset,
    placement: Placement,
    run: dict[str, Any],
) -> dict[str, Any]:
    """Test metrics of the kept model (once, over the whole test split), plots, metrics.json."""
    import keras

    scope = placement.strategy.scope() if placement.workers == 1 else contextlib.nullcontext()
    with scope:  # multi-worker: the chief alone, so no collective ops, hence no strategy
        kept = keras.models.load_model(run_dir / MODEL)
    test_ds = make_dataset(data.x_test, data.y_test, cfg, training=False)
    test_loss, test_acc = kept.evaluate(test_ds, verbose=0)
    predicted = kept.predict(data.x_test, batch_size=256, verbose=0).argmax(axis=1)
    images_seen = run["train_images_per_epoch"] * len(state["history"])
    metrics = {
        "test_loss": float(test_loss),
        "test_accuracy": float(test_acc),
        **outputs.classification_report(data.y_test, predicted, data.class_names),
        "epochs": len(state["history"]),
        "keep": cfg.keep,
        # The epoch model.keras holds (runs before `keep` kept the best one).
        "kept_epoch": state.get("kept_epoch", state["best_epoch"]),
        "best_epoch": state["best_epoch"],
        "best_val_accuracy": state["best_val_accuracy"],
        "wall_seconds": round(state.get("wall_seconds", 0.0), 2),  # fit, validation included
        "train_seconds": round(state["train_seconds"], 2),
        "train_images_per_s": round(images_seen / state["train_seconds"], 1),
        # CPU seconds of this process over the training steps (every thread): on a shared
        # machine, images per CPU second is the steadier figure.
        **_cpu_figures(state, run["train_images_per_epoch"]),
        "device": placement.description,
        **placement.precision.record(),  # precision, precision_reason
        "deterministic": placement.deterministic,
        **run,  # strategy, workers, replicas, global_batch, final weights' checksum
        "dataset": data.source,
        "synthetic": data.synthetic,
        "test_images": int(len(data.x_test)),
        # Equal across runs that repeat exactly (same seed, precision, threads and CPU).
        "weights_sha256": outputs.weights_sha256(kept.get_weights()),
    }
    _plot(run_dir, state["history"], data, metrics)
    write_json(run_dir / METRICS, metrics)
    _point_latest(run_dir)
    return metrics


def _plot(
    run_dir: Path, history: list[dict[str, float]], data: Dataset, metrics: dict[str, Any]
) -> None:
    """The learning curves and the confusion matrix, titled with the run and its data."""
    label = " (SYNTHETIC data)" if data.synthetic else ""
    outputs.plot_learning_curves(
        run_dir / LEARNING_CURVES,
        history,
        f"{run_dir.name}{label}: test accuracy {metrics['test_accuracy']:.3f}, "
        f"loss {metrics['test_loss']:.3f}",
    )
    outputs.plot_confusion_matrix(
        run_dir / CONFUSION_MATRIX,
        metrics["confusion_matrix"],
        data.class_names,
        f"{run_dir.name}{label}: test split, {len(data.x_test)} images",
    )


def _point_latest(run_dir: Path) -> None:
    try:
        outputs.point_latest(run_dir.parent, run_dir)
    except OSError as exc:  # a read-only runs root: the run itself is complete and kept
        print(
            f"note: could not point {run_dir.parent / LATEST} at {run_dir} "
            f"({exc.strerror or exc}); the run is complete",
            file=sys.stderr,
        )


def _cpu_figures(state: dict[str, Any], images_per_epoch: int) -> dict[str, float | None]:
    cpu, epochs = state.get("train_cpu_seconds"), state.get("train_cpu_epochs", 0)
    if not cpu or not epochs:  # a run resumed from a state written before this was recorded
        return {"train_cpu_seconds": None, "train_images_per_cpu_s": None}
    return {
        "train_cpu_seconds": round(cpu, 2),
        "train_images_per_cpu_s": round(images_per_epoch * epochs / cpu, 1),
    }
