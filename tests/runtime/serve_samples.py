"""PNG bodies generated for the serving tests: any image will do, so none comes from ../shared.

(Module name unique across tests/: see runtime_samples.py.)
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def sample_images(count: int, seed: int = 0) -> np.ndarray:
    """`count` deterministic uint8 [32,32,3] images: smooth colour fields plus noise, so the
    model's answers differ from image to image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:32, 0:32].astype(np.float32) / 31
    out = np.empty((count, 32, 32, 3), np.uint8)
    for i in range(count):
        a, b, c = rng.uniform(0, 255, 3)
        base = np.stack([a * x, b * y, c * (1 - x * y)], axis=-1)
        noise = rng.normal(0, 25, (32, 32, 3))
        out[i] = np.clip(base + noise, 0, 255).astype(np.uint8)
    return out


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def sample_pngs(count: int, seed: int = 0) -> list[bytes]:
    return [png_bytes(image) for image in sample_images(count, seed)]


def write_pngs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(sample_pngs(count, seed)):
        path = folder / f"{i:03d}.png"
        path.write_bytes(data)
        paths.append(path)
    return paths
