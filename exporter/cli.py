"""`cifar-export OUTPUT.onnx`: Keras -> ONNX with preprocessing in the graph and a parity check.

Exit codes: 0 ok; 1 a check failed (ParityError); 2 bad flag or unwritable OUTPUT; 3 data
problem; 4 model problem (missing, unreadable, cannot meet the ONNX contract).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from cifar10_exporter.checks.thresholds import (
    ACCURACY_FLOOR,
    INT8_MAX_ACCURACY_DROP,
    INT8_MIN_AGREEMENT,
    MAX_DROP_VS_TRAINER,
)
from cifar10_exporter.config import (
    CHANNEL_ORDERS,
    DATASETS,
    INPUT_SCALES,
    MAX_OPSET,
    MIN_OPSET,
    OUTPUT_KINDS,
    QUANTIZE,
    TTA,
    ExportConfig,
    parse_class_names,
)
from cifar10_runtime.errors import ConfigError, cli_errors
from cifar10_trainer.quiet import import_tensorflow_quietly

# ExportConfig's defaults, named in the flags' help (the dataclass is their one home).
_DEFAULT = {f.name: f.default for f in dataclasses.fields(ExportConfig)}


def _batch_sizes(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(
            f"--batch-sizes takes integers separated by commas, 0 for all images in one batch. "
            f"Received: --batch-sizes={value}"
        ) from None


def _rgb(flag: str, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise ConfigError(
            f"{flag} takes 3 numbers R,G,B in pixel units (0..255). Received: {flag}={value}"
        ) from None


def _from_file(path: Path, output: Path) -> ExportConfig:
    """Settings from a saved `model.export.json` (or a JSON object of ExportConfig fields)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data = data.get("config", data)
        data["output"] = output
        return ExportConfig(**data)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"cannot read export settings from {path} ({exc}); pass a model.export.json "
            f"written by cifar-export. Received: --config={path}"
        ) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("output", type=click.Path(path_type=Path))
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    default=None,
    help="Keras model (.keras or legacy .h5) [default: runs/latest/model.keras].",
)
@click.option(
    "--opset",
    type=int,
    default=None,
    help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} [default: {_DEFAULT['opset']}].",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="CIFAR-10 python folder/archive for the check images [default: the model's "
    "run data, the Keras cache, else synthetic].",
)
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    default=None,
    help="Check on this dataset instead (synthetic: generated, offline).",
)
@click.option(
    "--samples",
    type=int,
    default=None,
    help=f"Test images to check, plus 6 edge cases [default: {_DEFAULT['samples']}].",
)
@click.option("--atol", type=float, default=None, help="Max |Keras - ONNX| [default: 1e-4].")
@click.option(
    "--batch-sizes",
    default=None,
    help="ONNX batch sizes to check, comma separated, 0 = all at once "
    f"[default: {','.join(map(str, _DEFAULT['batch_sizes']))}].",
)
@click.option(
    "--quantize",
    type=click.Choice(QUANTIZE),
    default=None,
    help="The .int8.onnx twin (static QDQ) beside OUTPUT: auto = write it when a recipe "
    "passes its gate, else one line says so and the export still succeeds; int8 = write it or "
    "fail; none = no twin, no search [default: auto].",
)
@click.option(
    "--verify-only",
    is_flag=True,
    default=None,
    help="Check an existing OUTPUT against --model; convert nothing.",
)
@click.option(
    "--force",
    is_flag=True,
    default=None,
    help="Write OUTPUT even when a check fails (the exit code stays 1).",
)
@click.option(
    "--class-names",
    default=None,
    help="10 names, comma separated, or a file (JSON list / one per line) "
    "[default: the CIFAR-10 names].",
)
@click.option(
    "--input-scale",
    type=click.Choice(INPUT_SCALES),
    default=None,
    help="Float-input models: unit = image/255, raw = float(image), standardize = "
    "(image - mean) / std [default: auto: the model's own Rescaling, else the clear winner "
    "on labelled check images].",
)
@click.option(
    "--channel-order",
    type=click.Choice(CHANNEL_ORDERS),
    default=None,
    help="Channel order the float-input model takes; the ONNX input stays RGB [default: auto].",
)
@click.option(
    "--input-mean",
    default=None,
    help="standardize: per-channel mean R,G,B in pixel units [default: CIFAR-10's].",
)
@click.option(
    "--input-std",
    default=None,
    help="standardize: per-channel std R,G,B in pixel units [default: CIFAR-10's].",
)
@click.option(
    "--min-accuracy",
    type=float,
    default=None,
    help="Fail when ONNX top-1 accuracy on labelled check images is below this [default: "
    f"{ACCURACY_FLOOR:g}, 2x chance].",
)
@click.option(
    "--max-drop-vs-trainer",
    type=float,
    default=None,
    help="Fail when ONNX accuracy is more than this fraction below the trainer run's recorded "
    f"test accuracy on the same split [default: {MAX_DROP_VS_TRAINER:g}].",
)
@click.option(
    "--output-kind",
    type=click.Choice(OUTPUT_KINDS),
    default=None,
    help="logits = append a softmax [default: auto, from the last layer].",
)
@click.option(
    "--calibration-samples",
    type=int,
    default=None,
    help=f"Training images for int8 calibration [default: {_DEFAULT['calibration_samples']}].",
)
@click.option(
    "--int8-min-agreement",
    type=float,
    default=None,
    help="int8 gate: top-1 agreement with the fp32 model needed, a fraction "
    f"[default: {INT8_MIN_AGREEMENT:g}].",
)
@click.option(
    "--int8-max-accuracy-drop",
    type=float,
    default=None,
    help="int8 gate: accuracy (a fraction) the twin may lose against fp32 "
    f"[default: {INT8_MAX_ACCURACY_DROP:g}].",
)
@click.option(
    "--int8-recipes",
    default=None,
    help="INT8 recipes to try, comma separated; the fastest that passes is kept "
    "[default: minmax,entropy,percentile and their variants].",
)
@click.option(
    "--model-version",
    default=None,
    help="model_version metadata [default: <run folder>-<sha256[:8]>].",
)
@click.option("--threads", type=int, default=None, help="onnxruntime threads for the check.")
@click.option(
    "--tta",
    type=click.Choice(TTA),
    default=None,
    help="Test-time augmentation inside the graph: flip averages each image with its mirror "
    "image (about half the images/s; the card states both accuracies) [default: none].",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help=f"Seed of the noise edge cases [default: {_DEFAULT['seed']}].",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Start from the settings of a saved OUTPUT.export.json; flags override.",
)
@click.option(
    "--triton-repository",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write a Triton model repository there: cifar10/ (and cifar10_int8/) with "
    "config.pbtxt, labels.txt, 1/model.onnx.",
)
@click.option("--verbose", is_flag=True, help="Show tracebacks and TensorFlow's logs.")
def main(
    output: Path,
    config_path: Path | None,
    triton_repository: Path | None,
    verbose: bool,
    class_names: str | None,
    batch_sizes: str | None,
    input_mean: str | None,
    input_std: str | None,
    int8_recipes: str | None,
    **flags: object,
) -> None:
    """Export a Keras CIFAR-10 classifier to OUTPUT.onnx and check it reproduces Keras.

    The ONNX graph takes `image` uint8 [N,32,32,3] RGB and returns `probabilities` float32
    [N,10]; scaling and softmax are inside it. OUTPUT is written only when the parity check
    and the accuracy gate pass (unless --force). Beside it: OUTPUT's .parity.json,
    .export.json and .md (the model card).
    """
    with cli_errors(verbose):
        base = _from_file(config_path, output) if config_path else ExportConfig(output=output)
        config = base.replace(
            output=output,
            class_names=parse_class_names(class_names) if class_names else None,
            batch_sizes=_batch_sizes(batch_sizes),
            input_mean=_rgb("--input-mean", input_mean),
            input_std=_rgb("--input-std", input_std),
            int8_recipes=tuple(r.strip() for r in int8_recipes.split(","))
            if int8_recipes
            else None,
            **flags,
        )
        from cifar10_exporter.steps import preflight

        paths = preflight(config)  # cheap checks before TensorFlow's slow import
        if triton_repository is not None:
            from cifar10_exporter.outputs.triton import check_repository, write_repository

            check_repository(triton_repository)
        if not verbose:
            import_tensorflow_quietly()
        if config.verify_only:
            from cifar10_exporter.verify import verify

            verify(config, log=click.echo, paths=paths)
        else:
            from cifar10_exporter.pipeline import export

            export(config, log=click.echo, paths=paths)
        if triton_repository is not None:  # only after every check passed
            twin = config.quantize != "none" and paths.int8.is_file()
            int8 = paths.int8 if twin else None
            write_repository(triton_repository, paths.onnx, int8, log=click.echo)


if __name__ == "__main__":
    main()
