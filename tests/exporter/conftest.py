"""Fixtures of the exporter tests: a briefly trained model, hand-built Keras models, the CLI.

The trained model is the one `make fixtures` trained on the real subset when it is there
(FIXTURES/exported/run/model.keras), else one trained here with `cifar-train` (three epochs
of a narrow network on the subset). Everything TensorFlow is imported lazily, in fixtures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cifar10_exporter.cli import main

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[2]
# Same place tests/conftest.py's fixtures_dir reads (built by `make fixtures`).
FIXTURES = Path(os.environ.get("CIFAR10_FIXTURES", REPO / "build" / "fixtures"))
TINY_TRAIN = """\
filters = [16, 32]
dropout = [0.0, 0.0]
dense_units = 64
optimizer = "adam"
learning_rate = 0.003
batch_size = 64
epochs = 3
device = "cpu"
precision = "float32"
lr_schedule = "constant"
label_smoothing = 0.0
augment_flip = false
augment_crop_padding = 0
augment_cutout = 0
"""
# The keys left out take TrainConfig's defaults; the ones above pin this short run's recipe.
# precision float32: tests compare the ONNX with the Keras model itself to 1e-4, and a
# mixed_bfloat16 Keras model computes in bfloat16 (its export: test_export_mixed_precision.py).


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: object) -> CliResult:
    """`cifar-export ARGS` in this process (TensorFlow stays imported between calls)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug, not a user error: show its traceback
    return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture(scope="session")
def cli():
    return run_cli


