"""The shape the code keeps (issue #26): no production function over 60 lines in the process
layer, and no import circle between any two of teambot's modules.

The length rule covers bot/, jobs/ and the adapters this layer owns; widen `SHORT` as the other
packages get there."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "adapters", "jobs", "engine", "knowledge")
SHORT = ("bot", "jobs", "adapters/web", "adapters/terminal", "adapters/platform.py")
LONGEST = 60


def _files(area: str) -> list[Path]:
    path = ROOT / area
    return [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))


def test_no_function_is_longer_than_60_lines() -> None:
    long = []
    for area in SHORT:
        for file in _files(area):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > LONGEST:
                        long.append(f"{file.relative_to(ROOT)}:{node.name} ({lines} lines)")
    assert not long, long


def test_no_import_circle_between_modules() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    imports = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    assert not _circles(imports)


def _circles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in imports.get(module, ()):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while (top := stack.pop()) != module:
                component.append(top)
            if component:
                found.append(sorted([module, *component]))

    for module in imports:
        if module not in index:
            visit(module)
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
