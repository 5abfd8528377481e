"""DESIGN.md's module map and the tree stay in step.

Every module of trainer/, exporter/ and runtime/cifar10_runtime/ must be named in the first
column of the "## Module map" table, and every module the map names must exist. A row may name
several modules: `cifar10_runtime.serving.app`, `.serve_cli` (a leading dot continues the package
of the name before it). The failure message says which module to add (or remove) and where,
so a merge that brings new modules is fixed from the message alone.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DESIGN = REPO / "DESIGN.md"
# Package name -> its folder; the three whose every module must be in the map.
PACKAGES = {
    "cifar10_trainer": REPO / "trainer",
    "cifar10_exporter": REPO / "exporter",
    "cifar10_runtime": REPO / "runtime" / "cifar10_runtime",
}
# Also nameable in the map (checked to exist, not required module by module).
OTHERS = {"benchmarks": REPO / "benchmarks", "demo": REPO / "demo"}
HEADING = "## Module map"


def map_rows(text: str) -> list[tuple[int, list[str]]]:
    """(line number, module names) for every row of the module map table."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == HEADING), None)
    assert start is not None, f"DESIGN.md has no {HEADING!r} section"
    rows = []
    for number, line in enumerate(lines[start + 1 :], start=start + 2):
        if line.startswith("## "):
            break
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        names, package = [], ""
        for token in re.findall(r"`([^`]+)`", first):
            name = package + token if token.startswith(".") else token
            package = name.rpartition(".")[0] if "." in name else name
            names.append(name)
        rows.append((number, names))
    return rows


def file_of(name: str) -> Path | None:
    """Where module `name` lives (a .py file or a package folder), None when no root knows it."""
    top, _, rest = name.partition(".")
    root = {**PACKAGES, **OTHERS}.get(top)
    if root is None:
        return None
    if not rest:
        return root
    base = root.joinpath(*rest.split("."))
    return base if base.is_dir() else base.with_suffix(".py")


def tree_modules(package: str, root: Path) -> dict[str, Path]:
    """Every module of a package (not its __init__), as the map must name it."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if "__pycache__" in parts or parts[-1] in ("__init__", "__main__"):
            continue
        found[".".join((package, *parts))] = path
    return found


def problems(text: str, required: dict[str, Path]) -> list[str]:
    """What to change in DESIGN.md, one instruction per problem."""
    rows = map_rows(text)
    named = {name: number for number, names in rows for name in names}
    out = []
    for number, names in rows:
        for name in names:
            where = file_of(name)
            if where is None:
                out.append(
                    f"DESIGN.md line {number} names `{name}`, which belongs to no package of "
                    f"the tree ({', '.join({**PACKAGES, **OTHERS})}): fix or remove it."
                )
            elif not where.exists():
                out.append(
                    f"DESIGN.md line {number} names `{name}`, but {where.relative_to(REPO)} "
                    "does not exist: remove it from that row, or rename it to the module's "
                    "current name."
                )
    for name, path in sorted(required.items()):
        if name in named:
            continue
        package = name.rpartition(".")[0]
        siblings = [n for n in rows if any(x.startswith(package + ".") for x in n[1])]
        after = f"after DESIGN.md line {siblings[-1][0]}" if siblings else "at the table's end"
        out.append(
            f"`{name}` ({path.relative_to(REPO)}) is missing from DESIGN.md's module map: add "
            f"the row | `{name}` | <its concern> | to the '{HEADING}' table {after} (the last "
            f"`{package}.` row), or add `.{name.rpartition('.')[2]}` to the first cell of the "
            "row of the module it works with."
        )
    return out


def test_every_module_is_in_the_map_and_every_name_exists() -> None:
    required: dict[str, Path] = {}
    for package, root in PACKAGES.items():
        required.update(tree_modules(package, root))
    assert len(required) > 40, sorted(required)  # the walk found the tree
    found = problems(DESIGN.read_text(encoding="utf-8"), required)
    assert not found, "\n".join(found)


def test_the_check_names_what_to_add_and_what_to_remove() -> None:
    """The checker itself, on a small map: a missing module, a stale name, a dotted row."""
    text = (
        "# x\n\n## Module map\n\n| module | concern |\n| --- | --- |\n"
        "| `cifar10_runtime.contract`, `.errors` | a |\n"
        "| `cifar10_exporter.no_such_module` | b |\n\n## Next\n| `cifar10_runtime.nope` | c |\n"
    )
    rows = map_rows(text)
    assert rows == [
        (7, ["cifar10_runtime.contract", "cifar10_runtime.errors"]),
        (8, ["cifar10_exporter.no_such_module"]),
    ]
    required = tree_modules("cifar10_runtime", PACKAGES["cifar10_runtime"])
    found = problems(
        text, {k: required[k] for k in ("cifar10_runtime.errors", "cifar10_runtime.files")}
    )
    assert len(found) == 2, found
    assert found[0].startswith("DESIGN.md line 8 names `cifar10_exporter.no_such_module`")
    assert "exporter/no_such_module.py does not exist" in found[0]
    assert found[1].startswith("`cifar10_runtime.files` (runtime/cifar10_runtime/files.py)")
    assert "after DESIGN.md line 7" in found[1]
