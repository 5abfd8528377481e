"""Engines and precisions: the load-time golden-set self-check, the choice, forced engines.

Runs in the runtime-only venv too: the tests that need OpenVINO skip there, saying so, and
run in the full venv, which has the `openvino` extra (Makefile `install`).
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifar10_runtime import Predictor
from cifar10_runtime.contract import FP32_TOLERANCE, GOLDEN_KEY, PRECISIONS_KEY
from cifar10_runtime.engines import runners as engines_module
from cifar10_runtime.engines.golden import encode_golden, read_golden
from cifar10_runtime.errors import ConfigError, ModelError

OPENVINO, OPENVINO_MISSING = engines_module.openvino_backend()
needs_openvino = pytest.mark.skipif(
    OPENVINO is None, reason=f"OpenVINO is not usable here: {OPENVINO_MISSING}"
)
# Simulates a runtime installed without the extra, in a fresh interpreter: both packages of
# the extra fail to import, whatever this venv has.
WITHOUT_EXTRA = (
    "import sys; sys.modules['openvino'] = None; sys.modules['onnxruntime_ep_openvino'] = None; "
    "from cifar10_runtime.{module} import main; sys.argv[0] = '{name}'; main()"
)


def _cli(
    module: str, name: str, *args: str, hide_extra: bool = False
) -> subprocess.CompletedProcess:
    if hide_extra:
        code = WITHOUT_EXTRA.format(module=module, name=name)
    else:
        code = f"from cifar10_runtime.{module} import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def real_images(subset_dir: Path) -> np.ndarray:
    """All 500 real test images of the subset (98% agreement needs more than 64)."""
    with open(subset_dir / "cifar-10-batches-py" / "test_batch", "rb") as handle:
        batch = pickle.load(handle, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


@pytest.fixture()
def without_extra(monkeypatch: pytest.MonkeyPatch):
    """The extra absent in this process: imports fail, cached look-ups forgotten."""
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setitem(sys.modules, "onnxruntime_ep_openvino", None)
    engines_module._plugin_devices.cache_clear()
    engines_module._openvino_core.cache_clear()
    yield
    engines_module._plugin_devices.cache_clear()
    engines_module._openvino_core.cache_clear()


# --- the golden set itself ----------------------------------------------------------------


def test_golden_set_round_trips_and_a_broken_one_is_ignored_with_a_reason() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    probs = rng.random((3, 10), dtype=np.float32)
    record = encode_golden(images, probs, [1, 2, 3])
    precisions = {"allowed": ["fp32", "bf16"], "tolerances": {"bf16": 0.05}}
    golden, why = read_golden({GOLDEN_KEY: record, PRECISIONS_KEY: precisions})
    assert why == "" and golden is not None
    np.testing.assert_array_equal(golden.images, images)
    np.testing.assert_array_equal(golden.probabilities, probs)
    assert golden.allowed == ("fp32", "bf16") and golden.tolerance("bf16") == 0.05
    assert golden.tolerance("fp32") == FP32_TOLERANCE
    assert golden.max_diff(probs + 0.25) == pytest.approx(0.25)
    broken = {**record, "probabilities": {**record["probabilities"], "shape": [3, 9]}}
    none, why = read_golden({GOLDEN_KEY: broken})
    assert none is None and "cannot be read" in why and "[3, 9]" in why
    # A precision without a recorded tolerance is never allowed.
    golden, _ = read_golden({GOLDEN_KEY: record, PRECISIONS_KEY: {"allowed": ["fp32", "int8"]}})
    assert golden.allowed == ("fp32",)


# --- models without a golden set ----------------------------------------------------------


def test_a_model_without_golden_set_runs_onnxruntime_fp32_and_says_why(valid_model: Path) -> None:
    predictor = Predictor(valid_model, threads=1)
    assert predictor.engine == "onnxruntime/fp32" and predictor.precision == "fp32"
    assert "no golden set" in predictor.engine_choice["why"]
    assert "nothing else was tried" in predictor.engine_choice["why"]
    with pytest.raises(ConfigError, match="needs the export's evidence"):
        Predictor(valid_model, threads=1, precision="bf16")


def test_bad_engine_and_precision_names_are_config_errors(valid_model: Path) -> None:
    with pytest.raises(ConfigError, match="engine must be auto, onnxruntime, openvino"):
        Predictor(valid_model, engine="tensorflow")
    with pytest.raises(ConfigError, match="precision must be"):
        Predictor(valid_model, precision="fp16")
    with pytest.raises(ConfigError, match="no bf16 path"):
        Predictor(valid_model, engine="onnxruntime", precision="bf16")


# --- the exported model: self-check, refusal of a changed file ---------------------------


def test_the_exported_model_passes_its_golden_check(exported_dir: Path) -> None:
    predictor = Predictor(exported_dir / "model.onnx", threads=1, engine="onnxruntime")
    rows = {r["candidate"]: r for r in predictor.engine_choice["candidates"]}
    assert rows["onnxruntime/fp32"]["status"].startswith("passed")
    assert rows["onnxruntime/fp32"]["golden_max_diff"] <= FP32_TOLERANCE
    golden, _ = read_golden(predictor.metadata)
    assert golden is not None and len(golden.images) == 8
    describe = predictor.describe()
    assert describe["engine"] == predictor.engine == "onnxruntime/fp32"


def test_a_model_changed_after_export_is_refused_by_the_predictor(exported_dir: Path) -> None:
    with pytest.raises(ModelError) as caught:
        Predictor(exported_dir / "tampered.onnx", threads=1)
    message = str(caught.value)
    assert "no longer reproduces its golden outputs" in message
    assert "tolerance 0.0001" in message and "re-export" in message
    assert "\n" not in message


def test_the_self_check_can_be_turned_off_by_a_caller_that_checks_itself(
    exported_dir: Path,
) -> None:
    predictor = Predictor(exported_dir / "tampered.onnx", threads=1, self_check=False)
    assert predictor.engine == "onnxruntime/fp32"
    assert "turned off by the caller" in predictor.engine_choice["why"]
    original = Predictor(exported_dir / "model.onnx", threads=1, engine="onnxruntime")
    golden, _ = read_golden(original.metadata)
    assert golden.max_diff(predictor.predict_array(golden.images)) > FP32_TOLERANCE


def test_a_model_changed_after_export_is_refused_by_cifar_predict(
    exported_dir: Path, subset_pngs: Path
) -> None:
    png = str(sorted(subset_pngs.glob("*.png"))[0])
    result = _cli("cli.predict", "cifar-predict", str(exported_dir / "tampered.onnx"), png)
    assert result.returncode == 4, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "golden outputs" in lines[0]


def test_a_model_changed_after_export_never_gets_served(exported_dir: Path) -> None:
    result = _cli("cli.serve", "cifar-serve", str(exported_dir / "tampered.onnx"), "--port", "0")
    assert result.returncode == 4, result.stderr
    assert "golden outputs" in result.stderr
    assert "Uvicorn running" not in result.stderr  # refused before any port was bound


# --- forced engines and precisions that cannot run here ----------------------------------


def test_forced_openvino_without_the_extra(exported_dir: Path, without_extra) -> None:
    with pytest.raises(ConfigError) as caught:
        Predictor(exported_dir / "model.onnx", threads=1, engine="openvino")
    message = str(caught.value)
    assert "engine openvino is not available here" in message
    assert 'pip install "cifar10-runtime[openvino]"' in message
    assert "Received: engine='openvino'" in message
    # auto without the extra: onnxruntime only, the table says why OpenVINO was not tried.
    predictor = Predictor(exported_dir / "model.onnx", threads=1)
    assert predictor.engine.startswith("onnxruntime/")
    notes = [r.get("note", "") for r in predictor.engine_choice["candidates"]]
    assert any("openvino package is not installed" in n for n in notes)


@pytest.mark.parametrize(
    "command", [("cli.predict", "cifar-predict"), ("cli.serve", "cifar-serve")]
)
def test_forced_openvino_without_the_extra_is_exit_2_in_one_line(
    exported_dir: Path, subset_pngs: Path, command: tuple[str, str]
) -> None:
    module, name = command
    extra = [str(sorted(subset_pngs.glob("*.png"))[0])] if name == "cifar-predict" else []
    args = [str(exported_dir / "model.onnx"), *extra, "--engine", "openvino"]
    result = _cli(module, name, *args, hide_extra=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "engine openvino is not available" in lines[0]
    assert "cifar10-runtime[openvino]" in lines[0]


def test_int8_asked_of_a_model_without_twin(exported_dir: Path, subset_pngs: Path) -> None:
    with pytest.raises(ConfigError, match="int8"):
        Predictor(exported_dir / "model.onnx", threads=1, precision="int8")
    png = str(sorted(subset_pngs.glob("*.png"))[0])
    args = [str(exported_dir / "model.onnx"), png, "--precision", "int8"]
    result = _cli("cli.predict", "cifar-predict", *args)
    assert result.returncode == 2 and "int8" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bf16_asked_on_a_cpu_without_bf16(
    engines_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_bf16 = {"cpu": "Test CPU", "bf16": False, "summary": "int8: none; bf16: none"}
    monkeypatch.setattr(engines_module, "cpu_features", lambda: no_bf16)
    golden, _ = read_golden(Predictor(engines_dir / "model.onnx", engine="onnxruntime").metadata)
    with pytest.raises(ConfigError) as caught:
        Predictor(engines_dir / "model.onnx", threads=1, precision="bf16")
    if "bf16" in golden.allowed:
        assert "no bf16 instructions" in str(caught.value) and "Test CPU" in str(caught.value)
    else:  # exported where OpenVINO was absent: bf16 is not allowed at all
        assert "not allowed" in str(caught.value)


# --- engines that run: parity on real images ---------------------------------------------


@needs_openvino
def test_openvino_fp32_matches_onnxruntime_on_real_images(
    exported_dir: Path, real_images: np.ndarray
) -> None:
    reference = Predictor(exported_dir / "model.onnx", threads=2, engine="onnxruntime")
    ov = Predictor(exported_dir / "model.onnx", threads=2, engine="openvino", precision="fp32")
    assert ov.engine == "openvino/fp32"
    expected = reference.predict_array(real_images)
    got = ov.predict_array(real_images)
    assert float(np.abs(got - expected).max()) <= 1e-4
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))


def _agreement_and_diff(predictor: Predictor, reference: Predictor, images: np.ndarray):
    got, expected = predictor.predict_array(images), reference.predict_array(images)
    return float((got.argmax(1) == expected.argmax(1)).mean()), float(np.abs(got - expected).max())


@needs_openvino
def test_openvino_bf16_stays_within_its_recorded_tolerance(
    exported_dir: Path, real_images: np.ndarray
) -> None:
    if engines_module.bf16_missing():
        pytest.skip(engines_module.bf16_missing())
    reference = Predictor(exported_dir / "model.onnx", threads=2, engine="onnxruntime")
    golden, _ = read_golden(reference.metadata)
    if "bf16" not in golden.allowed:
        pytest.skip("the fixture's export did not allow bf16 (OpenVINO absent at export?)")
    bf16 = Predictor(exported_dir / "model.onnx", threads=2, engine="openvino", precision="bf16")
    assert bf16.engine == "openvino/bf16"
    agreement, diff = _agreement_and_diff(bf16, reference, real_images)
    assert agreement >= 0.98
    assert diff <= golden.tolerance("bf16")


@needs_openvino
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_the_int8_twin_on_each_engine(
    engines_dir: Path, real_images: np.ndarray, engine: str
) -> None:
    reference = Predictor(engines_dir / "model.onnx", threads=2, engine="onnxruntime")
    golden, _ = read_golden(reference.metadata)
    assert "int8" in golden.allowed, golden.evidence
    int8 = Predictor(engines_dir / "model.onnx", threads=2, engine=engine, precision="int8")
    assert int8.engine == f"{engine}/int8"
    agreement, diff = _agreement_and_diff(int8, reference, real_images)
    # The twin met the 98% gate on the export's 128 check images; on 500 other real images
    # a briefly trained fixture model keeps most of that, not all of it.
    assert agreement >= 0.95, (agreement, diff)


def test_auto_chooses_among_the_candidates_that_passed(
    engines_dir: Path, real_images: np.ndarray
) -> None:
    predictor = Predictor(engines_dir / "model.onnx", threads=2)
    choice = predictor.engine_choice
    passed = {r["candidate"] for r in choice["candidates"] if r["status"].startswith("passed")}
    used = {step["engine"] for step in choice["by_batch"]}
    assert used and used <= passed
    assert choice["by_batch"][0]["from_batch"] == 1
    reference = Predictor(engines_dir / "model.onnx", threads=2, engine="onnxruntime")
    for batch in (1, 7, 64, 300):  # every range of the route answers, and agrees
        got = predictor.predict_array(real_images[:batch])
        expected = reference.predict_array(real_images[:batch])
        assert got.shape == (batch, 10)
        assert float((got.argmax(1) == expected.argmax(1)).mean()) >= 0.9
    json.dumps(predictor.describe())  # /v1/metadata serves it as JSON


def test_the_server_names_the_precision_that_answers(engines_dir: Path) -> None:
    pytest.importorskip("starlette", reason="the serve extra is not installed")
    from starlette.testclient import TestClient

    from cifar10_runtime.serving.app import create_app

    model = engines_dir / "model.onnx"
    predictor = Predictor(model, threads=1, engine="onnxruntime", precision="int8")
    with TestClient(create_app(predictor)) as client:
        meta = client.get("/v1/metadata").json()
        assert (meta["engine"], meta["precision"]) == ("onnxruntime/int8", "int8")
        params = client.get("/v2/models/cifar10").json()["parameters"]
        assert params == {"engine": "onnxruntime/int8", "precision": "int8"}


@needs_openvino
def test_the_server_batches_on_openvino_and_names_the_engine(exported_dir: Path) -> None:
    pytest.importorskip("starlette", reason="the serve extra is not installed")
    from starlette.testclient import TestClient

    from cifar10_runtime.serving.app import create_app

    predictor = Predictor(exported_dir / "model.onnx", threads=1, engine="openvino")
    png = sorted((exported_dir / "png").glob("*.png"))[0].read_bytes()
    with TestClient(create_app(predictor)) as client:
        answer = client.post("/v1/predict", content=png, headers={"Content-Type": "image/png"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["label"] in predictor.class_names
        meta = client.get("/v1/metadata").json()
        assert meta["engine"] == predictor.engine and meta["engine"].startswith("openvino/")
        params = client.get("/v2/models/cifar10").json()["parameters"]
        assert params == {"engine": predictor.engine, "precision": predictor.precision}
        x = np.load(exported_dir / "images.npy")[:5]
        body = {
            "inputs": [
                {
                    "name": "image",
                    "shape": list(x.shape),
                    "datatype": "UINT8",
                    "data": x.reshape(-1).tolist(),
                }
            ]
        }
        out = client.post("/v2/models/cifar10/infer", json=body).json()["outputs"][0]
        got = np.asarray(out["data"], np.float32).reshape(out["shape"])
        np.testing.assert_allclose(got, predictor.predict_array(x), atol=1e-6)
        metrics = client.get("/metrics").text
        assert f'engine="{predictor.engine}"' in metrics
