"""The parameters files and their strictness: unknown keys and wrong types are errors."""

from __future__ import annotations

import json
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from cifar10_runtime.errors import ConfigError
from cifar10_trainer.config import REPO_CONFIGS, TrainConfig, load_config


def test_seed_config_is_the_reference() -> None:
    cfg = load_config(REPO_CONFIGS / "seed.toml")
    assert (cfg.optimizer, cfg.learning_rate, cfg.momentum) == ("sgd", 0.001, 0.9)
    assert (cfg.batch_size, cfg.epochs) == (32, 50)
    assert (cfg.filters, cfg.lr_schedule) == ((32, 64), "constant")
    assert not cfg.augment_flip and cfg.augment_crop_padding == 0 and cfg.label_smoothing == 0
    assert cfg.dropout[0] < cfg.dropout[1]  # more dropout in block 2


def test_default_config_is_the_same_network_with_training_only_changes() -> None:
    """The network stays the seed's: same blocks, filters and Dense width; only the dropout
    rates may differ, and they still rise by block."""
    seed, default = load_config(REPO_CONFIGS / "seed.toml"), load_config()
    network = ("filters", "dense_units")
    assert [getattr(default, k) for k in network] == [getattr(seed, k) for k in network]
    assert len(default.dropout) == len(seed.dropout)
    assert 0 < default.dropout[0] < default.dropout[1]  # a Dropout per block, rising
    assert default.augment_flip and default.augment_crop_padding > 0


def test_every_key_is_spelled_out_in_both_files() -> None:
    known = {f.name for f in fields(TrainConfig)} - {"data_dir"}
    for name in ("seed.toml", "default.toml"):
        text = (REPO_CONFIGS / name).read_text()
        missing = [k for k in known if f"\n{k} =" not in f"\n{text}"]
        assert not missing, f"{name} lacks {missing}"


def test_default_toml_equals_the_dataclass_defaults() -> None:
    """One default per setting: configs/default.toml (what the CLI loads) sets exactly the
    dataclass's defaults, and no key the dataclass lacks."""
    raw = tomllib.loads((REPO_CONFIGS / "default.toml").read_text(encoding="utf-8"))
    defaults = TrainConfig().to_dict()
    assert set(raw) <= set(defaults), f"unknown keys: {sorted(set(raw) - set(defaults))}"
    differ = {k: (v, defaults[k]) for k, v in raw.items() if v != defaults[k]}
    assert not differ, f"default.toml vs TrainConfig (toml, dataclass): {differ}"
    assert load_config() == TrainConfig()


def test_seed_toml_does_not_depend_on_the_dataclass_defaults() -> None:
    """The reference run spells out every key, so changing a default never changes it."""
    raw = tomllib.loads((REPO_CONFIGS / "seed.toml").read_text(encoding="utf-8"))
    assert set(raw) == {f.name for f in fields(TrainConfig)} - {"data_dir"}
    assert TrainConfig().data_dir is None


def test_overrides_win_and_are_typed() -> None:
    cfg = load_config(None, epochs="3", learning_rate="0.01", filters="16,32", augment_flip="false")
    assert (cfg.epochs, cfg.learning_rate, cfg.filters, cfg.augment_flip) == (
        3,
        0.01,
        (16, 32),
        False,
    )


def test_resolved_config_round_trips_through_json() -> None:
    cfg = load_config()
    assert (
        TrainConfig(
            **{
                k: (tuple(v) if isinstance(v, list) else v)
                for k, v in json.loads(json.dumps(cfg.to_dict())).items()
            }
        )
        == cfg
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("epochz = 3\n", r"unknown keys; use the known keys: .*Received: \['epochz'\]"),
        ('epochs = "ten"\n', r"epochs must be int. Received: epochs='ten'"),
        ("batch_size = 1.5\n", r"batch_size must be int"),
        ("augment_flip = 1\n", r"augment_flip must be bool"),
        ('augment_flip = "true"\n', r"augment_flip must be bool. Received: augment_flip='true'"),
        ('precision = "bf16"\n', r"precision must be one of \['auto', 'float32', "),
        ("mixed_precision = false\n", r"mixed_precision was replaced by precision \("),
        ('optimizer = "rmsprop"\n', r"optimizer must be one of \['sgd', 'adam'\]"),
        ("filters = [32, 64]\ndropout = [0.2]\n", r"one rate per block \(2\)"),
        ("learning_rate = -1\n", r"learning_rate must be positive"),
        ("epochs = [\n", r"not valid TOML"),
        ('strategy = "none"\ncpu_replicas = 2\n', r"cpu_replicas only makes sense"),
        ("ema_momentum = 1.0\n", r"ema_momentum must be in \[0, 1\)"),
        ("bn_momentum = -0.1\n", r"bn_momentum and ema_momentum must be in \[0, 1\)"),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_missing_file_and_bad_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; pass --config"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"--batch-size: batch_size must be int"):
        load_config(None, batch_size="big")
