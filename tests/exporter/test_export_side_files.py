"""Side files (.parity.json, .export.json, temporaries) always match the model beside them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cifar10_exporter.errors import ParityError
from cifar10_exporter.outputs.files import ArtifactPaths


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_killed_exports_temporaries_are_removed_by_the_next(tmp_path) -> None:
    paths = ArtifactPaths.for_output(tmp_path / "model.onnx")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [
        tmp_path / ".model.onnx.k2j4x_9q.onnx",  # as kill -9 left them before pids were added
        tmp_path / f".model.onnx.{dead.pid}.abcdefgh.onnx",
        tmp_path / f".model.parity.json.{dead.pid}.x1y2z3w4.json",
    ]
    live = tmp_path / f".model.onnx.{os.getpid()}.abcdefgh.onnx"
    for path in (*stale, live):
        path.write_bytes(b"partial")
    assert sorted(paths.remove_stale()) == sorted(stale)
    assert live.exists() and not any(p.exists() for p in stale)


@pytest.mark.slow
def test_side_files_follow_the_model(keras_models, tmp_path, cli, monkeypatch) -> None:
    import cifar10_exporter.pipeline as pipeline
    import cifar10_exporter.steps as steps

    out = tmp_path / "model.onnx"
    paths = ArtifactPaths.for_output(out)
    args = ["--dataset", "synthetic", "--samples", 16, "--threads", 1, "--quantize", "none"]
    good = keras_models["uint8_sequential"]
    assert cli(out, "--model", good, *args).exit_code == 0
    kept = {p: p.read_bytes() for p in (out, paths.parity, paths.config)}
    assert json.loads(kept[paths.parity])["passed"] is True

    # --verify-only against another Keras file: exit 1, and the good report stays as it was.
    other = keras_models["raw_float_softmax"]
    result = cli(out, "--verify-only", "--model", other, *args)
    assert result.exit_code == ParityError.exit_code
    assert "exported from another Keras file" in _one_line(result)
    assert {p: p.read_bytes() for p in kept} == kept

    # A re-export that fails its check: the old model and its own reports stay together;
    # the failing report goes beside them under another name.
    real = steps.keras_reference
    monkeypatch.setattr(steps, "keras_reference", lambda *a, **k: real(*a, **k) + 1e-3)
    result = cli(out, "--model", good, *args)
    assert result.exit_code == ParityError.exit_code
    assert f"details in {tmp_path / 'model.rejected.parity.json'}" in _one_line(result)
    assert {p: p.read_bytes() for p in kept} == kept
    rejected = json.loads((tmp_path / "model.rejected.parity.json").read_text())
    assert rejected["passed"] is False
    monkeypatch.setattr(steps, "keras_reference", real)

    # A kill while the new model is written must not leave the old reports beside it:
    # they are gone before the new bytes land, and the new ones come after.
    seen = []
    write_bytes = pipeline.write_bytes

    def spy(target, data):
        seen.append((target, [p.name for p in paths.describing_onnx if p.exists()]))
        write_bytes(target, data)

    monkeypatch.setattr(pipeline, "write_bytes", spy)  # the models
    monkeypatch.setattr(steps, "write_bytes", spy)  # the card
    assert cli(out, "--model", good, *args).exit_code == 0
    # The model lands first, with no side file of the old one beside it; its card comes last.
    assert seen == [(out, []), (paths.card, [paths.parity.name])]
    assert json.loads(paths.parity.read_text())["passed"] is True
    assert paths.config.is_file()
