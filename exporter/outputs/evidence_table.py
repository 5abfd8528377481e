"""The engine x precision table of an export's evidence, as the export log and the model card
show it (one rendering for both)."""

from __future__ import annotations

from typing import Any


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def table_rows(precisions: dict[str, Any]) -> list[list[str]]:
    """Rows of the engine x precision table (log and model card share them)."""
    out = []
    for r in precisions["evidence"]:
        if r.get("measured") is False:
            verdict = f"not measured: {r['note']}"
        elif r.get("note") == "the reference":
            verdict = "reference"
        else:
            verdict = "passed" if r["passed"] else "FAILED the gate"
        out.append(
            [
                f"{r['engine']}/{r['precision']}",
                _pct(r.get("top1_agreement")) if "top1_agreement" in r else "-",
                _pct(r.get("accuracy")) if "accuracy" in r else "-",
                f"{r['max_abs_diff']:.2g}" if "max_abs_diff" in r else "-",
                f"{r['images_per_s_batch64']:.0f}" if "images_per_s_batch64" in r else "-",
                verdict,
            ]
        )
    return out


HEADER = ["engine/precision", "top-1 agreement", "accuracy", "max |diff|", "img/s b=64", "verdict"]


def table(precisions: dict[str, Any]) -> str:
    gate = precisions["gate"]
    lines = [
        f"engines x precisions on {precisions['measured_on']['cpu']} "
        f"({precisions['measured_on']['features']}); gate: top-1 agreement >= "
        f"{100 * gate['min_top1_agreement']:g}%, accuracy drop <= "
        f"{100 * gate['max_accuracy_drop']:g} points:"
    ]
    for row in table_rows(precisions):
        lines.append(
            "  "
            + "  ".join(f"{c:<18}" if i == 0 else f"{c:>10}" for i, c in enumerate(row[:-1]))
            + "  "
            + row[-1]
        )
    lines.append(
        f"  allowed: {', '.join(precisions['allowed'])}; tolerances "
        + ", ".join(f"{k} {v:g}" for k, v in precisions["tolerances"].items())
    )
    return "\n".join(lines)
