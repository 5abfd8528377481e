"""Model metadata that is too deep, too large or of the wrong type is refused at load with one
line naming the file and the key (ModelError, exit code 4), from `cifar-predict` and
`cifar-serve` alike; a valid golden set is bounded and replayed a few images at a time.

Models are the runtime's tiny test graphs (make_models.py) with hostile metadata_props, so
this file needs the `onnx` package (the full venv).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

onnx = pytest.importorskip("onnx", reason="building test models needs the onnx package")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_models import FULL_METADATA, _model  # noqa: E402

from cifar10_runtime import Predictor  # noqa: E402
from cifar10_runtime.contract import JSON_KEYS  # noqa: E402
from cifar10_runtime.engines import golden as golden_module  # noqa: E402
from cifar10_runtime.engines.golden import MAX_IMAGES, Golden, encode_golden  # noqa: E402
from cifar10_runtime.errors import ModelError  # noqa: E402
from cifar10_runtime.model_metadata import VALIDATORS, read_metadata  # noqa: E402

BIN = Path(sys.executable).parent
PRECISIONS = json.dumps({"allowed": ["fp32"], "tolerances": {"fp32": 1e-4}})


def _write(folder: Path, name: str, **metadata: str) -> Path:
    model = _model(onnx.TensorProto.UINT8, ["N", 32, 32, 3], metadata={**FULL_METADATA, **metadata})
    path = folder / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _golden(folder: Path, count: int) -> str:
    """A real golden set of `count` images: the tiny model's own outputs for them."""
    plain = _write(folder, "plain")
    session = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(count).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    probs = session.run(None, {"image": images})[0]
    return json.dumps(encode_golden(images, probs))


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _golden_with(**changes: object) -> str:
    record = json.loads(_GOLDEN_TEXT)
    for path, value in changes.items():
        where = record
        *parents, last = path.split("__")
        for part in parents:
            where = where[part]
        where[last] = value
    return json.dumps(record)


_GOLDEN_TEXT = json.dumps(
    encode_golden(np.zeros((2, 32, 32, 3), np.uint8), np.full((2, 10), 0.1, np.float32))
)

