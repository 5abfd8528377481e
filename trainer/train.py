"""The training run: data, model, fit with per-epoch checkpoints, final test metrics and outputs.

A run folder holds config.json (written first), checkpoint.keras + state.json (after every
finished epoch, for --resume), model.keras (the last epoch, or the best by validation accuracy:
TrainConfig.keep), history.csv, and, once complete, metrics.json, learning_curves.png and
confusion_matrix.png; runs/latest then points at it (file names: cifar10_trainer.run, also its
one reader). The steps live in resume (reading back a run), records (config.json, the log's
first line), fitting (fit or the custom loop), callbacks (each finished epoch) and finish
(test metrics, plots, metrics.json).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cifar10_runtime.errors import ConfigError

from . import outputs
from .config import TrainConfig
from .data import Dataset, load_dataset
from .devices import Placement, configure
from .finish import finish
from .fitting import fit
from .records import first_line
from .resume import load_run_state
from .run import STATE


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]


def default_run_dir(root: Path = Path("runs")) -> Path:
    return root / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def train(
    cfg: TrainConfig,
    run_dir: Path | None = None,
    *,
    resume: bool = False,
    verbose: int = 1,
    log: Callable[[str], None] | None = print,
) -> RunResult:
    """Train (or resume) one run and write every output; returns the run folder and metrics.

    `log` receives the training log's first line (device, precision, run folder); None: quiet.
    Under --strategy multi-worker every worker calls this; only the chief writes `run_dir`,
    the others write their per-epoch saves to a temporary folder they remove (see distributed).
    """
    cluster = None
    if cfg.strategy == "multi-worker":
        from .tf_config import read_tf_config

        cluster = read_tf_config()  # a bad TF_CONFIG fails before data, TensorFlow or a folder
    run_dir = Path(run_dir) if run_dir else default_run_dir()
    state: dict[str, Any] = {
        "epoch": 0,
        "best_val_accuracy": -1.0,
        "best_epoch": 0,
        "train_seconds": 0.0,
        "history": [],
    }
    if resume and (run_dir / STATE).is_file():
        state = load_run_state(run_dir)
    elif resume:
        raise ConfigError(
            f"nothing to resume in {run_dir}: no finished epoch (no {STATE}); start a new run. "
            f"Received: --output-dir={run_dir}"
        )
    outputs.ensure_writable_run_dir(run_dir)
    data = load_dataset(cfg.dataset, cfg.data_dir, seed=cfg.seed)  # bad data fails before TF
    if cluster is not None:
        from .distributed import StartupWatchdog

        watchdog = StartupWatchdog(cluster, cfg.peer_timeout)  # disarmed once the model exists
        try:
            placement, run = _fit_multi_worker(
                cfg, run_dir, state, data, resume, verbose, cluster, watchdog.disarm, log
            )
        finally:
            watchdog.disarm()
        if not placement.is_chief:
            return RunResult(run_dir, {"chief": False, **run})
        return RunResult(run_dir, finish(cfg, run_dir, state, data, placement, run))
    placement = configure(cfg)
    if log:
        log(first_line(run_dir, placement, resume))
    run = fit(cfg, run_dir, state, data, placement, resume, verbose)
    return RunResult(run_dir, finish(cfg, run_dir, state, data, placement, run))


def _fit_multi_worker(  # noqa: PLR0913
    cfg: TrainConfig,
    run_dir: Path,
    state: dict[str, Any],
    data: Dataset,
    resume: bool,
    verbose: int,
    cluster: Any,
    on_ready: Callable[[], None],
    log: Callable[[str], None] | None,
) -> tuple[Placement, dict[str, Any]]:
    """configure + fit on this worker; TensorFlow's errors about peers become one line."""
    import tensorflow as tf

    from .distributed import peer_error, worker_dir

    placement = configure(cfg, cluster)
    if log:
        log(first_line(run_dir, placement, resume))
    with worker_dir(run_dir, placement.is_chief) as write_dir:
        try:
            run = fit(cfg, write_dir, state, data, placement, resume, verbose, run_dir, on_ready)
        except tf.errors.OpError as exc:
            raise peer_error(exc, cluster) from None
    return placement, run
