"""tui/ and screens/ have no import cycle, lazy imports inside functions included.

The same AST scan as tests/test_architecture.py (every import statement,
wherever it is, so an import moved into a function to dodge a cycle still
counts). Only ``if TYPE_CHECKING:`` blocks are left out: they never run.
tui/cli.py once imported tui/changes.py and tui/run.py, which imported
tui/cli.py back for two helpers.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import PROJECT
from tests.test_architecture import _imports, _package

PACKAGES = ("tui", "screens")


def _module(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of tui/ and screens/ it imports (``from pkg import mod`` resolved to the module)."""
    files = {_module(p): p for pkg in PACKAGES for p in sorted((PROJECT / pkg).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = set()
        type_only = _type_checking_lines(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, imported in _imports(tree, _package(path)):
            if line in type_only:
                continue
            # "tui.output.mask_for_stdout" -> tui.output; "tui.changes" -> tui.changes.
            while imported and imported not in files:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and imported not in PACKAGES:
                targets.add(imported)
        graph[name] = targets
    return graph


def _type_checking_lines(path: Path) -> set[int]:
    """Lines inside ``if TYPE_CHECKING:`` blocks (imports for the type checker, never run)."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (each as the path that closes it)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_the_scan_sees_the_faces_imports():
    graph = import_graph()
    assert "tui.changes" in graph["tui.cli"] and "tui.run" in graph["tui.cli"]  # lazy, inside functions
    assert "tui.output" in graph["tui.changes"] and "screens._base" in graph["screens.review"]


def test_no_import_cycle_in_the_faces():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_cycle_check_catches_a_lazy_import_back():
    # The guard must be able to fail: the cycle this test was written for.
    graph = import_graph()
    graph["tui.changes"] = graph["tui.changes"] | {"tui.cli"}
    assert any("tui.cli" in c and "tui.changes" in c for c in cycles(graph))
