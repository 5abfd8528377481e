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
half-written model; the temporary and replaced folders go whether the write succeeds or not.

Only what this module wrote is ever replaced or deleted: each model folder it writes holds
MARKER, and a folder without it (a user's own model) or a symbolic link is refused with one
ConfigError naming the path, never followed. Names go into config.pbtxt as text-format
strings (control characters refused), and the comment line quotes what it mentions.
"""

from __future__ import annotations

import json
import os
import shutil
import unicodedata
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
# Inside every model folder this exporter writes; a folder without it is someone else's and
# is never replaced nor deleted.
MARKER = ".written-by-cifar-export"
MARKER_TEXT = (
    "cifar-export --triton-repository wrote this folder; the next export replaces it whole.\n"
)


def check_repository(
    directory: Path, names: tuple[str, ...] = (MODEL_NAME, MODEL_NAME + INT8_SUFFIX)
) -> None:
    """Fail early (before TensorFlow's import) when DIR, or its parent where each model is
    staged, cannot be written, or when DIR/name for any of `names` is not ours to replace."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(
            f"--triton-repository must be a folder; {directory} is a file. "
            f"Received: --triton-repository={directory}"
        )
    for folder in (directory, directory.parent):
        try:
            probe_writable(folder)
        except OSError as exc:
            raise _cannot_write(directory, exc) from exc
    for name in names:
        check_replaceable(directory / name)


def _cannot_write(directory: Path, exc: OSError) -> ConfigError:
    where = exc.filename or directory
    return ConfigError(
        f"cannot write the Triton repository: {where}: {exc.strerror or exc}. Make it "
        f"writable or choose another --triton-repository (each model folder is staged beside "
        f"{directory.name}, in {directory.parent}, so a server polling it never sees half a "
        f"model). Received: --triton-repository={directory}"
    )


def ours(folder: Path) -> bool:
    """True when `folder` is a real folder (not a link) holding cifar-export's marker."""
    marker = folder / MARKER
    return (
        not folder.is_symlink() and folder.is_dir() and marker.is_file() and not marker.is_symlink()
    )


def check_replaceable(folder: Path) -> None:
    """ConfigError unless `folder` is absent or a model folder cifar-export wrote."""
    if folder.is_symlink():
        raise ConfigError(
            f"{folder} is a symbolic link; cifar-export never replaces or deletes through a "
            "link. Remove the link (what it points to stays) or choose another "
            f"--triton-repository. Received: {folder} -> {os.readlink(folder)[:200]!r}"
        )
    if os.path.lexists(folder) and not ours(folder):
        raise ConfigError(
            f"{folder} exists and was not written by cifar-export (it holds no {MARKER}); "
            "it is neither replaced nor deleted. Move it away or choose another "
            f"--triton-repository. Received: --triton-repository={folder.parent}"
        )


def pbtxt_string(value: str, what: str, source: str) -> str:
    """`value` as a quoted protobuf text-format string; control characters are refused."""
    for char in value:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise ModelError(
                f"{source}: the {what} {value[:80]!r} holds the control character {char!r}, "
                "which config.pbtxt cannot carry safely. Re-export the model with plain "
                f"tensor names. Received: {value[:80]!r}"
            )
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    """`text` on one comment line: quoted, every control and non-ASCII character escaped."""
    return json.dumps(text[:200])


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
        quoted = pbtxt_string(info.name, f"{kind} name", source)
        tensors.append(
            f"{kind} [\n  {{\n    name: {quoted}\n"
            f"    data_type: {DATA_TYPES[info.type]}\n    dims: [ {dims} ]{label}\n  }}\n]\n"
        )
    config = (
        f"# Written by cifar-export for {_comment(model.name)}, model_version "
        f"{_comment(spec.model_version)}.\n"
        f"name: {pbtxt_string(name, 'model name', source)}\n"
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


def _remove(path: Path) -> None:
    """Delete a folder this process made (a link only as a link, never what it points to)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)  # rmtree never follows links inside


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # EPERM: someone else's live process
        return True
    return True


def remove_leftovers(directory: Path, name: str) -> list[Path]:
    """Staged (.tmp) and replaced (.old) folders of `name` that a killed export left beside
    DIR: removed when they hold our marker and their process is gone."""
    prefix, removed = f".{directory.name}.{name}.", []
    try:
        entries = [p for p in directory.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for path in entries:
        pid, dot, kind = path.name[len(prefix) :].partition(".")
        if dot and kind in ("tmp", "old") and pid.isascii() and pid.isdigit() and ours(path):
            if int(pid) == os.getpid() or not _alive(int(pid)):
                _remove(path)
                removed.append(path)
    return removed


def write_model(directory: Path, name: str, model: Path) -> Path:
    """DIR/name/{config.pbtxt, labels.txt, 1/model.onnx, MARKER}, replacing an earlier DIR/name
    that cifar-export wrote (ConfigError for anything else there)."""
    config, labels = model_config(model, name)
    target = directory / name
    check_replaceable(target)
    remove_leftovers(directory, name)
    staging = directory.parent / f".{directory.name}.{name}.{os.getpid()}.tmp"
    old = directory.parent / f".{directory.name}.{name}.{os.getpid()}.old"
    try:
        write_text(staging / MARKER, MARKER_TEXT)  # first: a leftover is recognised as ours
        write_bytes(staging / "1" / "model.onnx", model.read_bytes())
        write_text(staging / LABELS, labels)
        write_text(staging / "config.pbtxt", config)
        directory.mkdir(parents=True, exist_ok=True)
        moved = os.path.lexists(target)
        if moved:
            os.replace(target, old)
        try:
            os.replace(staging, target)
        except OSError:
            if moved:
                os.replace(old, target)  # the earlier model stays served
            raise
    except OSError as exc:
        raise _cannot_write(directory, exc) from exc
    finally:
        _remove(staging)
        _remove(old)
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
    twin = directory / f"{name}{INT8_SUFFIX}"
    check_repository(directory, (name, twin.name))
    written = [write_model(directory, name, Path(onnx_path))]
    if int8_path is not None:
        written.append(write_model(directory, twin.name, Path(int8_path)))
    elif os.path.lexists(twin):  # an INT8 model of an earlier export would not match this one
        check_replaceable(twin)
        gone = directory.parent / f".{directory.name}.{twin.name}.{os.getpid()}.old"
        try:
            os.replace(twin, gone)  # gone from DIR at once, then deleted
        except OSError as exc:
            raise _cannot_write(directory, exc) from exc
        finally:
            _remove(gone)
        log(f"triton: removed {twin} (this export has no INT8 twin)")
    for folder in written:
        log(f"triton: wrote {folder} (config.pbtxt, {LABELS}, 1/model.onnx)")
    return written
