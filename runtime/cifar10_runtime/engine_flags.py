"""`--engine` and `--precision`, shared by cifar-predict and cifar-serve, and the engine log."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from .contract import ENGINES, PRECISIONS


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


def show_engine_log(stream: Any = None) -> None:
    """Send the engine-choice table (logger cifar10_runtime.engines) to stderr."""
    logger = logging.getLogger("cifar10_runtime.engines")
    if not any(getattr(h, "_cifar_engine_log", False) for h in logger.handlers):
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._cifar_engine_log = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
