"""`make demo`'s choices, without running it: which data, which environment, what it ends with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bare `pytest` does not put the repository root on sys.path
    sys.path.insert(0, str(REPO))

from demo import __main__ as demo  # noqa: E402


def test_the_shared_subset_is_found_and_said(subset_dir: Path) -> None:
    data = demo.pick_data(None, subset=subset_dir)
    assert not data.synthetic and data.args[0] == "--data-dir"
    assert Path(REPO, data.args[1]).resolve() == subset_dir.resolve()
    assert "real CIFAR-10 subset" in data.said


def test_synthetic_is_the_loud_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cifar10_trainer import data as trainer_data
    from cifar10_trainer.errors import DataError

    def offline(*_: object, **__: object) -> Path:
        raise DataError("cannot download CIFAR-10 (offline)")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(trainer_data, "download_archive", offline)
    data = demo.pick_data(None, subset=tmp_path / "no-subset")
    assert data.synthetic and data.args == ["--dataset", "synthetic"]
    assert "SYNTHETIC" in data.said and "offline" in data.said


def test_cpu_runs_hide_tensorflow_gpu_noise_and_gpu_runs_keep_the_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    cpu = demo.child_env("cpu")
    assert cpu["TF_CPP_MIN_LOG_LEVEL"] == "3" and cpu["CUDA_VISIBLE_DEVICES"] == ""
    monkeypatch.setattr(demo, "gpu_visible", lambda: True)
    for device in ("auto", "gpu"):
        env = demo.child_env(device)
        assert "CUDA_VISIBLE_DEVICES" not in env and "TF_CPP_MIN_LOG_LEVEL" not in env
    monkeypatch.setattr(demo, "gpu_visible", lambda: False)
    auto = demo.child_env("auto")
    assert auto["TF_CPP_MIN_LOG_LEVEL"] == "3" and "CUDA_VISIBLE_DEVICES" not in auto


def test_it_ends_with_the_commands_to_use_the_model(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "samples").mkdir(parents=True)
    (run / "samples" / "00_cat.png").write_bytes(b"")
    text = demo.next_steps(run, Path(".venv/bin"), synthetic=False)
    lines = text.splitlines()
    assert any(line.strip().startswith(".venv/bin/cifar-predict") for line in lines)
    assert any(
        ".venv/bin/cifar-serve" in line and str(run / "model.onnx") in line for line in lines
    )
    assert "00_cat.png" in lines[-1] and "/v1/predict" in lines[-1]
