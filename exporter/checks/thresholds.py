"""The exporter's check thresholds: their one home (ExportConfig's defaults, the CLI's help,
the accuracy gate, the preprocessing decision and the int8 check all read them here).
"""

from __future__ import annotations

from cifar10_runtime.contract import NUM_CLASSES

CHANCE = 1 / NUM_CLASSES
# The accuracy floor when --min-accuracy is not given: 2x chance (0.2 on 10 classes). Below
# it a model is not clearly better than guessing, whatever its parity says.
ACCURACY_FLOOR = 2 * CHANCE
# An export may score this much (a fraction, 0.05 = 5 points) below its trainer run's
# recorded test accuracy on the same split; a subsample widens it (accuracy.drop_allowance).
MAX_DROP_VS_TRAINER = 0.05
# The int8 twin must pick the fp32 model's top-1 class on >= 98% of the dataset images and
# lose at most 1 accuracy point on the labelled ones.
INT8_MIN_AGREEMENT = 0.98
INT8_MAX_ACCURACY_DROP = 0.01


def accuracy_floor(min_accuracy: float | None) -> float:
    """--min-accuracy when given, else ACCURACY_FLOOR (2x chance)."""
    return ACCURACY_FLOOR if min_accuracy is None else min_accuracy
