"""The ONNX model's `metadata_props`: what the runtime needs and where the model came from.

Keys (values are strings, JSON where structured), as DESIGN.md's contract lists them:

- `class_names`: JSON list of 10 names.
- `input_spec`: JSON, see INPUT_SPEC.
- `model_version`: `<run folder>-<sha256[:8]>` when the Keras file sits in a trainer run
  folder (`cifar10_trainer.run.Run`; symlinks such as runs/latest resolved), else
  `<file stem>-<sha256[:8]>`; or the value given with --model-version. Unicode is kept
  as it is (the runtime percent-encodes it for headers); control characters (CR, LF...)
  are refused, derived or given (`cifar10_runtime.untrusted.check_model_version`).
- `source_sha256`: SHA-256 of the Keras file.
- `parity`: JSON summary of the parity check (added once the check has run).
- `metrics`: JSON (see `export_metrics`): top-1 accuracy of the ONNX model and of Keras on the
  labelled check images (overall, per class) with their count, split and data folder, or
  "accuracy not measured"; the trainer run's scalar test metrics under `trainer` when known;
  the INT8 twin's result under `int8` when one was made.
- `producer_versions`: JSON of tensorflow, keras, tf2onnx, onnx, onnxruntime versions and opset.
- `export_wrapper`: JSON of what the exporter wrapped around the Keras model (ModelSpec).
- `preprocessing`: JSON of how `--input-scale auto` decided (every candidate's accuracy).
"""

from __future__ import annotations

import json
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from cifar10_runtime.untrusted import check_model_version
from cifar10_trainer.run import Run

INPUT_SPEC: dict[str, Any] = {
    "name": "image",
    "dtype": "uint8",
    "shape": ["N", 32, 32, 3],
    "layout": "NHWC",
    "color": "RGB",
    "range": [0, 255],
}
PRODUCER_PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "cifar10-toolkit")
REQUIRED_KEYS = (
    "class_names",
    "input_spec",
    "model_version",
    "source_sha256",
    "parity",
    "metrics",
    "producer_versions",
)


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


def package_version(name: str) -> str:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return "not installed"


def producer_versions(opset: int) -> dict[str, Any]:
    versions: dict[str, Any] = {name: package_version(name) for name in PRODUCER_PACKAGES}
    versions["opset"] = int(opset)
    return versions


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def build_metadata(
    *,
    class_names: tuple[str, ...] | list[str],
    source_sha256: str,
    model_version: str,
    opset: int,
    metrics: dict[str, Any] | None = None,
    wrapper: dict[str, Any] | None = None,
    parity: dict[str, Any] | None = None,
) -> dict[str, str]:
    props = {
        "class_names": _json(list(class_names)),
        "input_spec": _json(INPUT_SPEC),
        "model_version": model_version,
        "source_sha256": source_sha256,
        "metrics": _json(metrics or {}),
        "producer_versions": _json(producer_versions(opset)),
    }
    if wrapper is not None:
        props["export_wrapper"] = _json(wrapper)
    if parity is not None:
        props["parity"] = _json(parity)
    return props


def set_metadata(proto, props: dict[str, str]) -> None:
    """Set (add or replace) `metadata_props` entries on an onnx.ModelProto."""
    current = {p.key: p.value for p in proto.metadata_props}
    current.update({k: str(v) for k, v in props.items()})
    del proto.metadata_props[:]
    for key, value in current.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def get_metadata(proto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}
