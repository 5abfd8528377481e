"""The ONNX model contract's constants: their one home, imported by every stage.

The trainer builds its model to these, the exporter writes them into the graph and its
metadata, and the runtime checks models against them (DESIGN.md, "The ONNX model contract").
"""

from __future__ import annotations

# One image as the model sees it: 32x32 RGB, NHWC, uint8 at the graph's input.
IMAGE_SHAPE: tuple[int, int, int] = (32, 32, 3)
NUM_CLASSES = 10
# CIFAR-10's label order (batches.meta): index i of `probabilities` is this class.
CIFAR10_CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
# The symbolic name of the dynamic batch dimension in exported graphs.
BATCH_DIM = "N"
# metadata_props values that hold JSON (every one the exporter writes: its metadata module
# encodes exactly these); the others (model_version, source_sha256) are plain text.
JSON_KEYS = (
    "class_names",
    "input_spec",
    "parity",
    "metrics",
    "producer_versions",
    "export_wrapper",
    "preprocessing",
    "quantization",
    "precisions",
    "golden_set",
)


def valid_class_names(names: object) -> bool:
    """The contract's `class_names`: a list/tuple of NUM_CLASSES distinct non-empty strings
    (the one check: the exporter's --class-names, the trainer's label_names, the runtime's
    metadata)."""
    return (
        isinstance(names, (list, tuple))
        and len(names) == NUM_CLASSES
        and all(isinstance(n, str) and n.strip() for n in names)
        and len(set(names)) == NUM_CLASSES
    )


# The model's name in the Open Inference Protocol (/v2/models/{MODEL_NAME}, HTTP and gRPC).
MODEL_NAME = "cifar10"

# Engines and precisions. The exporter records which precisions a model allows and each
# one's tolerance under PRECISIONS_KEY, and a few check images with their float32 reference
# outputs under GOLDEN_KEY (cifar10_runtime.engines.golden); the runtime replays them at load.
PRECISIONS_KEY = "precisions"
GOLDEN_KEY = "golden_set"
ENGINES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
# Every (engine, precision) pair that can run a model, onnxruntime float32 (the reference)
# first: the runtime's candidates, the exporter's evidence rows and the benchmarks' engine
# rows all walk this list. onnxruntime's CPU EP has no bf16 path.
CANDIDATES: tuple[tuple[str, str], ...] = tuple(
    (engine, precision)
    for engine in ENGINES
    for precision in PRECISIONS
    if (engine, precision) != ("onnxruntime", "bf16")
)
# Largest |difference| allowed between two float32 computations of the model, per
# probability: the exporter's Keras-vs-ONNX parity (--atol's default), a float32 engine
# against the export's reference outputs, the golden-set replay at load. Far above float32
# reordering noise, far below what a changed weight moves.
FP32_TOLERANCE = 1e-4
# The int8 twin's file name beside OUTPUT.onnx (cifar10_exporter.outputs.files writes it).
INT8_TWIN_SUFFIX = ".int8.onnx"
