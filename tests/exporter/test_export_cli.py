"""`cifar-export` errors a user can cause: one line, the right exit code, no file written."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cifar10_exporter import steps
from cifar10_exporter.cli import main
from cifar10_exporter.config import ExportConfig
from cifar10_exporter.errors import ParityError
from cifar10_exporter.int8.recipes import RECIPES
from cifar10_runtime.errors import ConfigError, ModelError
from cifar10_trainer.errors import DataError

HELP_PROBE = """
import sys
from cifar10_exporter.cli import main
try:
    main(["--help"])
except SystemExit as exc:
    code = exc.code
print("tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr)
sys.exit(code)
"""


def test_help_lists_the_flags_without_importing_tensorflow():
    """In a fresh process: `--help` must not pay for (or depend on) TensorFlow's import."""
    done = subprocess.run(
        [sys.executable, "-c", HELP_PROBE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for field in dataclasses.fields(ExportConfig):
        if field.name != "output":  # the OUTPUT argument
            assert _flag(field.name) in done.stdout, f"no {_flag(field.name)} in --help"
    assert "tensorflow imported: False" in done.stderr, done.stderr


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# One value other than the default per ExportConfig field: as typed, and as the config holds it.
# A new field needs a line here, and the flag that sets it (DESIGN.md: every key is a flag).
FLAG_VALUES: dict[str, tuple[list[str], object]] = {
    "model": (["--model", "m.keras"], Path("m.keras")),
    "opset": (["--opset", "16"], 16),
    "data_dir": (["--data-dir", "data"], Path("data")),
    "dataset": (["--dataset", "synthetic"], "synthetic"),
    "samples": (["--samples", "8"], 8),
    "atol": (["--atol", "0.001"], 0.001),
    "batch_sizes": (["--batch-sizes", "1,4"], (1, 4)),
    "quantize": (["--quantize", "int8"], "int8"),
    "calibration_samples": (["--calibration-samples", "7"], 7),
    "int8_min_agreement": (["--int8-min-agreement", "0.9"], 0.9),
    "int8_max_accuracy_drop": (["--int8-max-accuracy-drop", "0.02"], 0.02),
    "int8_recipes": (["--int8-recipes", list(RECIPES)[-1]], (list(RECIPES)[-1],)),
    "verify_only": (["--verify-only"], True),
    "force": (["--force"], True),
    "class_names": (["--class-names", "a,b,c,d,e,f,g,h,i,j"], tuple("abcdefghij")),
    "input_scale": (["--input-scale", "raw"], "raw"),
    "channel_order": (["--channel-order", "bgr"], "bgr"),
    "input_mean": (["--input-mean", "1,2,3"], (1.0, 2.0, 3.0)),
    "input_std": (["--input-std", "4,5,6"], (4.0, 5.0, 6.0)),
    "min_accuracy": (["--min-accuracy", "0.3"], 0.3),
    "max_drop_vs_trainer": (["--max-drop-vs-trainer", "0.1"], 0.1),
    "output_kind": (["--output-kind", "logits"], "logits"),
    "model_version": (["--model-version", "v9"], "v9"),
    "seed": (["--seed", "3"], 3),
    "threads": (["--threads", "2"], 2),
    "tta": (["--tta", "flip"], "flip"),
}


class _Stop(Exception):
    """Raised by the patched preflight: the config went no further than the CLI."""


@pytest.mark.parametrize(
    "name", [f.name for f in dataclasses.fields(ExportConfig) if f.name != "output"]
)
def test_every_config_field_is_set_by_its_flag(name, tmp_path, monkeypatch):
    """Built from dataclasses.fields(ExportConfig): a field without a flag, or a flag that
    does not reach its field, fails here (nothing is converted: preflight is stopped)."""
    assert name in FLAG_VALUES, f"ExportConfig.{name} has no case in FLAG_VALUES (and a flag?)"
    args, expected = FLAG_VALUES[name]
    seen: list[ExportConfig] = []

    def stop(config):
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(steps, "preflight", stop)
    result = CliRunner().invoke(main, [str(tmp_path / "m.onnx"), *args])
    assert isinstance(result.exception, _Stop), result.output
    (config,) = seen
    default = getattr(ExportConfig(output=tmp_path / "m.onnx"), name)
    assert getattr(config, name) == expected != default
    others = {f.name for f in dataclasses.fields(ExportConfig)} - {name, "output"}
    assert all(getattr(config, k) == getattr(ExportConfig(output=config.output), k) for k in others)


def test_flag_values_name_only_real_fields():
    fields = {f.name for f in dataclasses.fields(ExportConfig)}
    assert set(FLAG_VALUES) <= fields, set(FLAG_VALUES) - fields


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]


def test_missing_default_model(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    result = cli(tmp_path / "model.onnx")
    assert result.exit_code == ModelError.exit_code
    line = _one_line(result)
    assert "no Keras model at runs/latest/model.keras" in line and "cifar-train" in line
    assert "Received: --model=runs/latest/model.keras" in line
    assert list(tmp_path.iterdir()) == []


def test_model_of_the_wrong_kind(tmp_path, cli):
    (tmp_path / "model.pt").write_bytes(b"torch")
    result = cli(tmp_path / "model.onnx", "--model", tmp_path / "model.pt")
    assert result.exit_code == ModelError.exit_code
    assert ".keras (or legacy .h5)" in _one_line(result)


def test_corrupt_keras_file(tmp_path, cli):
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    result = cli(tmp_path / "model.onnx", "--model", tmp_path / "broken.keras")
    assert result.exit_code == ModelError.exit_code
    line = _one_line(result)
    assert "broken.keras is not a Keras model: a .keras file is a zip archive" in line
    assert "File not found" not in line  # what Keras itself says of a file that exists
    assert not (tmp_path / "model.onnx").exists()


def test_unwritable_output(tmp_path, cli):
    (tmp_path / "model.keras").write_bytes(b"k")
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "model.onnx"  # its folder is a file: nobody can write there
    result = cli(out, "--model", tmp_path / "model.keras")
    assert result.exit_code == ConfigError.exit_code
    line = _one_line(result)
    assert "cannot write" in line and f"Received: OUTPUT={out}" in line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--atol", "-1"], "--atol=-1.0"),
        (["--samples", "-5"], "--samples=-5"),
        (["--opset", "7"], "--opset=7"),
        (["--class-names", "cat,dog"], "--class-names=cat,dog"),
        (["--batch-sizes", "1,x"], "--batch-sizes=1,x"),
        (["--input-mean", "1,2"], "--input-mean=1,2"),
        (["--input-mean", "a,b,c"], "--input-mean=a,b,c"),
        (["--input-std", "60,0,60"], "--input-std=60,0,60"),
        (["--min-accuracy", "2"], "--min-accuracy=2.0"),
        (["--min-accuracy", "-0.1"], "--min-accuracy=-0.1"),
        (["--max-drop-vs-trainer", "2"], "--max-drop-vs-trainer=2.0"),
        (["--int8-max-accuracy-drop", "-1"], "--int8-max-accuracy-drop=-1.0"),
    ],
)
def test_bad_flags(tmp_path, cli, args, needle):
    result = cli(tmp_path / "model.onnx", *args)
    assert result.exit_code == ConfigError.exit_code
    assert needle in _one_line(result)


def test_output_must_be_onnx(tmp_path, cli):
    result = cli(tmp_path / "model.bin")
    assert result.exit_code == ConfigError.exit_code
    assert "ending in .onnx" in _one_line(result)


def test_verify_only_needs_an_existing_output(tmp_path, cli):
    (tmp_path / "model.keras").write_bytes(b"k")
    result = cli(tmp_path / "model.onnx", "--verify-only", "--model", tmp_path / "model.keras")
    assert result.exit_code == ModelError.exit_code
    assert "no ONNX model at" in _one_line(result)


def test_missing_data_dir(tmp_path, cli):
    (tmp_path / "model.keras").write_bytes(b"k")
    result = cli(
        tmp_path / "model.onnx",
        "--model",
        tmp_path / "model.keras",
        "--data-dir",
        tmp_path / "nowhere",
    )
    assert result.exit_code == DataError.exit_code
    assert "--data-dir" in _one_line(result)


def _change_one_weight(proto, delta: float = 0.5) -> None:
    """A real mismatch: the first conv kernel's first weight moves by `delta`."""
    from onnx import numpy_helper

    tensor = next(t for t in proto.graph.initializer if len(t.dims) == 4)
    weights = numpy_helper.to_array(tensor).copy()
    weights.flat[0] += delta
    tensor.CopyFrom(numpy_helper.from_array(weights, tensor.name))


@pytest.mark.slow
def test_output_written_only_when_parity_passes_unless_forced(
    keras_models, tmp_path, cli, monkeypatch
):
    """The converted graph gets one weight changed: parity fails, no OUTPUT; --force writes
    it, exit 1 all the same."""
    import cifar10_exporter.from_keras.convert as convert

    real = convert.convert_to_onnx

    def mismatched(*args, **kwargs):
        proto = real(*args, **kwargs)
        _change_one_weight(proto)
        return proto

    monkeypatch.setattr(convert, "convert_to_onnx", mismatched)
    out = tmp_path / "model.onnx"
    args = ["--model", keras_models["uint8_sequential"], "--dataset", "synthetic", "--samples", 16]
    result = cli(out, *args)
    assert result.exit_code == ParityError.exit_code
    line = _one_line(result)
    assert re.search(r"max \|diff\|: [0-9.e+-]+ > atol 0\.0001", line), line
    assert "was not written" in line
    assert not out.exists() and not out.with_suffix(".md").exists()
    report = json.loads((tmp_path / "model.parity.json").read_text())
    assert report["passed"] is False and report["failures"]

    result = cli(out, *args, "--force")
    assert result.exit_code == ParityError.exit_code
    assert "written anyway (--force)" in _one_line(result)
    assert out.is_file()


@pytest.mark.slow
def test_verify_only_fails_on_a_real_mismatched_onnx_file(keras_models, tmp_path, cli):
    """Export, change one weight of the file on disk, verify it through the CLI: exit 1."""
    import onnx

    out = tmp_path / "model.onnx"
    args = ["--model", keras_models["uint8_sequential"], "--dataset", "synthetic", "--samples", 16]
    args += ["--quantize", "none"]
    assert cli(out, *args).exit_code == 0
    assert cli(out, *args, "--verify-only").exit_code == 0
    proto = onnx.load(out)
    _change_one_weight(proto)
    onnx.save(proto, out)
    before = out.read_bytes()
    result = cli(out, *args, "--verify-only")
    assert result.exit_code == ParityError.exit_code
    line = _one_line(result)
    assert line.startswith("error: parity check failed") and "Re-export it" in line
    assert out.read_bytes() == before  # verification never rewrites the model


def test_saved_export_settings_round_trip(tmp_path):
    from cifar10_exporter.cli import _from_file
    from cifar10_exporter.config import ExportConfig

    cfg = ExportConfig(
        output=tmp_path / "a.onnx",
        atol=1e-5,
        batch_sizes=(1, 517),
        class_names=tuple("abcdefghij"),
        dataset="synthetic",
    )
    saved = tmp_path / "a.export.json"
    saved.write_text(json.dumps({"config": cfg.to_dict()}))
    again = _from_file(saved, tmp_path / "b.onnx")
    assert again == cfg.replace(output=tmp_path / "b.onnx")


def test_refused_export_leaves_no_new_folder(tmp_path, cli):
    (tmp_path / "model.keras").write_bytes(b"not a zip")
    out = tmp_path / "new" / "deeper" / "model.onnx"
    result = cli(out, "--model", tmp_path / "model.keras")
    assert result.exit_code == ModelError.exit_code
    assert not (tmp_path / "new").exists()
