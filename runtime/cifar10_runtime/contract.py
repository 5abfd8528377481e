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
