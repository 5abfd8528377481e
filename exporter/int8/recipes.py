"""The static QDQ recipes the INT8 search (`--quantize auto` or `int8`) tries, and how one
recipe quantizes a model.

Every recipe: `quant_pre_process` (shape inference + graph optimisation), then onnxruntime's
`quantize_static` in QDQ format with int8 (or uint8) weights and uint8 activations, calibrated on
training images fed as the graph takes them (uint8). Recipes differ in the calibration
method (MinMax, Entropy, Percentile), in whether the first Conv and the classifier head stay
float, and in how many calibration images they see. The Softmax always stays float: a
quantized softmax would not sum to 1, which the contract (and the runtime) refuses.

By default every recipe also applies the exact rewrites of `int8_graph` (a post-ReLU
BatchNorm folded into its Conv, the uint8 image as the first Conv's quantized input) and
quantizes the Mul/Add left between quantized ops; the ablation recipes turn them off.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cifar10_exporter.int8.graph import feed_uint8_image, float_nodes, fold_post_relu_scale
from cifar10_runtime.contract import INPUT_NAME
from cifar10_runtime.errors import ModelError, first_line

# Compute-heavy ops and the ones ORT fuses with them. Quantizing data-movement ops as well
# (Transpose, Reshape, ...) added error for no speed on the trainer's model: top-1 agreement
# with fp32 fell from 99.2% to 95.6% on a 67%-accurate model, at the same latency.
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "Relu", "MaxPool", "AveragePool"]
# A BatchNorm that stays a Mul/Add between quantized Convs (when it cannot be folded) costs
# a float round trip; quantizing it too is one requantization more, and much faster.
ELEMENTWISE_OPS = ["Mul", "Add"]
CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")
PERCENTILE = 99.999
MORE_CALIBRATION = 4  # "more calibration images" recipes see this many times --calibration-samples


@dataclass(frozen=True)
class Recipe:
    name: str
    calibration: str = "MinMax"  # one of CALIBRATION_METHODS
    per_channel: bool = True  # int8 weights with one scale per output channel
    ends_float: bool = False  # the first Conv stays float too ("first and last layers")
    head_float: bool = True  # the classifier head stays float (logits never rounded)
    calibration_factor: int = 1  # times config.calibration_samples images
    uint8_input: bool = True  # the uint8 image is the first Conv's quantized input
    fold: bool = True  # fold a post-ReLU BatchNorm into the Conv before it (int8_graph)
    elementwise: bool = True  # quantize the Mul/Add left between quantized ops too
    # int8 or uint8 weights. x86 CPUs without VNNI run onnxruntime's u8s8 products with
    # VPMADDUBSW, whose int16 pair sums saturate (onnxruntime's quantization docs); its u8u8
    # kernels do not, at a cost in speed. Which is better on a CPU is left to the search.
    weights: str = "int8"
    # int8 weights in 7 bits (-64..63): the u8s8 pair sums of CPUs without VNNI then cannot
    # saturate, at int8 speed (same kernels, same graph); one bit of weight precision less.
    reduce_range: bool = False
    # "uint8": the first Conv's weights in uint8 (8 bits), whatever the others: it reads the
    # whole 0..255 image, where u8s8 pair sums saturate most; the rest keep u8s8 speed.
    first_weights: str | None = None

    def describe(self) -> dict:
        return asdict(self)

    def settings(self) -> dict:
        """What the twin's `quantization` metadata says of the recipe it was made with."""
        return {
            "format": "QDQ",
            "weights": f"{self.weights} "
            + ("per-channel" if self.per_channel else "per-tensor")
            + (", 7-bit range" if self.reduce_range else "")
            + (f"; first Conv {self.first_weights}" if self.first_weights else ""),
            "activations": "uint8",
            "recipe": self.name,
            "calibration_method": self.calibration,
            "ops": ",".join(QUANTIZED_OPS + (ELEMENTWISE_OPS if self.elementwise else [])),
            "folded_post_relu_batchnorm": self.fold,
            "float_nodes": ", ".join(
                (["first Conv"] if self.ends_float else [])
                + (["classifier head"] if self.ends_float or self.head_float else [])
                + ["Softmax"]
            ),
            "uint8_image_input": self.uint8_input,
        }

    @property
    def structure(self) -> tuple:
        """Recipes with the same structure build the same graph (only scales differ), so
        they run at the same speed: timing differences between them are noise."""
        return (
            self.per_channel,
            self.ends_float,
            self.head_float,
            self.uint8_input,
            self.fold,
            self.elementwise,
            self.weights,
            self.first_weights,
        )


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("minmax"),
        Recipe("entropy", calibration="Entropy"),
        Recipe("percentile", calibration="Percentile"),
        Recipe("minmax-more-calib", calibration_factor=MORE_CALIBRATION),
        Recipe("minmax-ends-float", ends_float=True),
        Recipe("entropy-ends-float", calibration="Entropy", ends_float=True),
        Recipe("percentile-ends-float", calibration="Percentile", ends_float=True),
        Recipe(
            "minmax-ends-float-more-calib", ends_float=True, calibration_factor=MORE_CALIBRATION
        ),
        # uint8 weights: the remedy for u8s8 saturation on CPUs without VNNI.
        Recipe("minmax-u8-weights", weights="uint8"),
        Recipe("minmax-ends-float-u8-weights", ends_float=True, weights="uint8"),
        # Not tried by default: ablations of the speed-ups and per-tensor weights.
        Recipe("minmax-per-tensor", per_channel=False),
        Recipe("minmax-float-input", uint8_input=False),
        Recipe("minmax-no-fold", fold=False, elementwise=False),
        Recipe("minmax-int8-head", head_float=False),
        Recipe("minmax-plain", uint8_input=False, fold=False, elementwise=False, head_float=False),
        # Not tried by default: 7-bit weights (no u8s8 saturation on CPUs without VNNI), fully
        # quantized or with float ends, and the first Conv in uint8 weights on a 7-bit rest.
        Recipe("minmax-7bit", reduce_range=True),
        Recipe("minmax-ends-float-7bit", ends_float=True, reduce_range=True),
        Recipe("minmax-7bit-first-u8", reduce_range=True, first_weights="uint8"),
    )
}
# Tried by default: every calibration method with and without float ends, more images, and
# uint8 weights with and without float ends.
DEFAULT_RECIPES = tuple(list(RECIPES)[:10])


