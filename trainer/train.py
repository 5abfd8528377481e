"""The training run: data, model, fit with per-epoch checkpoints, final test metrics and outputs.

A run folder holds config.json (written first), checkpoint.keras + state.json (after every
finished epoch, for --resume), model.keras (the best epoch by validation accuracy), history.csv,
and, once complete, metrics.json, learning_curves.png and confusion_matrix.png; runs/latest then
points at it. `cifar10_trainer.run.Run` is the one reader of such a folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cifar10_runtime.errors import ConfigError, ModelError
from cifar10_runtime.files import write_json

from . import __version__, outputs
from .config import TrainConfig, coerce
from .data import Dataset, load_dataset, split_validation
from .devices import Placement, configure
from .errors import DivergedError
from .model import build_model, compile_model
from .pipeline import make_dataset
from .run import CONFUSION_MATRIX

CHECKPOINT, STATE, MODEL = "checkpoint.keras", "state.json", "model.keras"


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]


def default_run_dir(root: Path = Path("runs")) -> Path:
    return root / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def versions() -> dict[str, str | None]:
    from cifar10_runtime.versions import package_versions, python_version

    installed = package_versions(("tensorflow", "keras", "numpy"))
    return {"python": python_version(), **installed, "cifar10_trainer": __version__}


def load_run_config(run_dir: Path) -> TrainConfig:
    """The resolved parameters a run saved, so --resume continues with exactly those."""
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"--resume needs a run folder with config.json. Received: {run_dir}")
    saved = _read_run_json(path).get("parameters")
    if not isinstance(saved, dict):
        raise ConfigError(
            f"{path} has no 'parameters' object (damaged, or not written by cifar-train); "
            "start a new run instead of --resume"
        )
    return TrainConfig(**{k: coerce(k, v, str(path)) for k, v in saved.items()})


def _read_run_json(path: Path) -> dict[str, Any]:
    """A run's JSON file, or one line saying it is damaged (never a JSONDecodeError)."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{path} is damaged ({type(exc).__name__}: {exc}); start a new run instead of --resume"
        ) from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path} is damaged (not a JSON object); start a new run instead")
    return obj


def load_run_state(run_dir: Path) -> dict[str, Any]:
    """The progress a run saved after its last finished epoch (for --resume), checked."""
    path = run_dir / STATE
    state = _read_run_json(path)
    needed = {"epoch": int, "best_val_accuracy": float, "best_epoch": int, "history": list}
    for key, kind in needed.items():
        if not isinstance(state.get(key), kind | int if kind is float else kind):
            raise ConfigError(
                f"{path} is damaged or from another version: key {key!r} is missing or not "
                f"{kind.__name__}; start a new run instead of --resume"
            )
    state.setdefault("train_seconds", 0.0)
    if not (run_dir / CHECKPOINT).is_file():
        raise ConfigError(f"cannot resume {run_dir}: {CHECKPOINT} is missing; start a new run")
    return state


class _EpochCheckpoint:
    """Keras callback (built lazily so importing this module stays TensorFlow-free)."""

    @staticmethod
    def create(run_dir: Path, state: dict[str, Any]):  # noqa: ANN205 - a keras Callback
        import keras

        class EpochCheckpoint(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                loss = (logs or {}).get("loss")
                if loss is not None and not math.isfinite(float(loss)):
                    # Stop now: every later step would only spread NaN through the weights.
                    state["diverged"] = f"loss became {float(loss)} at batch {batch + 1}"
                    self.model.stop_training = True

            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                self._start = time.perf_counter()
                self._train_seconds: float | None = None

            def on_test_begin(self, logs: dict | None = None) -> None:
                if self._train_seconds is None:  # the validation pass closing this epoch
                    self._train_seconds = time.perf_counter() - self._start

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                logs = dict(logs or {})
                bad = [k for k in ("loss", "val_loss") if not math.isfinite(logs.get(k, 0.0))]
                if bad or "diverged" in state:
                    # Nothing from this epoch is saved: the last good epoch stays resumable.
                    state.setdefault("diverged", f"{bad[0]} became {logs[bad[0]]}")
                    state["diverged"] += f" in epoch {epoch + 1}"
                    self.model.stop_training = True
                    return
                lr = self.model.optimizer.learning_rate
                logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))
                row = {k: float(v) for k, v in logs.items() if k in outputs.HISTORY_KEYS}
                wall = time.perf_counter() - self._start
                train_s = self._train_seconds or wall
                record_epoch(self.model, run_dir, state, epoch, row, train_s, wall)

        return EpochCheckpoint()


