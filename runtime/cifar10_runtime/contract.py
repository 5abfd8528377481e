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
# metadata_props values that hold JSON; others (model_version, source_sha256) are plain text.
JSON_KEYS = ("class_names", "input_spec", "parity", "metrics", "producer_versions")