# name -> (key, value): each one hostile in a different way.
HOSTILE = {
    "golden_nested": ("golden_set", _deep(100_000)),
    "class_names_nested": ("class_names", _deep(5000)),
    "precisions_nested": ("precisions", '{"allowed": ' + _deep(3000) + "}"),
    "metrics_nested": ("metrics", '{"a": ' + _deep(50) + "}"),
    "tolerances_list": ("precisions", '{"allowed": ["fp32"], "tolerances": [1, 2]}'),
    "tolerances_text": ("precisions", '{"allowed": ["fp32", "int8"], "tolerances": {"int8": "x"}}'),
    "allowed_number": ("precisions", '{"allowed": 5}'),
    "allowed_huge": ("precisions", json.dumps({"allowed": ["int8"] * 100_000})),
    "evidence_rows_text": ("precisions", '{"allowed": ["fp32"], "evidence": ["row"]}'),
    "golden_number": ("golden_set", '{"format": ' + "9" * 400 + "}"),
    "golden_claims_20000": ("golden_set", _golden_with(images__shape=[20000, 32, 32, 3])),
    "golden_base64_short": ("golden_set", _golden_with(images__base64="AAAA")),
    "golden_list": ("golden_set", "[1, 2, 3]"),
    "golden_not_json": ("golden_set", "not json at all"),
    "version_huge": ("model_version", "v" * 100_000),
}
# The same refusal from both commands, for a sample of the variants (each run starts a process).
THROUGH_CLIS = ["golden_nested", "class_names_nested", "tolerances_list", "allowed_huge"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    return {name: _write(folder, name, **{key: value}) for name, (key, value) in HOSTILE.items()}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_metadata_is_refused_naming_file_and_key(
    hostile: dict[str, Path], name: str
) -> None:
    key = HOSTILE[name][0]
    with pytest.raises(ModelError) as caught:
        Predictor(hostile[name], threads=1)
    message = str(caught.value)
    assert str(hostile[name]) in message and f"metadata {key!r}" in message
    assert "\n" not in message and len(message) < 600  # one bounded line


def _one_error_line(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 4, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


@pytest.mark.parametrize("name", THROUGH_CLIS)
@pytest.mark.parametrize("cli", ["cifar-predict", "cifar-serve"])
def test_both_commands_exit_4_with_one_error_line(
    hostile: dict[str, Path], tmp_path: Path, name: str, cli: str
) -> None:
    script = BIN / cli
    if not script.exists():
        pytest.skip(f"{cli} is not installed next to {sys.executable}")
    from PIL import Image

    image = tmp_path / "one.png"
    Image.new("RGB", (32, 32)).save(image)
    extra = [str(image)] if cli == "cifar-predict" else ["--host", "127.0.0.1", "--port", "0"]
    line = _one_error_line([str(script), str(hostile[name]), *extra])
    assert str(hostile[name]) in line and repr(HOSTILE[name][0]) in line


def test_a_golden_set_over_the_count_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _write(tmp_path, "big", golden_set=_golden(tmp_path, MAX_IMAGES + 1))
    with pytest.raises(ModelError, match=rf"'golden_set' images has shape \[{MAX_IMAGES + 1}"):
        Predictor(path, threads=1)


def test_a_valid_golden_set_is_replayed_in_small_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 3 * golden_module.REPLAY_BATCH + 5
    path = _write(tmp_path, "many", golden_set=_golden(tmp_path, count), precisions=PRECISIONS)
    sizes: list[int] = []
    real = Golden.replay

    def counting(golden: Golden, run):  # type: ignore[no-untyped-def]
        return real(golden, lambda x: sizes.append(len(x)) or run(x))

    monkeypatch.setattr(Golden, "replay", counting)
    predictor = Predictor(path, threads=1, engine="onnxruntime")
    assert "no golden set" not in predictor.engine_choice["why"]
    assert sum(sizes) == count and max(sizes) <= golden_module.REPLAY_BATCH


def test_a_golden_set_whose_outputs_changed_is_still_refused(tmp_path: Path) -> None:
    record = json.loads(_golden(tmp_path, 40))
    record["probabilities"] = encode_golden(
        np.zeros((40, 32, 32, 3), np.uint8), np.full((40, 10), 0.1, np.float32)
    )["probabilities"]
    path = _write(tmp_path, "changed", golden_set=json.dumps(record), precisions=PRECISIONS)
    with pytest.raises(ModelError, match="no longer reproduces its golden outputs"):
        Predictor(path, threads=1)


def test_every_json_key_has_a_validator_and_free_text_stays_text() -> None:
    assert set(JSON_KEYS) <= set(VALIDATORS)
    raw = {**FULL_METADATA, "metrics": "accuracy 0.9 (measured by hand)", "other": "x" * 10**6}
    metadata = read_metadata(raw, "m.onnx")
    assert metadata["metrics"] == raw["metrics"] and metadata["other"] == raw["other"]
    assert metadata["parity"] == json.loads(FULL_METADATA["parity"])


def test_nan_written_by_json_dumps_is_accepted_where_only_informational() -> None:
    raw = {**FULL_METADATA, "parity": json.dumps({"max_abs_diff": float("nan")})}
    assert np.isnan(read_metadata(raw, "m.onnx")["parity"]["max_abs_diff"])
    raw = {**FULL_METADATA, "precisions": '{"tolerances": {"int8": NaN}}'}
    with pytest.raises(ModelError, match="'precisions' tolerances"):
        read_metadata(raw, "m.onnx")


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"images__shape": [0, 32, 32, 3]}, "images has shape"),
        ({"images__shape": [True, 32, 32, 3]}, "images has shape"),
        ({"images__shape": "2,32,32,3"}, "images has shape"),
        ({"images__dtype": "float64"}, "images has dtype"),
        ({"probabilities__base64": 12}, "base64 of length int"),
        ({"probabilities__shape": [3, 10]}, "base64 of length"),
        ({"labels": [1, 99]}, "labels"),
        ({"format": "1"}, "format"),
    ],
)
def test_golden_problem_names_what_is_wrong_without_decoding(
    change: dict[str, object], problem: str
) -> None:
    assert problem in (golden_module.golden_problem(json.loads(_golden_with(**change))) or "")
    assert golden_module.golden_problem(json.loads(_GOLDEN_TEXT)) is None


@pytest.mark.parametrize(
    "record",
    [
        {"allowed": "fp32"},
        {"allowed": ["x" * 65]},
        {"tolerances": {"int8": True}},
        {"tolerances": {"int8": -0.1}},
        {"tolerances": {str(i): 0.1 for i in range(17)}},
        {"evidence": {"precision": "int8"}},
        {"evidence": [{}] * 257},
    ],
)
def test_precisions_problem_refuses_wrong_types_and_sizes(record: dict[str, object]) -> None:
    assert golden_module.precisions_problem(record) is not None
    good = {"allowed": ["fp32", "int8"], "tolerances": {"fp32": 1e-4, "int8": 1.5}}
    assert golden_module.precisions_problem(good) is None  # a tolerance may exceed 1


def test_a_wrong_shaped_part_of_the_replay_is_reported_as_infinite() -> None:
    golden = Golden(np.zeros((40, 32, 32, 3), np.uint8), np.zeros((40, 10), np.float32))
    calls: list[int] = []

    def run(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return np.zeros((len(x), 9 if len(calls) == 2 else 10), np.float32)

    assert golden.max_diff(golden.replay(run)) == np.inf and calls == [32, 8]
