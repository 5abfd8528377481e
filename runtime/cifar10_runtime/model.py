"""Open an ONNX model in onnxruntime and check it against the model contract.

The contract (DESIGN.md): one input, uint8 [N,32,32,3] RGB NHWC, scaling inside the graph;
one float32 [N,10] softmax output named `contract.OUTPUT_NAME`; `class_names` and provenance in
metadata_props. Float32 [N,32,32,3] models in [0,1] made by other tools are accepted too:
the Predictor then scales the pixels itself and, without `class_names`, uses the CIFAR-10
names. Everything else is refused here, once, with a message naming the file. The metadata
is read through `model_metadata.read_metadata`, which checks every key it knows (size,
nesting, type) before anything here uses one.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cifar10_runtime.contract import CIFAR10_CLASS_NAMES, IMAGE_SHAPE, NUM_CLASSES, OUTPUT_NAME
from cifar10_runtime.engines.sessions import session_options
from cifar10_runtime.errors import ConfigError, ModelError, first_line
from cifar10_runtime.files import sha256_hex
from cifar10_runtime.model_metadata import read_metadata

NEEDED = (
    "needed: one uint8 [N,32,32,3] RGB NHWC input (the cifar-export contract) or one "
    "float32 [N,32,32,3] input in [0,1], and one float32 [N,10] softmax output"
)
_DTYPES = {"tensor(uint8)": np.dtype(np.uint8), "tensor(float)": np.dtype(np.float32)}
_PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


@dataclass(frozen=True)
class ModelSpec:
    """What the runtime needs to know about a model that passed the contract check."""

    source: str
    input_name: str
    output_name: str
    input_dtype: np.dtype
    fixed_batch: int | None
    class_names: tuple[str, ...]
    model_version: str
    metadata: dict[str, Any] = field(default_factory=dict)


def resolve_providers(providers: str | Sequence[str]) -> tuple[list[str], bool]:
    """Turn "auto", "cpu", "cuda", "a,b" or a list of names into provider names.

    Returns (names, strict): strict means the user asked for the first provider by name,
    so it must really be active afterwards (onnxruntime itself silently falls back to CPU).
    """
    available = ort.get_available_providers()
    if isinstance(providers, str) and providers.strip().lower() == "auto":
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"], False
        return ["CPUExecutionProvider"], False
    items = providers.split(",") if isinstance(providers, str) else list(providers)
    names = [_PROVIDER_ALIASES.get(str(p).strip().lower(), str(p).strip()) for p in items]
    if not names or not all(names):
        raise ConfigError(
            f"no execution provider given. Received: providers={providers!r}. "
            "Use 'auto', 'cpu', 'cuda' or onnxruntime provider names."
        )
    for name in names:
        if name not in available:
            raise ConfigError(
                f"execution provider {name} is not available in this onnxruntime build. "
                f"Received: providers={providers!r}; available: {', '.join(available)}. "
                "Install onnxruntime-gpu for CUDA, or use providers='auto' or 'cpu'."
            )
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    return names, True


def open_session(
    model: str | os.PathLike[str] | bytes,
    providers: str | Sequence[str] = "auto",
    threads: int | None = None,
    spinning: bool = True,
) -> tuple[ort.InferenceSession, str]:
    """Create the InferenceSession; returns it with a printable name of the model source.

    spinning=False: onnxruntime's pool threads stop spinning when a run returns instead of
    spinning on for a while (the server, whose event loop needs a core between runs; see
    cifar10_runtime.engines.sessions.session_options).
    """
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive integer or None. Received: {threads!r}.")
    if isinstance(model, bytes | bytearray | memoryview):
        source, payload = "<in-memory model>", bytes(model)
    elif isinstance(model, str | os.PathLike):
        path = Path(model)
        source, payload = str(path), str(path)
        if not path.exists():
            raise ModelError(
                f"model file not found: {path}. Pass the path of an .onnx file "
                "(cifar-export writes one)."
            )
        if not path.is_file():
            raise ModelError(f"model path is not a file: {path}. Pass the .onnx file itself.")
    else:
        raise ModelError(
            f"model must be a path or ONNX bytes. Received: {type(model).__name__}. "
            "Pass the path of an .onnx file."
        )
    names, strict = resolve_providers(providers)
    options = session_options(threads, spinning=spinning)
    try:
        session = ort.InferenceSession(payload, sess_options=options, providers=names)
    except Exception as exc:  # onnxruntime raises its own pybind classes for each failure
        raise ModelError(
            f"cannot load {source} as an ONNX model: {first_line(exc)}. "
            "Check the file is a complete .onnx model (re-export it with cifar-export)."
        ) from exc
    _check_active_provider(session, names, strict, source)
    return session, source


def _check_active_provider(
    session: ort.InferenceSession, wanted: list[str], strict: bool, source: str
) -> None:
    active = session.get_providers()
    if wanted[0] in active:
        return
    message = (
        f"{wanted[0]} was requested for {source} but onnxruntime activated only "
        f"{', '.join(active)} (is a GPU visible to this process?)"
    )
    if strict:
        raise ConfigError(f"{message}. Use providers='auto' or 'cpu' to run on CPU.")
    # "auto" asked for CUDA because the package supports it; say that it did not happen.
    warnings.warn(f"{message}; running on CPU.", RuntimeWarning, stacklevel=3)


def _describe(dtype: str, shape: Sequence[Any]) -> str:
    dims = ",".join("N" if not isinstance(d, int) else str(d) for d in shape)
    return f"{dtype.removeprefix('tensor(').removesuffix(')')} [{dims}]"


def inspect_session(
    session: ort.InferenceSession, source: str, model: str | os.PathLike[str] | bytes
) -> ModelSpec:
    """Validate inputs, outputs and metadata; raise ModelError naming what is wrong."""
    inp, dtype, fixed_batch = _contract_input(session, source)
    out = _contract_output(session, source)
    raw = dict(session.get_modelmeta().custom_metadata_map)
    metadata = read_metadata(raw, source)  # every known key's type and size, or ModelError
    class_names, names_source = _class_names(metadata, dtype, source)
    metadata["class_names"] = list(class_names)
    metadata["class_names_source"] = names_source
    # A version is echoed by the server with every answer; models without one (foreign
    # ones) get a stable content hash so two different files never look alike.
    model_version = raw.get("model_version") or f"sha256:{sha256_hex(model)[:12]}"
    metadata["model_version"] = model_version
    return ModelSpec(
        source=source,
        input_name=inp.name,
        output_name=out.name,
        input_dtype=dtype,
        fixed_batch=fixed_batch,
        class_names=class_names,
        model_version=model_version,
        metadata=metadata,
    )


def _contract_input(session: ort.InferenceSession, source: str) -> tuple[Any, np.dtype, int | None]:
    """(the one input, its dtype, its fixed batch size or None) or a ModelError."""
    inputs = session.get_inputs()
    found = ", ".join(f"{i.name}: {_describe(i.type, i.shape)}" for i in inputs)
    if len(inputs) != 1:
        raise ModelError(
            f"{source} has {len(inputs)} inputs; {NEEDED}. Received: {found}. "
            "Re-export the model with a single image input."
        )
    inp = inputs[0]
    dtype = _DTYPES.get(inp.type)
    shape = list(inp.shape)
    if dtype is None or len(shape) != 4 or tuple(shape[1:]) != IMAGE_SHAPE:
        raise ModelError(
            f"{source} has the wrong input; {NEEDED}. Received: {found}. "
            "Re-export the model with an NHWC 32x32x3 input."
        )
    fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return inp, dtype, fixed_batch


def _contract_output(session: ort.InferenceSession, source: str) -> Any:
    """The probabilities output (named OUTPUT_NAME, or the only one) or a ModelError."""
    outputs = session.get_outputs()
    by_name = {o.name: o for o in outputs}
    out = by_name.get(OUTPUT_NAME) or (outputs[0] if len(outputs) == 1 else None)
    out_found = ", ".join(f"{o.name}: {_describe(o.type, o.shape)}" for o in outputs)
    if out is None:
        raise ModelError(
            f"{source} has {len(outputs)} outputs and none is named {OUTPUT_NAME!r}; "
            f"{NEEDED}. Received: {out_found}."
        )
    out_shape = list(out.shape)
    if (
        out.type != "tensor(float)"
        or len(out_shape) != 2
        or (isinstance(out_shape[1], int) and out_shape[1] != NUM_CLASSES)
    ):
        raise ModelError(
            f"{source} has the wrong output; {NEEDED}. Received: {out_found}. "
            "A CIFAR-10 model ends in a 10-way softmax."
        )
    return out


def _class_names(
    metadata: dict[str, Any], dtype: np.dtype, source: str
) -> tuple[tuple[str, ...], str]:
    names = metadata.get("class_names")  # checked by read_metadata when present
    if names is None:
        if dtype == np.uint8:
            raise ModelError(
                f"{source} has no 'class_names' in its metadata_props; a uint8 contract model "
                "must carry them. Received keys: "
                f"{', '.join(sorted(metadata))[:300] or '(none)'}. Re-export with cifar-export, "
                "or add metadata_props class_names = a JSON list of 10 names."
            )
        return CIFAR10_CLASS_NAMES, "default CIFAR-10 names (the model has no class_names)"
    return tuple(names), "model metadata"


def probe(session: ort.InferenceSession, spec: ModelSpec) -> None:
    """Run one blank batch: proves the graph executes and its output really is softmax."""
    batch = spec.fixed_batch or 1
    x = np.zeros((batch, *IMAGE_SHAPE), dtype=spec.input_dtype)
    try:
        y = session.run([spec.output_name], {spec.input_name: x})[0]
    except Exception as exc:
        raise ModelError(
            f"{spec.source} failed on a blank {batch}x32x32x3 input: "
            f"{str(exc).strip()[:300]}. The graph does not run; re-export it."
        ) from exc
    if y.shape != (batch, NUM_CLASSES) or y.dtype != np.float32:
        raise ModelError(
            f"{spec.source} returned {y.dtype} {list(y.shape)} for a batch of {batch}; {NEEDED}."
        )
    sums = y.sum(axis=1)
    if not np.all(np.isfinite(y)) or y.min() < 0 or not np.allclose(sums, 1.0, atol=1e-3):
        raise ModelError(
            f"{spec.source}: output '{spec.output_name}' is not a softmax "
            f"(row sum {float(sums[0]):.4g}, min {float(y.min()):.4g}). Received logits? "
            "Add a Softmax as the last layer and re-export."
        )
