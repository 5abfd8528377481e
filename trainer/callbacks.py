"""What happens at the end of each epoch (and the NaN/inf watch during it).

A finished epoch appends its row to history.csv, saves model.keras (every epoch under
keep="last", when validation accuracy improved under "best"), checkpoint.keras always, and
state.json last: state.json is what says the epoch is finished, so a run killed at any moment
resumes from its last finished epoch.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from cifar10_runtime.files import write_json

from . import outputs
from .averaging import averaged_weights
from .run import CHECKPOINT, HISTORY, MODEL, STATE


def epoch_checkpoint(run_dir: Path, state: dict[str, Any], keep: str):  # noqa: ANN201 - a Callback
    """The Keras callback of `fit` (built here so importing this module stays TensorFlow-free)."""
    import keras

    class EpochCheckpoint(keras.callbacks.Callback):
        # Keras runs batch-end hooks of async-safe callbacks on a helper thread, as for a plain
        # fit without callbacks; a hook that is not async-safe turns that off and makes each
        # step wait for its loss to reach Python. (On a 2-core AMD EPYC the difference was
        # within the noise of a shared machine, under 3% either way; on more cores, or with
        # steps_per_execution, it is the cheaper path.) Setting stop_training from the helper
        # thread is what TerminateOnNaN does too: at most a step or two more run after a
        # non-finite loss, and nothing of that epoch is saved.
        async_safe = True

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)) and "diverged" not in state:
                # Stop now: every later step would only spread NaN through the weights.
                state["diverged"] = f"loss became {float(loss)} at batch {batch + 1}"
                self.model.stop_training = True

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._start, self._cpu_start = time.perf_counter(), time.process_time()
            self._train_seconds: float | None = None
            self._train_cpu_seconds: float | None = None

        def on_test_begin(self, logs: dict | None = None) -> None:
            if self._train_seconds is None:  # the validation pass closing this epoch
                self._train_seconds = time.perf_counter() - self._start
                self._train_cpu_seconds = time.process_time() - self._cpu_start

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
            cpu_s = self._train_cpu_seconds or (time.process_time() - self._cpu_start)
            record_epoch(self.model, run_dir, state, epoch, row, keep, train_s, wall, cpu_s)

    return EpochCheckpoint()


def record_epoch(
    model: Any,
    run_dir: Path,
    state: dict[str, Any],
    epoch: int,
    row: dict[str, float],
    keep: str,
    train_seconds: float,
    wall_seconds: float,
    train_cpu_seconds: float | None = None,
) -> None:
    """A finished epoch: history, the kept model (`keep`: "last" or "best", TrainConfig.keep),
    checkpoint, and state.json last.

    train_cpu_seconds: this process's CPU time over the epoch's training steps (all threads);
    images per CPU second compare precisions on a shared machine, where wall time cannot."""
    state["history"].append(row)
    state["epoch"] = epoch + 1
    state["train_seconds"] += train_seconds
    if train_cpu_seconds is not None:
        state["train_cpu_seconds"] = state.get("train_cpu_seconds", 0.0) + train_cpu_seconds
        state["train_cpu_epochs"] = state.get("train_cpu_epochs", 0) + 1
    state["wall_seconds"] = state.get("wall_seconds", 0.0) + wall_seconds
    improved = row.get("val_accuracy", -1.0) > state["best_val_accuracy"]
    if improved:
        state["best_val_accuracy"] = row["val_accuracy"]
        state["best_epoch"] = epoch + 1
    if improved or keep == "last":
        state["kept_epoch"] = epoch + 1
        with averaged_weights(model):  # what validation scored is what is kept
            outputs.save_keras(model, run_dir / MODEL)
    outputs.save_keras(model, run_dir / CHECKPOINT)  # the trained weights: --resume goes on
    outputs.write_history(run_dir / HISTORY, state["history"])
    # state.json last: it is what says the epoch is finished.
    write_json(run_dir / STATE, state)
