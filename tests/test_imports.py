"""The package's modules form layers: the import graph of ``lib/univenc``, read from the source with ``ast``
(imports inside functions included), has no circle, and every module says its concept in its first line."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "univenc"


def _imported_modules(path: Path) -> set[str]:
    """The univenc modules that a module imports anywhere in its source (top level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x
                names = [node.module] if node.module else [a.name for a in node.names]
            elif node.level == 0 and node.module and node.module.split(".")[0] == "univenc":
                rest = node.module.split(".")[1:]
                names = rest[:1] if rest else [a.name for a in node.names]
            else:
                continue
            out.update(n.split(".")[0] for n in names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("univenc."))
    return out


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """{module: univenc modules it imports}, for every module of the package (``__init__`` included)."""
    modules = {p.stem for p in package.glob("*.py")}
    return {p.stem: {m for m in _imported_modules(p) if m in modules and m != p.stem} for p in package.glob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as [m1, m2, ..., m1], or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_circle_through_a_lazy_import(tmp_path):
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from univenc.c import y\n")
    (tmp_path / "c.py").write_text("import univenc.a\n")
    (tmp_path / "d.py").write_text("from . import a\n")
    graph = import_graph(tmp_path)
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    (tmp_path / "c.py").write_text("import os\n")
    assert find_cycle(import_graph(tmp_path)) is None


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert {"zoo", "runner", "presets", "catalogue", "trajectories"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(p.stem for p in PACKAGE.glob("*.py")))
def test_every_module_has_a_docstring(module):
    doc = ast.get_docstring(ast.parse((PACKAGE / f"{module}.py").read_text()))
    assert doc and doc.strip().splitlines()[0].strip(), f"{module}.py has no docstring"
