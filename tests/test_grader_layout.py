"""The grader package's shape, read from its source (no import is run): no import circle,
counting imports inside functions too, and stages that import only downward."""
from __future__ import annotations

from pathlib import Path

import pytest
from _imports import circles, graph, imports

GRADER = Path(__file__).resolve().parents[1] / "grader"

#: What each stage folder may import from the grader package (besides itself). Stages run
#: in this order; a stage never imports one that runs after it, and content never imports code.
ALLOWED = {
    "checks": {"catalog", "kernel.agent"},              # content: the check authors' API only
    "kernel": {"checks", "sandbox"},                     # the checks it runs; forked as the kernels are
    "sandbox": {"config"},
    "release": {"catalog", "config", "nb", "labsetup"},
    "autograde": {"catalog", "config", "defaults", "nb", "sandbox", "kernel", "release"},
    "results": {"catalog", "config", "nb", "autograde", "release"},
}
#: The floor under the stages: shared by all, importing no stage. The other top-level modules
#: (cli, check, demo) drive several stages and may import any.
BASE = {"errors", "defaults", "catalog", "config", "nb", "labsetup", "nbgrader_config"}


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
    found = circles(graph(GRADER))
    assert not found, "import circles in grader/ (break each by moving the shared piece down a floor): " + \
        "; ".join(" <-> ".join(c) for c in found)


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else ""


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_stages_import_only_downward(stage):
    wrong = []
    for module, targets in graph(GRADER).items():
        if _stage(module) != stage:
            continue
        for target in sorted(targets):
            rel = target.removeprefix("grader.")
            if _stage(target) == stage or any(rel == a or rel.startswith(a + ".") for a in ALLOWED[stage]):
                continue
            wrong.append(f"{module} imports {target}")
    assert not wrong, f"grader/{stage}/ may import only {sorted(ALLOWED[stage])}: " + "; ".join(wrong)


def test_the_base_imports_no_stage():
    wrong = [f"{module} imports {target}" for module, targets in graph(GRADER).items()
             if module.removeprefix("grader.") in BASE
             for target in sorted(targets) if target.removeprefix("grader.") not in BASE]
    assert not wrong, f"grader/{{{','.join(sorted(BASE))}}}.py may import only each other: " + "; ".join(wrong)


def test_kernel_agent_imports_nothing_of_the_grader():
    """The agent's source is sent into the student's kernel: it must stand alone."""
    assert imports(GRADER / "kernel" / "agent.py", GRADER) == set()
    assert imports(GRADER / "sandbox" / "jail.py", GRADER) == set()  # run as a script with -I -S
