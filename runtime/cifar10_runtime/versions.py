"""Installed package versions: the one collector every stage uses (the exporter's
`producer_versions` metadata, the trainer's run record, the benchmarks' machine record)."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata


def package_versions(names: Iterable[str], missing: str | None = None) -> dict[str, str | None]:
    """{distribution name: installed version}, `missing` for a package not installed."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = missing
    return out


def python_version() -> str:
    return platform.python_version()
