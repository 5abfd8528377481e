"""`ExportConfig`: every setting of an export, a frozen dataclass that CLI flags override.

The resolved config is saved beside the output (`model.export.json`) so an export can be
repeated exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar10_exporter.checks.thresholds import (
    ACCURACY_FLOOR,
    INT8_MAX_ACCURACY_DROP,
    INT8_MIN_AGREEMENT,
    MAX_DROP_VS_TRAINER,
)
from cifar10_exporter.int8.recipes import DEFAULT_RECIPES, RECIPES
from cifar10_runtime.contract import (
    CIFAR10_CLASS_NAMES,
    FP32_TOLERANCE,
    NUM_CLASSES,
    valid_class_names,
)
from cifar10_runtime.errors import ConfigError
from cifar10_runtime.untrusted import check_model_version
from cifar10_trainer.run import LATEST, MODEL

DEFAULT_MODEL = Path("runs") / LATEST / MODEL  # the run-folder names' one home
INPUT_SCALES = ("auto", "unit", "raw", "standardize")
CHANNEL_ORDERS = ("auto", "rgb", "bgr")
OUTPUT_KINDS = ("auto", "probabilities", "logits")
DATASETS = ("cifar10", "synthetic")
# "auto": the INT8 twin when a recipe passes its gate, else none (one line says why);
# "int8": the twin or the export fails; "none": no twin and no recipe search.
QUANTIZE = ("auto", "int8", "none")
TTA = ("none", "flip")
MIN_OPSET, MAX_OPSET = 13, 18  # what tf2onnx 1.17 converts to and onnxruntime runs


@dataclass(frozen=True)
class ExportConfig:
    """Settings of one `cifar-export` run (defaults are the CLI defaults)."""

    output: Path
    model: Path = DEFAULT_MODEL
    opset: int = 17
    # Where the parity (and calibration) images come from: a CIFAR-10 python folder, or
    # dataset="synthetic". With neither, the Keras cache is tried, then synthetic data.
    data_dir: Path | None = None
    dataset: str | None = None
    samples: int = 512  # dataset images checked, on top of the edge cases
    atol: float = FP32_TOLERANCE
    # Batch sizes the ONNX side runs at; 0 means "every sample in one batch".
    batch_sizes: tuple[int, ...] = (1, 0)
    quantize: str = "auto"  # one of QUANTIZE
    calibration_samples: int = 300  # training images for int8 calibration
    int8_min_agreement: float = INT8_MIN_AGREEMENT  # top-1 agreement of int8 with fp32
    int8_max_accuracy_drop: float = INT8_MAX_ACCURACY_DROP  # accuracy (a fraction) int8 may lose
    int8_recipes: tuple[str, ...] = DEFAULT_RECIPES  # tried in turn; the fastest passing wins
    verify_only: bool = False
    force: bool = False
    class_names: tuple[str, ...] = CIFAR10_CLASS_NAMES
    # Float-input models: "unit" feeds image/255, "raw" feeds float(image) in [0, 255],
    # "standardize" feeds (image - mean) / std. "auto": raw when the model's first layer
    # rescales by about 1/255 itself; otherwise every scale x channel order is scored on the
    # labelled check images and a clear winner kept (see preprocessing.py).
    input_scale: str = "auto"
    channel_order: str = "auto"  # the order the model takes ("rgb", "bgr"); the graph's is RGB
    input_mean: tuple[float, ...] | None = None  # R,G,B in pixel units; None: CIFAR-10's
    input_std: tuple[float, ...] | None = None
    # The accuracy gate: ONNX top-1 on labelled check images below this fails (None: 2x
    # chance); more than max_drop_vs_trainer below the run's recorded test accuracy fails too.
    min_accuracy: float | None = None
    max_drop_vs_trainer: float = MAX_DROP_VS_TRAINER
    # "auto": softmax output is kept, a linear last layer (logits) gets a softmax appended.
    output_kind: str = "auto"
    model_version: str | None = None  # default: <run folder>-<sha256[:8]> or sha256[:12]
    seed: int = 0
    threads: int | None = None  # onnxruntime intra-op threads (None: its default)
    # "flip": the graph averages each image's probabilities with its mirror image's. Off by
    # default: it halves images/s for a gain that varies by model (the card states both).
    tta: str = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", Path(self.output))
        object.__setattr__(self, "model", Path(self.model))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "batch_sizes", tuple(int(b) for b in self.batch_sizes))
        for name in ("input_mean", "input_std"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))
        object.__setattr__(self, "int8_recipes", tuple(self.int8_recipes))
        if self.quantize is None:  # what older saved exports wrote for "no twin"
            object.__setattr__(self, "quantize", "none")
        self._validate()

    def _validate(self) -> None:
        """Every setting in range; the first problem found is the one named."""
        self._validate_output_and_checks()
        self._validate_int8()
        self._validate_model_io()

    def _validate_output_and_checks(self) -> None:
        if not str(self.output).endswith(".onnx"):
            raise _bad("OUTPUT", self.output, "OUTPUT must be a file name ending in .onnx")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise _bad("--opset", self.opset, f"--opset must be in {MIN_OPSET}..{MAX_OPSET}")
        if self.dataset is not None and self.dataset not in DATASETS:
            raise _bad("--dataset", self.dataset, f"--dataset must be one of {DATASETS}")
        if self.dataset == "synthetic" and self.data_dir is not None:
            raise _bad(
                "--dataset", self.dataset, "give either --data-dir or --dataset synthetic, not both"
            )
        if self.samples < 0:
            raise _bad("--samples", self.samples, "--samples must be 0 or more")
        if self.tta not in TTA:
            raise _bad("--tta", self.tta, f"--tta must be one of {TTA}")
        if not (math.isfinite(self.atol) and self.atol > 0):
            raise _bad("--atol", self.atol, "--atol must be a positive number such as 1e-4")
        if not self.batch_sizes or any(b < 0 for b in self.batch_sizes):
            raise _bad("batch_sizes", self.batch_sizes, "batch sizes must be >= 1 (0: all)")

    def _validate_int8(self) -> None:
        if self.quantize not in QUANTIZE:
            raise _bad("--quantize", self.quantize, f"--quantize must be one of {QUANTIZE}")
        if self.quantize == "int8" and self.samples < 1:
            raise _bad(
                "--samples",
                self.samples,
                "--quantize int8 needs --samples >= 1 (its "
                "check measures accuracy on labelled images)",
            )
        if self.calibration_samples < 1:
            raise _bad("calibration_samples", self.calibration_samples, "need at least 1 image")
        for arg, value in (
            ("--int8-min-agreement", self.int8_min_agreement),
            ("--int8-max-accuracy-drop", self.int8_max_accuracy_drop),
            ("--max-drop-vs-trainer", self.max_drop_vs_trainer),
        ):
            if not 0 <= value <= 1:
                raise _bad(arg, value, f"{arg} is a fraction in [0, 1] such as 0.05")
        unknown = [r for r in self.int8_recipes if r not in RECIPES]
        if unknown or not self.int8_recipes:
            raise _bad(
                "--int8-recipes",
                ",".join(self.int8_recipes),
                f"--int8-recipes takes names from {', '.join(RECIPES)}, comma separated",
            )

    def _validate_model_io(self) -> None:
        if not valid_class_names(self.class_names):
            raise _bad(
                "--class-names",
                ",".join(map(str, self.class_names)),
                f"--class-names needs {NUM_CLASSES} distinct non-empty names (comma-separated "
                "or a file)",
            )
        if self.input_scale not in INPUT_SCALES:
            raise _bad(
                "--input-scale", self.input_scale, f"--input-scale must be in {INPUT_SCALES}"
            )
        if self.channel_order not in CHANNEL_ORDERS:
            raise _bad(
                "--channel-order",
                self.channel_order,
                f"--channel-order must be in {CHANNEL_ORDERS}",
            )
        for arg, value in (("--input-mean", self.input_mean), ("--input-std", self.input_std)):
            if value is None:
                continue
            finite = len(value) == 3 and all(math.isfinite(v) for v in value)
            if not finite or (arg == "--input-std" and min(value) <= 0):
                raise _bad(
                    arg,
                    ",".join(f"{v:g}" for v in value),
                    f"{arg} takes 3 numbers R,G,B in pixel units (0..255)"
                    + (", each above 0" if arg == "--input-std" else ""),
                )
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            raise _bad(
                "--min-accuracy",
                self.min_accuracy,
                f"--min-accuracy is a fraction in [0, 1] such as {ACCURACY_FLOOR:g} (2x chance)",
            )
        if self.output_kind not in OUTPUT_KINDS:
            raise _bad(
                "--output-kind", self.output_kind, f"--output-kind must be in {OUTPUT_KINDS}"
            )
        if self.threads is not None and self.threads < 1:
            raise _bad("--threads", self.threads, "--threads must be 1 or more")
        if self.model_version is not None:
            check_model_version(self.model_version)

    def replace(self, **overrides: Any) -> ExportConfig:
        """A copy with some fields changed (None values are ignored: "flag not given")."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(self))
            raise ConfigError(
                f"unknown export setting(s) {sorted(unknown)}; use ExportConfig's fields "
                f"({known}). Received: {', '.join(f'{k}={given[k]!r}' for k in sorted(unknown))}"
            )
        return dataclasses.replace(self, **given)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def _bad(arg: str, value: Any, need: str) -> ConfigError:
    return ConfigError(f"{need}. Received: {arg}={value}")


def parse_class_names(value: str) -> tuple[str, ...]:
    """`--class-names`: "a,b,...,j", or a file holding a JSON list or one name per line."""
    path = Path(value)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        try:
            names = json.loads(text)
        except json.JSONDecodeError:
            names = [line.strip() for line in text.splitlines() if line.strip()]
        if not isinstance(names, list):
            raise ConfigError(
                f"{path} must hold a JSON list of 10 class names or one name per line. "
                f"Received: --class-names={value}"
            )
        return tuple(str(n) for n in names)
    return tuple(n.strip() for n in value.split(","))
