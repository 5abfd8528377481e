"""--resume: read back what a run saved (its parameters, its progress) and refuse a mismatch.

Every refusal is one line saying what differs and what to do instead: continue with the same
cluster and precision, or start a new run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifar10_runtime.errors import ConfigError

from .config import TrainConfig, coerce
from .run import CHECKPOINT, CONFIG, STATE, read_json

_NEW_RUN = "start a new run instead of --resume"
# Keys earlier versions saved in config.json "parameters", and the value they mean today.
_LEGACY = {"mixed_precision": ("precision", {True: "mixed_float16", False: "float32"})}


def read_run_json(path: Path) -> dict[str, Any]:
    """A run's JSON object, or one line saying it is damaged (never a JSONDecodeError)."""
    obj = read_json(path, ConfigError, _NEW_RUN)
    if not isinstance(obj, dict):
        raise ConfigError(f"{path} is damaged (not a JSON object); {_NEW_RUN}. Received: {path}")
    return obj


def load_run_config(run_dir: Path) -> TrainConfig:
    """The resolved parameters a run saved, so --resume continues with exactly those."""
    path = run_dir / CONFIG
    if not path.is_file():
        raise ConfigError(
            f"--resume needs a run folder with {CONFIG}; pass the folder of a run cifar-train "
            f"started. Received: --output-dir={run_dir}"
        )
    saved = read_run_json(path).get("parameters")
    if not isinstance(saved, dict):
        raise ConfigError(
            f"{path} has no 'parameters' object (damaged, or not written by cifar-train); "
            f"{_NEW_RUN}. Received: {path}"
        )
    saved = dict(saved)
    for old, (new, meaning) in _LEGACY.items():
        if old in saved and new not in saved:
            saved[new] = meaning.get(saved.pop(old), "float32")
    return TrainConfig(**{k: coerce(k, v, str(path)) for k, v in saved.items()})


def load_run_state(run_dir: Path) -> dict[str, Any]:
    """The progress a run saved after its last finished epoch (for --resume), checked."""
    path = run_dir / STATE
    state = read_run_json(path)
    needed = {"epoch": int, "best_val_accuracy": float, "best_epoch": int, "history": list}
    for key, kind in needed.items():
        if not isinstance(state.get(key), kind | int if kind is float else kind):
            raise ConfigError(
                f"{path} is damaged or from another version: key {key!r} is missing or not "
                f"{kind.__name__}; {_NEW_RUN}. Received: {key}={state.get(key)!r}"
            )
    state.setdefault("train_seconds", 0.0)
    if not (run_dir / CHECKPOINT).is_file():
        raise ConfigError(
            f"cannot resume {run_dir}: {CHECKPOINT} is missing; {_NEW_RUN}. "
            f"Received: --output-dir={run_dir}"
        )
    return state


def check_same_run_setup(run_dir: Path, distributed: dict[str, Any], precision: str) -> None:
    """Refuse to resume with another cluster shape or another precision than the run had."""
    saved = read_run_json(run_dir / CONFIG)
    was = saved.get("distributed")
    if isinstance(was, dict) and (was.get("workers"), was.get("replicas")) != (
        distributed["workers"],
        distributed["replicas"],
    ):
        raise ConfigError(
            f"{run_dir} was trained by {was.get('workers')} worker(s) with "
            f"{was.get('replicas')} replica(s); resume it with the same cluster, or the global "
            f"batch and schedule would change. Received: {distributed['workers']} worker(s), "
            f"{distributed['replicas']} replica(s)"
        )
    ran = saved.get("precision")
    if ran is None:  # runs older than the record: float32, or float16 with mixed_precision
        ran = _LEGACY["mixed_precision"][1].get(
            (saved.get("parameters") or {}).get("mixed_precision", False), "float32"
        )
    if ran != precision:
        raise ConfigError(
            f"{run_dir} was trained in {ran} and would continue in {precision} here; resume it "
            f"where {ran} is chosen (same device kind), or start a new run. "
            f"Received: precision {precision}"
        )
