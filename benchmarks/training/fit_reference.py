"""The reference's way of training, for the training-throughput comparison (run as a subprocess).

Same network (cifar10_trainer's builder, same layers and initialisers) and optimiser as
`cifar-train --config configs/seed.toml`, but fed the way the reference notebook did it:
the whole training set as a float32 array scaled to [0,1] in memory, one-hot labels, a plain
`model.fit(x, y, batch_size=32)` with Keras' own validation split. No tf.data pipeline, no
per-epoch checkpoints, no op determinism. Prints one JSON line.

    python -m benchmarks.training.fit_reference --data-dir DIR --epochs 2 [--dataset synthetic]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import numpy as np
    import tensorflow as tf

    from cifar10_trainer.config import REPO_CONFIGS, load_config
    from cifar10_trainer.data import load_dataset
    from cifar10_trainer.model import compile_model

    cfg = load_config(args.config or REPO_CONFIGS / "seed.toml", epochs=args.epochs)
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(args.precision)
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    data = load_dataset(args.dataset, args.data_dir, seed=cfg.seed)
    n = args.limit or len(data.x_train)
    x = data.x_train[:n].astype("float32") / 255.0
    y = np.eye(10, dtype="float32")[data.y_train[:n]]

    model = _float_input_model(cfg)
    steps = -(-math.floor(len(x) * (1.0 - cfg.validation_split)) // cfg.batch_size)
    compile_model(model, cfg, steps)

    timer = _EpochTimer.create()
    model.fit(
        x,
        y,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        validation_split=cfg.validation_split,
        callbacks=[timer],
        verbose=0,
    )
    n_train = math.floor(len(x) * (1.0 - cfg.validation_split))  # how Keras splits
    train_seconds = sum(timer.seconds)
    print(
        json.dumps(
            {
                "train_images": n_train,
                "epochs": cfg.epochs,
                "batch_size": cfg.batch_size,
                "epoch_train_seconds": timer.seconds,
                "train_seconds": train_seconds,
                "train_images_per_s": n_train * cfg.epochs / train_seconds,
                "train_cpu_seconds": sum(timer.cpu_seconds),
                "train_images_per_cpu_s": n_train * cfg.epochs / sum(timer.cpu_seconds),
                "synthetic": data.synthetic,
                "deterministic": args.deterministic,
                "precision": args.precision,
            }
        ),
        flush=True,
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "synthetic"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--config", default=None, help="TOML parameters file of the network")
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="enable TensorFlow op determinism, as cifar-train does on CPU",
    )
    parser.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "mixed_bfloat16", "mixed_float16"),
        help="Keras dtype policy (the classifier stays float32, as in cifar-train)",
    )
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all)")
    parser.add_argument("--limit", type=int, default=0, help="use the first N images (0: all)")
    return parser.parse_args(argv)


def _float_input_model(cfg: Any) -> Any:
    """The builder's model takes uint8 and rescales inside; the reference fed floats in [0,1]
    to the convolutions directly, so every layer after the Rescaling is reused on a float
    input."""
    import keras

    from cifar10_trainer.model import build_model

    built = build_model(cfg)
    inputs = keras.Input(shape=(32, 32, 3), dtype="float32", name="image")
    h = inputs
    for layer in built.layers:
        if isinstance(layer, keras.layers.InputLayer | keras.layers.Rescaling):
            continue
        h = layer(h)
    return keras.Model(inputs, h, name="reference_float_input")


class _EpochTimer:
    """Seconds of each epoch's training part, validation excluded (as cifar-train counts)."""

    @staticmethod
    def create():  # noqa: ANN205 - a keras Callback
        import keras

        class EpochTimer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.seconds: list[float] = []
                self.cpu_seconds: list[float] = []

            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                self._start, self._cpu = time.perf_counter(), time.process_time()
                self._done = False

            def on_test_begin(self, logs: dict | None = None) -> None:
                if not self._done:
                    self._stop()
                    self._done = True

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                if not self._done:
                    self._stop()

            def _stop(self) -> None:
                self.seconds.append(time.perf_counter() - self._start)
                self.cpu_seconds.append(time.process_time() - self._cpu)

        return EpochTimer()


if __name__ == "__main__":
    main()
