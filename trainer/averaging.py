"""The moving average of the weights (`ema_momentum > 0`): what validation, selection and the
saved model see.

The optimizer keeps the average (Keras's `use_ema`) and updates it after every step; the model
trains on its own weights. Validation and model.keras use the average, swapped in for the time
it takes and swapped back after, while checkpoint.keras keeps the trained weights and the
optimizer's state (the average included), so `--resume` continues exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def averages(model: Any) -> bool:
    """Whether this model's optimizer keeps a moving average of the weights."""
    optimizer = getattr(model, "optimizer", None)
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # float16's LossScaleOptimizer
    return bool(getattr(inner, "use_ema", False))


@contextlib.contextmanager
def averaged_weights(model: Any) -> Iterator[None]:
    """Inside the block the model holds the averaged weights (a no-op without averaging)."""
    if not averages(model):
        yield
        return
    trained = [v.numpy() for v in model.trainable_variables]
    model.optimizer.finalize_variable_values(model.trainable_variables)
    try:
        yield
    finally:
        for variable, value in zip(model.trainable_variables, trained, strict=True):
            variable.assign(value)


def validation_callback() -> Any:
    """A Keras callback: `fit`'s validation pass sees the averaged weights."""
    import keras

    class AveragedValidation(keras.callbacks.Callback):
        def on_test_begin(self, logs: dict | None = None) -> None:
            self._swap = averaged_weights(self.model)
            self._swap.__enter__()

        def on_test_end(self, logs: dict | None = None) -> None:
            self._swap.__exit__(None, None, None)

    return AveragedValidation()
