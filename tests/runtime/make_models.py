"""Write the small ONNX models the runtime tests load (full venv only: needs `onnx`).

The runtime-only venv has no `onnx`, so these files are generated beforehand by
`tests/make_fixtures.py` (which calls `make_all(FIXTURES / "runtime")`) or by hand:

    .venv/bin/python tests/runtime/make_models.py build/fixtures/runtime

Every model does a real (tiny) computation, Flatten -> Gemm with fixed random weights ->
Softmax, so predictions differ from image to image and can be compared exactly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cifar10_runtime.contract import CIFAR10_CLASS_NAMES

OPSET = 17
# onnxruntime >= 1.20 reads IR 8 models; pinning it keeps the files loadable by older runtimes.
IR_VERSION = 8
CIFAR10_NAMES = list(CIFAR10_CLASS_NAMES)

FULL_METADATA = {
    "class_names": json.dumps(CIFAR10_NAMES),
    "input_spec": json.dumps(
        {"name": "image", "dtype": "uint8", "shape": ["N", 32, 32, 3], "layout": "NHWC RGB"}
    ),
    "model_version": "tiny-1.0",
    "source_sha256": "ab" * 32,
    "parity": json.dumps({"max_abs_diff": 0.0, "images": 16, "passed": True}),
    "metrics": json.dumps({"test_accuracy": 0.1, "test_loss": 2.3}),
    "producer_versions": json.dumps({"onnx": onnx.__version__, "opset": OPSET}),
}

# A run folder named 运行1 gives this version; a hand-made model can carry anything.
VERSION_UNICODE = {"model_version": "运行1-2fc6665b"}
VERSION_CRLF = {"model_version": "tiny\r\nX-Injected: 1"}


def _weights(in_features: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Small weights keep the softmax away from 0/1 so every class gets a real probability.
    w = (rng.standard_normal((in_features, classes)) * 0.02).astype(np.float32)
    b = (rng.standard_normal(classes) * 0.1).astype(np.float32)
    return w, b


def _model(
    input_dtype: int,
    input_shape: list,
    *,
    classes: int = 10,
    scale: bool = True,
    softmax: bool = True,
    extra_input: bool = False,
    input_name: str = "image",
    output_name: str = "probabilities",
    metadata: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """One input -> [Cast -> Mul 1/255] -> Flatten -> Gemm -> [Softmax] -> one output."""
    features = int(np.prod([d for d in input_shape[1:] if isinstance(d, int)]))
    w, b = _weights(features, classes)
    nodes = []
    x = input_name
    if input_dtype != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [x], ["as_float"], to=TensorProto.FLOAT))
        x = "as_float"
    if scale:
        nodes.append(helper.make_node("Mul", [x, "inv255"], ["scaled"]))
        x = "scaled"
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]))
    nodes.append(
        helper.make_node("Softmax", ["logits"], [output_name], axis=1)
        if softmax
        else helper.make_node("Identity", ["logits"], [output_name])
    )
    inputs = [helper.make_tensor_value_info(input_name, input_dtype, input_shape)]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1]))
    initializers = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    if scale:
        initializers.append(numpy_helper.from_array(np.array(1 / 255, np.float32), "inv255"))
    batch = input_shape[0]
    graph = helper.make_graph(
        nodes,
        "tiny_cifar",
        inputs,
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, classes])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="make_models"
    )
    model.ir_version = IR_VERSION
    for key, value in (metadata or {}).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(model)
    return model


def _argmax_model() -> onnx.ModelProto:
    """A model whose output is a class index (int64 [N]), not probabilities."""
    base = _model(TensorProto.UINT8, ["N", 32, 32, 3], metadata=FULL_METADATA)
    graph = base.graph
    graph.node.append(helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]))
    onnx.checker.check_model(base)
    return base


def build_models() -> dict[str, onnx.ModelProto]:
    """Name -> model, for every fixture the runtime tests use."""
    u8, f32 = TensorProto.UINT8, TensorProto.FLOAT
    nhwc = ["N", 32, 32, 3]
    without_names = {k: v for k, v in FULL_METADATA.items() if k != "class_names"}
    return {
        # Follows the contract: uint8 NHWC in, scaling inside, softmax out, full metadata.
        "valid": _model(u8, nhwc, metadata=FULL_METADATA),
        # Made by "another tool": float32 [0,1] in, other tensor names, no metadata at all.
        # Same weights as `valid`, so its predictions on x/255 equal valid's on x.
        "foreign_float": _model(
            f32, nhwc, scale=False, input_name="input_1", output_name="dense_2"
        ),
        # A foreign model exported with a fixed batch of 1 (common for PyTorch exports).
        "foreign_fixed_batch": _model(
            f32, [1, 32, 32, 3], scale=False, input_name="x", output_name="y"
        ),
        "wrong_shape": _model(u8, ["N", 28, 28, 1], metadata=FULL_METADATA),
        "nchw_float": _model(f32, ["N", 3, 32, 32], scale=False),
        "wrong_dtype_float64": _model(TensorProto.DOUBLE, nhwc, metadata=FULL_METADATA),
        "wrong_dtype_int32": _model(TensorProto.INT32, nhwc, metadata=FULL_METADATA),
        "two_inputs": _model(u8, nhwc, extra_input=True, metadata=FULL_METADATA),
        "five_classes": _model(u8, nhwc, classes=5, metadata=FULL_METADATA),
        "logits": _model(f32, nhwc, scale=False, softmax=False),
        "argmax_output": _argmax_model(),
        "missing_class_names": _model(u8, nhwc, metadata=without_names),
        "class_names_nine": _model(
            u8, nhwc, metadata={**FULL_METADATA, "class_names": json.dumps(CIFAR10_NAMES[:9])}
        ),
        "class_names_not_json": _model(
            u8, nhwc, metadata={**FULL_METADATA, "class_names": "airplane,automobile"}
        ),
        # Versions a header cannot carry as they are: non-Latin-1, and CR/LF.
        "version_unicode": _model(u8, nhwc, metadata={**FULL_METADATA, **VERSION_UNICODE}),
        "version_crlf": _model(u8, nhwc, metadata={**FULL_METADATA, **VERSION_CRLF}),
    }


def make_all(out_dir: Path) -> None:
    """Write every fixture model as `<name>.onnx` into out_dir (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, model in build_models().items():
        tmp = out_dir / f".{name}.onnx.tmp"
        onnx.save(model, tmp)
        tmp.replace(out_dir / f"{name}.onnx")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/runtime/make_models.py OUT_DIR")
    make_all(Path(sys.argv[1]))
    print(f"wrote {len(build_models())} models to {sys.argv[1]}")
