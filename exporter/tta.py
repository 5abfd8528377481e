"""What `--tta flip` buys and costs, measured on the exporting machine for the model card.

The averaged graph is what parity and the gate check (steps.prepare gives Keras the same
averaging); this step adds the figures a user needs to decide: top-1 on the labelled check
images with and without the averaging (Keras, which the ONNX graph reproduces), and images/s
of both ONNX graphs timed in alternation on this CPU (a figure to report, never a verdict).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cifar10_exporter.checks.assess import Log
from cifar10_exporter.checks.samples import Samples
from cifar10_exporter.config import ExportConfig
from cifar10_exporter.outputs.card import tta_line
from cifar10_exporter.wrapper import WrapperSpec
from cifar10_runtime.engines.cpu import cpu_features

TTA_SPEED_BATCH = 64  # a batch the server's batcher forms under load


def tta_step(
    config: ExportConfig,
    model: Any,
    spec: WrapperSpec,
    samples: Samples,
    reference: np.ndarray,
    averaged: bytes,
    log: Log,
) -> dict[str, Any]:
    """The record stored under "tta" in .parity.json and shown on the card."""
    from cifar10_exporter.from_keras.convert import convert_to_onnx
    from cifar10_exporter.from_keras.model import keras_reference
    from cifar10_exporter.int8.speed import best_speeds

    plain_spec = spec.replace(tta="none")
    record: dict[str, Any] = {"mode": spec.tta}
    images, labels = samples.labelled_set()
    if labels is not None and len(labels):
        plain = keras_reference(model, plain_spec, images)
        record.update(
            images=len(labels),
            split=samples.split,
            accuracy_without=float((plain.argmax(axis=1) == labels).mean()),
            accuracy_with=float((reference[samples.labelled].argmax(axis=1) == labels).mean()),
        )
    plain_onnx = convert_to_onnx(model, plain_spec, config.opset, str(config.model))
    speeds = best_speeds(
        {"without": plain_onnx.SerializeToString(), "with": averaged},
        samples.images,
        batch=TTA_SPEED_BATCH,
        threads=config.threads,
    )
    cpu = cpu_features()
    record.update(
        batch=TTA_SPEED_BATCH,
        images_per_s_without=round(speeds["without"], 1),
        images_per_s_with=round(speeds["with"], 1),
        cpu=f"{cpu['cpu']}, {cpu['int8_summary']}",
    )
    log(f"tta {spec.tta}: {tta_line(record)}")
    return record