def record_epoch(
    model: Any,
    run_dir: Path,
    state: dict[str, Any],
    epoch: int,
    row: dict[str, float],
    train_seconds: float,
    wall_seconds: float,
) -> None:
    """A finished epoch: history, best model, checkpoint, and state.json last."""
    state["history"].append(row)
    state["epoch"] = epoch + 1
    state["train_seconds"] += train_seconds
    state["wall_seconds"] = state.get("wall_seconds", 0.0) + wall_seconds
    if row.get("val_accuracy", -1.0) > state["best_val_accuracy"]:
        state["best_val_accuracy"] = row["val_accuracy"]
        state["best_epoch"] = epoch + 1
        outputs.save_keras(model, run_dir / MODEL)
    outputs.save_keras(model, run_dir / CHECKPOINT)
    outputs.write_history(run_dir / "history.csv", state["history"])
    # state.json last: it is what says the epoch is finished.
    write_json(run_dir / STATE, state)


def _data_record(data: Dataset, n_train: int, n_val: int) -> dict[str, Any]:
    return {
        "source": data.source,
        "synthetic": data.synthetic,
        "train_images": n_train,
        "validation_images": n_val,
        "test_images": int(len(data.x_test)),
        "class_names": list(data.class_names),
    }


def train(
    cfg: TrainConfig, run_dir: Path | None = None, *, resume: bool = False, verbose: int = 1
) -> RunResult:
    """Train (or resume) one run and write every output; returns the run folder and metrics.

    Under --strategy multi-worker every worker calls this; only the chief writes `run_dir`,
    the others write their per-epoch saves to a temporary folder they remove (see distributed).
    """
    cluster = None
    if cfg.strategy == "multi-worker":
        from .distributed import read_tf_config

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
        raise ConfigError(f"nothing to resume in {run_dir}: no finished epoch (no {STATE})")
    outputs.ensure_writable_run_dir(run_dir)
    data = load_dataset(cfg.dataset, cfg.data_dir, seed=cfg.seed)  # bad data fails before TF
    if cluster is not None:
        from .distributed import StartupWatchdog

        watchdog = StartupWatchdog(cluster, cfg.peer_timeout)  # disarmed once the model exists
        try:
            placement, run = _fit_multi_worker(
                cfg, run_dir, state, data, resume, verbose, cluster, watchdog.disarm
            )
        finally:
            watchdog.disarm()
        if not placement.is_chief:
            return RunResult(run_dir, {"chief": False, **run})
        return _finish(cfg, run_dir, state, data, placement, run)
    placement = configure(cfg)
    run = _fit(cfg, run_dir, state, data, placement, resume, verbose)
    return _finish(cfg, run_dir, state, data, placement, run)


def _fit_multi_worker(cfg, run_dir, state, data, resume, verbose, cluster, on_ready):  # noqa: ANN001, ANN202
    """configure + _fit on this worker; TensorFlow's errors about peers become one line."""
    import tensorflow as tf

    from .distributed import peer_error, worker_dir

    placement = configure(cfg, cluster)
    with worker_dir(run_dir, placement.is_chief) as write_dir:
        try:
            run = _fit(cfg, write_dir, state, data, placement, resume, verbose, run_dir, on_ready)
        except tf.errors.OpError as exc:
            raise peer_error(exc, cluster) from None
    return placement, run


