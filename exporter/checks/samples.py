"""The images the parity and int8 checks run on, and the int8 calibration images.

Sources, in order: `--data-dir DIR` (real CIFAR-10, the test split), `--dataset synthetic`,
else what the Keras model's trainer run used (read through `cifar10_trainer.run.Run`: a
data_dir that still exists, or synthetic), else the Keras cache's CIFAR-10 if present, else
synthetic data. The source is printed and recorded in the parity JSON. The dataset images
carry their labels (synthetic ones too), so accuracy is measured on them. Edge cases
(all-zero, all-255, noise) are always added; they carry label -1 (no label) and count only
for the Keras/ONNX comparison (and serve as the output-kind probe).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from cifar10_exporter.config import ExportConfig
from cifar10_runtime.contract import IMAGE_SHAPE
from cifar10_trainer.run import Run

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
    synthetic: bool
    split: str = "test"
    data_source: str | None = None  # the loader's source (folder, archive, synthetic(seed=..))

    @property
    def labelled(self) -> np.ndarray:
        return self.labels >= 0

    def labelled_set(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The dataset images (uint8 [N, 32, 32, 3]) and their labels; None when unlabelled."""
        keep = self.labelled
        return self.images[keep], (self.labels[keep] if self.n_dataset else None)


def edge_cases(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(len(EDGE_CASES) - 2, *IMAGE_SHAPE), dtype=np.uint8)
    flat = [np.zeros(IMAGE_SHAPE, np.uint8), np.full(IMAGE_SHAPE, 255, np.uint8)]
    return np.concatenate([np.stack(flat), noise])


def choose_data(config: ExportConfig, run: Run | None = None) -> DataChoice:
    if config.data_dir is not None:
        return DataChoice("cifar10", config.data_dir, "--data-dir")
    if config.dataset is not None:
        return DataChoice(config.dataset, None, f"--dataset {config.dataset}")
    if run is not None and run.dataset == "synthetic":
        return DataChoice("synthetic", None, f"the model's run trained on it ({run.config_path})")
    if run is not None and run.data_dir is not None and run.data_dir.exists():
        return DataChoice("cifar10", run.data_dir, f"the model's run data_dir ({run.config_path})")
    from cifar10_trainer.data import BATCH_DIR, TEST_FILE, keras_cache_dir

    cache = keras_cache_dir() / BATCH_DIR
    if (cache / TEST_FILE).is_file():
        return DataChoice("cifar10", cache, "found in the Keras cache")
    return DataChoice(
        "synthetic", None, "no real CIFAR-10 found: pass --data-dir DIR to check on real images"
    )


def to_output_order(labels: np.ndarray, data_names, output_names) -> np.ndarray:
    """Labels as indices of the model's outputs: when --class-names lists the dataset's names
    in another order (a model trained with another label order), label y becomes the output
    index of its name. Other names cannot be matched: the order is taken as the dataset's."""
    if set(output_names) != set(data_names) or tuple(output_names) == tuple(data_names):
        return labels
    index = np.array([list(output_names).index(name) for name in data_names])
    return index[labels]


@lru_cache(maxsize=4)
def _load(dataset: str, data_dir: str | None, seed: int):
    from cifar10_trainer.data import load_dataset

    return load_dataset(dataset, data_dir, seed=seed)


def load_samples(config: ExportConfig, run: Run | None = None) -> tuple[Samples, DataChoice]:
    """`config.samples` labelled test images from the chosen source plus the edge cases."""
    choice = choose_data(config, run)
    edge = edge_cases(config.seed)
    images, labels, source, synthetic, data_source = (
        np.zeros((0, *IMAGE_SHAPE), np.uint8),
        np.zeros(0, np.int64),
        "edge cases only",
        False,
        None,
    )
    if config.samples > 0:
        data = _load(choice.dataset, str(choice.data_dir) if choice.data_dir else None, config.seed)
        images, labels = data.x_test[: config.samples], data.y_test[: config.samples]
        labels = to_output_order(labels, data.class_names, config.class_names)
        split = "synthetic test split" if data.synthetic else "cifar10 test split"
        source, synthetic = f"{split}: {data.source}", data.synthetic
        data_source = data.source
    samples = Samples(
        images=np.concatenate([images, edge]),
        labels=np.concatenate([labels.astype(np.int64), np.full(len(edge), -1, np.int64)]),
        source=f"{source} + {len(edge)} edge cases ({', '.join(EDGE_CASES)})",
        dataset_source=source,
        n_dataset=len(images),
        synthetic=synthetic,
        data_source=data_source,
    )
    return samples, choice


def calibration_images(config: ExportConfig, run: Run | None = None) -> tuple[np.ndarray, str]:
    """`config.calibration_samples` training images (evenly spread) for int8 calibration."""
    choice = choose_data(config, run)
    data = _load(choice.dataset, str(choice.data_dir) if choice.data_dir else None, config.seed)
    n = min(config.calibration_samples, len(data.x_train))
    index = np.linspace(0, len(data.x_train) - 1, n).round().astype(int)
    return data.x_train[index], f"{n} training images of {data.source}"
