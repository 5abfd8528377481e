"""Import TensorFlow without its start-up chatter, so a CLI's stderr holds only what it means.

TensorFlow writes oneDNN and CUDA notices to fd 2 while it is imported, before any log level
applies, so fd 2 itself is pointed at /dev/null for the import. `--verbose` skips all this.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings


def import_tensorflow_quietly() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hides C++ errors logged after import
    for name in ("absl", "tensorflow", "tf2onnx", "onnxruntime"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import keras  # noqa: F401  (imports tensorflow)
            except ImportError:
                pass  # reported, with the fix, where TensorFlow is first really used
    finally:
        os.dup2(saved, 2)
        os.close(saved)
