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


def test_the_int8_check_and_the_evidence_share_one_agreement_metric() -> None:
    """int8.check's figures and an evidence row's come from checks.agreement alike."""
    from cifar10_exporter.checks.agreement import agreement
    from cifar10_exporter.checks.engine_evidence import evidence_figures
    from cifar10_exporter.int8.check import int8_stats

    rng = np.random.default_rng(3)
    fp32 = rng.dirichlet(np.ones(10), size=40).astype(np.float32)
    other = fp32.copy()
    other[:4] = other[:4, ::-1]  # 4 images answered differently
    labels = fp32.argmax(1)
    labels[30:] = -1  # the last ones unlabelled, like the edge cases
    samples = Samples(np.zeros((40, 32, 32, 3), np.uint8), labels, "t", "t", 36, synthetic=True)
    a = agreement(fp32, other, samples)
    stats, row = int8_stats(a), evidence_figures(fp32, other, samples)
    agree = float((fp32[:36].argmax(1) == other[:36].argmax(1)).mean())
    assert stats["top1_agreement"] == row["top1_agreement"] == a.top1_agreement == agree
    assert stats["max_abs_diff"] == row["max_abs_diff"] == float(np.abs(other - fp32).max())
    assert stats["accuracy_drop"] == row["accuracy_drop"] == a.accuracy_drop
    assert stats["accuracy_int8"] == row["accuracy"] and stats["accuracy_fp32"] == 1.0
    assert stats["differ"] == 4 and stats["n_labelled"] == 30


def test_every_stage_walks_the_one_candidate_list() -> None:
    from cifar10_exporter.checks.engine_evidence import REFERENCE, evidence_candidates
    from cifar10_runtime.contract import CANDIDATES, ENGINES, PRECISIONS

    assert CANDIDATES[0] == REFERENCE == ("onnxruntime", "fp32")
    assert ("onnxruntime", "bf16") not in CANDIDATES
    assert set(CANDIDATES) <= {(e, p) for e in ENGINES for p in PRECISIONS}
    listed = [(engine, precision) for engine, precision, _, _ in evidence_candidates(b"m", None)]
    assert listed == [c for c in CANDIDATES if c != REFERENCE]


def test_the_float32_tolerance_has_one_home() -> None:
    import inspect

    from cifar10_exporter.checks.parity import check_parity
    from cifar10_exporter.config import ExportConfig
    from cifar10_runtime.contract import FP32_TOLERANCE
    from cifar10_runtime.engines.golden import Golden

    assert inspect.signature(check_parity).parameters["atol"].default == FP32_TOLERANCE
    assert ExportConfig(output=Path("m.onnx")).atol == FP32_TOLERANCE
    golden = Golden(np.zeros((1, 32, 32, 3), np.uint8), np.zeros((1, 10), np.float32))
    assert golden.tolerance("fp32") == FP32_TOLERANCE


def test_the_exporter_times_with_the_runtime_loop() -> None:
    from cifar10_exporter.checks import engine_evidence
    from cifar10_exporter.int8 import speed
    from cifar10_runtime.engines import timing

    assert speed.best_seconds is timing.best_seconds
    assert engine_evidence.best_seconds is timing.best_seconds
