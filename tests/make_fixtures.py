"""Build the generated fixtures every venv's tests read (run in the full venv: `make fixtures`).

FIXTURES/runtime/   small contract and contract-breaking ONNX models (tests/runtime/make_models.py)
FIXTURES/exported/  a model trained briefly on the real subset, exported by `cifar-export`, with
                    real test images (images.npy, png/) and plain onnxruntime's probabilities for
                    them, so the runtime-only venv can check predictions without TensorFlow.

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
from conftest import SHARED_SUBSET  # noqa: E402

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


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def build_exported(out: Path) -> None:
    from PIL import Image

    from cifar10_runtime import Predictor
    from cifar10_trainer.data import load_dataset

    bindir = Path(sys.executable).parent
    real = (SHARED_SUBSET / "cifar-10-batches-py" / "test_batch").is_file()
    data_args = ["--data-dir", str(SHARED_SUBSET)] if real else ["--dataset", "synthetic"]
    work = out / "run"
    run(
        [
            str(bindir / "cifar-train"),
            *data_args,
            "--epochs",
            "2",
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
