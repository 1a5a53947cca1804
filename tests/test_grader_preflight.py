"""Preflight's repairs (grader/autograde/preflight.py), one small crafted notebook per case,
without nbgrader or a kernel: what is graded, what the student and the instructor are told."""
from __future__ import annotations

import copy
import json
from collections.abc import Callable

import nbformat
import pytest

from grader.autograde.preflight import TemplateCell, TemplateNotebook, prepare

KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _cell(name: str, cell_type: str, source: str, *, locked=False, grade=False, solution=False,
          points: float | None = None) -> TemplateCell:
    return TemplateCell(name=name, cell_type=cell_type, locked=locked, source=source, checksum=None, grade=grade,
                        solution=solution, task=False, points=points)


TEMPLATE = TemplateNotebook("work", KERNEL, (
    _cell("intro", "markdown", "# Squares\nWrite `square`.", locked=True),
    _cell("square", "code", "def square(x):\n    raise NotImplementedError", solution=True),
    _cell("square_test", "code", "assert square(3) == 9\n### BEGIN HIDDEN TESTS\n_c.check_square(square)\n"
          "### END HIDDEN TESTS", locked=True, grade=True, points=2.0),
    _cell("why", "markdown", "YOUR ANSWER HERE", solution=True, grade=True, points=1.0),
))
ANSWER = "def square(x):\n    return x * x"


def _release() -> dict:
    """The student's notebook as submitted: the release (hidden tests removed) with an answer."""
    cells = []
    for i, tc in enumerate(TEMPLATE.cells):
        source = {"square": ANSWER, "why": "Because."}.get(tc.name, tc.source.split("\n### BEGIN")[0])
        cell = {"cell_type": tc.cell_type, "id": f"c{i}", "metadata": {"nbgrader": tc.metadata()}, "source": source}
        if tc.cell_type == "code":
            cell.update(outputs=[], execution_count=None)
        cells.append(cell)
    return {"cells": cells, "metadata": {"kernelspec": KERNEL}, "nbformat": 4, "nbformat_minor": 5}


def _bytes(nb: dict) -> bytes:
    return json.dumps(nb).encode()


def _edited(edit: Callable[[dict], None]) -> dict[str, bytes]:
    nb = _release()
    edit(nb)
    return {"work": _bytes(nb)}


def _own(source: str) -> dict:
    return {"cell_type": "code", "id": "mine", "metadata": {}, "source": source, "outputs": [], "execution_count": None}


def _strip(nb: dict) -> None:
    for cell in nb["cells"]:
        cell["metadata"].pop("nbgrader")


def _reorder(nb: dict) -> None:
    nb["cells"].insert(2, _own("helper = 1"))        # the student's cell after the answer
    nb["cells"] = [nb["cells"][0], nb["cells"][3], nb["cells"][4], nb["cells"][1], nb["cells"][2]]


def _duplicate(nb: dict) -> None:
    twin = copy.deepcopy(nb["cells"][1])
    twin["id"], twin["source"] = "twin", "def square(x):\n    return 0"
    nb["cells"].insert(1, twin)                      # an earlier copy: the last one keeps the role


def _set(index: int, **changes) -> Callable[[dict], None]:
    return lambda nb: nb["cells"][index].update(changes)


def _meta(index: int, **changes) -> Callable[[dict], None]:
    return lambda nb: nb["cells"][index]["metadata"]["nbgrader"].update(changes)


def _delete(*indices: int) -> Callable[[dict], None]:
    return lambda nb: [nb["cells"].pop(i) for i in sorted(indices, reverse=True)]


