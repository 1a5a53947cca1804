"""Import graphs read from source (no import is run), for the layout tests of course/ and grader/:
which modules of a package import which, counting imports inside functions, and the circles."""
from __future__ import annotations

import ast
from pathlib import Path

__all__ = ["module_name", "imports", "graph", "circles"]


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path, root: Path) -> set[str]:
    """The modules of the package at ``root`` that ``path`` imports anywhere (module level or
    inside a function); ``from p.x import y`` counts as ``p.x.y`` when that is a module, else
    ``p.x``. Dynamic imports (``importlib``) are not seen."""
    known = {module_name(p, root) for p in root.rglob("*.py")}
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # grader.a.b.attr -> grader.a.b
                name = name.rpartition(".")[0]
            if name.startswith(root.name) and name != here:
                found.add(name)
    return found


def graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports. Importing ``p.x.y`` also runs
    ``p.x``, but that is not an edge: Python has the parent loaded first."""
    return {module_name(p, root): imports(p, root) for p in sorted(root.rglob("*.py"))}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a module that
    imports itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
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
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found
