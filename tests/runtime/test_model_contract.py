"""Loading models: the contract check, metadata, foreign float models, providers."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cifar10_runtime import CifarError, ConfigError, ImageError, ModelError, Predictor
from cifar10_runtime.errors import cli_errors
from cifar10_runtime.model import CIFAR10_CLASS_NAMES

IMAGES = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)


def gpu_visible() -> bool:
    """An NVIDIA device node or tool: without one, no CUDA provider can become active."""
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


CUDA_BUILD = "CUDAExecutionProvider" in ort.get_available_providers()


def test_contract_model_loads_with_its_metadata(valid_model: Path) -> None:
    p = Predictor(valid_model, threads=1, providers="cpu")
    assert p.input_name == "image" and p.output_name == "probabilities"
    assert p.input_dtype == np.uint8
    assert p.class_names == CIFAR10_CLASS_NAMES
    assert p.model_version == "tiny-1.0"
    assert p.providers == ["CPUExecutionProvider"]
    assert isinstance(p.session, ort.InferenceSession)
    meta = p.metadata
    assert meta["class_names_source"] == "model metadata"
    assert meta["metrics"] == {"test_accuracy": 0.1, "test_loss": 2.3}  # parsed JSON
    assert meta["parity"]["passed"] is True
    assert meta["input_spec"]["dtype"] == "uint8"
    assert meta["source_sha256"] == "ab" * 32
    assert set(meta["producer_versions"]) == {"onnx", "opset"}


def test_model_bytes_load_like_the_file(valid_model: Path) -> None:
    from_bytes = Predictor(valid_model.read_bytes(), threads=1)
    from_file = Predictor(str(valid_model), threads=1)
    assert from_bytes.source == "<in-memory model>"
    np.testing.assert_array_equal(from_bytes.predict_array(IMAGES), from_file.predict_array(IMAGES))


def test_foreign_float_model_is_scaled_and_gets_default_names(models_dir: Path) -> None:
    foreign = Predictor(models_dir / "foreign_float.onnx", threads=1)
    contract = Predictor(models_dir / "valid.onnx", threads=1)
    assert foreign.input_dtype == np.float32
    assert (foreign.input_name, foreign.output_name) == ("input_1", "dense_2")
    assert foreign.class_names == CIFAR10_CLASS_NAMES
    assert "default CIFAR-10 names" in foreign.metadata["class_names_source"]
    assert foreign.model_version.startswith("sha256:")
    # Same weights, scaling done by the runtime instead of the graph: identical outputs.
    np.testing.assert_array_equal(foreign.predict_array(IMAGES), contract.predict_array(IMAGES))
    assert foreign.predict(IMAGES[0]) == foreign.predict(IMAGES[0].copy())


def test_fixed_batch_model_runs_any_batch_size(models_dir: Path) -> None:
    fixed = Predictor(models_dir / "foreign_fixed_batch.onnx", threads=1)
    contract = Predictor(models_dir / "valid.onnx", threads=1)
    assert fixed.fixed_batch == 1
    np.testing.assert_array_equal(fixed.predict_array(IMAGES), contract.predict_array(IMAGES))
    assert fixed.predict(IMAGES[3]).index == contract.predict(IMAGES[3]).index


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("wrong_shape", ["wrong input", "uint8 [N,28,28,1]", "uint8 [N,32,32,3]"]),
        ("nchw_float", ["wrong input", "float [N,3,32,32]", "NHWC"]),
        ("wrong_dtype_float64", ["wrong input", "double [N,32,32,3]", "float32 [N,32,32,3]"]),
        ("wrong_dtype_int32", ["wrong input", "int32 [N,32,32,3]"]),
        ("two_inputs", ["has 2 inputs", "image: uint8", "mask: float", "single image input"]),
        ("five_classes", ["wrong output", "probabilities: float [N,5]", "[N,10]"]),
        ("argmax_output", ["wrong output", "label: int64 [N]", "softmax"]),
        ("logits", ["is not a softmax", "Add a Softmax"]),
        ("missing_class_names", ["no 'class_names'", "Received keys: input_spec"]),
        ("class_names_nine", ["'class_names' must be a JSON list of 10", "ship"]),
        ("class_names_not_json", ["'class_names' must be", "airplane,automobile"]),
    ],
)
def test_contract_violations_are_one_clear_model_error(
    models_dir: Path, name: str, expected: list[str]
) -> None:
    path = models_dir / f"{name}.onnx"
    with pytest.raises(ModelError) as caught:
        Predictor(path, threads=1)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_missing_and_unreadable_model_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model file not found: .*absent\.onnx"):
        Predictor(tmp_path / "absent.onnx")
    with pytest.raises(ModelError, match="not a file"):
        Predictor(tmp_path)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"definitely not a protobuf")
    with pytest.raises(ModelError, match=r"cannot load .*garbage\.onnx as an ONNX model"):
        Predictor(garbage)
    with pytest.raises(ModelError, match="cannot load <in-memory model>"):
        Predictor(b"\x00\x01not onnx")
    with pytest.raises(ModelError, match="path or ONNX bytes"):
        Predictor(12)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "code"), [(ConfigError, 2), (ModelError, 4), (ImageError, 5), (CifarError, 1)]
)
def test_cli_errors_give_one_line_and_a_distinct_exit_code(
    error: type[CifarError], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited, cli_errors():
        raise error("model.onnx: the fix")
    assert exited.value.code == code
    assert capsys.readouterr().err == "error: model.onnx: the fix\n"
    with pytest.raises(error), cli_errors(verbose=True):  # --verbose keeps the traceback
        raise error("kept")


def test_providers_cpu_and_unknown(valid_model: Path) -> None:
    assert Predictor(valid_model, providers="cpu").providers == ["CPUExecutionProvider"]
    listed = Predictor(valid_model, providers=["CPUExecutionProvider"])
    assert listed.providers == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="NopeExecutionProvider is not available"):
        Predictor(valid_model, providers="NopeExecutionProvider")
    with pytest.raises(ConfigError, match="threads must be a positive integer"):
        Predictor(valid_model, threads=0)


def test_auto_resolves_to_what_this_onnxruntime_can_run(valid_model: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = Predictor(valid_model, providers="auto")
    fallback = [w for w in caught if "CUDAExecutionProvider was requested" in str(w.message)]
    if not CUDA_BUILD:
        assert p.providers == ["CPUExecutionProvider"] and not fallback
        with pytest.raises(ConfigError, match="CUDAExecutionProvider is not available"):
            Predictor(valid_model, providers="cuda")
    elif p.providers[0] == "CUDAExecutionProvider":
        assert p.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"] and not fallback
    else:  # a CUDA build without a usable GPU: the fallback is announced, never silent
        assert p.providers == ["CPUExecutionProvider"] and fallback


@pytest.mark.skipif(
    not (CUDA_BUILD and gpu_visible()), reason="needs onnxruntime-gpu and a visible NVIDIA GPU"
)
def test_cuda_runs_the_model_when_a_gpu_is_visible(valid_model: Path) -> None:
    gpu = Predictor(valid_model, providers="cuda")
    cpu = Predictor(valid_model, providers="cpu")
    assert gpu.providers[0] == "CUDAExecutionProvider"
    assert Predictor(valid_model, providers="auto").providers[0] == "CUDAExecutionProvider"
    np.testing.assert_allclose(gpu.predict_array(IMAGES), cpu.predict_array(IMAGES), atol=1e-4)
