"""The runtime stands alone: no TensorFlow, Keras, tf2onnx or onnx, ever."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx", "cifar10_trainer", "cifar10_exporter")


@pytest.mark.skipif(
    os.environ.get("CIFAR10_RUNTIME_ONLY") != "1",
    reason="only meaningful in the runtime-only venv (`make test-runtime` sets "
    "CIFAR10_RUNTIME_ONLY=1)",
)
def test_tensorflow_is_not_installed_in_the_runtime_venv() -> None:
    with pytest.raises(ImportError):
        import tensorflow  # noqa: F401
    with pytest.raises(ImportError):
        import onnx  # noqa: F401


def test_runtime_modules_import_nothing_heavy() -> None:
    code = (
        "import json, sys\n"
        "import cifar10_runtime, cifar10_runtime.serving.app, cifar10_runtime.cli.predict\n"
        "import cifar10_runtime.cli.serve, cifar10_runtime.batcher\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(done.stdout)
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY]
    assert heavy == [], f"cifar10_runtime pulled in {heavy}"
    assert "onnxruntime" in loaded and "starlette" in loaded
