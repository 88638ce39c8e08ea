"""Imports run one way: a package imports only packages in layers below its own.

Every `import` / `from ... import` statement of every .py file is read from its syntax tree
(also those inside functions, which a runtime check would miss), as are
`importlib.import_module("...")` and `pytest.importorskip("...")` with a literal name. An
import of a package in a higher layer, or of a sibling in the same layer, fails the test
with the file and line of each offending import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A package may import packages of lower layers only; packages that share a
# layer are independent of each other.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"ctscribe"}),  # the error type and codes, the label names: imports nothing of ours
    frozenset({"imaging", "fusion"}),  # CT files -> Volume; fusion modules (pure tensors)
    frozenset({"model"}),  # configs, encoder, aggregator, decoder, pipeline, checkpoints, labeler
    frozenset({"dataset"}),  # manifest, importers, preprocessing cache
    frozenset({"train", "eval"}),  # the training stages; generation and metrics
    frozenset({"app"}),  # CLI and HTTP service
    frozenset({"bench"}),  # benchmarks over everything
    frozenset({"tests"}),
)
LAYER_OF = {package: n for n, layer in enumerate(LAYERS) for package in layer}
_DYNAMIC_IMPORTERS = {"import_module", "importorskip"}


def _top_level_packages() -> set[str]:
    return {p.parent.name for p in ROOT.glob("*/__init__.py")} | {"tests", "bench"}


def _imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if name in _DYNAMIC_IMPORTERS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield node.lineno, first.value


@cache
def package_imports() -> tuple[tuple[str, str, str], ...]:
    """(importing package, imported package, "file:line module") for every import between packages."""
    edges = []
    for package in sorted(LAYER_OF):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, module in _imported_modules(tree):
                target = module.split(".")[0]
                if target in LAYER_OF and target != package:
                    edges.append((package, target, f"{path.relative_to(ROOT)}:{line} imports {module}"))
    return tuple(edges)


def test_every_package_has_a_layer():
    unplaced = _top_level_packages() - set(LAYER_OF)
    assert not unplaced, f"top-level packages with no layer in {__name__}.LAYERS: {sorted(unplaced)}"


def test_imports_point_down_the_layers():
    wrong = [
        f"{where} ({importer}, layer {LAYER_OF[importer]} -> {imported}, layer {LAYER_OF[imported]})"
        for importer, imported, where in package_imports()
        if LAYER_OF[imported] >= LAYER_OF[importer]
    ]
    assert not wrong, "imports from a lower layer to a higher one (or between siblings):\n" + "\n".join(wrong)


def test_no_package_cycle():
    graph: dict[str, set[str]] = {package: set() for package in LAYER_OF}
    where: dict[tuple[str, str], str] = {}
    for importer, imported, at in package_imports():
        graph[importer].add(imported)
        where.setdefault((importer, imported), at)

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    return path + [start]
                if nxt not in path:
                    stack.append((nxt, path + [nxt]))
        return None

    for package in sorted(graph):
        cycle = cycle_from(package)
        if cycle:
            steps = [where[(a, b)] for a, b in zip(cycle, cycle[1:])]
            pytest.fail("package cycle " + " -> ".join(cycle) + ":\n" + "\n".join(steps))


def test_the_scan_sees_imports_inside_functions():
    source = "import os\n\ndef f():\n    from model.pipeline import load\n    importlib.import_module('app.main')\n"
    assert [m for _, m in _imported_modules(ast.parse(source))] == ["os", "model.pipeline", "app.main"]
