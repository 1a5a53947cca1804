"""Running the visible part of a solution notebook's test cell in a fresh namespace, with the
model answers or with a wrong (or alternative) answer swapped in (tests/test_visible_tests.py)."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import nbformat
import pytest

from grader.nb import split_hidden

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"
NOTEBOOKS = {"01_autodiff": "autodiff", "02_optimizers": "optimizers", "03_initialization": "initialization",
             "04_batchnorm": "batchnorm", "05_regularization": "regularization",
             "06_training_in_practice": "practice"}
#: Locked cells that define what the answers and tests build on (no experiments: they train).
DEFINITIONS = {"setup", "node_class", "register_vjps", "tensor_class", "mlp_forward"}


def _cells(assignment: str) -> list[nbformat.NotebookNode]:
    path = SOLUTIONS / assignment / f"{NOTEBOOKS[assignment]}.ipynb"
    return nbformat.read(path, as_version=4).cells


def _grade_id(cell: nbformat.NotebookNode) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def _python(source: str) -> str:
    """A cell's source without IPython magics."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("%"))


def namespace(assignment: str, *, answers: tuple[str, ...] = ()) -> dict[str, Any]:
    """Setup and definition cells, every function answer cell and the value answer cells
    named in ``answers``, run in order into one fresh namespace."""
    ns: dict[str, Any] = {"__name__": "__main__"}
    for cell in _cells(assignment):
        meta = cell.metadata.get("nbgrader", {})
        gid = _grade_id(cell)
        defines = meta.get("solution") and cell.cell_type == "code" and "def " in cell.source
        if gid in DEFINITIONS or gid in answers or defines:
            exec(compile(_python(cell.source), f"<{gid}>", "exec"), ns)
    return ns


def visible(assignment: str, grade_id: str) -> str:
    """The visible part of the test cell ``grade_id``."""
    (cell,) = [c for c in _cells(assignment) if _grade_id(c) == grade_id]
    return "\n".join(split_hidden(cell.source)[0])


def answered(assignment: str, source: str, *, answers: tuple[str, ...] = ()) -> dict[str, Any]:
    """:func:`namespace` with the functions of ``source`` (a student's answer) defined on top,
    their globals the notebook's."""
    ns = namespace(assignment, answers=answers)
    exec(compile(textwrap.dedent(source), "<answer>", "exec"), ns)
    return ns


def run(assignment: str, grade_id: str, ns: dict[str, Any]) -> None:
    exec(compile(visible(assignment, grade_id), f"<test {grade_id}>", "exec"), ns)


def fails(assignment: str, grade_id: str, ns: dict[str, Any], *needles: str) -> str:
    """The visible tests of ``grade_id`` fail in ``ns`` with a message holding every needle."""
    with pytest.raises(AssertionError) as info:
        run(assignment, grade_id, ns)
    message = str(info.value)
    for needle in needles:
        assert needle.lower() in message.lower(), f"{needle!r} not in: {message}"
    return message
