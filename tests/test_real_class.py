"""The six real assignments graded as a class, once, by the real commands (``build``, then
``autograde --workers 2`` per assignment, into SQLite). Four students per assignment: the demo's
ada (the model answers), ben (every other answer left undone) and cy (the untouched release),
and a tamperer whose first answer cell silences every hidden check that follows. Then:

- every submission is graded; ada > ben > cy = 0, only the tamperer is flagged, and no feedback
  page shows a hidden test;
- the model's feedback page is small and keeps the outputs and plots;
- the same submissions graded into PostgreSQL record the same scores, flags and outcomes (a
  gradebook has no cell order, and PostgreSQL returns cells in another order than SQLite).

``check`` (tests/test_assignments.py) grades each solution and untouched release on its own.
"""
from __future__ import annotations

import html
import shutil
from pathlib import Path

import nbformat
import pytest

from _grader_scale import jupyter_env
from grader.autograde.record import load_summary
from grader.cli import main
from grader.config import REPO_ROOT, Course
from grader.demo import fabricate
from grader.nb import read_notebook, write_notebook
from grader.release.fabricate import assemble_course, fill_submission
from grader.results.feedback import generate_feedback

pytestmark = pytest.mark.slow

ASSIGNMENTS = Course.at(REPO_ROOT).assignments()
STUDENTS = ("ada", "ben", "cy", "tamper")
TAMPER = ("import sys\n_c = sys.modules.get('grader.checks')\nif _c is not None:\n"
          "    type(_c).__getattr__ = lambda self, name: type('M', (), {'__getattr__': "
          "lambda s, n: (lambda *a, **k: None)})()\n")

Grades = dict[str, tuple[dict[str, float | None], list[str], str]]


def _cli(course: Course, *args: str) -> int:
    db = ["--db", course.db] if course.db else []  # None: the working area's SQLite
    return main(["--root", str(course.root), "--work", str(course.work), *db, *args])


def _tamper(course: Course, assignment: str) -> None:
    """The tamperer's notebooks: the model answers, the first one preceded by the tampering code."""
    for name in course.notebook_names(assignment):
        solution = read_notebook(course.solutions / assignment / f"{name}.ipynb")
        first = next(c for c in solution.cells
                     if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution"))
        release = read_notebook(course.notebooks / assignment / f"{name}.ipynb")
        nb = fill_submission(release, solution, {first.metadata.nbgrader.grade_id: TAMPER + first.source})
        write_notebook(nb, course.submitted / "tamper" / assignment / f"{name}.ipynb")


def _grade_all(course: Course) -> None:
    assert _cli(course, "build") == 0
    for assignment in ASSIGNMENTS:
        assert _cli(course, "autograde", assignment, "--workers", "2") == 0, assignment


def _grades(course: Course) -> Grades:
    """assignment/student/notebook -> (auto score per cell, flags, outcome)."""
    out: Grades = {}
    for assignment in ASSIGNMENTS:
        for student, entry in load_summary(course, assignment)["submissions"].items():
            for name, nb in entry["notebooks"].items():
                out[f"{assignment}/{student}/{name}"] = ({gid: c["auto_score"] for gid, c in nb["cells"].items()},
                                                        sorted(nb["flags"]), nb["outcome"])
    return out


@pytest.fixture(scope="module", autouse=True)
def env(tmp_path_factory):
    with jupyter_env(tmp_path_factory.mktemp("jupyter")):
        yield


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Course:
    root = assemble_course(tmp_path_factory.mktemp("class"), ["course", "grader", "solutions", "notebooks",
                                                              "pyproject.toml"], source=REPO_ROOT)
    course = Course(root, root / "work")
    for assignment in ASSIGNMENTS:
        fabricate(course, assignment)
        _tamper(course, assignment)
    _grade_all(course)
    return course


def test_every_submission_is_graded_between_the_model_and_zero(graded):
    grades = _grades(graded)
    assert len(grades) == len(STUDENTS) * sum(len(graded.notebook_names(a)) for a in ASSIGNMENTS)
    for key, (cells, flags, outcome) in grades.items():
        student = key.split("/")[1]
        assert outcome == "graded" and bool(flags) == (student == "tamper"), (key, flags)
        if student == "ada":
            assert all(score is None or score > 0 for score in cells.values()), (key, cells)
    for assignment in ASSIGNMENTS:
        score = {s: e["score"] for s, e in load_summary(graded, assignment)["submissions"].items()}
        assert score["ada"] > score["ben"] > score["cy"] == 0 == score["tamper"], (assignment, score)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_feedback_hides_the_tests_and_the_models_page_is_small_and_keeps_outputs_and_images(graded, assignment):
    """No page shows a hidden test (generate_feedback raises GraderError on any leak). The
    model's page stays under 300 KB (nbgrader's own: 0.27-0.67 MB after our image shrinking,
    1.4-2.4 MB before) and still shows what the student needs: the score table, highlighted
    code, every printed line and every plot."""
    names = graded.notebook_names(assignment)
    pages = generate_feedback(graded, assignment)
    assert sorted(p.relative_to(graded.feedback).parts[0] for p in pages) == sorted(STUDENTS * len(names))
    entry = load_summary(graded, assignment)["submissions"]["ada"]
    for page in [p for p in pages if p.relative_to(graded.feedback).parts[0] == "ada"]:
        text, size = page.read_text(encoding="utf-8"), page.stat().st_size
        print(f"{page.name}: {size / 1000:.0f} KB")
        assert size < 300_000, f"{page.name}: {size} bytes"
        autograded = nbformat.read(graded.autograded / "ada" / assignment / page.with_suffix(".ipynb").name, 4)
        outputs = [o for c in autograded.cells if c.cell_type == "code" for o in c.outputs]
        plots = [o for o in outputs if "image/png" in o.get("data", {})]
        printed = [line for o in outputs if o.output_type == "stream" for line in o.text.splitlines() if line.strip()]
        assert text.count('src="data:image/png;base64,') == len(plots) > 0
        assert all(html.escape(line, quote=False) in text for line in printed) and printed
        nb = entry["notebooks"][page.stem]
        assert f"{page.stem} (Score: {nb['score']:.1f} / {nb['max_score']:.1f})" in text and 'class="highlight' in text
        assert '<span class="k">def</span>' in text  # keywords keep their colour


def test_postgresql_records_what_sqlite_records(graded, postgres_url, tmp_path):
    course = Course(graded.root, tmp_path / "work", postgres_url)
    shutil.copytree(graded.submitted, course.submitted, ignore=lambda folder, names:
                    ["cy"] if Path(folder) == graded.submitted else [])  # the release: nothing to compare
    _grade_all(course)
    assert not (course.work / "gradebook.db").exists()
    on_sqlite = {key: value for key, value in _grades(graded).items() if key.split("/")[1] != "cy"}
    assert _grades(course) == on_sqlite