@pytest.fixture(scope="session")
def trained_model(subset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Keras model (with run metrics.json beside it) trained briefly on the real subset."""
    made = FIXTURES / "exported" / "run" / "model.keras"
    source = FIXTURES / "exported" / "source.json"
    if made.is_file() and source.is_file() and json.loads(source.read_text())["real_subset"]:
        return made
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    config = run_dir.parent / "tiny.toml"
    config.write_text(TINY_TRAIN)
    cmd = [
        sys.executable,
        "-m",
        "cifar10_trainer.cli",
        "--config",
        str(config),
        "--data-dir",
        str(subset_dir),
        "--output-dir",
        str(run_dir),
        "--quiet",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return run_dir / "model.keras"


@pytest.fixture(scope="session")
def subset_test_images(subset_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from cifar10_trainer.data import load_dataset

    data = load_dataset("cifar10", subset_dir)
    return data.x_test, data.y_test


@pytest.fixture(scope="session")
def exported(trained_model: Path, subset_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`cifar-export out/model.onnx --model TRAINED --data-dir SUBSET` (default 512 samples),
    without the int8 twin (its own tests export it: test_export_int8.py)."""
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    args = (
        "--model",
        trained_model,
        "--data-dir",
        subset_dir,
        "--threads",
        1,
        "--quantize",
        "none",
    )
    result = run_cli(out, *args)
    return out, result


@pytest.fixture(scope="session")
def keras_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small untrained Keras models from outside the trainer, saved once per session."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("keras_models")
    models: dict[str, keras.Model] = {}

    # Residual network, float input in [0, 1], logits out (no softmax).
    inp = keras.Input((32, 32, 3), name="pixels")
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = layers.Conv2D(8, 3, padding="same")(x)
    y = layers.BatchNormalization()(y)
    x = layers.Activation("relu")(layers.Add()([x, y]))
    x = layers.GlobalAveragePooling2D()(x)
    models["residual_logits_float"] = keras.Model(inp, layers.Dense(10)(x))

    # Float input in [0, 255]: the model rescales itself; softmax out.
    inp = keras.Input((32, 32, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = layers.Conv2D(4, 3, activation="relu")(x)
    x = layers.MaxPooling2D(4)(x)
    out = layers.Dense(10, activation="softmax")(layers.Flatten()(x))
    models["raw_float_softmax"] = keras.Model(inp, out)

    # uint8 input like the trainer's, Sequential with a separate Softmax layer.
    models["uint8_sequential"] = keras.Sequential(
        [
            keras.Input((32, 32, 3), dtype="uint8"),
            layers.Rescaling(1 / 255),
            layers.Conv2D(4, 3, strides=2, activation="relu"),
            layers.Flatten(),
            layers.Dense(10),
            layers.Softmax(),
        ]
    )

    # Models that cannot meet the contract.
    inp = keras.Input((28, 28, 1))
    out = layers.Dense(10, activation="softmax")(layers.Flatten()(inp))
    models["mnist_28x28x1"] = keras.Model(inp, out)
    a, b = keras.Input((32, 32, 3)), keras.Input((4,))
    out = layers.Dense(10)(layers.Concatenate()([layers.Flatten()(a), b]))
    models["two_inputs"] = keras.Model([a, b], out)
    inp = keras.Input((32, 32, 3))
    models["five_outputs"] = keras.Model(inp, layers.Dense(5)(layers.Flatten()(inp)))
    inp = keras.Input((32, 32, 3))
    flat = layers.Flatten()(inp)
    models["two_outputs"] = keras.Model(inp, [layers.Dense(10)(flat), layers.Dense(10)(flat)])

    paths = {}
    for name, model in models.items():
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
    paths["raw_float_softmax_h5"] = folder / "raw_float_softmax.h5"
    models["raw_float_softmax"].save(paths["raw_float_softmax_h5"])
    return paths


@pytest.fixture(scope="session")
def raw_models(subset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A small CNN trained a few epochs on the subset on float pixels in [0, 255] with no
    rescaling layer (what `--input-scale auto` must find by evidence), and its variants:

    - bgr: the same network with its first conv's input channels reversed, i.e. exactly a
      model trained on BGR images (no second training run needed);
    - shuffled: the classifier's outputs rolled by 5 (a model trained with another class order);
    - random: the same architecture, untrained.
    `accuracy`: Keras top-1 on the subset's test split fed float(image) RGB, computed here.
    """
    import keras
    from keras import layers

    from cifar10_trainer.data import load_dataset

    keras.utils.set_random_seed(0)
    data = load_dataset("cifar10", subset_dir)

    def build() -> keras.Model:
        inp = keras.Input((32, 32, 3))
        x = inp
        for filters in (16, 32):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            x = layers.MaxPooling2D(2)(x)
        out = layers.Dense(10, activation="softmax")(layers.Flatten()(x))
        return keras.Model(inp, out)

    folder = tmp_path_factory.mktemp("raw_models")
    model = build()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(data.x_train.astype("float32"), data.y_train, epochs=5, batch_size=64, verbose=0)
    probs = model.predict(data.x_test.astype("float32"), verbose=0)
    paths: dict[str, object] = {"accuracy": float((probs.argmax(1) == data.y_test).mean())}
    paths["raw"] = folder / "raw.keras"
    model.save(paths["raw"])

    first = next(layer for layer in model.layers if isinstance(layer, layers.Conv2D))
    kernel, bias = first.get_weights()
    first.set_weights([kernel[:, :, ::-1, :], bias])
    paths["bgr"] = folder / "bgr.keras"
    model.save(paths["bgr"])
    first.set_weights([kernel, bias])

    head = model.layers[-1]
    kernel, bias = head.get_weights()
    head.set_weights([np.roll(kernel, 5, axis=1), np.roll(bias, 5)])
    paths["shuffled"] = folder / "shuffled.keras"
    model.save(paths["shuffled"])

    paths["random"] = folder / "random.keras"
    build().save(paths["random"])
    return paths


@pytest.fixture(scope="session")
def outlier_model(tmp_path_factory) -> Path:
    """The middle conv's activations all sit near 1000 and the signal is the small rest (the
    next conv's bias cancels the offset in fp32): no uint8 scale holds both, so every
    recipe, first conv and head kept float or not, flips most answers."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3), dtype="uint8")
    x = layers.Conv2D(8, 3, strides=2, activation="relu")(layers.Rescaling(1 / 255)(inp))
    offset = layers.Conv2D(8, 3, strides=2, activation="relu")
    cancel = layers.Conv2D(16, 3)
    x = layers.Flatten()(cancel(offset(x)))
    model = keras.Model(inp, layers.Dense(10, activation="softmax")(x))
    kernel, _ = offset.get_weights()
    offset.set_weights([kernel, np.full(8, 1000.0, np.float32)])
    kernel, _ = cancel.get_weights()
    cancel.set_weights([kernel, -1000.0 * kernel.sum(axis=(0, 1, 2))])
    path = tmp_path_factory.mktemp("outlier") / "outlier.keras"
    model.save(path)
    return path
