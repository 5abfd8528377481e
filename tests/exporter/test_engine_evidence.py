"""The exporter's engine x precision evidence and golden set (engine_evidence.py).

Unit tests on small generated models and labelled images (no training), and checks of what
`make fixtures`' int8 export recorded: the metadata, `.parity.json` and the card agree, and
the golden outputs are what onnxruntime float32 computes for the golden images.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort

from cifar10_exporter.checks.engine_evidence import GOLDEN_IMAGES, engine_evidence, pick_golden
from cifar10_exporter.checks.samples import Samples
from cifar10_runtime.contract import GOLDEN_KEY, PRECISIONS_KEY
from cifar10_runtime.engines.golden import read_golden

CONFIG = SimpleNamespace(int8_min_agreement=0.98, int8_max_accuracy_drop=0.01, threads=1)


def _samples(images: np.ndarray, labels: np.ndarray) -> Samples:
    return Samples(images, labels, "test images", "test images", len(images), synthetic=True)


def _run(model: bytes, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(None, {"image": images})[0]


def test_golden_images_are_confident_and_of_distinct_classes() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10) * 0.3, size=200).astype(np.float32)
    images = rng.integers(0, 256, (200, 32, 32, 3), dtype=np.uint8)
    chosen = pick_golden(probs, _samples(images, probs.argmax(1)))
    assert len(chosen) == GOLDEN_IMAGES == len(set(probs[chosen].argmax(1)))
    top2 = np.sort(probs, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    assert margin[chosen].min() >= np.median(margin)  # far from any decision boundary


def test_a_twin_that_disagrees_is_not_allowed(fixtures_dir: Path) -> None:
    """The "int8 twin" here is another model: it fails the gate, so int8 is not allowed."""
    fp32 = (fixtures_dir / "exported" / "model.onnx").read_bytes()
    other = (fixtures_dir / "runtime" / "valid.onnx").read_bytes()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    fp32_probs = _run(fp32, images)
    samples = _samples(images, fp32_probs.argmax(1))  # labels: fp32's answers, 100% accurate
    out = engine_evidence(fp32, other, samples, fp32_probs, CONFIG, log=lambda _: None)
    precisions = out["metadata"][PRECISIONS_KEY]
    rows = {f"{r['engine']}/{r['precision']}": r for r in precisions["evidence"]}
    assert rows["onnxruntime/int8"]["measured"] and not rows["onnxruntime/int8"]["passed"]
    assert rows["onnxruntime/int8"]["top1_agreement"] < 0.98
    assert "int8" not in precisions["allowed"] and "int8" not in precisions["tolerances"]
    golden, why = read_golden(out["metadata"])
    assert why == "" and len(golden.images) == GOLDEN_IMAGES
    np.testing.assert_array_equal(golden.probabilities, _run(fp32, golden.images))


def test_the_int8_export_records_engines_everywhere(engines_dir: Path) -> None:
    proto = onnx.load(str(engines_dir / "model.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    precisions = json.loads(props[PRECISIONS_KEY])
    assert precisions["allowed"][0] == "fp32" and "int8" in precisions["allowed"]
    assert set(precisions["tolerances"]) == set(precisions["allowed"])
    parity = json.loads((engines_dir / "model.parity.json").read_text())
    assert parity["engines"]["allowed"] == precisions["allowed"]
    card = (engines_dir / "model.md").read_text()
    assert "## Engines and precisions" in card
    assert "Allowed precisions: " + ", ".join(precisions["allowed"]) in card
    golden = json.loads(props[GOLDEN_KEY])
    decoded, _ = read_golden({GOLDEN_KEY: golden, PRECISIONS_KEY: precisions})
    np.testing.assert_array_equal(
        decoded.probabilities, _run(str(engines_dir / "model.onnx"), decoded.images)
    )
