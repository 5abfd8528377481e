"""Every bad parameter, run folder or label is one line before TensorFlow starts.

Non-finite, out-of-range and undecodable values, damaged run folders and labels live here;
the parameters files' key and type strictness lives in test_train_config.py (once).
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cifar10_trainer
from cifar10_runtime.errors import ConfigError
from cifar10_trainer.batches import parse_batch
from cifar10_trainer.config import REPO_CONFIGS, TrainConfig, load_config
from cifar10_trainer.errors import DataError
from cifar10_trainer.outputs import ensure_writable_run_dir
from cifar10_trainer.resume import load_run_config


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cifar10_trainer.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


def one_line(res: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert message in lines[0], res.stderr


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (b"learning_rate = nan\n", "learning_rate must be a finite number"),
        (b"momentum = -inf\n", "momentum must be a finite number"),
        (b"label_smoothing = inf\n", "label_smoothing must be a finite number"),
        (b"dropout = [nan, 0.1]\n", "dropout must be a finite number"),
        (b'filters = "32,64"\n', "filters must be a list"),
        (b"batch_size = 99999999999999999999\n", "batch_size is too large"),
        (b"filters = [32, 99999999999]\n", "filters is too large"),
        (b"seed = 4294967296\n", "seed is too large"),
        (b"seed = -1\n", "seed cannot be negative"),
        (b"validation_split = 1.5\n", "validation_split must be in (0, 1)"),
        (b"learning_rate = [0.1]\n", "learning_rate must be float"),
        (b"dense_units = {a = 1}\n", "dense_units must be int"),
        (b'dataset = "caf\xe9"\n', "is not UTF-8 text"),
    ],
)
def test_bad_parameters_file_values_are_config_errors(
    toml: bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(toml)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_flags_arrive_as_text_but_not_nan() -> None:
    # Typed overrides themselves: test_train_config.test_overrides_win_and_are_typed.
    with pytest.raises(ConfigError, match="--learning-rate: learning_rate must be a finite"):
        load_config(None, learning_rate="nan")


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="learning_rate must be a finite number"):
        TrainConfig(learning_rate=float("nan"))


def test_configs_ship_in_the_package_and_the_readme_path_works_anywhere(tmp_path: Path) -> None:
    assert REPO_CONFIGS.parent == Path(cifar10_trainer.__file__).parent  # package data
    here = Path.cwd()
    try:
        os.chdir(tmp_path)  # no configs/ folder here: the shipped file is used
        assert load_config("configs/seed.toml") == load_config(REPO_CONFIGS / "seed.toml")
        assert load_config("seed").optimizer == "sgd"
        with pytest.raises(ConfigError, match="shipped: configs/default.toml"):
            load_config("configs/nope.toml")
    finally:
        os.chdir(here)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([3.7, 8.9]), "3.7 at index 0"),
        (np.array([1.0, np.nan]), "nan at index 1"),
        (np.array(["cat", "dog"]), "'cat' at index 0"),
        ([1, "x"], "at index 0"),  # a mixed list becomes strings: every element is refused
    ],
)
def test_labels_must_be_class_numbers(labels: object, message: str) -> None:
    raw = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels})
    with pytest.raises(DataError, match="not a class number 0..9") as err:
        parse_batch(raw, "data_batch_1")
    assert message in str(err.value)


def test_whole_float_labels_are_accepted() -> None:
    raw = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": np.array([3.0, 9.0])})
    assert parse_batch(raw, "b")[1].tolist() == [3, 9]
    assert parse_batch(raw, "b")[1].dtype == np.int64


def test_output_dir_that_is_a_file_fails_before_tensorflow(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        ensure_writable_run_dir(blocker)
    with pytest.raises(ConfigError, match="is a file"):
        ensure_writable_run_dir(blocker / "run")
    ensure_writable_run_dir(tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()  # the check creates nothing


def test_cli_output_dir_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    res = run("--dataset", "synthetic", "--output-dir", "taken", cwd=tmp_path)
    one_line(res, 2, "--output-dir taken is a file, not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_one_line(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res = run("--dataset", "synthetic", "--output-dir", "ro/run", cwd=tmp_path)
        one_line(res, 2, "cannot write --output-dir ro/run")
    finally:
        ro.chmod(0o755)


def test_cli_non_utf8_and_nan_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "latin1.toml").write_bytes(b'dataset = "caf\xe9"\n')
    one_line(run("--config", "latin1.toml", cwd=tmp_path), 2, "latin1.toml is not UTF-8 text")
    (tmp_path / "nan.toml").write_text("learning_rate = nan\ndataset = 'synthetic'\n")
    one_line(run("--config", "nan.toml", cwd=tmp_path), 2, "learning_rate must be a finite")
    assert not (tmp_path / "runs").exists()


def _run_folder(tmp_path: Path, config: str | None, state: str | None = None) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if config is not None:
        (run_dir / "config.json").write_text(config)
    if state is not None:
        (run_dir / "state.json").write_text(state)
        (run_dir / "checkpoint.keras").write_bytes(b"")
    return run_dir


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('{"parameters": {"epochs": 2', "config.json (JSONDecodeError: Expecting"),
        ("[1, 2]", "config.json is damaged (not a JSON object)"),
        ('{"params": {}}', "config.json has no 'parameters' object"),
        ('{"parameters": {"epochs": 2, "warmup": 3}}', "unknown key 'warmup'"),
        ('{"parameters": {"learning_rate": NaN}}', "learning_rate must be a finite number"),
        ('{"parameters": {"augment_flip": "yes"}}', "augment_flip must be bool"),
    ],
)
def test_resume_from_a_damaged_or_foreign_config_json(
    config: str, message: str, tmp_path: Path
) -> None:
    run_dir = _run_folder(tmp_path, config)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_run_config(run_dir)


def test_cli_resume_damaged_files_are_one_line(tmp_path: Path) -> None:
    _run_folder(tmp_path, '{"parameters": {"epochs": 2, "warmup": 3}}')
    one_line(
        run("--resume", "--output-dir", "run", cwd=tmp_path), 2, "run/config.json: unknown key"
    )
    good = '{"parameters": {"dataset": "synthetic", "epochs": 2}}'
    for i, (state, message) in enumerate(
        [
            ("{oops", "state.json (JSONDecodeError: Expecting"),
            ('{"epoch": "one"}', "state.json is damaged or from another version: key 'epoch'"),
        ]
    ):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        _run_folder(folder, good, state)
        one_line(run("--resume", "--output-dir", "run", cwd=folder), 2, message)
