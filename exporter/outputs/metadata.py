"""The ONNX model's `metadata_props`: their one writer (every key the exporter sets goes
through `set_metadata`, JSON-encoded exactly when `cifar10_runtime.contract.JSON_KEYS` lists
the key), and what they say.

Keys (values are strings, JSON where structured), as DESIGN.md's contract lists them:

- `class_names`: JSON list of 10 names.
- `input_spec`: JSON, see INPUT_SPEC.
- `model_version`: `<run folder>-<sha256[:8]>` when the Keras file sits in a trainer run
  folder (`cifar10_trainer.run.Run`; symlinks such as runs/latest resolved), else
  `<file stem>-<sha256[:8]>`; or the value given with --model-version. The int8 twin's
  ends in `+int8`. Unicode is kept as it is (the runtime percent-encodes it for headers);
  control characters (CR, LF...) are refused, derived or given
  (`cifar10_runtime.untrusted.check_model_version`).
- `source_sha256`: SHA-256 of the Keras file.
- `parity`: JSON summary of the parity check (added once the check has run).
- `metrics`: JSON (see `export_metrics`): top-1 accuracy of the ONNX model and of Keras on the
  labelled check images (overall, per class) with their count, split and data folder, or
  "accuracy not measured"; the trainer run's scalar test metrics under `trainer` when known;
  the INT8 twin's result under `int8` when one was made.
- `producer_versions`: JSON of tensorflow, keras, tf2onnx, onnx, onnxruntime versions and opset.
- `export_wrapper`: JSON of what the exporter wrapped around the Keras model (WrapperSpec).
- `preprocessing`: JSON of how `--input-scale auto` decided (every candidate's accuracy).
- `quantization` (int8 twin only): JSON of the recipe, calibration and measured speed-up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cifar10_runtime.contract import BATCH_DIM, IMAGE_SHAPE, INPUT_NAME, JSON_KEYS
from cifar10_runtime.untrusted import check_model_version
from cifar10_runtime.versions import package_versions
from cifar10_trainer.run import Run

INPUT_SPEC: dict[str, Any] = {
    "name": INPUT_NAME,
    "dtype": "uint8",
    "shape": [BATCH_DIM, *IMAGE_SHAPE],
    "layout": "NHWC",
    "color": "RGB",
    "range": [0, 255],
}
PRODUCER_PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "cifar10-toolkit")
INT8_SUFFIX = "+int8"


def default_model_version(model_path: Path, sha256: str, run: Run | None = None) -> str:
    """`<run folder>-<sha[:8]>` for a model in a trainer run folder, else `<stem>-<sha[:8]>`."""
    label = run.name if run is not None else Path(model_path).resolve().stem
    what = "run folder" if run is not None else "model file"
    return check_model_version(
        f"{label}-{sha256[:8]}",
        f"the version made from the {what}'s name",
        f"Pass --model-version with printable text, or rename the {what}",
    )


def export_metrics(
    accuracy: dict[str, Any], run: Run | None, int8: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The `metrics` metadata: compact accuracy figures, the run's test metrics, INT8's."""
    if accuracy.get("measured"):
        onnx_scores = accuracy.get("onnx", accuracy["keras"])
        out: dict[str, Any] = {
            "accuracy": onnx_scores["overall"],
            "keras_accuracy": accuracy["keras"]["overall"],
            "per_class_accuracy": onnx_scores["per_class_accuracy"],
            "images": accuracy["n"],
            "split": accuracy["split"],
            "dataset": accuracy["dataset"],
            "data": accuracy["data"],
        }
    else:
        out = {"accuracy": None, "note": accuracy.get("note", "accuracy not measured")}
    if run is not None and run.metrics is not None:
        out["trainer"] = {"run": run.name, **run.scalar_metrics()}
    if int8 is not None:
        out["int8"] = int8
    return out


def producer_versions(opset: int | None) -> dict[str, Any]:
    """The versions of what made the model (`opset` left out when None)."""
    versions: dict[str, Any] = package_versions(PRODUCER_PACKAGES, missing="not installed")
    if opset is not None:
        versions["opset"] = int(opset)
    return versions


def encode(key: str, value: Any) -> str:
    """A metadata value as stored: compact JSON for the contract's JSON keys, else text."""
    if key in JSON_KEYS:
        return json.dumps(value, separators=(",", ":"))
    if not isinstance(value, str):
        raise TypeError(
            f"metadata {key!r} is plain text; add the key to contract.JSON_KEYS to store a "
            f"structured value. Received: {key}={value!r}"
        )
    return value


def build_metadata(
    *,
    class_names: tuple[str, ...] | list[str],
    source_sha256: str,
    model_version: str,
    opset: int,
    metrics: dict[str, Any] | None = None,
    wrapper: dict[str, Any] | None = None,
    parity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The values a converted model starts with (encode/set_metadata store them)."""
    props: dict[str, Any] = {
        "class_names": list(class_names),
        "input_spec": INPUT_SPEC,
        "model_version": model_version,
        "source_sha256": source_sha256,
        "metrics": metrics or {},
        "producer_versions": producer_versions(opset),
    }
    if wrapper is not None:
        props["export_wrapper"] = wrapper
    if parity is not None:
        props["parity"] = parity
    return props


def set_metadata(proto, values: dict[str, Any]) -> None:
    """Set (add or replace) `metadata_props` entries on an onnx.ModelProto from Python values
    (JSON keys encoded here); the only place the exporter writes metadata."""
    _write(proto, {key: encode(key, value) for key, value in values.items()})


def set_int8_metadata(proto, fp32_props: dict[str, str], quantization: dict[str, Any]) -> None:
    """The int8 twin's metadata: the fp32 model's, without its parity summary (the twin's own
    check replaces it), versioned `<fp32 version>+int8`, with how it was quantized."""
    props = {k: v for k, v in fp32_props.items() if k != "parity"}
    props["model_version"] = props.get("model_version", "model") + INT8_SUFFIX
    props["quantization"] = encode("quantization", quantization)
    _write(proto, props)


def _write(proto, props: dict[str, str]) -> None:
    current = get_metadata(proto)
    current.update(props)
    del proto.metadata_props[:]
    for key, value in current.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def get_metadata(proto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


def read_json(props: dict[str, str], key: str, default: Any = None) -> Any:
    """A JSON key's value decoded (`default` when absent or empty)."""
    raw = props.get(key)
    return json.loads(raw) if raw else default
