"""Where the real CIFAR-10 subset lives for everything run from the clone: the benchmarks, the
demo and the tests (their one home; nothing here imports numpy).

It sits beside the clone (../shared/data/cifar-10-subset, official python format) in CI and
on developer machines, and is never copied into the repository; $CIFAR10_SUBSET overrides.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent
SUBSET_ENV = "CIFAR10_SUBSET"
DEFAULT_SUBSET = Path(
    os.environ.get(SUBSET_ENV, REPO.parent / "shared" / "data" / "cifar-10-subset")
)
BATCH_DIR = "cifar-10-batches-py"


def subset_available(path: Path = DEFAULT_SUBSET) -> bool:
    """The subset's test batch is there (the official layout: BATCH_DIR/test_batch)."""
    return (Path(path) / BATCH_DIR / "test_batch").is_file()
