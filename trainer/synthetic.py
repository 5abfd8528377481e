"""The synthetic twin of CIFAR-10: generated images of 10 learnable classes, for offline demos
and fast tests (every output it touches says SYNTHETIC; cifar10_trainer.data wraps it)."""

from __future__ import annotations

import numpy as np


def synthetic_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` uint8 [32, 32, 3] images and their labels: class k is a striped pattern with its own
    orientation, frequency and colour, under random phase, brightness and noise."""
    labels = np.arange(n, dtype=np.int64) % 10
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    angle = labels[:, None, None] * (np.pi / 10)
    freq = (0.25 + 0.08 * (labels % 5))[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    wave = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
    hue = np.stack(
        [np.cos(labels * 0.63), np.cos(labels * 0.63 + 2.1), np.cos(labels * 0.63 + 4.2)],
        axis=-1,
    )
    colour = 0.5 + 0.35 * hue[:, None, None, :]
    light = rng.uniform(0.7, 1.0, size=(n, 1, 1, 1))
    img = colour * light * (0.6 + 0.4 * wave[..., None])
    img += rng.normal(0, 0.06, size=img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), labels
