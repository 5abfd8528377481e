"""What the exporter's tests share that is not a fixture."""

from __future__ import annotations

# The metadata every exported model carries (DESIGN.md's contract).
REQUIRED_KEYS = (
    "class_names",
    "input_spec",
    "model_version",
    "source_sha256",
    "parity",
    "metrics",
    "producer_versions",
)
