"""`--engine` and `--precision`, shared by cifar-predict and cifar-serve."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from cifar10_runtime.contract import ENGINES, PRECISIONS


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --engine and --precision (both "auto" by default: chosen by measurement at load)."""
    command = click.option(
        "--precision",
        default="auto",
        show_default=True,
        type=click.Choice(["auto", *PRECISIONS]),
        help="Numeric precision; auto: the fastest the model's export allows that passes "
        "its golden-set check here.",
    )(command)
    return click.option(
        "--engine",
        default="auto",
        show_default=True,
        type=click.Choice(["auto", *ENGINES]),
        help="Inference engine; auto: the fastest measured at load (openvino needs "
        "the extra: pip install 'cifar10-runtime[openvino]').",
    )(command)
