"""Import TensorFlow without its start-up chatter, so a CLI's stderr holds only what it means.

TensorFlow writes oneDNN and CUDA notices to fd 2 while it is imported, before any log level
applies, so fd 2 itself is pointed at /dev/null for the import. Its import-time UserWarnings
are hidden for the import only: warnings raised later by our own code or the user's still show.
A missing or broken TensorFlow is one line naming the fix. `--verbose` skips all this.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from cifar10_runtime.errors import first_line

from .errors import TensorFlowMissing


def import_tensorflow_quietly() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hides C++ errors logged after import
    for name in ("absl", "tensorflow", "tf2onnx", "onnxruntime"):
        logging.getLogger(name).setLevel(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    failure: BaseException | None = None
    try:
        with open(os.devnull, "wb") as devnull, warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            os.dup2(devnull.fileno(), 2)
            try:
                import keras  # noqa: F401  (imports tensorflow)
            except Exception as exc:  # ImportError, or a broken install's own errors
                failure = exc
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    if failure is not None:
        raise TensorFlowMissing(
            f"TensorFlow/Keras cannot be imported ({type(failure).__name__}: "
            f"{first_line(failure)}); "
            "install this toolkit's dependencies (pip install cifar10-toolkit, or "
            "'tensorflow>=2.21,<2.22'), and rerun with --verbose for the full traceback"
        )
