"""Images fed to every engine: real CIFAR-10 test images when the subset is there, else synthetic.

The same uint8 arrays go to onnxruntime, the Predictor and Keras, and the encoded variants are
made from them, so every row of the table classifies the same pictures.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar10_subset import BATCH_DIR, DEFAULT_SUBSET, subset_available

__all__ = ["BATCH_DIR", "DEFAULT_SUBSET", "Images", "load_images", "subset_available"]


@dataclass(frozen=True)
class Images:
    arrays: np.ndarray  # uint8 [N, 32, 32, 3]
    source: str
    synthetic: bool


def _read_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    # Files we did not write go through the trainer's restricted unpickler, never pickle.load.
    from cifar10_trainer.batches import parse_batch

    x, y = parse_batch(path.read_bytes(), str(path))
    return x, [int(v) for v in y]


def load_images(n: int = 256, subset: Path = DEFAULT_SUBSET) -> Images:
    """`n` test images (repeated if the source has fewer), real when possible."""
    if subset_available(subset):
        x, _ = _read_batch(subset / BATCH_DIR / "test_batch")
        source, synthetic = str(subset), False
    else:
        from cifar10_trainer.data import load_synthetic

        x = load_synthetic(n_train=10, n_test=max(n, 10)).x_test
        source, synthetic = "synthetic", True
    reps = -(-n // len(x))
    return Images(np.ascontiguousarray(np.tile(x, (reps, 1, 1, 1))[:n]), source, synthetic)


def encode_png(arrays: np.ndarray) -> list[bytes]:
    from PIL import Image

    out = []
    for a in arrays:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def encode_jpeg(
    arrays: np.ndarray, size: tuple[int, int] = (640, 480), quality: int = 90
) -> list[bytes]:
    """Camera-sized JPEGs: each 32x32 image upscaled (bicubic) then encoded.

    Upscaled pictures compress better than photos do, so decode time is a slight underestimate
    of a real 640x480 photo's; the size of the decode and resize work is the same.
    """
    from PIL import Image

    out = []
    for a in arrays:
        buf = io.BytesIO()
        Image.fromarray(a).resize(size, Image.Resampling.BICUBIC).save(
            buf, format="JPEG", quality=quality
        )
        out.append(buf.getvalue())
    return out


def write_mini_dataset(
    target: Path, n_train: int, n_test: int, subset: Path = DEFAULT_SUBSET
) -> dict:
    """A small dataset in the official pickle format, for --quick training (a temp/build dir).

    Taken from the real subset when present, else from the synthetic generator (then labelled
    synthetic in the report, since the trainer will call it cifar10).
    """
    if subset_available(subset):
        xs, ys = [], []
        for i in range(1, 6):
            x, y = _read_batch(subset / BATCH_DIR / f"data_batch_{i}")
            xs.append(x)
            ys.extend(y)
        x_train, y_train = np.concatenate(xs), ys
        x_test, y_test = _read_batch(subset / BATCH_DIR / "test_batch")
        synthetic = False
    else:
        from cifar10_trainer.data import load_synthetic

        data = load_synthetic(n_train=n_train, n_test=n_test)
        x_train, y_train = data.x_train, [int(v) for v in data.y_train]
        x_test, y_test = data.x_test, [int(v) for v in data.y_test]
        synthetic = True
    folder = target / BATCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-n_train // 5)
    for i in range(5):
        sl = slice(i * per, min((i + 1) * per, n_train))
        _write_batch(folder / f"data_batch_{i + 1}", x_train[sl], y_train[sl])
    _write_batch(folder / "test_batch", x_test[:n_test], y_test[:n_test])
    return {
        "path": str(target),
        "train_images": n_train,
        "test_images": n_test,
        "synthetic": synthetic,
    }


def _write_batch(path: Path, x: np.ndarray, y: list[int]) -> None:
    rows = np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), -1))
    # Protocol 4 pickles arrays via numpy's _reconstruct, which the trainer's loader accepts.
    obj = {b"batch_label": b"benchmark mini batch", b"labels": list(y), b"data": rows}
    path.write_bytes(pickle.dumps(obj, protocol=4))
