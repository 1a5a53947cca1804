"""What a student sees while a notebook is unfinished (``course.notebook.explain_unfinished``).

The release notebooks run top to bottom in a real kernel (errors allowed, as when a student runs
every cell by hand): each error is one line that names the unfinished function and the heading
it sits under, or the earlier cell that stopped because of it; none is an unrelated NameError or
KeyError. The short errors are still errors (Run All stops, nbgrader scores the cell 0), and in a
kernel that nbgrader runs (``NBGRADER_EXECUTION``) nothing is installed, so the grader's tamper
snapshot sees IPython unchanged.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError
from nbgrader.utils import determine_grade

from course.notebook import _clean, _names
from grader.release.build import stub_message
from grader.config import Course, REPO_ROOT
from grader.release.fabricate import fill_submission

from _notebooks import execute

COURSE = Course.at(REPO_ROOT)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)
#: the first message of each kind, as the tests below expect them
NEEDS = re.compile(r"^NotImplementedError: this cell needs `(?P<fn>[\w.]+)` from “(?P<section>[^”]+)”: "
                   r"finish it and run its cell first\.$")
ANSWER = "NotImplementedError: this cell is not finished yet: replace `raise NotImplementedError()` with your answer."
UPSTREAM = re.compile(r"^(?:NameError: `(?P<name>\w+)` is not set|KeyError: .+ is not in `\w+`): cell \[\d+\], "
                      r"which (?:sets|fills) it, (?:is not finished yet|stopped because `(?P<fn>[\w.]+)` "
                      r"from “(?P<section>[^”]+)” is not finished yet)\.$")
ASKED = re.compile(r"^NameError: `(?P<name>\w+)` is not set yet: it is asked for in “(?P<section>[^”]+)”; "
                   r"finish the cell there that sets it\.$")


def _errors(nb: nbformat.NotebookNode) -> list[tuple[nbformat.NotebookNode, str]]:
    """(cell, traceback text without colours) for every error output."""
    return [(cell, "\n".join(ANSI.sub("", line) for line in out.traceback))
            for cell in nb.cells if cell.cell_type == "code"
            for out in cell.outputs if out.output_type == "error"]


def _release(assignment: str) -> Path:
    (path,) = sorted((COURSE.notebooks / assignment).glob("*.ipynb"))
    return path


def _headings(nb: nbformat.NotebookNode) -> set[str]:
    return {_clean(h) for c in nb.cells if c.cell_type == "markdown" for h in HEADING.findall(c.source)}


@pytest.mark.parametrize("assignment", COURSE.assignments())
def test_an_untouched_release_gives_one_line_per_error(assignment):
    path = _release(assignment)
    nb = nbformat.read(path, as_version=4)
    execute(nb, path.parent)
    errors = _errors(nb)
    headings = _headings(nb)
    exercises = {ex.id: ex for ex in COURSE.catalog().for_assignment(assignment)}
    assert errors, "an untouched release must stop at its stubs"
    for cell, text in errors:
        where = f"{path.name} cell {cell.id}: {text}"
        assert len(text.splitlines()) == 1, where
        needs, upstream, asked = NEEDS.match(text), UPSTREAM.match(text), ASKED.match(text)
        assert text == ANSWER or needs or upstream or asked, where
        for match in filter(None, (needs, upstream, asked)):
            if match["section"]:
                assert match["section"] in headings, where
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        exercise = exercises.get(grade_id)
        if exercise is not None and exercise.kind == "function":   # its test cell names it
            assert needs and needs["fn"] == exercise.function, where
        if exercise is not None and exercise.kind == "value":   # its test cell names the answer
            answer = upstream or asked
            assert answer and re.search(rf"\b{answer['name']}\b", cell.source), where
        if cell.metadata.get("nbgrader", {}).get("grade"):
            assert determine_grade(cell)[0] == 0, f"{where}: nbgrader must score a failing test cell 0"
    assert not [c.id for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if o.output_type == "stream" and o.name == "stderr"], "nothing may go to stderr"


def test_a_half_done_notebook_names_only_what_is_missing(tmp_path):
    release = _release("02_optimizers")
    solution = nbformat.read(COURSE.solutions / "02_optimizers" / release.name, as_version=4)
    nb = fill_submission(nbformat.read(release, as_version=4), solution, {"adam_step_impl": None})
    nbformat.write(nb, tmp_path / release.name)   # where the kernel looks up headings
    execute(nb, tmp_path)
    errors = {cell.id: text for cell, text in _errors(nb)}
    assert set(errors) == {"adam_step", "adam_first_step_answer", "adam_first_step", "race2", "race3",
                           "digits"}, errors
    for cell_id, text in errors.items():
        assert "`adam_step` from “5. Adam”" in text and len(text.splitlines()) == 1, text
    assert errors["adam_first_step"].startswith("NameError: `answer_adam_first_step` is not set: cell [")
    assert "stopped because `adam_step`" in errors["adam_first_step"]


def test_cascades_follow_reruns_and_fall_back_to_the_usual_traceback(tmp_path):
    """Fixing an exercise clears what was said about its cells; errors of other kinds (a wrong
    answer, a typo) keep IPython's traceback; a library stub's message is kept, in one line."""
    shutil.copy(_release("02_optimizers"), tmp_path)   # the kernel finds `adam_step`'s heading there
    stub = stub_message(COURSE.catalog().get("02_optimizers", "optimizers", "adam_step"))
    (tmp_path / "stub_library.py").write_text(
        f"def adam_step(*args, **kwargs):\n    raise NotImplementedError({stub!r})\n")
    cells = [
        "from course.notebook import explain_unfinished\nexplain_unfinished()",
        "def double(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()",
        "runs = {}\nfor k in ('a', 'b'):\n    runs[k] = double(k)",
        "runs['b']",
        "def double(x):\n    return x + x",
        "runs = {}\nfor k in ('a', 'b'):\n    runs[k] = double(k)\nraise ValueError('a bug of mine')",
        "runs['c']",
        "undefined_name_typo",
        "import stub_library\nstub_library.adam_step()",
        "assert double(2) == 5, 'double(2) should be 5'",
        "def halve(x):\n    raise NotImplementedError()\nhalve(1)",
        "%tb",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in cells])
    execute(nb, tmp_path)
    out = [(_errors(nbformat.v4.new_notebook(cells=[c])) or [(c, "")])[0][1] for c in nb.cells]
    assert out[2].startswith("NotImplementedError: this cell needs `double`") and "\n" not in out[2]
    assert out[3] == ("KeyError: 'b' is not in `runs`: cell [3], which fills it, stopped because "
                      "`double` is not finished yet.")
    usual = [i for i, text in enumerate(out[:11]) if "Traceback (most recent call last)" in text]
    assert usual == [5, 6, 7, 9], out
    assert "KeyError: 'c'" in out[6] and "runs['c']" in out[6]   # the stale record was taken over
    assert "NameError: name 'undefined_name_typo' is not defined" in out[7]
    assert out[8] == f"NotImplementedError: {stub.rstrip('.')} (yours is in “5. Adam”)."   # the edition's message
    assert "AssertionError: double(2) should be 5" in out[9]
    assert out[10].startswith("NotImplementedError: this cell needs `halve`")
    shown = "".join(o.get("text", "") for o in nb.cells[11].outputs) + out[11]
    assert "halve" in ANSI.sub("", shown) and "Traceback" in ANSI.sub("", shown), "%tb shows the full traceback"


def test_a_short_error_still_stops_run_all(tmp_path):
    path = _release("02_optimizers")
    nb = nbformat.read(path, as_version=4)
    with pytest.raises(CellExecutionError) as stopped:
        execute(nb, path.parent, allow_errors=False)   # the execute_reply said "error"
    first_stub = next(c for c in nb.cells if c.cell_type == "code" and c.get("outputs")
                      and any(o.output_type == "error" for o in c.outputs))
    assert first_stub.id == "sgd_step"
    assert "this cell needs `sgd_step`" in str(stopped.value)
    later = nb.cells[nb.cells.index(first_stub) + 1:]
    assert not any(c.get("outputs") for c in later if c.cell_type == "code"), "nothing ran after it"


@pytest.mark.parametrize("mode", ["autograde", "validate"])
def test_nothing_is_installed_when_nbgrader_runs_the_notebook(tmp_path, mode):
    """Under NBGRADER_EXECUTION (nbgrader's validate and autograde; grading kernels say
    "validate") every release's setup cell installs nothing, so errors keep their usual
    tracebacks; without it the one-line handler is installed."""
    setups = [nbformat.read(_release(a), as_version=4).cells[1] for a in COURSE.assignments()]
    assert all(c.metadata["nbgrader"]["grade_id"] == "setup" and "explain_unfinished()" in c.source
               for c in setups)
    probe = ("print(get_ipython().custom_exceptions, "
             "[cb for cbs in get_ipython().events.callbacks.values() for cb in cbs "
             "if 'course' in getattr(cb, '__module__', '')])")
    for env in ({"NBGRADER_EXECUTION": mode}, {}):
        cells = [*[c.source for c in setups], probe, "def f():\n    raise NotImplementedError()\nf()"]
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in cells])
        execute(nb, tmp_path, **env)
        printed = nb.cells[-2].outputs[0]["text"].strip()
        (_, stub_error), = _errors(nb)
        if env:
            assert printed == "() []", printed
            assert "Traceback" in stub_error and len(stub_error.splitlines()) > 3
        else:
            assert printed != "() []" and "course" in printed, printed
            assert len(stub_error.splitlines()) == 1


def test_names_a_cell_sets_and_mentions():
    sets, mentions = _names("import numpy as np\nmodels, hist = {}, {}\nfor lr in (1, 2):\n"
                            "    models[lr] = run(lr)\nhist.update(a=1)\ndef f():\n    inner = 1\n"
                            "print(answer)")
    assert sets == {"np", "models", "hist", "lr", "f"}
    assert {"run", "answer", "print"} <= mentions and "inner" not in sets
    assert _names("d[k] = 1", filled=False)[0] == frozenset()
    assert _clean("Exercise 3.1 (graded): `vjp_add` and **vjp_mul**") == "Exercise 3.1: vjp_add and vjp_mul"
    assert _clean("4.2 Gains (1 point)") == "4.2 Gains"
