"""The run's small report helpers (atomic writes are tested in tests/runtime/test_files.py)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from cifar10_trainer import outputs


def test_history_round_trip(tmp_path: Path) -> None:
    rows = [
        {
            "loss": 2.0,
            "accuracy": 0.1,
            "val_loss": 2.1,
            "val_accuracy": 0.12,
            "learning_rate": 0.001,
        },
        {"loss": 1.5, "accuracy": 0.3},
    ]
    outputs.write_history(tmp_path / "h.csv", rows)
    with open(tmp_path / "h.csv", newline="") as fh:  # read as the tests of runs read it
        read = [
            {k: float(v) for k, v in row.items() if k != "epoch" and v != ""}
            for row in csv.DictReader(fh)
        ]
    assert read == rows
    assert (tmp_path / "h.csv").read_text().splitlines()[0] == (
        "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate"
    )


def test_classification_report() -> None:
    names = [str(i) for i in range(3)]
    report = outputs.classification_report(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), names)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert report["per_class_accuracy"] == {"0": 0.5, "1": 1.0, "2": 0.0}


def test_confusion_matrix_plot_shows_counts_shares_and_names(tmp_path: Path, monkeypatch) -> None:
    import matplotlib.figure

    figures = []
    real_savefig = matplotlib.figure.Figure.savefig

    def capture(fig, *args, **kwargs):
        figures.append(fig)
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    names = ["cat", "dog", "ship"]
    confusion = [[8, 2, 0], [1, 3, 0], [0, 0, 0]]  # the last class has no test image
    target = tmp_path / "confusion_matrix.png"
    outputs.plot_confusion_matrix(target, confusion, names, "run: test split")
    assert target.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["confusion_matrix.png"]
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    cells = [t.get_text() for t in ax.texts]
    assert cells == [str(c) for row in confusion for c in row]  # counts in every cell
    shading = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(shading[0], [0.8, 0.2, 0.0])  # row-normalised
    np.testing.assert_allclose(shading[1], [0.25, 0.75, 0.0])
    assert "predicted" in ax.get_xlabel() and "true" in ax.get_ylabel()


def test_latest_points_at_the_newest_run(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        outputs.point_latest(tmp_path, tmp_path / name)
        assert (tmp_path / "latest").resolve() == (tmp_path / name).resolve()
    assert os.readlink(tmp_path / "latest") == "b"  # relative: the runs folder can move


@pytest.mark.parametrize(
    ("keep", "saved_after"),
    [("last", [1, 2, 3]), ("best", [1, 2])],  # validation: 0.5, 0.6, then 0.4
)
def test_the_kept_model_is_the_last_epoch_or_the_best(
    tmp_path: Path, monkeypatch, keep: str, saved_after: list[int]
) -> None:
    """keep="last" saves model.keras after every epoch (the run ends holding its last one);
    "best" only when validation accuracy improved. Both keep the best epoch on record."""
    from cifar10_trainer import callbacks, outputs

    saves: list[tuple[str, int]] = []
    state = {"epoch": 0, "best_val_accuracy": -1.0, "best_epoch": 0, "train_seconds": 0.0}
    state["history"] = []

    def save(model: object, path: Path) -> None:
        saves.append((path.name, state["epoch"]))

    monkeypatch.setattr(outputs, "save_keras", save)
    model = object()  # no optimizer: no weight average to swap in
    for epoch, val in enumerate([0.5, 0.6, 0.4]):
        row = {"loss": 1.0, "val_accuracy": val}
        callbacks.record_epoch(model, tmp_path, state, epoch, row, keep, 1.0, 1.0)
    assert [e for name, e in saves if name == "model.keras"] == saved_after
    assert [e for name, e in saves if name == "checkpoint.keras"] == [1, 2, 3]
    assert (state["kept_epoch"], state["best_epoch"]) == (saved_after[-1], 2)
    assert state["best_val_accuracy"] == 0.6
