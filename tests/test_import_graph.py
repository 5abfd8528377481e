"""No package imports itself in a circle, function-level imports included (issue 20).

An AST walk over every file of trainer/, exporter/, runtime/cifar10_runtime/ and benchmarks/:
every `import` and `from ... import` anywhere in a module (inside functions too, where the
heavy imports live) is an edge to the package's own module it names. Python resolves a
function-level cycle at call time, so it never fails at import, only confuses: this keeps
the one-way structure DESIGN.md draws checkable.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {
    "cifar10_trainer": REPO / "trainer",
    "cifar10_exporter": REPO / "exporter",
    "cifar10_runtime": REPO / "runtime" / "cifar10_runtime",
    "benchmarks": REPO / "benchmarks",
}


def modules(package: str, root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package (results/ excluded)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([package, *parts])] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's own modules `name` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from . import x`: x may be a submodule; else it is a name of `module`.
            targets = [f"{module}.{a.name}" for a in node.names]
            targets = [t if t in known else module for t in targets]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every back edge of a depth-first walk, as the cycle it closes."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def graph_of(package: str) -> dict[str, set[str]]:
    known = modules(package, PACKAGES[package])
    return {name: imports(name, path, known) for name, path in known.items()}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycle(package: str) -> None:
    graph = graph_of(package)
    assert len(graph) > 3, f"found only {sorted(graph)} under {PACKAGES[package]}"
    cycles = find_cycles(graph)
    assert not cycles, f"{package} has import cycles (function-level imports count): " + "; ".join(
        " -> ".join(c) for c in cycles
    )


def test_the_walk_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: a cycle closed only by an import inside a function is found."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import thing\n")
    (pkg / "b.py").write_text("def thing():\n    from . import a\n    return a\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    known = modules("pkg", pkg)
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.c"] == {"pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]
