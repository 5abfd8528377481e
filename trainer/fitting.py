"""Train the missing epochs: Keras `fit` (none, mirrored) or the custom loop (multi-worker).

Both paths save the same files after every epoch (cifar10_trainer.callbacks), so `--resume`
and the exporter see one kind of run folder whichever trained it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar10_runtime.errors import ConfigError, ModelError

from . import outputs
from .averaging import validation_callback
from .callbacks import epoch_checkpoint, record_epoch
from .config import TrainConfig
from .data import Dataset, split_validation
from .devices import Placement
from .errors import DivergedError
from .model import build_model, compile_model
from .pipeline import make_dataset
from .records import data_record, write_config
from .resume import check_same_run_setup
from .run import CHECKPOINT


@dataclass(frozen=True)
class _Batching:
    """How the training split is cut into batches on this cluster."""

    multi: bool  # the custom loop (multi-worker) rather than Keras fit
    global_batch: int
    drop: bool  # drop the last partial batch
    steps: int  # training steps per epoch


def fit(
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
    x_tr, y_tr, x_val, y_val = split_validation(
        data.x_train, data.y_train, cfg.validation_split, cfg.seed
    )
    b = _batching(cfg, placement, len(x_tr))
    train_ds = make_dataset(
        x_tr, y_tr, cfg, training=True, batch_size=b.global_batch, drop_remainder=b.drop
    )
    val_ds = make_dataset(x_val, y_val, cfg, training=False, batch_size=b.global_batch)
    distributed = {
        "strategy": cfg.strategy,
        "workers": placement.workers,
        "replicas": placement.replicas,
        "global_batch": b.global_batch,
    }
    load_dir = load_dir or run_dir
    with placement.strategy.scope():
        if resume:
            check_same_run_setup(load_dir, distributed, placement.precision.policy)
            model = _load_checkpoint(load_dir)
        else:
            model = build_model(cfg, num_classes=len(data.class_names))
            compile_model(model, cfg, b.steps)
        if b.multi and not model.optimizer.built:
            # Its variables must exist before the first step (cross-replica context).
            model.optimizer.build(model.trainable_variables)
    if on_ready:
        on_ready()  # every worker took part in creating the variables: the cluster is formed

    if not resume and placement.is_chief:
        record = data_record(data, len(x_tr), len(x_val))
        write_config(run_dir, cfg, record, placement, distributed)

    if state["epoch"] < cfg.epochs:
        train = _train_multi_worker if b.multi else _train_keras
        train(model, cfg, run_dir, state, (train_ds, val_ds, len(x_val)), b, placement, verbose)
    _refuse_divergence(cfg, run_dir, state, placement)
    images_per_epoch = b.steps * b.global_batch if b.drop else len(x_tr)
    return {
        **distributed,
        "train_images_per_epoch": images_per_epoch,
        "final_weights_sha256": outputs.weights_sha256(model.get_weights()),
    }


def _batching(cfg: TrainConfig, placement: Placement, train_images: int) -> _Batching:
    multi = placement.workers > 1 or cfg.strategy == "multi-worker"
    # multi-worker: batch_size is per replica (tf.distribute's convention), see config.py.
    global_batch = cfg.batch_size * placement.replicas if multi else cfg.batch_size
    # Over several replicas the last partial batch is dropped: one that leaves a replica no
    # rows crashes MirroredStrategy's convolutions and would make BatchNorm NaN (see pipeline).
    drop = multi or placement.replicas > 1
    if not drop:
        return _Batching(multi, global_batch, drop, -(-train_images // cfg.batch_size))
    steps = train_images // global_batch
    if steps < 1:
        raise ConfigError(
            f"the global batch ({cfg.batch_size} x {placement.replicas} replicas = "
            f"{global_batch}) exceeds the {train_images} training images; lower --batch-size. "
            f"Received: batch_size={cfg.batch_size}"
        )
    return _Batching(multi, global_batch, drop, steps)


def _load_checkpoint(load_dir: Path) -> Any:
    import keras

    try:
        return keras.models.load_model(load_dir / CHECKPOINT)
    except Exception as exc:  # zip, h5 and deserialisation errors: all one user error
        raise ModelError(
            f"cannot resume from {load_dir / CHECKPOINT} ({type(exc).__name__}): it is "
            f"damaged or from another version; start a new run. "
            f"Received: --output-dir={load_dir}"
        ) from exc


def _train_keras(model, cfg, run_dir, state, datasets, b, placement, verbose) -> None:  # noqa: ANN001, ARG001, PLR0913
    train_ds, val_ds, _ = datasets
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.epochs,
        initial_epoch=state["epoch"],
        # Averaged weights (if any) are swapped in before the checkpoint callback's validation.
        callbacks=[validation_callback(), epoch_checkpoint(run_dir, state, cfg.keep)],
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline already reshuffles every epoch
    )


def _train_multi_worker(model, cfg, run_dir, state, datasets, b, placement, verbose) -> None:  # noqa: ANN001, PLR0913
    from .custom_loop import DistributedLoop

    train_ds, val_ds, val_images = datasets
    loop = DistributedLoop(model, placement.strategy, b.global_batch, cfg.label_smoothing)
    diverged = loop.fit(
        train_ds,
        val_ds,
        epochs=cfg.epochs,
        initial_epoch=state["epoch"],
        steps=b.steps,
        val_images=val_images,
        on_epoch_end=lambda epoch, row, train_s, wall_s, cpu_s: _worker_epoch(
            model,
            run_dir,
            state,
            epoch,
            row,
            cfg.keep,
            (train_s, wall_s, cpu_s),
            placement,
            verbose,
        ),
        verbose=verbose if placement.is_chief else 0,
    )
    if diverged:
        state["diverged"] = diverged


def _refuse_divergence(
    cfg: TrainConfig, run_dir: Path, state: dict[str, Any], placement: Placement
) -> None:
    if "diverged" not in state:
        return
    kept = f"keeps epoch {state['epoch']}" if state["epoch"] else "has no finished epoch"
    raise DivergedError(
        f"training diverged: {state['diverged']}; lower --learning-rate or check the data. "
        f"{run_dir} {kept} and was not made runs/latest. "
        f"Received: learning_rate={cfg.learning_rate:g}, precision "
        f"{placement.precision.policy}"
    )


def _worker_epoch(model, run_dir, state, epoch, row, keep, seconds, placement, verbose):  # noqa: ANN001, ANN202, PLR0913
    record_epoch(model, run_dir, state, epoch, row, keep, *seconds)
    if verbose and not placement.is_chief:  # the chief shows the progress bar instead
        print(
            f"epoch {epoch + 1} done: loss {row['loss']:.4f}, val_loss {row['val_loss']:.4f}",
            flush=True,
        )
