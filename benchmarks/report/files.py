"""The run's JSON and Markdown files, written atomically with portable paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.report.fmt import portable
from benchmarks.report.markdown import markdown
from cifar10_runtime.files import write_text


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: Path, results: dict) -> None:
    write_text(path, portable(json.dumps(results, indent=2, default=_jsonable) + "\n"))


def write_markdown(path: Path, results: dict, png_name: str) -> None:
    write_text(path, portable(markdown(results, png_name)))
