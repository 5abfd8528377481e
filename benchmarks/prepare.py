"""What a run measures: its data (mini set, subset or synthetic) and its models (given, or
trained and exported here), with the model's record for the report."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.inference.flops import parameter_count
from benchmarks.inputs import DEFAULT_SUBSET, subset_available, write_mini_dataset
from benchmarks.sections import log
from benchmarks.training import speed as training

REPO = Path(__file__).resolve().parent.parent


def pick_data(args: argparse.Namespace, work: Path) -> tuple[Path | None, dict]:
    """The training/export data: a mini copy for --quick, the subset, or synthetic."""
    subset = args.data_dir or DEFAULT_SUBSET
    if args.quick:
        mini = write_mini_dataset(work / "mini-data", n_train=320, n_test=64, subset=subset)
        kind = "SYNTHETIC" if mini["synthetic"] else "real CIFAR-10"
        return Path(mini["path"]), {
            "synthetic": mini["synthetic"],
            "description": (
                f"{kind} mini set for --quick: {mini['train_images']} training, "
                f"{mini['test_images']} test images (in {mini['path']})"
            ),
        }
    if subset_available(subset):
        return subset, {"synthetic": False, "description": f"real CIFAR-10 subset from {subset}"}
    return None, {
        "synthetic": True,
        "description": "SYNTHETIC (no CIFAR-10 subset found): cifar10_trainer's generated dataset",
    }


def prepare_models(  # noqa: PLR0913
    args: argparse.Namespace,
    data_dir: Path | None,
    epochs: int,
    env: dict[str, str],
    work: Path,
    threads: int,
    quick: bool,
    results: dict,
) -> tuple[Path, Path | None, Path | None]:
    """(ONNX, INT8 twin or None, Keras or None): the given files, or made by the toolkit."""
    if args.model:
        onnx_path = args.model.resolve()
        twin = onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + ".int8.onnx")
        int8 = args.int8 or (twin if twin.is_file() else None)
        keras_path = args.keras.resolve() if args.keras else None
        if keras_path is None:
            results["notes"].append(
                "no --keras given: Keras rows and TensorFlow cold start skipped"
            )
        results["preparation"] = {"given": True}
        return onnx_path, int8, keras_path
    log(f"[prepare] cifar-train ({epochs} epoch(s)) and cifar-export --quantize int8")
    trained = training.cifar_train(data_dir, epochs, work / "train", env)
    results["_cifar_train"] = trained
    exported = training.export(
        Path(trained["model"]), data_dir, work, env, threads, samples=64 if quick else 512
    )
    results["preparation"] = {
        "train_command": trained["command"],
        "test_accuracy": trained["test_accuracy"],
        "export_command": exported["command"],
        "parity": exported["parity"],
        "int8_check": exported["int8_check"],
    }
    check = exported["int8_check"]
    if exported["int8"] is None:
        results["notes"].append(
            "cifar-export produced no INT8 model, so there are no INT8 rows: "
            f"{training.last_error(work / 'export.log')}"
        )
    elif check and not check.get("passed"):
        results["notes"].append(
            "the INT8 model failed the exporter's accuracy check on this briefly trained model "
            f"(top-1 agreement {check.get('top1_agreement')}); it was kept with --force for "
            "its speed only"
        )
    return Path(exported["onnx"]), exported["int8"], Path(trained["model"])


def model_record(models: tuple[Path, Path | None, Path | None], macs: dict) -> dict:
    """The report's `model`: its files (relative to the repository) and its size."""
    onnx_path, int8_path, keras_path = models
    return {
        "onnx": rel(onnx_path),
        "int8": rel(int8_path) if int8_path else None,
        "keras": rel(keras_path) if keras_path else None,
        "flops_per_image": macs["flops"],
        "macs_by_op": macs["by_op"],
        "layers": macs["layers"],
        "parameters": parameter_count(onnx_path),
    }


def rel(path: Path | None) -> str | None:
    """A path relative to the repository when it lies inside it, else as given."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)
