"""The reference two-block VGG-style CNN, with its preprocessing inside the model.

The model takes uint8 RGB images, so the exported ONNX graph does too and no client has to
know how the trainer scaled its inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cifar10_runtime.contract import IMAGE_SHAPE, INPUT_NAME, NUM_CLASSES, OUTPUT_NAME

from .config import TrainConfig

if TYPE_CHECKING:
    import keras


def build_model(cfg: TrainConfig, num_classes: int = NUM_CLASSES) -> keras.Model:
    """Per block Conv3x3 x2 -> BatchNorm -> MaxPool 2 -> Dropout; Flatten -> Dense -> softmax."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name=INPUT_NAME)
    x = layers.Rescaling(1.0 / 255.0, name="scale_to_unit")(inputs)
    for block, (filters, rate) in enumerate(zip(cfg.filters, cfg.dropout, strict=True), start=1):
        for conv in (1, 2):
            x = layers.Conv2D(
                filters,
                3,
                padding="same",
                activation="relu",
                kernel_initializer="he_uniform",
                name=f"block{block}_conv{conv}",
            )(x)
        x = layers.BatchNormalization(momentum=cfg.bn_momentum, name=f"block{block}_bn")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        x = layers.Dropout(rate, seed=cfg.seed + block, name=f"block{block}_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(
        cfg.dense_units, activation="relu", kernel_initializer="he_uniform", name="dense"
    )(x)
    if cfg.dense_dropout > 0:
        x = layers.Dropout(cfg.dense_dropout, seed=cfg.seed, name="dense_dropout")(x)
    # float32 under every policy: a 16-bit softmax loses small probabilities, and the loss and
    # metrics computed from it stay float32 too (the export rebuilds all of it in float32).
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name="cifar10_vgg2")


# The moving average spans at most 1/10 of the steps (0.999 = ~1,000 steps: 64 epochs at batch
# 16 are ~18,000), so at the end the initial weights weigh exp(-10) in it.
EMA_SPAN_FRACTION_INV = 10


def warmup_epochs(cfg: TrainConfig) -> int:
    """The epochs the learning rate rises over: cfg.warmup_epochs, but at most half the run, so
    a short run (`--epochs 2` for a smoke test) still trains at its full rate for a while."""
    return min(cfg.warmup_epochs, cfg.epochs // 2)


def ema_momentum(cfg: TrainConfig, steps_per_epoch: int) -> float:
    """cfg.ema_momentum, lowered so the average spans at most a tenth of the run's steps: Keras
    starts the average at the initial weights and never corrects for it, so 0.999 over a
    2-epoch run (~570 steps) would still be 56% the untrained network."""
    steps = max(1, cfg.epochs * steps_per_epoch)
    return min(cfg.ema_momentum, max(0.0, 1.0 - EMA_SPAN_FRACTION_INV / steps))


def build_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """SGD+momentum (the reference) or Adam, with a constant or cosine learning rate after an
    optional linear warm-up (warmup_epochs), and optionally a moving average of the weights."""
    import keras

    lr: float | keras.optimizers.schedules.LearningRateSchedule = cfg.learning_rate
    warmup = warmup_epochs(cfg) * steps_per_epoch
    if cfg.lr_schedule == "cosine" or warmup:
        # Keyed on optimizer.iterations, which the checkpoint restores, so --resume stays on curve.
        # alpha=1 makes the "decay" flat: a constant schedule after its warm-up.
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else cfg.learning_rate,
            cfg.epochs * steps_per_epoch - warmup,
            alpha=0.0 if cfg.lr_schedule == "cosine" else 1.0,
            warmup_target=cfg.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    common = {
        "learning_rate": lr,
        "weight_decay": cfg.weight_decay or None,  # Keras applies it decoupled, as AdamW does
        "use_ema": cfg.ema_momentum > 0,
        "ema_momentum": ema_momentum(cfg, steps_per_epoch) or 0.99,
    }
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(**common)
    return keras.optimizers.SGD(momentum=cfg.momentum, nesterov=cfg.nesterov, **common)


def compile_model(model: keras.Model, cfg: TrainConfig, steps_per_epoch: int) -> None:
    """Loss and metrics see the float32 softmax, so they are float32 under every policy."""
    import keras

    optimizer = build_optimizer(cfg, steps_per_epoch)
    if model.dtype_policy.name == "mixed_float16":
        # float16's narrow range underflows small gradients: dynamic loss scaling, explicit so
        # fit and the custom loop (which calls scale_loss/apply_gradients) share one optimizer.
        # bfloat16 has float32's exponent range and needs none.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
