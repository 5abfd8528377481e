"""What TensorFlow can use here, so device expectations hold on CPU and GPU machines alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tensorflow_gpus() -> int:
    """How many GPUs TensorFlow sees. Without NVIDIA (or ROCm) device nodes it cannot see
    one, and the answer costs nothing; otherwise TensorFlow itself is asked, in a child."""
    if not any(Path(node).exists() for node in ("/dev/nvidiactl", "/dev/kfd")):
        return 0
    code = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        check=True,
    )
    return int(done.stdout.strip().splitlines()[-1])
