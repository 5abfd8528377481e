"""The checks of a TrainConfig's values: ranges, choices and the settings that go together.

Every problem is a ConfigError naming the setting, what it received and the fix, raised when
the config is built (from a file, flags or code), before TensorFlow starts.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from cifar10_runtime.errors import ConfigError

# Ints reach TensorFlow as int32 (shapes, batch sizes) or numpy seeds (uint32).
INT_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def check(cfg: Any) -> None:
    """Every range and choice of `cfg` (a TrainConfig: config.py imports this module, so it
    is not named here); the first problem found is the one named."""
    _check_ranges(cfg)
    _check_choice("dataset", cfg.dataset, ("cifar10", "synthetic"))
    _check_choice("optimizer", cfg.optimizer, ("sgd", "adam"))
    _check_choice("lr_schedule", cfg.lr_schedule, ("constant", "cosine"))
    _check_choice("keep", cfg.keep, ("last", "best"))
    _check_choice("device", cfg.device, ("auto", "cpu", "gpu"))
    _check_choice("strategy", cfg.strategy, ("none", "mirrored", "multi-worker"))
    _check_choice("precision", cfg.precision, PRECISIONS)
    if not cfg.filters or any(f <= 0 for f in cfg.filters):
        raise ConfigError(f"filters must be positive. Received: filters={list(cfg.filters)}")
    if len(cfg.dropout) != len(cfg.filters):
        raise ConfigError(
            f"dropout needs one rate per block ({len(cfg.filters)}). "
            f"Received: dropout={list(cfg.dropout)}"
        )
    for name in ("epochs", "batch_size", "dense_units", "peer_timeout"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1. Received: {name}={getattr(cfg, name)}")
    for name, value in [("learning_rate", cfg.learning_rate)]:
        if value <= 0:
            raise ConfigError(f"{name} must be positive. Received: {name}={value}")
    rates = [*cfg.dropout, cfg.dense_dropout, cfg.label_smoothing, cfg.momentum]
    rates += [cfg.bn_momentum, cfg.ema_momentum]
    if any(not 0.0 <= r < 1.0 for r in rates):
        raise ConfigError(
            "dropout, dense_dropout, label_smoothing, momentum, bn_momentum and "
            f"ema_momentum must be in [0, 1). Received: {rates}"
        )
    for name in (
        "augment_crop_padding",
        "augment_cutout",
        "cpu_replicas",
        "weight_decay",
        "threads",
        "warmup_epochs",
    ):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} cannot be negative. Received: {getattr(cfg, name)}")
    if cfg.cpu_replicas > 1 and cfg.strategy != "mirrored":
        raise ConfigError(
            f"cpu_replicas only makes sense with strategy='mirrored'. "
            f"Received: cpu_replicas={cfg.cpu_replicas}, strategy={cfg.strategy!r}"
        )


def _check_ranges(cfg: Any) -> None:
    """NaN/inf floats and ints TensorFlow cannot hold, before any comparison below."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{f.name} must be a finite number. Received: {f.name}={v}")
            limit = SEED_MAX if f.name == "seed" else INT_MAX
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > limit:
                raise ConfigError(
                    f"{f.name} is too large (at most {limit}). Received: {f.name}={v}"
                )
    if not 0.0 < cfg.validation_split < 1.0:
        raise ConfigError(
            f"validation_split must be in (0, 1). Received: validation_split={cfg.validation_split}"
        )
    if cfg.seed < 0:
        raise ConfigError(f"seed cannot be negative. Received: seed={cfg.seed}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"{name} must be one of {list(choices)}; pick one of them. Received: {name}={value!r}"
        )
