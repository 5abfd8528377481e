"""The import structure DESIGN.md draws, checked: no cycles, the allowed directions between
packages and subpackages, third-party frameworks only where they belong, no private reach-ins.

An AST walk over every file of trainer/, exporter/, runtime/cifar10_runtime/ and benchmarks/:
every `import` and `from ... import` anywhere in a module (inside functions too, where the
heavy imports live) is an edge. Python resolves a function-level cycle or a wrong-way import
at call time, so it never fails at import, only confuses: this keeps the structure checkable.
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


# ---- directions ---------------------------------------------------------------------------

# (importer prefix, forbidden target prefix, why). A prefix matches the module itself and
# everything below it. Targets may be the project's modules or third-party top-level names.
RULES = [
    ("cifar10_runtime", "cifar10_trainer", "the runtime installs without the trainer"),
    ("cifar10_runtime", "cifar10_exporter", "the runtime installs without the exporter"),
    ("cifar10_trainer", "cifar10_exporter", "the exporter reads the trainer's outputs, never back"),
    ("cifar10_runtime.engines", "cifar10_runtime.serving", "engines know nothing of serving"),
    ("cifar10_runtime.engines", "cifar10_runtime.cli", "engines know nothing of the CLI"),
    ("cifar10_runtime.engines", "cifar10_runtime.predictor", "the Predictor uses the engines"),
    ("cifar10_runtime.engines", "cifar10_runtime.batcher", "the batcher is serving's concern"),
    ("cifar10_runtime.serving", "cifar10_runtime.cli", "the CLI starts the app, not back"),
    ("cifar10_runtime.serving.grpc", "cifar10_runtime.serving.v2.rest", "codecs are peers"),
    ("cifar10_runtime.serving.v2.rest", "cifar10_runtime.serving.grpc", "codecs are peers"),
    ("cifar10_runtime.serving.grpc", "starlette", "gRPC speaks its own status codes"),
    ("cifar10_runtime.serving.v2.dataplane", "starlette", "the dataplane is transport-neutral"),
    ("cifar10_runtime.serving.v2.dataplane", "grpc", "the dataplane is transport-neutral"),
    ("cifar10_runtime.serving.http", "cifar10_runtime.serving.v2", "guards know no protocol"),
    ("cifar10_runtime.serving.http", "cifar10_runtime.serving.grpc", "guards know no protocol"),
    ("cifar10_exporter.outputs", "cifar10_exporter.checks", "checks record, outputs only write"),
    ("cifar10_exporter.outputs", "cifar10_exporter.int8", "outputs only write what they are given"),
    ("cifar10_exporter.outputs", "cifar10_exporter.from_keras", "outputs need no TensorFlow"),
    ("cifar10_exporter.checks", "cifar10_exporter.int8", "the int8 search uses the checks"),
    ("cifar10_exporter.checks", "cifar10_exporter.pipeline", "the pipeline runs the checks"),
    ("cifar10_exporter.int8", "cifar10_exporter.pipeline", "the pipeline runs the int8 search"),
]
# The exporter's TensorFlow boundary: only from_keras/ imports these (inside its functions).
TENSORFLOW = ("tensorflow", "keras", "tf2onnx")
# The web and RPC frameworks: only serving/ builds apps and servers with them (the CLI may
# still hand a built app to uvicorn, the process's server loop).
SERVING_ONLY = ("starlette", "grpc")


def edges_with_third_party(package: str) -> dict[str, set[str]]:
    """Like graph_of, plus the top-level third-party names each module imports."""
    known = modules(package, PACKAGES[package])
    out: dict[str, set[str]] = {}
    for name, path in known.items():
        found = set(imports(name, path, known))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module)
        out[name] = found
    return out


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def direction_problems(graph: dict[str, set[str]], rules=RULES) -> list[str]:
    out = []
    for importer, targets in sorted(graph.items()):
        for target in sorted(targets):
            for src, dst, why in rules:
                if under(importer, src) and under(target, dst):
                    out.append(f"{importer} imports {target}: {why} ({src} -/-> {dst})")
    return out


def test_imports_go_the_allowed_directions() -> None:
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        graph.update(edges_with_third_party(package))
    found = direction_problems(graph)
    for importer, targets in sorted(graph.items()):
        if not under(importer, "cifar10_runtime") or under(importer, "cifar10_runtime.serving"):
            continue
        for target in sorted(targets):
            if any(under(target, fw) for fw in SERVING_ONLY):
                found.append(f"{importer} imports {target}: only cifar10_runtime.serving may")
    for importer, targets in sorted(graph.items()):
        if not under(importer, "cifar10_exporter") or under(
            importer, "cifar10_exporter.from_keras"
        ):
            continue
        for target in sorted(targets):
            if any(under(target, tf) for tf in TENSORFLOW):
                found.append(f"{importer} imports {target}: only cifar10_exporter.from_keras may")
    assert not found, "\n".join(found)


def private_problems() -> list[str]:
    """`from ours import _x`, or `thing._x` where _x is defined by another module of ours."""
    trees = {}
    for package in PACKAGES:
        for name, path in modules(package, PACKAGES[package]).items():
            trees[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    defined: dict[str, set[str]] = {}
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.setdefault(node.name, set()).add(name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined.setdefault(node.attr, set()).add(name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.setdefault(node.id, set()).add(name)
    out = []
    for name, tree in sorted(trees.items()):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module in trees:
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        out.append(
                            f"{name} line {node.lineno}: from {node.module} import {alias.name}"
                        )
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                owners = defined.get(node.attr, set())
                if owners and name not in owners:
                    out.append(
                        f"{name} line {node.lineno}: {ast.unparse(node)} (private to "
                        f"{', '.join(sorted(owners))})"
                    )
    return out


def test_no_module_reaches_into_another_modules_private_names() -> None:
    found = private_problems()
    assert not found, "make these public, or move the code to the module that owns it:\n" + (
        "\n".join(found)
    )


def test_the_direction_check_names_the_wrong_way_import() -> None:
    """The checker itself: a wrong-way edge is reported with its rule; a right-way one is not."""
    graph = {
        "cifar10_runtime.engines.plan": {"cifar10_runtime.serving.app", "numpy"},
        "cifar10_runtime.serving.app": {"cifar10_runtime.engines.plan"},
        "cifar10_runtime.serving.grpc.server": {"starlette.responses"},
    }
    found = direction_problems(graph)
    assert len(found) == 2, found
    assert found[0].startswith("cifar10_runtime.engines.plan imports cifar10_runtime.serving.app")
    assert "gRPC speaks its own status codes" in found[1]
