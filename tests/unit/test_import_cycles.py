"""No import cycles between the modules of ``src/zvonok`` (issue 13: modules have a one-way shape).

Every ``import`` / ``from ... import`` of a module counts, wherever it stands: at the top, inside a
function (a lazy import is still a dependency), and under ``if TYPE_CHECKING:``. A type-only import
is a dependency of the module's meaning even when it is not one at run time, and the process split
serializes exactly these boundaries; a mutual type reference is better expressed with a narrow
``typing.Protocol`` (or a generic) in the lower module, as ``rooms.room.Member`` and
``media.forwarding.consumer.ConsumedTrack`` do. The graph is static (``ast``), one node per module;
``from package import name`` is an edge to ``package.name`` when that is a module, else to the
package's ``__init__``. A package's implicit import of its parent is not an edge.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

SRC = Path(__file__).parents[2] / "src" / "zvonok"


def module_name(path: Path, root: Path) -> str:
    """``.../zvonok/media/sdp/_text.py`` -> ``zvonok.media.sdp._text`` (a package: no __init__)."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_names(module: str, is_package: bool, tree: ast.AST) -> Iterable[str]:
    """Every dotted name an import statement anywhere in ``tree`` may refer to, made absolute."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package):
                    raise ValueError(f"{module}: relative import beyond the top package")
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # ``package.name`` if that is a module; ``import_graph`` falls back to ``package``
            yield from (f"{target}.{alias.name}" for alias in node.names)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the modules under ``root`` it imports (a name resolves to its longest module)."""
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        names = imported_names(module, path.name == "__init__.py", tree)
        for name in names:
            while name and name not in paths:
                name = name.rpartition(".")[0]
            if name and name != module:
                edges.add(name)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(component: list[str], graph: dict[str, set[str]]) -> str:
    inside = set(component)
    return "; ".join(f"{m} -> {', '.join(sorted(graph[m] & inside))}" for m in component)


def test_no_import_cycles_in_zvonok() -> None:
    graph = import_graph(SRC)
    found = cycles(graph)
    assert not found, "import cycles (see tests/unit/test_import_cycles.py):\n" + "\n".join(
        describe(c, graph) for c in found
    )


def test_the_checker_finds_lazy_type_checking_and_relative_cycles(tmp_path: Path) -> None:
    pkg = tmp_path / "zvonok"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import a\n")
    (pkg / "sub" / "a.py").write_text("def f() -> None:\n    from .b import g\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from zvonok.sub.c import X\n"
    )
    (pkg / "sub" / "c.py").write_text("from ..sub import a\n")
    (pkg / "d.py").write_text("import zvonok.sub.a\nfrom zvonok import sub\n")
    graph = import_graph(pkg)
    assert graph["zvonok.sub"] == {"zvonok.sub.a"}
    assert graph["zvonok.d"] == {"zvonok.sub", "zvonok.sub.a"}
    assert cycles(graph) == [["zvonok.sub.a", "zvonok.sub.b", "zvonok.sub.c"]]
    (pkg / "sub" / "c.py").write_text("X = 1\n")
    assert cycles(import_graph(pkg)) == []


def test_the_checker_sees_the_whole_tree() -> None:
    graph = import_graph(SRC)
    assert "zvonok.media.sdp.description" in graph
    assert "zvonok.media.sdp._text" in graph["zvonok.media.sdp.description"]
    assert "zvonok.rooms.room" in graph["zvonok.rooms.participant"]
