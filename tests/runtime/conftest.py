"""Fixtures for the runtime tests. They must work in the runtime-only venv (no onnx, no TF).

Models come from `make_models.py` (FIXTURES/runtime) and the lead's fixture script
(FIXTURES/exported: a real model trained briefly on the CIFAR-10 subset, real images and
the probabilities plain onnxruntime gave for them).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar10_runtime import Predictor


@pytest.fixture(scope="session")
def models_dir(fixtures_dir: Path) -> Path:
    path = fixtures_dir / "runtime"
    if not (path / "valid.onnx").is_file():
        pytest.skip(
            f"no runtime test models in {path}: run "
            "`.venv/bin/python tests/runtime/make_models.py build/fixtures/runtime`"
        )
    return path


@pytest.fixture(scope="session")
def exported_dir(fixtures_dir: Path) -> Path:
    path = fixtures_dir / "exported"
    needed = ["model.onnx", "images.npy", "probabilities.npy", "png"]
    missing = [name for name in needed if not (path / name).exists()]
    if missing:
        pytest.skip(f"exported-model fixtures missing in {path}: {', '.join(missing)}")
    return path


@pytest.fixture(scope="session")
def valid_model(models_dir: Path) -> Path:
    return models_dir / "valid.onnx"


@pytest.fixture(scope="session")
def predictor(valid_model: Path) -> Predictor:
    """The tiny contract model; one thread keeps the suite polite on a shared machine."""
    return Predictor(valid_model, threads=1)


@pytest.fixture(scope="session")
def subset_images(subset_dir: Path) -> np.ndarray:
    """The first 64 real CIFAR-10 test images, uint8 [64,32,32,3] RGB."""
    with open(subset_dir / "cifar-10-batches-py" / "test_batch", "rb") as handle:
        batch = pickle.load(handle, encoding="bytes")
    data = np.asarray(batch[b"data"][:64], dtype=np.uint8)
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


@pytest.fixture(scope="session")
def subset_pngs(subset_images: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same real images written as PNG files, name order == array order."""
    folder = tmp_path_factory.mktemp("subset_png")
    for i, image in enumerate(subset_images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return folder
