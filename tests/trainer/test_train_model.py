"""The network matches the reference specification layer by layer."""

from __future__ import annotations

import numpy as np
import pytest

from cifar10_trainer.config import REPO_CONFIGS, load_config
from cifar10_trainer.model import build_model, compile_model, ema_momentum, warmup_epochs

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    m = build_model(load_config(REPO_CONFIGS / "seed.toml"))
    compile_model(m, load_config(REPO_CONFIGS / "seed.toml"), steps_per_epoch=10)
    return m


def test_layers_in_order(model) -> None:  # noqa: ANN001
    kinds = [type(layer).__name__ for layer in model.layers]
    block = ["Conv2D", "Conv2D", "BatchNormalization", "MaxPooling2D", "Dropout"]
    assert kinds == ["InputLayer", "Rescaling", *block, *block, "Flatten", "Dense", "Dense"]


def test_conv_layers(model) -> None:  # noqa: ANN001
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 32, 64, 64]
    for conv in convs:
        assert conv.kernel_size == (3, 3) and conv.padding == "same"
        assert conv.activation.__name__ == "relu"
        assert isinstance(conv.kernel_initializer, keras.initializers.HeUniform)


def test_pooling_dropout_and_head(model) -> None:  # noqa: ANN001
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert all(p.pool_size == (2, 2) for p in pools)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.2, 0.3]  # more dropout in block 2
    hidden, out = model.layers[-2], model.layers[-1]
    assert hidden.units == 128 and hidden.activation.__name__ == "relu"
    assert isinstance(hidden.kernel_initializer, keras.initializers.HeUniform)
    assert out.units == 10 and out.activation.__name__ == "softmax" and out.name == "probabilities"
    assert out.dtype_policy.compute_dtype == "float32"


def test_shapes_and_preprocessing_inside(model) -> None:  # noqa: ANN001
    assert model.input.dtype == "uint8" and tuple(model.input.shape) == (None, 32, 32, 3)
    assert model.layers[1].scale == pytest.approx(1 / 255)
    assert [tuple(layer.output.shape) for layer in model.layers if "pool" in layer.name] == [
        (None, 16, 16, 32),
        (None, 8, 8, 64),
    ]
    probs = model.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0)
    assert probs.shape == (2, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_optimizer_and_loss_from_config(model) -> None:  # noqa: ANN001
    opt = model.optimizer
    assert isinstance(opt, keras.optimizers.SGD)
    assert float(opt.learning_rate) == pytest.approx(0.001) and opt.momentum == pytest.approx(0.9)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    default = load_config()
    m2 = build_model(default)
    compile_model(m2, default, steps_per_epoch=10)
    assert isinstance(m2.optimizer, keras.optimizers.Adam)
    assert isinstance(m2.optimizer._learning_rate, keras.optimizers.schedules.CosineDecay)


def test_warmup_cosine_and_weight_averaging_from_config() -> None:
    cfg = load_config(None, epochs="4", warmup_epochs="1", ema_momentum="0.999", bn_momentum="0.9")
    m = build_model(cfg)
    compile_model(m, cfg, steps_per_epoch=10)
    schedule = m.optimizer._learning_rate
    lr = [float(schedule(step)) for step in (0, 5, 10, 25, 40)]
    # 0 -> the peak over the first epoch's 10 steps, then cosine down to 0 at the last step.
    assert lr[0] == 0 and lr[1] == pytest.approx(cfg.learning_rate / 2)
    assert lr[2] == pytest.approx(cfg.learning_rate) and lr[2] > lr[3] > lr[4]
    assert lr[4] == pytest.approx(0, abs=1e-9)
    # 40 steps: the average spans 4 of them (a tenth), not 0.999's ~1,000
    assert m.optimizer.use_ema and m.optimizer.ema_momentum == pytest.approx(0.75)
    bns = [layer for layer in m.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(layer.momentum == pytest.approx(0.9) for layer in bns)


@pytest.mark.parametrize(
    ("epochs", "asked", "warm"),
    [(64, 2, 2), (4, 2, 2), (3, 2, 1), (2, 2, 1), (1, 2, 0), (10, 0, 0)],
)
def test_the_warmup_takes_at_most_half_the_run(epochs: int, asked: int, warm: int) -> None:
    cfg = load_config(None, epochs=str(epochs), warmup_epochs=str(asked))
    assert warmup_epochs(cfg) == warm
    m = build_model(cfg)
    compile_model(m, cfg, steps_per_epoch=10)
    schedule = m.optimizer._learning_rate
    first = float(schedule(0))
    assert first == (0 if warm else pytest.approx(cfg.learning_rate))


def test_a_constant_schedule_after_its_warmup_stays_at_the_rate() -> None:
    cfg = load_config(None, epochs="4", warmup_epochs="1", lr_schedule="constant")
    m = build_model(cfg)
    compile_model(m, cfg, steps_per_epoch=10)
    schedule = m.optimizer._learning_rate
    lr = [float(schedule(step)) for step in (0, 5, 10, 25, 39)]
    assert lr[0] == 0 and lr[1] == pytest.approx(cfg.learning_rate / 2)
    assert lr[2:] == pytest.approx([cfg.learning_rate] * 3)


def test_the_weight_average_spans_at_most_a_tenth_of_a_short_run() -> None:
    """Keras starts the average at the initial weights: over few steps 0.999 would keep most
    of the untrained network, so the momentum is lowered to span a tenth of the steps."""
    long = load_config(None, epochs="64", ema_momentum="0.999")
    assert ema_momentum(long, steps_per_epoch=287) == pytest.approx(0.999)
    short = load_config(None, epochs="2", ema_momentum="0.999")
    m = ema_momentum(short, steps_per_epoch=287)
    assert m == pytest.approx(1 - 10 / 574)
    assert m**574 < 1e-4  # what is left of the initial weights at the end
    model = build_model(short)
    compile_model(model, short, steps_per_epoch=287)
    assert model.optimizer.ema_momentum == pytest.approx(m)
    off = load_config(None, epochs="2", ema_momentum="0")
    assert ema_momentum(off, steps_per_epoch=287) == 0
