"""tf.data input pipelines: shuffle every epoch, augment training batches only, batch, prefetch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .config import TrainConfig

if TYPE_CHECKING:
    import tensorflow as tf


def _augment(cfg: TrainConfig):
    import tensorflow as tf

    pad, seed = cfg.augment_crop_padding, cfg.seed

    def augment(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if cfg.augment_flip:
            image = tf.image.random_flip_left_right(image, seed=seed)
        if pad:
            # Reflect padding keeps edge statistics; zero bars would be a tell the test set lacks.
            padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            image = tf.image.random_crop(padded, [32, 32, 3], seed=seed + 1)
        if cfg.augment_cutout:
            image = _cutout(image, cfg.augment_cutout, seed + 2)
        return image, label

    return augment


def _cutout(image: tf.Tensor, size: int, seed: int) -> tf.Tensor:
    import tensorflow as tf

    # The centre may sit near an edge, so part of the square can fall outside (as in DeVries
    # & Taylor 2017): the network sees partial occlusions too.
    cy, cx = tf.unstack(tf.random.uniform([2], 0, 32, dtype=tf.int32, seed=seed))
    offsets = tf.range(32)
    rows = (offsets >= cy - size // 2) & (offsets < cy - size // 2 + size)
    cols = (offsets >= cx - size // 2) & (offsets < cx - size // 2 + size)
    inside = tf.logical_and(rows[:, None], cols[None, :])[:, :, None]
    return tf.where(inside, tf.constant(128, image.dtype), image)  # mid grey ~ dataset mean


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig,
    *,
    training: bool,
    num_classes: int = 10,
    batch_size: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """uint8 images in, one-hot float labels out (what categorical cross-entropy wants)."""
    import tensorflow as tf

    labels = np.eye(num_classes, dtype=np.float32)[y]
    ds = tf.data.Dataset.from_tensor_slices((x, labels))
    if training:
        ds = ds.shuffle(len(x), seed=cfg.seed, reshuffle_each_iteration=True)
        if cfg.augment_flip or cfg.augment_crop_padding or cfg.augment_cutout:
            ds = ds.map(_augment(cfg), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # multi-worker passes the global batch (cfg.batch_size is then per replica) and drops the
    # last partial one when training: a replica left with no rows would make BatchNorm NaN.
    ds = ds.batch(batch_size or cfg.batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    # Sharding by data, not by file: arrays in memory have no files to shard.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
