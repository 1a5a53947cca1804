"""The grader package's shape, read from its source (no import is run): no import circle,
counting imports inside functions too, and stages that import only downward."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

GRADER = Path(__file__).resolve().parents[1] / "grader"

#: What each stage folder may import from the grader package (besides itself). Stages run
#: in this order; a stage never imports one that runs after it, and content never imports code.
ALLOWED = {
    "checks": {"catalog", "kernel.agent"},              # content: the check authors' API only
    "kernel": {"checks"},                                # the checker imports the checks it runs
    "sandbox": {"config"},
    "release": {"catalog", "config", "nb", "labsetup"},
    "autograde": {"catalog", "config", "nb", "sandbox", "kernel", "release"},
    "results": {"catalog", "config", "nb", "autograde", "release"},
}
#: The floor under the stages: shared by all, importing no stage. The other top-level modules
#: (cli, check, demo) drive several stages and may import any.
BASE = {"errors", "catalog", "config", "nb", "labsetup", "nbgrader_config"}


def module_name(path: Path, root: Path = GRADER) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path, root: Path = GRADER) -> set[str]:
    """The grader modules ``path`` imports anywhere (module level or inside a function);
    ``from grader.x import y`` counts as ``grader.x.y`` when that is a module, else ``grader.x``."""
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
            if name.startswith("grader") and name != here:
                found.add(name)
    return found


def graph(root: Path = GRADER) -> dict[str, set[str]]:
    """Module -> the grader modules it imports. A package's ``__init__`` is left out of the
    edges into it (importing ``grader.x.y`` runs ``grader.x`` first, but ours are docstrings
    or lazy re-exports; grader/__init__ imports through importlib only)."""
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


def test_the_finder_sees_circles_and_function_level_imports(tmp_path):
    pkg = tmp_path / "grader"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from grader.sub.b import thing\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from grader import c\n")
    (pkg / "c.py").write_text("import grader.a as a\n")
    (pkg / "d.py").write_text("from .sub import b\n")
    edges = graph(pkg)
    assert edges["grader.sub.b"] == {"grader.c"} and edges["grader.d"] == {"grader.sub.b"}
    assert circles(edges) == [["grader.a", "grader.c", "grader.sub.b"]]
    (pkg / "c.py").write_text("import os\n")
    assert circles(graph(pkg)) == []


def test_no_import_circle():
    found = circles(graph())
    assert not found, "import circles in grader/ (break each by moving the shared piece down a floor): " + \
        "; ".join(" <-> ".join(c) for c in found)


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else ""


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_stages_import_only_downward(stage):
    wrong = []
    for module, targets in graph().items():
        if _stage(module) != stage:
            continue
        for target in sorted(targets):
            rel = target.removeprefix("grader.")
            if _stage(target) == stage or any(rel == a or rel.startswith(a + ".") for a in ALLOWED[stage]):
                continue
            wrong.append(f"{module} imports {target}")
    assert not wrong, f"grader/{stage}/ may import only {sorted(ALLOWED[stage])}: " + "; ".join(wrong)


def test_the_base_imports_no_stage():
    wrong = [f"{module} imports {target}" for module, targets in graph().items()
             if module.removeprefix("grader.") in BASE
             for target in sorted(targets) if target.removeprefix("grader.") not in BASE]
    assert not wrong, f"grader/{{{','.join(sorted(BASE))}}}.py may import only each other: " + "; ".join(wrong)


def test_kernel_agent_imports_nothing_of_the_grader():
    """The agent's source is sent into the student's kernel: it must stand alone."""
    assert imports(GRADER / "kernel" / "agent.py") == set()
    assert imports(GRADER / "sandbox" / "jail.py") == set()  # run as a script with -I -S
