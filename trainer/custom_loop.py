"""The distributed custom training loop that `--strategy multi-worker` trains with.

Keras 3's `model.fit` fails under MultiWorkerMirroredStrategy at the first step
(keras-team/keras#20585, tensorflow/tensorflow#72388), so each step is a `tf.function` that
calls `strategy.run`: forward pass under a GradientTape, the per-example loss averaged over the
GLOBAL batch (`tf.nn.compute_average_loss`), and `optimizer.apply_gradients`, which all-reduces
(sums) the gradients of every replica on every worker. Losses and accuracies travel as sums
(loss, correct, images) reduced over all replicas, so validation covers the whole split exactly
once and matches what `fit` reports on one machine (a mean over images).

Precision: the model carries the run's dtype policy. Under mixed_float16 the optimizer is a
Keras LossScaleOptimizer (cifar10_trainer.model wraps it): the step multiplies the loss by the
dynamic scale before the gradient (`scale_loss`) and `apply_gradients` divides it out, skipping
a step whose gradients overflowed; bfloat16 and float32 need no scaling. A non-finite loss stops
every worker at the same step (the reduced sums are equal everywhere), as `fit`'s callback does.

The model is compiled as on the single-machine path (same optimizer, schedule and loss), so
`checkpoint.keras` and `model.keras` are the same files and `--resume` loads them the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cifar10_runtime.errors import ModelError

from .averaging import averaged_weights


class DistributedLoop:
    def __init__(self, model: Any, strategy: Any, global_batch: int, label_smoothing: float):
        import keras
        import tensorflow as tf

        self.model, self.strategy, self.global_batch = model, strategy, global_batch
        scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        if model.dtype_policy.name == "mixed_float16" and not scaled:
            raise ModelError(
                "float16 training needs loss scaling, but this model's optimizer is not a "
                "LossScaleOptimizer; compile it with cifar10_trainer.model.compile_model or "
                "start a new run. Received: optimizer="
                f"{type(model.optimizer).__name__}, policy mixed_float16"
            )
        self._loss = keras.losses.CategoricalCrossentropy(
            label_smoothing=label_smoothing, reduction=None
        )
        # reduce_retracing: the last validation batch is smaller, one more trace is enough.
        self._train = tf.function(self._train_step, reduce_retracing=True)
        self._eval = tf.function(self._eval_step, reduce_retracing=True)

    def _sums(self, y: Any, probs: Any, per_example: Any) -> Any:
        import tensorflow as tf

        correct = tf.cast(tf.equal(tf.argmax(y, 1), tf.argmax(probs, 1)), tf.float32)
        images = tf.cast(tf.shape(y)[0], tf.float32)
        return tf.stack([tf.reduce_sum(per_example), tf.reduce_sum(correct), images])

    def _train_step(self, batch: Any) -> Any:
        import tensorflow as tf

        model, optimizer = self.model, self.model.optimizer

        def replica_step(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                per_example = self._loss(y, probs)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)
                # x dynamic scale under mixed_float16 (a LossScaleOptimizer), else the loss.
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            # LossScaleOptimizer: unscales, and skips the update if any gradient is inf/NaN.
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            # Keras 3 creates BatchNorm's moving statistics with aggregation "none", so under
            # this strategy each worker would keep the statistics of its own shard only; their
            # mean across replicas keeps every worker's model identical (tf.keras 2's behaviour).
            stats = [v for v in model.non_trainable_variables if v.dtype.startswith("float")]
            if stats:
                ctx = tf.distribute.get_replica_context()
                mean = ctx.all_reduce(
                    tf.distribute.ReduceOp.MEAN, [tf.identity(v.value) for v in stats]
                )
                for var, value in zip(stats, mean, strict=True):
                    var.assign(value)
            return self._sums(y, probs, per_example)

        per_replica = self.strategy.run(replica_step, args=batch)
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def _eval_step(self, batch: Any) -> Any:
        import tensorflow as tf

        def replica_step(x: Any, y: Any) -> Any:
            def sums() -> Any:
                probs = self.model(x, training=False)
                return self._sums(y, probs, self._loss(y, probs))

            # The last batch of a split can leave a replica no rows; oneDNN's convolution
            # rejects an empty batch, so such a replica contributes zeros without running.
            return tf.cond(tf.shape(x)[0] > 0, sums, lambda: tf.zeros([3]))

        per_replica = self.strategy.run(replica_step, args=batch)
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def evaluate(self, dist_ds: Any) -> tuple[float, float, int]:
        """(mean loss, accuracy, images) over a distributed dataset, every image counted once."""
        totals = np.zeros(3)
        for batch in dist_ds:
            totals += self._eval(batch).numpy()
        return totals[0] / totals[2], totals[1] / totals[2], int(totals[2])

    def fit(
        self,
        train_ds: Any,
        val_ds: Any,
        *,
        epochs: int,
        initial_epoch: int,
        steps: int,
        val_images: int,
        on_epoch_end: Callable[[int, dict[str, float], float, float, float], None],
        verbose: int,
    ) -> str | None:
        """Train epochs initial_epoch+1..epochs; `on_epoch_end(epoch, row, train_s, wall_s,
        train_cpu_s)`.

        Returns None, or why training stopped early: the loss became NaN or infinite (that
        epoch is not passed to on_epoch_end, so the last finished epoch stays resumable)."""
        import keras

        dist_train = self.strategy.experimental_distribute_dataset(train_ds)
        dist_val = self.strategy.experimental_distribute_dataset(val_ds)
        metrics = ["loss", "accuracy", "val_loss", "val_accuracy"]
        for epoch in range(initial_epoch, epochs):
            bar = None
            if verbose:  # the chief only: the others are called with verbose=0
                print(f"Epoch {epoch + 1}/{epochs}", flush=True)
                bar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=metrics)
            start, cpu_start = time.perf_counter(), time.process_time()
            totals = np.zeros(3)
            for step, batch in enumerate(dist_train, start=1):
                totals += self._train(batch).numpy()
                if not np.isfinite(totals[0]):
                    return (
                        f"loss became {totals[0] / totals[2]} at batch {step} in epoch {epoch + 1}"
                    )
                if bar is not None and step < steps:  # the last update waits for validation
                    values = [("loss", totals[0] / totals[2]), ("accuracy", totals[1] / totals[2])]
                    bar.update(step, values)
            train_seconds = time.perf_counter() - start
            train_cpu_seconds = time.process_time() - cpu_start
            with averaged_weights(self.model):
                val_loss, val_acc, seen = self.evaluate(dist_val)
            if seen != val_images:  # every image once: a sharding mistake must not go unseen
                raise RuntimeError(f"validation saw {seen} images, expected {val_images}")
            lr = self.model.optimizer.learning_rate
            row = {
                "loss": float(totals[0] / totals[2]),
                "accuracy": float(totals[1] / totals[2]),
                "val_loss": float(val_loss),
                "val_accuracy": float(val_acc),
                "learning_rate": float(keras.ops.convert_to_numpy(lr)),
            }
            if not np.isfinite(val_loss):
                return f"val_loss became {val_loss} in epoch {epoch + 1}"
            if bar is not None:
                bar.update(steps, [(k, row[k]) for k in metrics], finalize=True)
            on_epoch_end(epoch, row, train_seconds, time.perf_counter() - start, train_cpu_seconds)
        return None
