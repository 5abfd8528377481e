"""The images the parity and int8 checks run on, and the int8 calibration images.

Sources, in order: `--data-dir DIR` (real CIFAR-10, the test split), `--dataset synthetic`,
else what the Keras model's run used (its `config.json`: a data_dir that still exists, or
synthetic), else the Keras cache's CIFAR-10 if present, else synthetic data. The source is
printed and recorded in the parity JSON. Edge cases (all-zero, all-255, noise) are always
added; they carry label -1 (no label) and count only for the Keras/ONNX comparison.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import ExportConfig

EDGE_CASES = ("all-zero", "all-255", "noise-1", "noise-2", "noise-3", "noise-4")


@dataclass(frozen=True)
class DataChoice:
    dataset: str  # "cifar10" or "synthetic"
    data_dir: Path | None
    why: str


@dataclass(frozen=True)
class Samples:
    images: np.ndarray  # uint8 [N, 32, 32, 3], dataset images first, then the edge cases
    labels: np.ndarray  # int64 [N], -1 for the edge cases
    source: str  # e.g. "cifar10 test split: /data/cifar-10-batches-py + 6 edge cases (...)"
    dataset_source: str  # the same without the edge cases
    n_dataset: int
    n_edge: int
    synthetic: bool

    @property
    def labelled(self) -> np.ndarray:
        return self.labels >= 0


def edge_cases(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(len(EDGE_CASES) - 2, 32, 32, 3), dtype=np.uint8)
    flat = [np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)]
    return np.concatenate([np.stack(flat), noise])


def choose_data(config: ExportConfig) -> DataChoice:
    if config.data_dir is not None:
        return DataChoice("cifar10", config.data_dir, "--data-dir")
    if config.dataset is not None:
        return DataChoice(config.dataset, None, f"--dataset {config.dataset}")
    run_config = Path(config.model).resolve().parent / "config.json"
    try:
        params = json.loads(run_config.read_text(encoding="utf-8"))["parameters"]
        dataset, data_dir = params.get("dataset"), params.get("data_dir")
    except (OSError, ValueError, KeyError, TypeError):
        dataset = data_dir = None
    if dataset == "synthetic":
        return DataChoice("synthetic", None, f"the model's run trained on it ({run_config})")
    if dataset == "cifar10" and data_dir and Path(data_dir).exists():
        return DataChoice("cifar10", Path(data_dir), f"the model's run data_dir ({run_config})")
    from cifar10_trainer.data import BATCH_DIR, TEST_FILE, keras_cache_dir

    cache = keras_cache_dir() / BATCH_DIR
    if (cache / TEST_FILE).is_file():
        return DataChoice("cifar10", cache, "found in the Keras cache")
    return DataChoice(
        "synthetic", None, "no real CIFAR-10 found: pass --data-dir DIR to check on real images"
    )


@lru_cache(maxsize=4)
def _load(dataset: str, data_dir: str | None, seed: int):
    from cifar10_trainer.data import load_dataset

    return load_dataset(dataset, data_dir, seed=seed)


def load_samples(config: ExportConfig) -> tuple[Samples, DataChoice]:
    """`config.samples` test images from the chosen source plus the edge cases."""
    choice = choose_data(config)
    edge = edge_cases(config.seed)
    images, labels, source, synthetic = (
        np.zeros((0, 32, 32, 3), np.uint8),
        np.zeros(0, np.int64),
        "edge cases only",
        False,
    )
    if config.samples > 0:
        data = _load(choice.dataset, str(choice.data_dir) if choice.data_dir else None, config.seed)
        images, labels = data.x_test[: config.samples], data.y_test[: config.samples]
        split = "synthetic test split" if data.synthetic else "cifar10 test split"
        source, synthetic = f"{split}: {data.source}", data.synthetic
    samples = Samples(
        images=np.concatenate([images, edge]),
        labels=np.concatenate([labels.astype(np.int64), np.full(len(edge), -1, np.int64)]),
        source=f"{source} + {len(edge)} edge cases ({', '.join(EDGE_CASES)})",
        dataset_source=source,
        n_dataset=len(images),
        n_edge=len(edge),
        synthetic=synthetic,
    )
    return samples, choice


def calibration_images(config: ExportConfig) -> tuple[np.ndarray, str]:
    """`config.calibration_samples` training images (evenly spread) for int8 calibration."""
    choice = choose_data(config)
    data = _load(choice.dataset, str(choice.data_dir) if choice.data_dir else None, config.seed)
    n = min(config.calibration_samples, len(data.x_train))
    index = np.linspace(0, len(data.x_train) - 1, n).round().astype(int)
    return data.x_train[index], f"{n} training images of {data.source}"
