"""Everything a run writes, each file atomically through cifar10_runtime.files.

A crash never leaves a half-written model, metrics or plot where a good one is expected.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cifar10_runtime.errors import ConfigError
from cifar10_runtime.files import atomic_path, probe_writable, write_bytes

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def ensure_writable_run_dir(run_dir: Path) -> None:
    """Fail in one line, before any slow work, when a run folder cannot be written.

    Nothing is created: the folder itself if it exists, else its nearest existing ancestor,
    must be a folder where a file can be made (probed, since permissions alone lie for root).
    """
    run_dir = Path(run_dir)
    fix = "choose another --output-dir"
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(
            f"--output-dir {run_dir} is a file, not a folder; {fix}. Received: {run_dir}"
        )
    try:
        probe_writable(run_dir)
    except NotADirectoryError as exc:
        raise ConfigError(
            f"cannot create --output-dir {run_dir}: {exc.filename} is a file; {fix}. "
            f"Received: {run_dir}"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot write --output-dir {run_dir}: {exc.strerror or exc}; {fix}. "
            f"Received: {run_dir}"
        ) from None


def save_keras(model: Any, target: Path) -> None:
    with atomic_path(target) as tmp:
        model.save(tmp)


def write_history(target: Path, history: Sequence[dict[str, float]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *HISTORY_KEYS])
    for epoch, row in enumerate(history, start=1):
        writer.writerow([epoch, *(f"{row[k]:.6g}" if k in row else "" for k in HISTORY_KEYS)])
    write_bytes(target, buf.getvalue().encode())


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Per-class accuracy (recall) and the confusion matrix (rows: true, columns: predicted)."""
    n = len(class_names)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    support = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[i, i] / support[i]) if support[i] else None)
        for i, name in enumerate(class_names)
    }
    return {"per_class_accuracy": per_class, "confusion_matrix": confusion.tolist()}


def plot_learning_curves(target: Path, history: Sequence[dict[str, float]], title: str) -> None:
    """Loss and accuracy, train against validation, like the reference's plot."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    for ax, key, label in (
        (ax_loss, "loss", "Cross-entropy loss"),
        (ax_acc, "accuracy", "Classification accuracy"),
    ):
        ax.plot(epochs, [h.get(key, np.nan) for h in history], color="tab:blue", label="train")
        ax.plot(
            epochs,
            [h.get(f"val_{key}", np.nan) for h in history],
            color="tab:orange",
            label="validation",
        )
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_acc.set_xlabel("epoch")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, target)


def save_figure(fig, target: Path) -> None:
    """Write a matplotlib figure as PNG atomically, and close it whatever happens (pyplot
    keeps every open figure alive): the one save-and-close for the trainer and benchmarks."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)


def plot_confusion_matrix(
    target: Path, confusion: Sequence[Sequence[int]], class_names: Sequence[str], title: str
) -> None:
    """Counts in every cell, shaded by the row-normalised share (each true class sums to 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion, dtype=np.int64)
    support = counts.sum(axis=1, keepdims=True)
    share = counts / np.maximum(support, 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if share[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, target)


def point_latest(runs_root: Path, run_dir: Path) -> None:
    """Swing runs/latest to a completed run, atomically (a new link renamed over the old)."""
    link = runs_root / "latest"
    tmp = runs_root / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(run_dir, runs_root), tmp)
    os.replace(tmp, link)


def weights_sha256(weights: Sequence[np.ndarray]) -> str:
    """Checksum of a model's weights (values, shapes and order), to compare workers' replicas."""
    digest = hashlib.sha256()
    for w in weights:
        arr = np.ascontiguousarray(w)
        digest.update(str((arr.shape, arr.dtype.str)).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()
