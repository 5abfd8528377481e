"""The ONNX model's `metadata_props`: what the runtime needs and where the model came from.

Keys (values are strings, JSON where structured), as DESIGN.md's contract lists them:

- `class_names`: JSON list of 10 names.
- `input_spec`: JSON, see INPUT_SPEC.
- `model_version`: `<run folder>-<sha256[:8]>` when the Keras file sits in a trainer run
  folder (`runs/<run>/`, or beside its metrics.json/config.json; symlinks such as runs/latest
  resolved), else `<file stem>-<sha256[:8]>`; or the value given with --model-version.
- `source_sha256`: SHA-256 of the Keras file.
- `parity`: JSON summary of the parity check (added once the check has run).
- `metrics`: JSON of the scalar entries of the run's `metrics.json` beside the Keras file
  (test_accuracy, test_loss, ...), `{}` when there is none.
- `producer_versions`: JSON of tensorflow, keras, tf2onnx, onnx, onnxruntime versions and opset.
- `export_wrapper`: JSON of what the exporter wrapped around the Keras model (ModelSpec).
"""

from __future__ import annotations

import json
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

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


def default_model_version(model_path: Path, sha256: str) -> str:
    resolved = Path(model_path).resolve()
    folder = resolved.parent
    in_run = folder.parent.name == "runs" or any(
        (folder / name).is_file() for name in ("metrics.json", "config.json")
    )
    label = folder.name if in_run else resolved.stem
    return f"{label}-{sha256[:8]}"


def read_run_metrics(model_path: Path) -> dict[str, Any]:
    """Scalar entries of `metrics.json` beside the (resolved) Keras file; {} if none/unreadable."""
    for folder in {Path(model_path).parent, Path(model_path).resolve().parent}:
        path = folder / "metrics.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                return {}
            if isinstance(data, dict):
                return {k: v for k, v in data.items() if isinstance(v, (int, float, str, bool))}
    return {}


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
