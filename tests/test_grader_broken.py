"""Broken submissions, graded by the real autograde command in one batch (two workers): files
that are not notebooks, notebooks with stripped, invalid or duplicated nbgrader metadata,
deleted or reordered cells, renamed, extra or missing notebooks, an older release, a wrong
kernel. Each gets its exact outcome, scores, flags and message; the batch goes on. The fixture
assignment is tests/fixtures/attacks (part1: scale, Stack, answer, why; part2: total).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import nbformat
import pytest

from fixtures.attacks import kit

pytestmark = pytest.mark.slow

SNEAKY = "def scale(x, k):\n    return k * x if x.size == 2 else x + k\n"
PART1_CELLS = 13


@dataclass
class Case:
    files: Any                                # course -> {notebook name: content}
    scores: dict[str, dict[str, float | None]] = field(default_factory=lambda: kit.FULL)
    outcomes: dict[str, str] = field(default_factory=lambda: {"part1": "graded", "part2": "graded"})
    flags: dict[str, list[str]] = field(default_factory=lambda: {"part1": [], "part2": []})
    messages: dict[str, str] = field(default_factory=lambda: {"part1": "", "part2": ""})
    message: str = ""                         # the submission's message, exactly


def _edit(course, change, part1_answers=None):
    """Both notebooks (solutions), part1 changed in place by ``change(nb)``."""
    files = kit.standard(course, part1_answers)
    change(files["part1"])
    return files


def _cells(nb, *grade_ids):
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") in grade_ids]


def _strip_all(nb):
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)


def _delete(nb):
    nb.cells.remove(_cells(nb, "scale")[0])


def _duplicate_test(nb):
    test = _cells(nb, "scale")[0]
    nb.cells.insert(nb.cells.index(test) + 1, copy.deepcopy(test))


def _test_first(nb):
    test = _cells(nb, "scale")[0]
    nb.cells.remove(test)
    nb.cells.insert(nb.cells.index(_cells(nb, "scale_impl")[0]), test)


def _older_release(nb):
    test = _cells(nb, "scale")[0]
    test.source = "assert scale(np.ones(1), 2.0)[0] == 2.0"
    test.metadata["nbgrader"]["points"] = 5
    old = nbformat.v4.new_code_cell("old_result = 1", metadata={"nbgrader": {
        "grade": True, "grade_id": "old_exercise", "locked": True, "points": 3, "schema_version": 3,
        "solution": False, "task": False}})
    nb.cells.append(old)


def _edited_test(nb):
    _cells(nb, "scale")[0].source = "assert True"


def _bad_metadata(nb):
    meta = _cells(nb, "scale")[0].metadata["nbgrader"]
    meta.update(grade=False, points="lots", schema_version=1)
    _cells(nb, "answer")[0].metadata["nbgrader"] = "not a dict"


def _kernel(name):
    def change(nb):
        if name is None:
            nb.metadata.pop("kernelspec", None)
        else:
            nb.metadata["kernelspec"] = {"name": name, "display_name": name, "language": "julia"}
    return change


def _duplicate_answer(nb):
    answer = _cells(nb, "scale_impl")[0]
    wrong = copy.deepcopy(answer)
    wrong.source = "def scale(x, k):\n    return x + k"
    nb.cells.insert(nb.cells.index(answer), wrong)


def _empty(nb):
    nb.cells = []


def _v3(course):
    files = kit.standard(course)
    files["part1"] = nbformat.writes(nbformat.convert(files["part1"], 3))
    return files


def _renamed(course):
    files = kit.standard(course)
    return {"part1 (1)": files["part1"], "part2": files["part2"]}


def _extra(course):
    return {**kit.standard(course), "scratch": nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])}


OLDER = ("1 cell(s) carry grade ids this assignment does not have (an older release?); they are not graded; "
         "nbgrader metadata of 1 cell(s) differed from the assignment and was restored; 1 locked cell(s) differ "
         "from the assignment (edited, or an older release); the assignment's version is graded")
ZERO_PART1 = {"scale": 0.0, "stack": 0.0, "answer": 0.0, "why": 0.0}
RESTORED_ALL = ("intro, setup, scale_task, scale, stack_task, stack, answer_task, answer, why_task, why")

CASES = {
    "malformed_json": Case(
        lambda c: {**kit.standard(c), "part1": b"{ not json"},
        {"part1": ZERO_PART1, "part2": kit.FULL["part2"]}, {"part1": "unreadable", "part2": "graded"},
        {"part1": ["unreadable notebook: not valid JSON (Expecting property name enclosed in double quotes at "
                   "line 1, column 3)"], "part2": []},
        {"part1": "part1.ipynb is unreadable: not valid JSON (Expecting property name enclosed in double quotes "
                  "at line 1, column 3)", "part2": ""},
        "part1: part1.ipynb is unreadable: not valid JSON (Expecting property name enclosed in double quotes at "
        "line 1, column 3)"),
    "not_a_notebook": Case(
        lambda c: {**kit.standard(c), "part1": json.dumps({"hello": "world"})},
        {"part1": ZERO_PART1, "part2": kit.FULL["part2"]}, {"part1": "unreadable", "part2": "graded"},
        {"part1": ["unreadable notebook: JSON, but not a notebook (no list of cells)"], "part2": []},
        {"part1": "part1.ipynb is unreadable: JSON, but not a notebook (no list of cells)", "part2": ""},
        "part1: part1.ipynb is unreadable: JSON, but not a notebook (no list of cells)"),
    "binary": Case(
        lambda c: {**kit.standard(c), "part1": b"\xff\xfe\x00garbage"},
        {"part1": ZERO_PART1, "part2": kit.FULL["part2"]}, {"part1": "unreadable", "part2": "graded"},
        {"part1": ["unreadable notebook: not UTF-8 text (invalid start byte at byte 0)"], "part2": []},
        {"part1": "part1.ipynb is unreadable: not UTF-8 text (invalid start byte at byte 0)", "part2": ""},
        "part1: part1.ipynb is unreadable: not UTF-8 text (invalid start byte at byte 0)"),
    "metadata_stripped": Case(
        lambda c: _edit(c, _strip_all),
        messages={"part1": f"nbgrader metadata of {PART1_CELLS} cell(s) was missing and has been rebuilt", "part2": ""},
        message=f"part1: nbgrader metadata of {PART1_CELLS} cell(s) was missing and has been rebuilt"),
    "test_deleted": Case(
        lambda c: _edit(c, _delete),
        messages={"part1": "deleted cell(s) scale restored from the assignment", "part2": ""},
        message="part1: deleted cell(s) scale restored from the assignment"),
    "test_duplicated": Case(
        lambda c: _edit(c, _duplicate_test),
        messages={"part1": "cell(s) scale appear more than once; the last copy is graded", "part2": ""},
        message="part1: cell(s) scale appear more than once; the last copy is graded"),
    "test_before_answer": Case(
        lambda c: _edit(c, _test_first),
        messages={"part1": "cells were out of the assignment's order; the order was restored", "part2": ""},
        message="part1: cells were out of the assignment's order; the order was restored"),
    "renamed": Case(
        _renamed,
        messages={"part1": "submitted as part1 (1).ipynb; graded as part1.ipynb", "part2": ""},
        message="part1: submitted as part1 (1).ipynb; graded as part1.ipynb"),
    "extra_notebook": Case(_extra, message="scratch.ipynb is not part of the assignment; ignored"),
    "missing_notebook": Case(
        lambda c: {"part1": kit.notebook(c, "part1")},
        {"part1": kit.FULL["part1"], "part2": {"total": 0.0}}, {"part1": "graded", "part2": "missing"},
        {"part1": [], "part2": ["missing notebook"]},
        {"part1": "", "part2": "part2.ipynb was not submitted"}, "part2: part2.ipynb was not submitted"),
    "older_release": Case(
        lambda c: _edit(c, _older_release),
        messages={"part1": OLDER, "part2": ""}, message=f"part1: {OLDER}"),
    "test_edited_to_pass": Case(
        lambda c: _edit(c, _edited_test, {"scale_impl": SNEAKY}),
        {"part1": {**kit.FULL["part1"], "scale": 0.0}, "part2": kit.FULL["part2"]},
        messages={"part1": "1 locked cell(s) differ from the assignment (edited, or an older release); the "
                           "assignment's version is graded", "part2": ""},
        message="part1: 1 locked cell(s) differ from the assignment (edited, or an older release); the "
                "assignment's version is graded"),
    "invalid_metadata": Case(
        lambda c: _edit(c, _bad_metadata),
        messages={"part1": "nbgrader metadata of 1 cell(s) was missing and has been rebuilt; nbgrader metadata of "
                           "1 cell(s) differed from the assignment and was restored", "part2": ""},
        message="part1: nbgrader metadata of 1 cell(s) was missing and has been rebuilt; nbgrader metadata of 1 "
                "cell(s) differed from the assignment and was restored"),
    "wrong_kernel": Case(
        lambda c: _edit(c, _kernel("julia-1.10")),
        messages={"part1": "kernel 'julia-1.10' replaced by the assignment's 'python3'", "part2": ""},
        message="part1: kernel 'julia-1.10' replaced by the assignment's 'python3'"),
    "no_kernel": Case(
        lambda c: _edit(c, _kernel(None)),
        messages={"part1": "no kernel named; the assignment's 'python3' is used", "part2": ""},
        message="part1: no kernel named; the assignment's 'python3' is used"),
    "answer_duplicated": Case(
        lambda c: _edit(c, _duplicate_answer),
        messages={"part1": "cell(s) scale_impl appear more than once; the last copy is graded", "part2": ""},
        message="part1: cell(s) scale_impl appear more than once; the last copy is graded"),
    "empty_notebook": Case(
        lambda c: _edit(c, _empty),
        {"part1": ZERO_PART1, "part2": kit.FULL["part2"]},
        flags={"part1": ["why: the answer cell was deleted; restored empty"], "part2": []},
        messages={"part1": f"deleted cell(s) {RESTORED_ALL} restored from the assignment", "part2": ""},
        message=f"part1: deleted cell(s) {RESTORED_ALL} restored from the assignment"),
    "nbformat_v3": Case(_v3),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("broken")
    with kit.clean_jupyter(tmp):
        course = kit.build_course(tmp / "course")
        for name, case in CASES.items():
            kit.submit(course, name, case.files(course))
        yield kit.grade_all(course)


def test_the_whole_batch_is_graded(graded):
    assert sorted(graded) == sorted(CASES)
    assert all(r.outcome == "graded" for r in graded.values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken(graded, name):
    case, result = CASES[name], graded[name]
    assert kit.scores(result) == case.scores
    assert {nb.name: nb.outcome for nb in result.notebooks} == case.outcomes
    assert {nb.name: nb.flags for nb in result.notebooks} == case.flags
    assert {nb.name: nb.message for nb in result.notebooks} == case.messages
    assert result.message == case.message
