"""`python -m demo` (`make demo`): train -> export -> predict -> benchmark, each step the real
console command, printed before it runs.

Data, first found wins: --data-dir; the real CIFAR-10 subset beside the clone
(../shared/data/cifar-10-subset, or $CIFAR10_SUBSET); the Keras cache or a download; else the
synthetic dataset, said loudly.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cifar10_subset import DEFAULT_SUBSET as SHARED_SUBSET
from cifar10_subset import subset_available
from cifar10_trainer.run import MODEL

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Enough to show the flow in a few minutes; the configs' full recipes train for 50 epochs.
SYNTHETIC_EPOCHS = 5  # the synthetic classes are learnt in a few epochs
REAL_EPOCHS = 10


@dataclass(frozen=True)
class Data:
    args: list[str]  # what cifar-train and cifar-export are given
    data_dir: str | None
    synthetic: bool
    said: str  # one line telling the user what the demo trains on


def pick_data(data_dir: str | None, subset: Path = SHARED_SUBSET) -> Data:
    """The first dataset that can be had, in the order of the module docstring."""
    from cifar10_trainer.data import load_cifar10
    from cifar10_trainer.errors import DataError

    if data_dir:
        try:
            load_cifar10(data_dir)
        except DataError as exc:
            raise SystemExit(f"error: {exc}") from None
        return Data(["--data-dir", data_dir], data_dir, False, f"Real CIFAR-10 from {data_dir}.")
    if subset_available(subset):
        said = f"Found the real CIFAR-10 subset at {short(subset)}: training on it."
        return Data(["--data-dir", short(subset)], str(subset), False, said)
    try:
        load_cifar10(None)
    except DataError as exc:
        said = (
            f"No real CIFAR-10 here (not at {subset}; {exc}).\nThis demo runs on the SYNTHETIC "
            "dataset: generated images, not CIFAR-10; its accuracy says nothing about real "
            "photos."
        )
        return Data(["--dataset", "synthetic"], None, True, said)
    return Data([], None, False, "Real CIFAR-10 from the Keras cache (~/.keras/datasets).")


def gpu_visible() -> bool:
    """A cheap look for an NVIDIA GPU, without importing TensorFlow in this process."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


def child_env(device: str) -> dict[str, str]:
    """The environment of every step. Without a GPU (or with --device cpu) TensorFlow's C++
    errors are hidden: on a CPU machine they are only `failed call to cuInit ... (303)` about
    a GPU nobody asked for. With a GPU they stay visible and the GPU stays usable."""
    env = dict(os.environ)
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the user's choice: no step takes the GPU
    if device == "cpu" or (device == "auto" and not gpu_visible()):
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def short(path: Path | str) -> str:
    """`path` relative to the clone when that is shorter (every step runs in the clone)."""
    rel = os.path.relpath(path, REPO)
    return rel if len(rel) < len(str(path)) else str(path)


def step(title: str, cmd: list[str], env: dict[str, str]) -> None:
    print(f"\n==> {title}\n$ {shlex.join(cmd)}", flush=True)
    code = subprocess.call(cmd, env=env, cwd=REPO)
    if code:
        sys.exit(f"demo stopped: '{Path(cmd[0]).name}' exited with {code}")


def write_samples(folder: Path, data: Data, n: int = 8) -> None:
    """A few test images as PNG files, named by their true class, for cifar-predict to read."""
    from PIL import Image

    from cifar10_trainer.data import load_dataset

    dataset = load_dataset("synthetic" if data.synthetic else "cifar10", data.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = dataset.class_names[int(dataset.y_test[i])]
        Image.fromarray(dataset.x_test[i]).save(folder / f"{i:02d}_{name}.png")


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    data = pick_data(args.data_dir)
    print(data.said)
    env = child_env(args.device)
    epochs = args.epochs or (SYNTHETIC_EPOCHS if data.synthetic else REAL_EPOCHS)
    stamp = datetime.now(UTC).strftime("demo-%Y%m%dT%H%M%SZ")
    run = Path(short((args.output_dir or REPO / "runs" / stamp).resolve()))
    onnx_path = run / "model.onnx"
    tools = Path(short(BIN))
    steps = 3 if args.skip_benchmark else 4

    step(
        f"1/{steps} train ({epochs} epoch{'s' if epochs != 1 else ''})",
        [
            str(tools / "cifar-train"),
            *data.args,
            "--output-dir",
            str(run),
            "--epochs",
            str(epochs),
            "--device",
            args.device,
        ],
        env,
    )
    step(
        f"2/{steps} export to ONNX and prove parity",
        [str(tools / "cifar-export"), str(onnx_path), "--model", str(run / MODEL), *data.args],
        env,
    )
    samples = run / "samples"
    write_samples(REPO / samples, data)
    step(
        f"3/{steps} predict with the runtime (no TensorFlow in its code path)",
        [str(tools / "cifar-predict"), str(onnx_path), str(samples), "--top-k", "3"],
        env,
    )
    if not args.skip_benchmark:
        step(f"4/{steps} benchmark (quick)", _benchmark_command(tools, run), env)
    print(next_steps(run, tools, data.synthetic))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--data-dir", help="CIFAR-10 folder or .tar.gz [default: see above]")
    parser.add_argument(
        "--epochs",
        type=int,
        help=f"training epochs [default: {REAL_EPOCHS}, {SYNTHETIC_EPOCHS} on synthetic data]",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--output-dir", type=Path, help="run folder [default: runs/demo-<UTC>]")
    parser.add_argument("--skip-benchmark", action="store_true", help="stop after predicting")
    return parser.parse_args(argv)


def _benchmark_command(tools: Path, run: Path) -> list[str]:
    """The quick benchmark of the model just made, its report in the run folder."""
    return [
        str(tools / "python"),
        "-m",
        "benchmarks",
        "--quick",
        "--model",
        str(run / "model.onnx"),
        "--keras",
        str(run / MODEL),
        "--out",
        str(run / "benchmark"),
    ]


def next_steps(run: Path, tools: Path, synthetic: bool) -> str:
    """Where everything is, and the commands to use the model just made (run in the clone)."""
    onnx = shlex.quote(str(run / "model.onnx"))
    found = sorted((REPO / run / "samples").glob("*.png"))
    sample = run / "samples" / (found[0].name if found else "00_cat.png")
    tag = " (SYNTHETIC data: the model knows stripes, not photos)" if synthetic else ""
    return "\n".join(
        [
            f"\nDone{tag}. Everything is in {run}/: model.keras, metrics.json, "
            "learning_curves.png, model.onnx, samples/"
            + ("" if not (REPO / run / "benchmark").exists() else ", benchmark/")
            + ".",
            "Next, with the model just made:",
            f"  {tools / 'cifar-predict'} {onnx} YOUR_PHOTOS/ --top-k 3",
            f"  {tools / 'cifar-serve'} {onnx} --port 8000   # then open http://127.0.0.1:8000/",
            "  curl -s -H 'Content-Type: image/png' --data-binary "
            f"@{shlex.quote(str(sample))} localhost:8000/v1/predict",
        ]
    )


if __name__ == "__main__":
    main()