def _fit(
    cfg: TrainConfig,
    run_dir: Path,
    state: dict[str, Any],
    data: Dataset,
    placement: Placement,
    resume: bool,
    verbose: int,
    load_dir: Path | None = None,
    on_ready: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Build or reload the model and train the missing epochs; a few facts for metrics.json."""
    import keras

    multi = placement.workers > 1 or cfg.strategy == "multi-worker"
    # multi-worker: batch_size is per replica (tf.distribute's convention), see config.py.
    global_batch = cfg.batch_size * placement.replicas if multi else cfg.batch_size
    x_tr, y_tr, x_val, y_val = split_validation(
        data.x_train, data.y_train, cfg.validation_split, cfg.seed
    )
    # Over several replicas the last partial batch is dropped: one that leaves a replica no
    # rows crashes MirroredStrategy's convolutions and would make BatchNorm NaN (see pipeline).
    drop = multi or placement.replicas > 1
    if drop:
        steps = len(x_tr) // global_batch
        if steps < 1:
            raise ConfigError(
                f"the global batch ({cfg.batch_size} x {placement.replicas} replicas = "
                f"{global_batch}) exceeds the {len(x_tr)} training images; lower --batch-size"
            )
    else:
        steps = -(-len(x_tr) // cfg.batch_size)
    train_ds = make_dataset(
        x_tr, y_tr, cfg, training=True, batch_size=global_batch, drop_remainder=drop
    )
    val_ds = make_dataset(x_val, y_val, cfg, training=False, batch_size=global_batch)
    distributed = {
        "strategy": cfg.strategy,
        "workers": placement.workers,
        "replicas": placement.replicas,
        "global_batch": global_batch,
    }
    load_dir = load_dir or run_dir
    with placement.strategy.scope():
        if resume:
            _check_same_cluster(load_dir, distributed)
            try:
                model = keras.models.load_model(load_dir / CHECKPOINT)
            except Exception as exc:  # zip, h5 and deserialisation errors: all one user error
                raise ModelError(
                    f"cannot resume from {load_dir / CHECKPOINT} ({type(exc).__name__}): it is "
                    "damaged or from another version; start a new run"
                ) from exc
        else:
            model = build_model(cfg, num_classes=len(data.class_names))
            compile_model(model, cfg, steps)
        if multi and not model.optimizer.built:
            # Its variables must exist before the first step (cross-replica context).
            model.optimizer.build(model.trainable_variables)
    if on_ready:
        on_ready()  # every worker took part in creating the variables: the cluster is formed

    if not resume and placement.is_chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(
            run_dir / "config.json",
            {
                "parameters": cfg.to_dict(),
                "data": _data_record(data, len(x_tr), len(x_val)),
                "device": placement.description,
                "distributed": distributed,
                "versions": versions(),
                "command": " ".join(sys.argv),
                "started_utc": datetime.now(UTC).isoformat(),
            },
        )

    if state["epoch"] < cfg.epochs and multi:
        from .custom_loop import DistributedLoop

        DistributedLoop(model, placement.strategy, global_batch, cfg.label_smoothing).fit(
            train_ds,
            val_ds,
            epochs=cfg.epochs,
            initial_epoch=state["epoch"],
            steps=steps,
            val_images=len(x_val),
            on_epoch_end=lambda epoch, row, train_s, wall_s: _worker_epoch(
                model, run_dir, state, epoch, row, train_s, wall_s, placement, verbose
            ),
            verbose=verbose if placement.is_chief else 0,
        )
    elif state["epoch"] < cfg.epochs:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=cfg.epochs,
            initial_epoch=state["epoch"],
            callbacks=[_EpochCheckpoint.create(run_dir, state)],
            verbose=verbose,
            shuffle=False,  # the tf.data pipeline already reshuffles every epoch
        )
    if "diverged" in state:
        kept = f"keeps epoch {state['epoch']}" if state["epoch"] else "has no finished epoch"
        raise DivergedError(
            f"training diverged: {state['diverged']}; lower --learning-rate "
            f"(was {cfg.learning_rate:g}) or check the data. {run_dir} {kept} "
            "and was not made runs/latest"
        )
    images_per_epoch = steps * global_batch if drop else len(x_tr)
    return {
        **distributed,
        "train_images_per_epoch": images_per_epoch,
        "final_weights_sha256": outputs.weights_sha256(model.get_weights()),
    }


def _worker_epoch(model, run_dir, state, epoch, row, train_s, wall_s, placement, verbose):  # noqa: ANN001, ANN202, PLR0913
    record_epoch(model, run_dir, state, epoch, row, train_s, wall_s)
    if verbose and not placement.is_chief:  # the chief shows the progress bar instead
        print(
            f"epoch {epoch + 1} done: loss {row['loss']:.4f}, val_loss {row['val_loss']:.4f}",
            flush=True,
        )


def _check_same_cluster(run_dir: Path, now: dict[str, Any]) -> None:
    saved = json.loads((run_dir / "config.json").read_text()).get("distributed")
    if saved and (saved["workers"], saved["replicas"]) != (now["workers"], now["replicas"]):
        raise ConfigError(
            f"{run_dir} was trained by {saved['workers']} worker(s) with {saved['replicas']} "
            f"replica(s); resume it with the same cluster (now {now['workers']} and "
            f"{now['replicas']}), or the global batch and schedule would change"
        )


def _finish(
    cfg: TrainConfig,
    run_dir: Path,
    state: dict[str, Any],
    data: Dataset,
    placement: Placement,
    run: dict[str, Any],
) -> RunResult:
    """Test metrics of the best model (once, over the whole test split), plot, metrics.json."""
    import keras

    scope = placement.strategy.scope() if placement.workers == 1 else contextlib.nullcontext()
    with scope:  # multi-worker: the chief alone, so no collective ops, hence no strategy
        best = keras.models.load_model(run_dir / MODEL)
    test_ds = make_dataset(data.x_test, data.y_test, cfg, training=False)
    test_loss, test_acc = best.evaluate(test_ds, verbose=0)
    predicted = best.predict(data.x_test, batch_size=256, verbose=0).argmax(axis=1)
    images_seen = run["train_images_per_epoch"] * len(state["history"])
    metrics = {
        "test_loss": float(test_loss),
        "test_accuracy": float(test_acc),
        **outputs.classification_report(data.y_test, predicted, data.class_names),
        "epochs": len(state["history"]),
        "best_epoch": state["best_epoch"],
        "best_val_accuracy": state["best_val_accuracy"],
        "wall_seconds": round(state.get("wall_seconds", 0.0), 2),  # fit, validation included
        "train_seconds": round(state["train_seconds"], 2),
        "train_images_per_s": round(images_seen / state["train_seconds"], 1),
        "device": placement.description,
        **run,  # strategy, workers, replicas, global_batch, final weights' checksum
        "dataset": data.source,
        "synthetic": data.synthetic,
        "test_images": int(len(data.x_test)),
        "weights_sha256": outputs.weights_sha256(
            best.get_weights()
        ),  # equal across runs that repeat exactly
    }
    label = " (SYNTHETIC data)" if data.synthetic else ""
    outputs.plot_learning_curves(
        run_dir / "learning_curves.png",
        state["history"],
        f"{run_dir.name}{label}: test accuracy {test_acc:.3f}, loss {test_loss:.3f}",
    )
    outputs.plot_confusion_matrix(
        run_dir / CONFUSION_MATRIX,
        metrics["confusion_matrix"],
        data.class_names,
        f"{run_dir.name}{label}: test split, {len(data.x_test)} images",
    )
    write_json(run_dir / "metrics.json", metrics)
    try:
        outputs.point_latest(run_dir.parent, run_dir)
    except OSError as exc:  # a read-only runs root: the run itself is complete and kept
        print(
            f"note: could not point {run_dir.parent / 'latest'} at {run_dir} "
            f"({exc.strerror or exc}); the run is complete",
            file=sys.stderr,
        )
    return RunResult(run_dir, metrics)