class _Reader:
    """onnxruntime CalibrationDataReader over uint8 images, in small batches."""

    def __init__(self, images: np.ndarray, batch_size: int = 32) -> None:
        # Equal batches only: the histogram calibrators (Entropy, Percentile) stack each
        # tensor's batches and fail on a shorter last one.
        self._batch = min(batch_size, len(images))
        self._images = images[: len(images) // self._batch * self._batch]
        self.rewind()

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:
        n, b = len(self._images), self._batch
        self._batches = iter([self._images[i : i + b] for i in range(0, n, b)])


def _first_conv_override(model, recipe: Recipe) -> dict:
    """onnxruntime's per-tensor override for the first Conv's weights, when the recipe has one."""
    from onnxruntime.quantization import QuantType

    first = next((n for n in model.graph.node if n.op_type == "Conv"), None)
    if recipe.first_weights is None or first is None or recipe.ends_float:
        return {}
    kind = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[recipe.first_weights]
    override = {"quant_type": kind, "reduce_range": False, "axis": 0}
    return {"TensorQuantOverrides": {first.input[1]: [override]}}


def quantize_recipe(fp32_model: bytes, calibration: np.ndarray, recipe: Recipe):
    """Quantize serialized fp32 ONNX with `recipe`; returns the int8 onnx.ModelProto."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    extra = {"CalibPercentile": PERCENTILE} if recipe.calibration == "Percentile" else {}
    with tempfile.TemporaryDirectory(prefix="cifar-int8-") as tmp:
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(fp32_model)
        try:
            # Static shapes but the batch: ONNX shape inference suffices (no sympy needed).
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            model = onnx.load_model(str(pre))
            if recipe.fold:
                fold_post_relu_scale(model)
            ops = QUANTIZED_OPS + (ELEMENTWISE_OPS if recipe.elementwise else [])
            extra.update(_first_conv_override(model, recipe))
            # The histogram calibrators print progress to stdout; the export log has its own.
            with contextlib.redirect_stdout(io.StringIO()):
                quantize_static(
                    model,
                    str(out),
                    _Reader(calibration),
                    quant_format=QuantFormat.QDQ,
                    per_channel=recipe.per_channel,
                    reduce_range=recipe.reduce_range,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QUInt8 if recipe.weights == "uint8" else QuantType.QInt8,
                    op_types_to_quantize=ops,
                    nodes_to_exclude=float_nodes(
                        model, recipe.ends_float, recipe.ends_float or recipe.head_float
                    ),
                    calibrate_method=getattr(CalibrationMethod, recipe.calibration),
                    calibration_providers=["CPUExecutionProvider"],
                    extra_options=extra,
                )
        except Exception as exc:  # the quantizer raises many types for unsupported graphs
            first = first_line(exc)
            raise ModelError(
                f"onnxruntime could not quantize the model ({recipe.name}): {first}; try "
                f"other --int8-recipes, or --quantize none. Received: recipe {recipe.name}"
            ) from exc
        proto = onnx.load_model(str(out))
    if recipe.uint8_input:
        feed_uint8_image(proto)
    return proto
