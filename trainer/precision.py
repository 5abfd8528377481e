"""Training precision: which Keras dtype policy a run uses, and why.

`precision = "auto"` (the default) picks, from what this machine has:

- `mixed_float16` on a GPU of compute capability 7.0 or more (tensor cores run float16);
- `mixed_bfloat16` on a CPU whose flags (/proc/cpuinfo) list AMX-BF16 or AVX512-BF16, the
  instructions oneDNN uses for bfloat16 convolutions and matmuls;
- `float32` otherwise, and wherever the flags cannot be read.

AVX512-BF16 without AMX qualifies too: measured, the default recipe trains faster in
mixed_bfloat16 than in float32 on such a CPU as well, not only on one with AMX-BF16 (the
figures are in benchmarks/results).

Under a mixed policy variables stay float32 (so checkpoints, model.keras and the ONNX export
hold float32 weights) and only the layer computations run in 16 bits; the classifier (last
Dense + softmax), the loss and the metrics stay float32 (cifar10_trainer.model), and Keras
keeps BatchNormalization's statistics in float32. Loss scaling is for float16 only (its range
is narrow; bfloat16 has float32's): `fit` wraps the optimizer itself, the custom loop of
--strategy multi-worker uses the same LossScaleOptimizer (cifar10_trainer.model).
"""

from __future__ import annotations

from dataclasses import dataclass

# The one /proc/cpuinfo reader; `cpu_flags` is named here too, beside the policy it decides.
from cifar10_runtime.engines.cpu import cpu_flags as cpu_flags
from cifar10_runtime.errors import ConfigError

# CPU flags (as Linux names them) that make bfloat16 training fast.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
MIN_FLOAT16_CAPABILITY = (7, 0)  # Volta: the first GPUs with float16 tensor cores


@dataclass(frozen=True)
class Precision:
    policy: str  # the Keras dtype policy: float32, mixed_bfloat16 or mixed_float16
    why: str  # one phrase for the log's first line, config.json and metrics.json

    def record(self) -> dict[str, str]:
        return {"precision": self.policy, "precision_reason": self.why}


def gpu_capability(gpu: object) -> tuple[int, int] | None:
    """A TensorFlow GPU's (major, minor) compute capability, or None when it does not say."""
    import tensorflow as tf

    try:
        details = tf.config.experimental.get_device_details(gpu)
    except (ValueError, RuntimeError):
        return None
    cap = details.get("compute_capability")
    return tuple(cap) if isinstance(cap, tuple | list) and len(cap) == 2 else None


def choose(
    requested: str,
    *,
    use_gpu: bool,
    capabilities: list[tuple[int, int] | None] | None = None,
    flags: frozenset[str] | None = None,
) -> Precision:
    """The policy for `requested` (one of config_checks.PRECISIONS, checked there) on this device;
    pure: the caller reads the GPU's and the CPU's facts."""
    if use_gpu:
        caps = capabilities or []
        known = [c for c in caps if c is not None]
        slowest = min(known) if known and len(known) == len(caps) else None
        if requested == "auto":
            if slowest is not None and slowest >= MIN_FLOAT16_CAPABILITY:
                return Precision("mixed_float16", f"auto: GPU compute capability {_cap(slowest)}")
            seen = _cap(slowest) if slowest else "unknown"
            return Precision("float32", f"auto: GPU compute capability {seen} is below 7.0")
        return Precision(requested, "asked for")
    if requested == "mixed_float16":
        raise ConfigError(
            "precision mixed_float16 needs a GPU (float16 on a CPU is slower, not faster); "
            "use --precision mixed_bfloat16 or auto on a CPU, or run where a GPU is visible. "
            "Received: --precision mixed_float16 --device cpu (no GPU used)"
        )
    present = [f for f in BF16_FLAGS if f in (flags or ())]
    if requested == "mixed_bfloat16" and flags is not None and not present:
        # Allowed (it runs, emulated), but said: without the instructions it is slower.
        return Precision(requested, "asked for; this CPU has no AMX-BF16 or AVX512-BF16: slower")
    if requested != "auto":
        return Precision(requested, "asked for")
    if flags is None:
        return Precision("float32", "auto: CPU flags unreadable")
    if present:
        return Precision("mixed_bfloat16", f"auto: CPU has {'+'.join(present)}")
    return Precision("float32", "auto: CPU has no AMX-BF16 or AVX512-BF16")


def _cap(cap: tuple[int, int]) -> str:
    return f"{cap[0]}.{cap[1]}"
