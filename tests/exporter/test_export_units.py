"""Fast exporter tests: config, files, metadata and the parity arithmetic (no TensorFlow)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from export_samples import REQUIRED_KEYS
from onnx import TensorProto, helper, numpy_helper

from cifar10_exporter.checks.parity import check_parity, compare
from cifar10_exporter.config import CIFAR10_CLASS_NAMES, ExportConfig, parse_class_names
from cifar10_exporter.errors import ParityError
from cifar10_exporter.outputs.files import ArtifactPaths
from cifar10_exporter.outputs.metadata import (
    build_metadata,
    default_model_version,
    export_metrics,
    get_metadata,
    set_metadata,
)
from cifar10_runtime.contract import JSON_KEYS
from cifar10_runtime.errors import ConfigError
from cifar10_trainer.errors import DataError
from cifar10_trainer.run import Run


def test_config_defaults_and_overrides(tmp_path):
    cfg = ExportConfig(output=tmp_path / "m.onnx")
    assert (cfg.opset, cfg.samples, cfg.atol, cfg.batch_sizes) == (17, 512, 1e-4, (1, 0))
    assert cfg.class_names == CIFAR10_CLASS_NAMES
    changed = cfg.replace(atol=1e-3, samples=None)  # None = flag not given
    assert (changed.atol, changed.samples) == (1e-3, 512)
    assert json.loads(json.dumps(cfg.to_dict()))["output"] == str(tmp_path / "m.onnx")


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        # Single bad flags are test_export_cli.py's test_bad_flags, through the CLI; here the
        # combinations and the values no CLI choice lets through.
        ({"dataset": "synthetic", "data_dir": "x"}, "not both"),
        ({"quantize": "int4"}, "--quantize=int4"),
        ({"quantize": "int8", "samples": 0}, "--samples=0"),
        ({"int8_min_agreement": 1.5}, "--int8-min-agreement=1.5"),
        ({"int8_recipes": ("nope",)}, "--int8-recipes=nope"),
        ({"replace": {"atoll": 1}}, "Received: atoll=1"),
    ],
)
def test_config_refuses_bad_values(tmp_path, overrides, needle):
    overrides.setdefault("output", tmp_path / "m.onnx")
    replace = overrides.pop("replace", None)
    with pytest.raises(ConfigError, match="Received") as err:
        config = ExportConfig(**overrides)
        if replace:
            config.replace(**replace)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_class_names_from_flag_and_files(tmp_path):
    names = [f"c{i}" for i in range(10)]
    assert parse_class_names(",".join(names)) == tuple(names)
    (tmp_path / "names.json").write_text(json.dumps(names))
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    assert parse_class_names(str(tmp_path / "names.json")) == tuple(names)
    assert parse_class_names(str(tmp_path / "names.txt")) == tuple(names)


def test_artifact_names_sit_beside_output(tmp_path):
    paths = ArtifactPaths.for_output(tmp_path / "model.onnx")
    assert paths.parity.name == "model.parity.json"
    assert paths.config.name == "model.export.json"
    assert paths.int8.name == "model.int8.onnx"
    assert paths.int8_parity.name == "model.int8.parity.json"


def _run_folder(tmp_path, metrics=None, config=None):
    run = tmp_path / "runs" / "20250101-000000"
    run.mkdir(parents=True)
    (run / "model.keras").write_bytes(b"k")
    config = config or {"parameters": {"dataset": "cifar10", "data_dir": None}, "data": {}}
    (run / "config.json").write_text(json.dumps(config))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_metadata_keys_and_run_provenance(tmp_path):
    folder = _run_folder(
        tmp_path, {"test_accuracy": 0.7, "test_loss": 0.9, "confusion_matrix": [[1]]}
    )
    run = Run.of_model(folder / "model.keras")
    assert run is not None and run.test_accuracy == 0.7
    assert default_model_version(folder / "model.keras", "ab" * 32, run) == (
        "20250101-000000-abababab"
    )
    assert default_model_version(tmp_path / "m.keras", "cd" * 32) == "m-cdcdcdcd"
    assert Run.of_model(tmp_path / "m.keras") is None  # no config.json beside it
    metrics = export_metrics({"measured": False, "note": "accuracy not measured: x"}, run)
    assert metrics["accuracy"] is None and "not measured" in metrics["note"]
    assert metrics["trainer"] == {"run": run.name, "test_accuracy": 0.7, "test_loss": 0.9}
    props = build_metadata(
        class_names=CIFAR10_CLASS_NAMES,
        source_sha256="ab" * 32,
        model_version="v",
        opset=17,
        metrics=metrics,
        parity={"passed": True},
    )
    assert set(REQUIRED_KEYS) <= set(props)
    proto = helper.make_model(helper.make_graph([], "g", [], []))
    set_metadata(proto, props)
    stored = get_metadata(proto)
    # Stored as the runtime reads them: JSON exactly for contract.JSON_KEYS, else plain text.
    assert json.loads(stored["producer_versions"])["opset"] == 17
    assert json.loads(stored["input_spec"])["shape"] == ["N", 32, 32, 3]
    assert stored["model_version"] == "v" and stored["source_sha256"] == "ab" * 32
    assert all(json.loads(stored[k]) is not None for k in stored if k in JSON_KEYS)
    set_metadata(proto, {"model_version": "w"})  # replaces, no duplicate key
    assert get_metadata(proto)["model_version"] == "w"
    assert len(proto.metadata_props) == len(props)
    with pytest.raises(TypeError, match="JSON_KEYS"):  # a structured value under a text key
        set_metadata(proto, {"model_version": {"not": "text"}})


@pytest.mark.parametrize(
    ("config", "metrics", "needle"),
    [
        ("{not json", None, "cannot read"),
        (json.dumps({"data": {}}), None, "no 'parameters' object"),
        (None, "[1, 2]", "not a JSON object of run metrics"),
    ],
)
def test_a_damaged_run_folder_is_an_error_not_a_fallback(tmp_path, config, metrics, needle):
    folder = _run_folder(tmp_path)
    (folder / "history.csv").write_text("epoch,loss\n1,2.0\n")  # only the trainer writes it
    if config is not None:
        (folder / "config.json").write_text(config)
    if metrics is not None:
        (folder / "metrics.json").write_text(metrics)
    with pytest.raises(DataError, match="damaged|run config|run metrics") as err:
        Run.of_model(folder / "model.keras")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_another_tools_config_json_is_not_a_run_folder(tmp_path):
    folder = _run_folder(tmp_path, config={"model_type": "resnet", "num_labels": 10})
    assert Run.of_model(folder / "model.keras") is None
    (folder / "config.json").write_text("{broken")
    assert Run.of_model(folder / "model.keras") is None


def test_compare_counts_ambiguous_top1_separately():
    ref = np.array(
        [
            [0.50, 0.49995, 0.00005] + [0.0] * 7,  # margin 5e-5 < atol
            [0.6, 0.4] + [0.0] * 8,  # margin 0.2
            [0.9, 0.1] + [0.0] * 8,
        ]
    ).astype(np.float32)
    cand = ref.copy()
    cand[0, :2] = [0.49995, 0.50]  # swapped within atol: ambiguous
    stats = compare(ref, cand, atol=1e-4)
    assert (stats["top1_disagreements"], stats["ambiguous"], stats["hard_disagreements"]) == (
        1,
        1,
        0,
    )
    cand[1, :2] = [0.4, 0.6]  # a real disagreement
    stats = compare(ref, cand, atol=1e-4)
    assert (stats["hard_disagreements"], stats["worst_image"]) == (1, 1)
    assert stats["max_abs_diff"] == pytest.approx(0.2)
    assert stats["top1_agreement"] == pytest.approx(1 / 3)


def _softmax_model(in_name="image", out_name="probabilities", dtype=TensorProto.UINT8):
    """uint8 [N,32,32,3] -> Cast -> Flatten -> Gemm -> Softmax, weights fixed."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 1e-3, (3072, 10)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Cast", [in_name], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["f"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [out_name], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(in_name, dtype, ["N", 32, 32, 3])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", 10])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    set_metadata(model, {"class_names": list(CIFAR10_CLASS_NAMES)})
    return model, w


def _reference(model, images):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def test_check_parity_passes_then_lists_every_failure():
    images = np.random.default_rng(1).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    model, _ = _softmax_model()
    reference = _reference(model, images)
    report = check_parity(model.SerializeToString(), reference, images, batch_sizes=(1, 4, 0))
    assert report.passed, report.table()
    assert report.stats["batch_sizes"] == [1, 4, 9]

    shifted = reference.copy()
    shifted[3] = np.roll(shifted[3], 1)  # Keras "disagrees" on image 3
    report = check_parity(model.SerializeToString(), shifted, images, batch_sizes=(1, 0))
    failing = [c.name for c in report.failures]
    assert failing == [
        "batch 1: max |diff|",
        "batch 1: top-1 agreement",
        "batch 9: max |diff|",
        "batch 9: top-1 agreement",
    ]
    err = report.error("m.onnx against m.keras", "Fix it.")
    assert isinstance(err, ParityError) and err.exit_code == 1
    message = str(err)
    assert "4 of 9 checks" in message and "> atol 0.0001" in message and "\n" not in message
    assert err.report is report


def test_check_parity_reports_contract_breaks(tmp_path):
    images = np.zeros((2, 32, 32, 3), np.uint8)
    model, _ = _softmax_model(in_name="input_1", out_name="dense")
    reference = _reference(model, images)
    path = tmp_path / "odd.onnx"
    onnx.save(model, path)
    report = check_parity(path, reference, images)
    assert not report.passed
    assert report.failures[0].name == "input/output names"
    assert "input_1" in report.failures[0].detail


def test_export_never_turns_into_verify(tmp_path):
    """export() converts; checking an existing OUTPUT is verify()'s job (cli.py chooses)."""
    from cifar10_exporter import export

    config = ExportConfig(output=tmp_path / "m.onnx", verify_only=True)
    with pytest.raises(ConfigError, match=r"call cifar10_exporter.verify\(\).*verify_only=True"):
        export(config, log=lambda line: None)
    assert list(tmp_path.iterdir()) == []
