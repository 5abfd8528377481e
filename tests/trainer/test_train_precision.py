"""Training precision: what `auto` picks, the numerics under mixed policies, the
explicit loss scaling of the custom loop, --resume's refusal of another precision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cifar10_runtime.errors import ConfigError
from cifar10_trainer import precision
from cifar10_trainer.config import TrainConfig
from cifar10_trainer.resume import check_same_run_setup, load_run_config
from cifar10_trainer.run import Run

CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 {extra}\n\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CPUINFO.format(extra="avx512f avx512_bf16"), {"fpu", "sse2", "avx512f", "avx512_bf16"}),
        ("processor : 0\nFeatures : fp asimd bf16\n", {"fp", "asimd", "bf16"}),  # ARM spelling
        ("processor : 0\n", None),  # no flags line: unreadable
    ],
)
def test_cpu_flags_are_read_from_cpuinfo(text: str, expected: set | None, tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    assert precision.cpu_flags(path) == (None if expected is None else frozenset(expected))


def test_unreadable_cpuinfo_is_none(tmp_path: Path) -> None:
    assert precision.cpu_flags(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("flags", "policy", "why"),
    [
        (
            {"avx512f", "amx_bf16", "amx_tile", "avx512_bf16"},
            "mixed_bfloat16",
            "amx_bf16+avx512_bf16",
        ),
        ({"avx512f", "avx512_bf16"}, "mixed_bfloat16", "CPU has avx512_bf16"),  # AMD EPYC
        ({"amx_bf16"}, "mixed_bfloat16", "CPU has amx_bf16"),
        ({"avx512f", "avx512_vnni"}, "float32", "no AMX-BF16 or AVX512-BF16"),
        (None, "float32", "CPU flags unreadable"),
    ],
)
def test_auto_on_a_cpu_follows_its_bf16_flags(flags: set | None, policy: str, why: str) -> None:
    chosen = precision.choose(
        "auto", use_gpu=False, flags=None if flags is None else frozenset(flags)
    )
    assert chosen.policy == policy and why in chosen.why


@pytest.mark.parametrize(
    ("caps", "policy"),
    [
        ([(8, 0)], "mixed_float16"),
        ([(7, 0), (8, 6)], "mixed_float16"),
        ([(6, 1)], "float32"),
        ([(8, 0), (6, 0)], "float32"),  # the slowest card decides for a mirrored run
        ([None], "float32"),  # a GPU that does not say
    ],
)
def test_auto_on_gpus_needs_compute_capability_7(caps: list, policy: str) -> None:
    assert precision.choose("auto", use_gpu=True, capabilities=caps).policy == policy


def test_explicit_choices_and_float16_on_a_cpu() -> None:
    for name in ("float32", "mixed_bfloat16"):
        chosen = precision.choose(name, use_gpu=False, flags=frozenset({"avx512_bf16"}))
        assert (chosen.policy, chosen.why) == (name, "asked for")
    slow = precision.choose("mixed_bfloat16", use_gpu=False, flags=frozenset({"avx2"}))
    assert slow.policy == "mixed_bfloat16" and slow.why.endswith("AVX512-BF16: slower")
    assert precision.choose("mixed_float16", use_gpu=True, capabilities=[(6, 1)]).policy == (
        "mixed_float16"
    )
    with pytest.raises(ConfigError, match=r"mixed_float16 needs a GPU .* Received: --precision"):
        precision.choose("mixed_float16", use_gpu=False, flags=frozenset({"avx512_bf16"}))


def _run_folder(tmp_path: Path, **config: object) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    base = {"parameters": {"epochs": 1}, "distributed": {"workers": 1, "replicas": 1}}
    (run / "config.json").write_text(json.dumps({**base, **config}))
    return run


def test_resume_refuses_another_precision_in_one_line(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, precision="mixed_bfloat16")
    same = {"workers": 1, "replicas": 1}
    check_same_run_setup(run, same, "mixed_bfloat16")  # the same: no error
    with pytest.raises(ConfigError) as err:
        check_same_run_setup(run, same, "float32")
    message = str(err.value)
    assert message.startswith(f"{run} was trained in mixed_bfloat16 and would continue in float32")
    assert message.endswith("Received: precision float32") and "\n" not in message


def test_runs_older_than_the_record_resume_in_their_precision(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, parameters={"epochs": 1, "mixed_precision": True})
    assert load_run_config(run).precision == "mixed_float16"
    with pytest.raises(ConfigError, match="trained in mixed_float16 and would continue in float32"):
        check_same_run_setup(run, {"workers": 1, "replicas": 1}, "float32")
    assert Run.load(run).precision == "mixed_float16"


# --- numerics (Keras, no training run)

keras = pytest.importorskip("keras")


@pytest.fixture
def policy():  # noqa: ANN201 - sets the global policy for one test, then restores float32
    def use(name: str) -> None:
        keras.mixed_precision.set_global_policy(name)

    yield use
    keras.mixed_precision.set_global_policy("float32")


def _small(**kw: object) -> TrainConfig:
    # No warm-up and no averaging: one step must move the weights by the full rate.
    return TrainConfig(
        filters=(4, 8),
        dense_units=8,
        optimizer="sgd",
        learning_rate=0.1,
        warmup_epochs=0,
        ema_momentum=0.0,
        **kw,
    )


@pytest.mark.parametrize("name", ["mixed_bfloat16", "mixed_float16"])
def test_softmax_loss_metrics_and_batchnorm_stay_float32(name: str, policy) -> None:  # noqa: ANN001
    from cifar10_trainer.model import build_model, compile_model

    policy(name)
    model = build_model(_small())
    compile_model(model, _small(), steps_per_epoch=1)
    conv = model.get_layer("block1_conv1")
    assert conv.compute_dtype == name.removeprefix("mixed_") and conv.kernel.dtype == "float32"
    head = model.get_layer("probabilities")
    assert head.compute_dtype == "float32" and head.dtype_policy.name == "float32"
    bn = model.get_layer("block1_bn")
    assert {w.dtype for w in bn.weights} == {"float32"}  # gamma, beta, moving statistics
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    y = np.eye(10, dtype=np.float32)[[0, 1, 2, 3]]
    assert model(x).dtype == "float32"
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and {w.dtype for w in bn.weights} == {"float32"}
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (name == "mixed_float16")  # loss scaling for float16 only


def test_custom_loop_scales_and_unscales_the_loss_under_float16(policy) -> None:  # noqa: ANN001
    """One step of the multi-worker loop's step function: with the loss scaled by the dynamic
    scale (256 here, so the first step cannot overflow and be skipped) and the gradients
    unscaled, the update equals float32's (to float16 rounding); forgetting either would
    change it by a factor of 256."""
    import tensorflow as tf

    from cifar10_trainer.custom_loop import DistributedLoop
    from cifar10_trainer.model import build_model, compile_model

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
    cfg = _small(dropout=(0.0, 0.0))
    updates = {}
    for name in ("float32", "mixed_float16"):
        policy(name)
        keras.utils.set_random_seed(0)
        model = build_model(cfg)
        compile_model(model, cfg, steps_per_epoch=1)
        model.optimizer.build(model.trainable_variables)
        if isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer):
            model.optimizer.dynamic_scale.assign(256.0)
        before = [w.copy() for w in model.get_weights()]
        loop = DistributedLoop(model, tf.distribute.get_strategy(), 8, 0.0)
        sums = loop._train((tf.constant(x), tf.constant(y))).numpy()
        assert np.isfinite(sums).all() and sums[2] == 8
        dense = [i for i, w in enumerate(model.weights) if w.path.endswith("dense/kernel")][0]
        updates[name] = model.get_weights()[dense] - before[dense]
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert float(model.optimizer.dynamic_scale) == 256.0  # a finite step: applied, scale kept
    ref, got = updates["float32"], updates["mixed_float16"]
    assert np.abs(ref).max() > 1e-4
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_custom_loop_refuses_float16_without_loss_scaling(policy) -> None:  # noqa: ANN001
    import tensorflow as tf

    from cifar10_runtime.errors import ModelError
    from cifar10_trainer.custom_loop import DistributedLoop
    from cifar10_trainer.model import build_model

    policy("mixed_float16")
    model = build_model(_small())
    model.compile(optimizer="sgd", loss="categorical_crossentropy", auto_scale_loss=False)
    with pytest.raises(ModelError, match="float16 training needs loss scaling"):
        DistributedLoop(model, tf.distribute.get_strategy(), 8, 0.0)


@pytest.mark.parametrize(
    ("details", "expected"),
    [
        ({"compute_capability": (8, 6), "device_name": "A10"}, (8, 6)),
        ({"device_name": "no capability said"}, None),
        (ValueError("not a GPU"), None),
    ],
)
def test_gpu_capability_from_tensorflow(details: object, expected: object, monkeypatch) -> None:  # noqa: ANN001
    import tensorflow as tf

    def fake(device: object) -> dict:
        if isinstance(details, Exception):
            raise details
        return details

    monkeypatch.setattr(tf.config.experimental, "get_device_details", fake)
    assert precision.gpu_capability(object()) == expected


def test_the_trainer_reads_cpu_flags_through_the_one_reader(tmp_path: Path) -> None:
    from cifar10_runtime.engines import cpu
    from cifar10_trainer import precision

    assert precision.cpu_flags is cpu.cpu_flags
    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: Test CPU\nflags\t\t: fpu avx512_bf16\n")
    assert cpu.cpu_flags(info) == frozenset({"fpu", "avx512_bf16"})
    assert cpu.read_cpuinfo(info) == ("Test CPU", {"fpu", "avx512_bf16"})
    assert cpu.cpu_flags(tmp_path / "missing") is None
