"""What a run says about itself: config.json (written first) and the training log's first line."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cifar10_runtime.files import write_json

from . import __version__
from .config import TrainConfig
from .data import Dataset
from .devices import Placement
from .run import CONFIG


def versions() -> dict[str, str | None]:
    from cifar10_runtime.versions import package_versions, python_version

    installed = package_versions(("tensorflow", "keras", "numpy"))
    return {"python": python_version(), **installed, "cifar10_trainer": __version__}


def data_record(data: Dataset, n_train: int, n_val: int) -> dict[str, Any]:
    return {
        "source": data.source,
        "synthetic": data.synthetic,
        "train_images": n_train,
        "validation_images": n_val,
        "test_images": int(len(data.x_test)),
        "class_names": list(data.class_names),
    }


def write_config(
    run_dir: Path,
    cfg: TrainConfig,
    data: dict[str, Any],
    placement: Placement,
    distributed: dict[str, Any],
) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        run_dir / CONFIG,
        {
            "parameters": cfg.to_dict(),
            "data": data,
            "device": placement.description,
            **placement.precision.record(),  # the policy "auto" resolved to, and why
            "deterministic": placement.deterministic,
            "distributed": distributed,
            "versions": versions(),
            "command": " ".join(sys.argv),
            "started_utc": datetime.now(UTC).isoformat(),
        },
    )


def first_line(run_dir: Path, placement: Placement, resume: bool) -> str:
    """The training log's first line: where, at which precision (and why), into which folder."""
    p = placement.precision
    what = "resuming" if resume else "training"
    return (
        f"cifar-train: {what} on {placement.description}; precision {p.policy} ({p.why}); "
        f"op determinism {'on' if placement.deterministic else 'off'}; run folder {run_dir}"
    )
