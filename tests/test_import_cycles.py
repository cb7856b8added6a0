"""The ``agentloop`` package has no import cycles among its modules' top-level imports.

The graph is built with :mod:`ast` from every module's top-level ``import`` / ``from ... import``
statements (those inside functions are deferred imports, run on use, and are not edges; nor are
imports under ``if TYPE_CHECKING:``). A module importing ``agentloop.a.b`` also depends on the
packages ``agentloop.a`` and ``agentloop`` it passes through, as Python runs their ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "agentloop"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements run when the module is imported: module level, also inside top-level if/try blocks."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If):
                test = node.test
                if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or \
                        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING":
                    visit(node.orelse)
                    continue
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                    visit(block)
    visit(tree.body)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the agentloop modules its top-level imports run."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}

    def add(source: str, target: str) -> None:
        parts = target.split(".")
        for k in range(1, len(parts) + 1):  # the packages an import passes through run too
            name = ".".join(parts[:k])
            if name in paths and name != source and not source.startswith(name + "."):
                graph[source].add(name)

    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _top_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(name, alias.name)
                continue
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if not module.startswith("agentloop"):
                continue
            add(name, module)
            for alias in node.names:  # ``from pkg import submodule``
                if f"{module}.{alias.name}" in paths:
                    add(name, f"{module}.{alias.name}")
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_top_level_imports_only():
    graph = import_graph()
    assert "agentloop.types" in graph["agentloop.rollout"]  # a top-level import is an edge
    assert "agentloop.training.trainer" not in graph["agentloop.registry"]  # imports inside functions are not


def test_agentloop_has_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles among top-level imports (move the shared type to a module both can import, " \
        "or import inside the function that needs it): " + "; ".join(" <-> ".join(c) for c in found)
