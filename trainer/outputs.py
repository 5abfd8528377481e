"""Everything a run writes, each file atomically (temporary file in the same folder, then rename).

A crash never leaves a half-written model, metrics or plot where a good one is expected.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read it once: mkstemp makes 0600 files, outputs should obey the umask


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` (same suffix); rename it onto target on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())  # on disk before the rename, or a power cut can expose zeros
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (datasets and models can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json(target: Path, obj: Any) -> None:
    write_bytes(target, (json.dumps(obj, indent=2) + "\n").encode())


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


def read_history(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as fh:
        return [
            {k: float(v) for k, v in row.items() if k != "epoch" and v != ""}
            for row in csv.DictReader(fh)
        ]


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
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


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
