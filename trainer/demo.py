"""`make demo`: the main job end to end, train -> export -> predict -> benchmark, as a user runs it.

Each step is the real console command, printed before it runs. With no CIFAR-10 on the machine
and no network, it says so and runs on the synthetic dataset.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from cifar10_trainer.errors import DataError

BIN = Path(sys.executable).parent
SYNTHETIC_EPOCHS = 5  # the synthetic classes are learnt in a few epochs; enough to show the flow


def step(title: str, cmd: list[str]) -> None:
    print(f"\n==> {title}\n$ {shlex.join(cmd)}", flush=True)
    code = subprocess.call(cmd)
    if code:
        sys.exit(f"demo stopped: '{cmd[0]}' exited with {code}")


def pick_data(data_dir: str | None) -> list[str]:
    """Real CIFAR-10 when it can be had (a folder, the Keras cache, a download), else synthetic."""
    from cifar10_trainer.data import load_cifar10

    try:
        load_cifar10(data_dir)
    except DataError as exc:
        if data_dir:
            raise SystemExit(f"error: {exc}") from None
        print(
            f"No real CIFAR-10 here ({exc}).\nThis demo runs on the SYNTHETIC dataset: "
            "generated images, not CIFAR-10; its accuracy says nothing about real photos."
        )
        return ["--dataset", "synthetic"]
    return ["--data-dir", data_dir] if data_dir else []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", help="CIFAR-10 folder or .tar.gz (default: Keras cache)")
    parser.add_argument(
        "--epochs",
        type=int,
        help=f"training epochs (default: the config's; {SYNTHETIC_EPOCHS} on synthetic data)",
    )
    parser.add_argument("--output-dir", type=Path, help="run folder (default runs/demo-<UTC>)")
    args = parser.parse_args(argv)

    data = pick_data(args.data_dir)
    synthetic = "synthetic" in data
    epochs = args.epochs or (SYNTHETIC_EPOCHS if synthetic else None)
    run = args.output_dir or Path("runs") / datetime.now(UTC).strftime("demo-%Y%m%dT%H%M%SZ")
    onnx_path = run / "model.onnx"

    step(
        "1/4 train",
        [
            str(BIN / "cifar-train"),
            *data,
            "--output-dir",
            str(run),
            *(["--epochs", str(epochs)] if epochs else []),
        ],
    )
    step(
        "2/4 export to ONNX and prove parity",
        [str(BIN / "cifar-export"), str(onnx_path), "--model", str(run / "model.keras"), *data],
    )

    samples = run / "samples"
    write_samples(samples, data)
    step(
        "3/4 predict with the runtime (no TensorFlow in its code path)",
        [str(BIN / "cifar-predict"), str(onnx_path), str(samples), "--top-k", "3"],
    )
    step(
        "4/4 benchmark (quick)",
        [
            str(BIN / "python"),
            "-m",
            "benchmarks",
            "--quick",
            "--model",
            str(onnx_path),
            "--keras",
            str(run / "model.keras"),
            "--out",
            str(run / "benchmark"),
        ],
    )
    tag = " (SYNTHETIC data)" if synthetic else ""
    print(
        f"\nDone{tag}. Everything is in {run}/: model.keras, metrics.json, "
        "learning_curves.png, model.onnx, samples/, benchmark/."
    )


def write_samples(folder: Path, data_args: list[str], n: int = 8) -> None:
    """A few test images as PNG files, named by their true class, for cifar-predict to read."""
    from PIL import Image

    from cifar10_trainer.data import load_dataset

    synthetic = "--dataset" in data_args
    data_dir = data_args[1] if data_args[:1] == ["--data-dir"] else None
    data = load_dataset("synthetic" if synthetic else "cifar10", data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = data.class_names[int(data.y_test[i])]
        Image.fromarray(data.x_test[i]).save(folder / f"{i:02d}_{name}.png")


if __name__ == "__main__":
    main()
