"""`cifar-export --triton-repository DIR`: a Triton Inference Server model repository.

    DIR/cifar10/config.pbtxt        platform onnxruntime_onnx, dynamic batching, CPU instances
    DIR/cifar10/labels.txt          the class names, one per line (Triton's classification
                                    extension: `label_filename` of the output)
    DIR/cifar10/1/model.onnx        the exported model
    DIR/cifar10_int8/...            the same for the INT8 twin, when exported

The INT8 twin is a second model, not version 2 of the first: Triton serves only the highest
version by default (`version_policy: latest 1`), so a version 2 would silently swap every
client onto INT8; as its own model each precision is chosen by name, with its own config.

Every config field comes from the model itself, as onnxruntime (Triton's backend) reads it:
input and output names, data types and dims after the batch dimension, and the labels from
its `class_names` metadata. The model must pass the runtime's contract check first, so what
Triton serves is what `cifar-serve` would. Each model folder is written whole in a
temporary folder beside DIR and renamed into place, so a server polling DIR never sees a
half-written model.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from cifar10_runtime.contract import MODEL_NAME
from cifar10_runtime.errors import ConfigError, ModelError
from cifar10_runtime.files import probe_writable, write_bytes, write_text
from cifar10_runtime.model import inspect_session, open_session

PLATFORM = "onnxruntime_onnx"
# A request may carry up to this many images, and the dynamic batcher merges requests up to
# it: the tiny model's runs stay short even at 128, and tritonclient's batch-64 calls fit.
TRITON_MAX_BATCH_SIZE = 128
LABELS = "labels.txt"
# onnxruntime's type strings -> Triton's model-config data types.
DATA_TYPES = {
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(float16)": "TYPE_FP16",
    "tensor(float)": "TYPE_FP32",
    "tensor(double)": "TYPE_FP64",
}
INT8_SUFFIX = "_int8"


def check_repository(directory: Path) -> None:
    """Fail early (before TensorFlow's import) when DIR cannot be written."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(
            f"--triton-repository must be a folder; {directory} is a file. "
            f"Received: --triton-repository={directory}"
        )
    probe_writable(directory)


def model_config(
    model: Path, name: str, max_batch_size: int = TRITON_MAX_BATCH_SIZE
) -> tuple[str, str]:
    """(config.pbtxt text, labels.txt text) for the ONNX file `model`, served as `name`."""
    session, source = open_session(model, providers="cpu", threads=1)
    spec = inspect_session(session, source, model)  # the contract: what cifar-serve accepts
    if spec.fixed_batch is not None:
        raise ModelError(
            f"{source} has a fixed batch of {spec.fixed_batch}; Triton's batching needs a "
            "dynamic batch dimension. Re-export with cifar-export. "
            f"Received: batch dimension {spec.fixed_batch}"
        )
    tensors = []
    for kind, info in (("input", session.get_inputs()[0]), ("output", session.get_outputs()[0])):
        if info.type not in DATA_TYPES:
            raise ModelError(
                f"{source}: {kind} {info.name!r} has type {info.type}, which Triton's "
                f"model config cannot describe. Received: {info.type}"
            )
        dims = ", ".join(str(d) for d in info.shape[1:])  # after the batch dimension
        label = f'\n    label_filename: "{LABELS}"' if kind == "output" else ""
        tensors.append(
            f"{kind} [\n  {{\n    name: {json.dumps(info.name)}\n"
            f"    data_type: {DATA_TYPES[info.type]}\n    dims: [ {dims} ]{label}\n  }}\n]\n"
        )
    config = (
        f"# Written by cifar-export for {model.name}, model_version {spec.model_version}.\n"
        f"name: {json.dumps(name)}\n"
        f'platform: "{PLATFORM}"\n'
        f"max_batch_size: {max_batch_size}\n"
        + "".join(tensors)
        + "# Requests that arrive while a run is busy join the next run (as cifar-serve's\n"
        "# micro-batcher); a lone request does not wait.\n"
        "dynamic_batching {\n  max_queue_delay_microseconds: 0\n}\n"
        "# One CPU instance: onnxruntime already spreads one run over every core.\n"
        "instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]\n"
    )
    if any("\n" in label or "\r" in label for label in spec.class_names):
        raise ModelError(
            f"{source}: a class name holds a line break, which {LABELS} (one per line) cannot "
            f"carry. Re-export with --class-names. Received: {list(spec.class_names)}"
        )
    return config, "".join(f"{label}\n" for label in spec.class_names)


def write_model(directory: Path, name: str, model: Path) -> Path:
    """DIR/name/{config.pbtxt, labels.txt, 1/model.onnx}, replacing any earlier DIR/name."""
    config, labels = model_config(model, name)
    target = directory / name
    staging = directory.parent / f".{directory.name}.{name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_bytes(staging / "1" / "model.onnx", model.read_bytes())
        write_text(staging / LABELS, labels)
        write_text(staging / "config.pbtxt", config)
        directory.mkdir(parents=True, exist_ok=True)
        old = directory.parent / f".{directory.name}.{name}.{os.getpid()}.old"
        if target.exists():
            os.replace(target, old)
        try:
            os.replace(staging, target)
        except OSError:
            if old.exists():
                os.replace(old, target)  # the earlier model stays served
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def write_repository(
    directory: Path,
    onnx_path: Path,
    int8_path: Path | None = None,
    name: str = MODEL_NAME,
    log: Callable[[str], object] = print,
) -> list[Path]:
    """The repository for an export: `name` from onnx_path, `name`_int8 from int8_path."""
    directory = Path(directory)
    check_repository(directory)
    written = [write_model(directory, name, Path(onnx_path))]
    twin = directory / f"{name}{INT8_SUFFIX}"
    if int8_path is not None:
        written.append(write_model(directory, twin.name, Path(int8_path)))
    elif twin.exists():  # an INT8 model of an earlier export would not match this one
        shutil.rmtree(twin)
        log(f"triton: removed {twin} (this export has no INT8 twin)")
    for folder in written:
        log(f"triton: wrote {folder} (config.pbtxt, {LABELS}, 1/model.onnx)")
    return written
