"""Formatting every report section shares: numbers, tables, commands, portable paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def portable(text: str) -> str:
    """Paths inside the clone become relative, ../shared stays ../shared: the committed report
    should not carry one machine's checkout location."""
    return text.replace(str(REPO) + "/", "").replace(str(REPO.parent / "shared"), "../shared")


def num(value: Any, fmt: str = "{:.2f}", none: str = "n/a") -> str:
    """`value` formatted, or `none` when it was not measured."""
    return none if value is None else fmt.format(value)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table and the blank line after it."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def short(cmd: str, width: int = 90) -> str:
    """A command on one line, cut to `width` characters."""
    cmd = cmd.replace("\n", " ")
    return cmd if len(cmd) <= width else cmd[: width - 3] + "..."