CASES = {
    # name: (submitted files, outcome, phrases in the messages, flags)
    "as released": ({"work": _bytes(_release())}, "graded", [], []),
    "not JSON": ({"work": b"{ not json"}, "unreadable", ["work.ipynb is unreadable: not valid JSON"],
                 ["unreadable notebook: not valid JSON (Expecting property name enclosed in double quotes at line 1, "
                  "column 3)"]),
    "not UTF-8": ({"work": b"\xff\xfe"}, "unreadable", ["not UTF-8 text"], ["unreadable notebook: not UTF-8 text "
                                                                          "(invalid start byte at byte 0)"]),
    "JSON but no cells": ({"work": b'{"a": 1}'}, "unreadable", ["JSON, but not a notebook"],
                          ["unreadable notebook: JSON, but not a notebook (no list of cells)"]),
    "missing": ({}, "missing", ["work.ipynb was not submitted"], ["missing notebook"]),
    "renamed": ({"work (1)": _bytes(_release())}, "graded", ["submitted as work (1).ipynb; graded as work.ipynb"], []),
    "another kernel": (_edited(lambda nb: nb["metadata"].update(kernelspec={"name": "ir"})), "graded",
                       ["kernel 'ir' replaced by the assignment's 'python3'"], []),
    "no kernel": (_edited(lambda nb: nb["metadata"].clear()), "graded",
                  ["no kernel named; the assignment's 'python3' is used"], []),
    "metadata stripped": (_edited(_strip), "graded", ["nbgrader metadata of 4 cell(s) was missing and has been rebuilt"],
                          []),
    "points edited": (_edited(_meta(2, points=100)), "graded",
                      ["nbgrader metadata of 1 cell(s) differed from the assignment and was restored"], []),
    "locked cell edited": (_edited(_set(2, source="assert True")), "graded",
                           ["1 locked cell(s) differ from the assignment"], []),
    "test cell deleted": (_edited(_delete(2)), "graded", ["deleted cell(s) square_test restored"], []),
    "answer deleted": (_edited(_delete(3)), "graded", ["deleted cell(s) why restored"],
                       ["why: the answer cell was deleted; restored empty"]),
    "answer duplicated": (_edited(_duplicate), "graded", ["cell(s) square appear more than once; the last copy"], []),
    "cells reordered": (_edited(_reorder), "graded", ["cells were out of the assignment's order; the order was restored"],
                        []),
    "an older release's grade id": (_edited(_meta(3, grade_id="why_v1")), "graded",
                                    ["1 cell(s) carry grade ids this assignment does not have"], []),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_repairs(case):
    submitted, outcome, phrases, flags = CASES[case]
    prepared = prepare(submitted, {"work": TEMPLATE})
    verdict = prepared.notebooks["work"]
    assert verdict.outcome == outcome
    said = "; ".join(verdict.messages)
    assert all(p in said for p in phrases), said
    assert (not said) == (not phrases), said  # nothing is said about a notebook as released
    assert verdict.flags == flags
    if outcome != "graded":
        assert verdict.data is None
        return
    nb = nbformat.reads(verdict.data.decode(), as_version=4)
    nbformat.validate(nb)
    roles = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    assert [r for r in roles if r] == [c.name for c in TEMPLATE.cells], "every cell of the assignment, in order"
    by_role = {r: c for r, c in zip(roles, nb.cells) if r}
    for tc in TEMPLATE.cells:  # the assignment's metadata; instructor cells the assignment's text
        assert by_role[tc.name].metadata.nbgrader == tc.metadata()
        if tc.locked:
            assert by_role[tc.name].source == tc.source
    assert nb.metadata.kernelspec == KERNEL
    assert len({c.id for c in nb.cells}) == len(nb.cells)


def test_the_answer_and_the_students_own_cells_are_kept():
    prepared = prepare(_edited(_reorder), {"work": TEMPLATE})
    nb = nbformat.reads(prepared.notebooks["work"].data.decode(), as_version=4)
    assert [c.source for c in nb.cells][1:3] == [ANSWER, "helper = 1"]  # moved with the cell it followed
    prepared = prepare(_edited(_duplicate), {"work": TEMPLATE})
    nb = nbformat.reads(prepared.notebooks["work"].data.decode(), as_version=4)
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "square"]
    assert [c.source for c in graded] == [ANSWER]
    assert "def square(x):\n    return 0" in [c.source for c in nb.cells]  # the earlier copy stays, ungraded
    prepared = prepare(_edited(_delete(3)), {"work": TEMPLATE})
    nb = nbformat.reads(prepared.notebooks["work"].data.decode(), as_version=4)
    assert nb.cells[-1].source == "YOUR ANSWER HERE"


def test_extra_files_are_ignored_with_a_message():
    prepared = prepare({"work": _bytes(_release()), "scratch": b"junk", "notes": _bytes({"cells": [], "metadata": {},
                                                                                        "nbformat": 4,
                                                                                        "nbformat_minor": 5})},
                       {"work": TEMPLATE})
    assert prepared.notebooks["work"].outcome == "graded" and prepared.notebooks["work"].messages == []
    assert prepared.messages == ["scratch.ipynb is not part of the assignment and unreadable (not valid JSON "
                                 "(Expecting value at line 1, column 1)); ignored",
                                 "notes.ipynb is not part of the assignment; ignored"]
