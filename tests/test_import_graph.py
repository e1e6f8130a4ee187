"""genlab's modules import one another in one direction: the graph of their imports, those that
run at import time and those deferred into functions alike (an import under TYPE_CHECKING runs
never and is left out), has no cycle. A cycle is two rooms that each need the other, whichever of
the two imports lazily; the test names every module of each cycle it finds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "genlab"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _runs(tree: ast.AST):
    """The import statements of a module that can run (those under `if TYPE_CHECKING:` cannot)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The genlab modules `name` imports. Importing a.b.c runs the packages a and a.b first, so
    those count too, but not the importer's own packages (already under way when it runs)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in _runs(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
            continue
        if node.level:
            base = package.split(".")
            base = ".".join(base[:len(base) - node.level + 1])
            module = f"{base}.{node.module}" if node.module else base
        else:
            module = node.module or ""
        submodules = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in known]
        targets.update(submodules)
        if len(submodules) < len(node.names):
            targets.add(module)
    own = set(_ancestors(name)) | {name}
    edges = set()
    for t in targets:
        for m in [*_ancestors(t), t]:
            if m in known and m not in own:
                edges.add(m)
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's, iterative)."""
    index, low, on, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]; counter[0] += 1
        stack.append(start); on.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1
                    stack.append(w); on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop(); on.discard(w); component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def test_the_import_graph_has_no_cycle():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


@pytest.mark.parametrize("files, expected", [
    ({"pkg/__init__.py": "", "pkg/a.py": "from .b import x\n", "pkg/b.py": "def f():\n    from .a import y\n"},
     [["pkg.a", "pkg.b"]]),                                               # a lazy import closes a cycle
    ({"pkg/__init__.py": "", "pkg/a.py": "from .b import x\n",
      "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y\n"}, []),
    ({"pkg/__init__.py": "from .a import x\n", "pkg/a.py": "from . import b\n", "pkg/b.py": "X = 1\n"}, []),
    ({"pkg/__init__.py": "", "pkg/sub/__init__.py": "from .c import z\n", "pkg/sub/c.py": "from ..d import w\n",
      "pkg/d.py": "from .sub.c import q\n"}, [["pkg.d", "pkg.sub", "pkg.sub.c"]]),  # a package's __init__ runs first
])
def test_the_walk_finds_the_cycles_it_should(tmp_path, files, expected):
    assert cycles(graph(_write(tmp_path, files))) == expected
