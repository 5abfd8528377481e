"""Build the generated fixtures every venv's tests read (run in the full venv: `make fixtures`).

FIXTURES/runtime/   small contract and contract-breaking ONNX models (tests/runtime/make_models.py)
FIXTURES/exported/  a model trained briefly on the real subset, exported by `cifar-export`, with
                    real test images (images.npy, png/) and plain onnxruntime's probabilities for
                    them, so the runtime-only venv can check predictions without TensorFlow;
                    tampered.onnx: the same file with one weight tensor changed after export.
FIXTURES/engines/   the same Keras model exported with --quantize int8 (model.onnx + its int8
                    twin), for the engine x precision tests.

It is skipped when the inputs that shape it (code, configs) have not changed since the last build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from conftest import SHARED_SUBSET, subset_available  # noqa: E402

sys.path.insert(0, str(REPO / "tests" / "runtime"))
from make_models import make_all  # noqa: E402

INPUTS = [
    "trainer",
    "exporter",
    "tests/make_fixtures.py",
    "tests/runtime/make_models.py",
]
N_IMAGES = 64  # enough real images to compare predictions; small enough to keep CI quick


def fingerprint() -> str:
    digest = hashlib.sha256()
    for root in INPUTS:
        path = REPO / root
        for file in sorted([path] if path.is_file() else path.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(REPO)).encode() + file.read_bytes())
    digest.update(str(SHARED_SUBSET.is_dir()).encode())
    return digest.hexdigest()


def run(cmd: list[str], check: bool = True) -> bool:
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=check).returncode == 0


def build_exported(out: Path) -> None:
    from PIL import Image

    from cifar10_runtime import Predictor
    from cifar10_trainer.data import load_dataset

    bindir = Path(sys.executable).parent
    real = subset_available(SHARED_SUBSET)
    data_args = ["--data-dir", str(SHARED_SUBSET)] if real else ["--dataset", "synthetic"]
    work = out / "run"
    run(
        [
            str(bindir / "cifar-train"),
            *data_args,
            # The seed recipe (no augmentation, no label smoothing) gives confident answers in
            # a few epochs: a briefly trained model whose int8 twin can pass the 98% agreement
            # gate on every CPU kind, so the engine tests that need a twin run everywhere.
            "--config",
            "seed.toml",
            "--epochs",
            "3",
            # float32: the contract tests compare the ONNX with the Keras model to 1e-4 and with
            # the run's own test accuracy exactly; a mixed_bfloat16 model computes in bf16 in
            # Keras (its export path is tests/exporter/test_export_mixed_precision.py).
            "--precision",
            "float32",
            "--quiet",
            "--output-dir",
            str(work),
        ]
    )
    run(
        [
            str(bindir / "cifar-export"),
            str(out / "model.onnx"),
            "--model",
            str(work / "model.keras"),
            *data_args,
            "--samples",
            "128",
            # No int8 twin here: the runtime tests read this model as float32 only (a twin
            # beside it would change the default Predictor's choice); engines/ has the twin.
            "--quantize",
            "none",
        ]
    )
    data = load_dataset("cifar10" if real else "synthetic", SHARED_SUBSET if real else None)
    images = data.x_test[:N_IMAGES]
    np.save(out / "images.npy", images)
    np.save(out / "labels.npy", data.y_test[:N_IMAGES])
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    np.save(out / "probabilities.npy", session.run(None, {"image": images})[0])
    (out / "png").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(out / "png" / f"{i:03d}.png")
    assert Predictor(out / "model.onnx").class_names  # the contract holds for the runtime
    (out / "source.json").write_text(json.dumps({"real_subset": real, "images": N_IMAGES}))
    build_tampered(out / "model.onnx", out / "tampered.onnx")
    engines = out.parent / "engines"
    engines.mkdir(exist_ok=True)
    export = [str(bindir / "cifar-export"), str(engines / "model.onnx")]
    # Every test image: the int8 gate (98% agreement) is then judged on 500, not on a handful.
    model_args = ["--model", str(work / "model.keras"), *data_args, "--samples", "500"]
    if not run([*export, *model_args, "--quantize", "int8"], check=False):
        # A briefly trained model whose twin misses the gate: the float32 export is still
        # written, and the tests that need the twin skip, naming this fixture.
        (engines / "model.int8.onnx").unlink(missing_ok=True)
        print("note: the int8 twin missed its gate; engine tests needing it will skip")


def build_tampered(model: Path, out: Path) -> None:
    """`model` with its largest weight tensor scaled by 1.02, metadata (golden set) kept: what
    a file edited after export looks like to the runtime."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(model))
    floats = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    biggest = max(floats, key=lambda t: int(np.prod(t.dims)))
    weights = numpy_helper.to_array(biggest)
    biggest.CopyFrom(numpy_helper.from_array((weights * 1.02).astype(weights.dtype), biggest.name))
    onnx.save(proto, str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "fixtures")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args()
    stamp = args.out / "fingerprint"
    now = fingerprint()
    if not args.force and stamp.is_file() and stamp.read_text() == now:
        print(f"fixtures in {args.out} are up to date")
        return
    shutil.rmtree(args.out, ignore_errors=True)
    make_all(args.out / "runtime")
    build_exported(args.out / "exported")
    stamp.write_text(now)
    print(f"fixtures written to {args.out}")


if __name__ == "__main__":
    main()
