"""The one reader of a trainer run folder (`runs/<UTC timestamp>/`), for every later stage.

A run folder is recognised by its `config.json` (written first, before any epoch). Once a run
is complete it also holds `metrics.json`. A folder that has a config.json which cannot be read,
or lacks the keys the trainer writes, is damaged: reading it is an error, never a silent
fallback, because the exporter chooses its check images and accuracy gate from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar10_runtime.errors import CifarError, first_line

from .errors import DataError

# The one home of the run folder's file names (trainer, exporter, benchmarks, demo import them).
CONFIG, METRICS, MODEL = "config.json", "metrics.json", "model.keras"
CHECKPOINT, STATE, HISTORY = "checkpoint.keras", "state.json", "history.csv"
LEARNING_CURVES, CONFUSION_MATRIX = "learning_curves.png", "confusion_matrix.png"
LATEST = "latest"  # runs/latest: a symlink to the newest completed run
# Written by the trainer alone (after every epoch, or at the end): they mark a run folder.
TRAINER_ONLY = (STATE, HISTORY, CHECKPOINT, LEARNING_CURVES)


@dataclass(frozen=True)
class Run:
    """A trainer run folder: its paths, resolved parameters, data record and test metrics."""

    folder: Path
    parameters: dict[str, Any]  # config.json "parameters" (TrainConfig fields)
    data: dict[str, Any]  # config.json "data": source, synthetic, image counts, class_names
    versions: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None  # metrics.json; None while the run is unfinished
    config_precision: str | None = None  # config.json "precision": the dtype policy it ran

    @property
    def precision(self) -> str | None:
        """The training precision (float32, mixed_bfloat16, mixed_float16); None when the run
        predates the record (those trained in float32, or float16 with mixed_precision=true)."""
        recorded = (self.metrics or {}).get("precision") or self.config_precision
        if isinstance(recorded, str):
            return recorded
        legacy = self.parameters.get("mixed_precision")
        return {True: "mixed_float16", False: "float32"}.get(legacy) if legacy is not None else None

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def model(self) -> Path:
        return self.folder / MODEL

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG

    @property
    def dataset(self) -> str:
        return str(self.parameters.get("dataset", "cifar10"))

    @property
    def data_dir(self) -> Path | None:
        value = self.parameters.get("data_dir")
        return Path(value) if value else None

    @property
    def data_source(self) -> str | None:
        """What the trainer's loader reported (a folder/archive path, or `synthetic(...)`)."""
        return self.data.get("source")

    @property
    def test_accuracy(self) -> float | None:
        value = (self.metrics or {}).get("test_accuracy")
        return float(value) if isinstance(value, (int, float)) else None

    def scalar_metrics(self) -> dict[str, Any]:
        """The scalar entries of metrics.json (test_accuracy, test_loss, epochs, ...)."""
        return {
            k: v for k, v in (self.metrics or {}).items() if isinstance(v, (int, float, str, bool))
        }

    @classmethod
    def load(cls, folder: Path) -> Run:
        """Read a run folder; DataError naming the file and the fix when it is damaged."""
        folder = Path(folder)
        config = read_json(folder / CONFIG)
        if not isinstance(config, dict) or not isinstance(config.get("parameters"), dict):
            raise DataError(
                f"{folder / CONFIG} is not a trainer run config (no 'parameters' object); "
                f"restore it or move the model out of the damaged run folder. "
                f"Received: {folder / CONFIG}"
            )
        metrics = None
        if (folder / METRICS).exists():
            metrics = read_json(folder / METRICS)
            if not isinstance(metrics, dict):
                raise DataError(
                    f"{folder / METRICS} is not a JSON object of run metrics; restore it or "
                    f"delete it (the run is then treated as unfinished). "
                    f"Received: {folder / METRICS}"
                )
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        versions = config.get("versions") if isinstance(config.get("versions"), dict) else {}
        precision = config.get("precision") if isinstance(config.get("precision"), str) else None
        return cls(folder, config["parameters"], data, versions, metrics, precision)

    @classmethod
    def of_model(cls, model_path: Path) -> Run | None:
        """The run folder holding `model_path` (symlinks such as runs/latest resolved), or None
        when the model does not sit in one. A folder is a run when its config.json holds the
        trainer's "parameters", or when other files only the trainer writes sit beside it (then
        a config.json that cannot be read is damage, an error); a config.json of another tool
        in a folder without them is not a run."""
        folder = Path(model_path).resolve().parent
        if not (folder / CONFIG).exists():
            return None
        if not any((folder / name).exists() for name in TRAINER_ONLY):
            try:
                config = read_json(folder / CONFIG)
            except DataError:  # not ours to judge: another tool's unreadable file
                return None
            if not isinstance(config, dict) or "parameters" not in config:
                return None
        return cls.load(folder)


def read_json(
    path: Path,
    error: type[CifarError] = DataError,
    fix: str = "restore the file or move the model out of the folder",
) -> Any:
    """A run folder's JSON file; `error` naming it and `fix` when it cannot be read.

    The one json.loads of run files (the trainer's --resume passes ConfigError and its fix)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError too
        reason = getattr(exc, "strerror", None) or first_line(exc, limit=200)
        raise error(
            f"cannot read {path} ({type(exc).__name__}: {reason}): the run folder is damaged; "
            f"{fix}. Received: {path}"
        ) from None
