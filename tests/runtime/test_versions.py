"""The one package-version collector (cifar10_runtime.versions), in any venv."""

from __future__ import annotations

import platform

import numpy as np

from cifar10_runtime.versions import package_versions, python_version


def test_installed_and_missing_packages() -> None:
    found = package_versions(["numpy", "no-such-package-cifar10"], missing="not installed")
    assert found == {"numpy": np.__version__, "no-such-package-cifar10": "not installed"}
    assert package_versions(["no-such-package-cifar10"]) == {"no-such-package-cifar10": None}
    assert python_version() == platform.python_version()


def test_one_package_version_lookup() -> None:
    from cifar10_runtime.versions import installed_version

    assert installed_version("numpy") == np.__version__
    assert installed_version("no-such-package-cifar10") is None
    assert installed_version("no-such-package-cifar10", missing="-") == "-"
