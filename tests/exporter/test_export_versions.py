"""The model version where it is made: `--model-version` and the one derived from
the run folder's or file's name. Control characters are refused (exit 2, one line); Unicode is
kept as it is in the metadata (the runtime percent-encodes it for headers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cifar10_exporter.config import ExportConfig
from cifar10_exporter.outputs.metadata import default_model_version
from cifar10_runtime.errors import ConfigError
from cifar10_trainer.run import Run

SHA = "2fc6665b" + "0" * 56


def _run_folder(root: Path, name: str) -> Path:
    run = root / "runs" / name
    run.mkdir(parents=True)
    (run / "model.keras").write_bytes(b"k")
    config = {"parameters": {"dataset": "cifar10", "data_dir": None}, "data": {}}
    (run / "config.json").write_text(json.dumps(config))
    return run / "model.keras"


def test_a_unicode_run_folder_keeps_its_name(tmp_path: Path) -> None:
    model = _run_folder(tmp_path, "运行1")
    assert default_model_version(model, SHA, Run.of_model(model)) == "运行1-2fc6665b"
    assert ExportConfig(output=tmp_path / "m.onnx", model_version="运行1").model_version == "运行1"


@pytest.mark.parametrize("name", ["run\nX-Injected: 1", "run\r2", "tab\there"])
def test_a_derived_version_with_control_characters_is_refused(tmp_path: Path, name: str) -> None:
    model = _run_folder(tmp_path, name)
    with pytest.raises(ConfigError) as caught:
        default_model_version(model, SHA, Run.of_model(model))
    message = str(caught.value)
    assert message.startswith("the version made from the run folder's name cannot be")
    assert "Pass --model-version with printable text" in message and "\n" not in message
    loose = tmp_path / f"{name}.keras"
    loose.write_bytes(b"k")
    with pytest.raises(ConfigError, match="made from the model file's name"):
        default_model_version(loose, SHA)


@pytest.mark.parametrize("version", ["v1\r\nX-Injected: 1", "a\x00", "", "x" * 200])
def test_model_version_flag_is_checked(tmp_path: Path, cli, version: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="^--model-version cannot be a model version: "):
        ExportConfig(output=tmp_path / "m.onnx", model_version=version)
    (tmp_path / "model.keras").write_bytes(b"k")
    result = cli(
        tmp_path / "m.onnx", "--model", tmp_path / "model.keras", "--model-version", version
    )
    assert result.exit_code == ConfigError.exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --model-version cannot be"), lines
    assert not (tmp_path / "m.onnx").exists()
