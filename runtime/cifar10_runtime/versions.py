"""Installed package versions: the one collector every stage uses (the exporter's
`producer_versions` metadata, the trainer's run record, the benchmarks' machine record, the
engines' backend names)."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata


def installed_version(name: str, missing: str | None = None) -> str | None:
    """The installed version of distribution `name`, `missing` when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return missing


def package_versions(names: Iterable[str], missing: str | None = None) -> dict[str, str | None]:
    """{distribution name: installed version}, `missing` for a package not installed."""
    return {name: installed_version(name, missing) for name in names}


def python_version() -> str:
    return platform.python_version()
