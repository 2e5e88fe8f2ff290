"""No import cycles anywhere in the package, lazy and TYPE_CHECKING imports included.

The graph is grimp's (the engine under import-linter): it records every import statement of a module,
those inside functions and under `if TYPE_CHECKING:` too. A cycle is a strongly connected component of
more than one module; the failure names each one with a concrete loop and the lines that make it.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components of more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    """One loop through the component, each import with its line: what a reader has to break."""
    start = component[0]
    inside = set(component)
    following = next(m for m in sorted(graph.find_modules_directly_imported_by(start)) if m in inside)
    back = graph.find_shortest_chain(importer=following, imported=start) or (following, start)
    loop = [start, *back]
    steps = []
    for a, b in zip(loop, loop[1:], strict=False):
        lines = sorted({d["line_number"] for d in graph.get_import_details(importer=a, imported=b)})
        steps.append(f"{a} (l.{', '.join(map(str, lines))}) -> {b}")
    return "; ".join(steps)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("horizonlens", exclude_type_checking_imports=False, cache_dir=None)


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles:\n" + "\n".join(describe(graph, c) for c in cycles)


def test_a_planted_cycle_of_lazy_and_type_checking_imports_is_found(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A package whose only loop runs through a function-level import and a TYPE_CHECKING import."""
    package = tmp_path / "planted_cycle"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from planted_cycle import b\n    return b\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import planted_cycle.c\n")
    (package / "c.py").write_text("import planted_cycle.a\nimport planted_cycle.d\n")
    (package / "d.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    planted = grimp.build_graph("planted_cycle", exclude_type_checking_imports=False, cache_dir=None)
    cycles = strongly_connected(planted)
    assert cycles == [["planted_cycle.a", "planted_cycle.b", "planted_cycle.c"]]
    assert describe(planted, cycles[0]) == ("planted_cycle.a (l.2) -> planted_cycle.b; "
                                            "planted_cycle.b (l.4) -> planted_cycle.c; "
                                            "planted_cycle.c (l.1) -> planted_cycle.a")
