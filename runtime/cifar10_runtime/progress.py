"""A one-line progress bar on stderr, without extra dependencies.

It is redrawn in place with a carriage return, so anything else printed to the same
terminal must call `clear()` first (the CLI does, before each chunk of output).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """`update(n)` after each unit of work; `close()` at the end. Disabled: does nothing."""

    def __init__(
        self, total: int, enabled: bool, label: str = "images", stream: TextIO | None = None
    ) -> None:
        self.total = max(total, 1)
        self.enabled = enabled
        self.label = label
        self.stream = stream or sys.stderr
        self.done = 0
        self._start = time.monotonic()
        self._drawn = False

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.enabled:
            self._draw()

    def _draw(self) -> None:
        fraction = min(self.done / self.total, 1.0)
        width = 30
        filled = int(width * fraction)
        elapsed = time.monotonic() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        line = (
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"{self.label} {rate:,.0f}/s"
        )
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False

    def close(self) -> None:
        self.clear()
