"""The five real assignments, end to end with real nbgrader (once each: the slow part of CI).

- ``notebooks/`` is exactly what ``build`` makes of ``solutions/``; the releases hold no hidden
  test, rubric or grader reference; the catalog matches the graded cells;
- every solution notebook runs top to bottom and scores full marks, every untouched release
  scores zero on its autograded cells, and no graded cell writes to stderr;
- fabricated half-done submissions are graded between the two, and their feedback shows no
  hidden test.
The wrong answers and correct alternatives of each exercise are tested by calling the checks
directly (tests/test_checks_*.py), which is fast.
"""
from __future__ import annotations

import pytest

from grader.config import REPO_ROOT, Course
from grader.release.build import build
from grader.check import check_course
from grader.demo import fabricate
from grader.results.feedback import generate_feedback
from grader.autograde.scheduler import autograde

pytestmark = pytest.mark.slow

ASSIGNMENTS = Course.at(REPO_ROOT).assignments()


def test_there_are_five_assignments():
    assert ASSIGNMENTS == ["01_autodiff", "02_optimizers", "03_initialization", "04_batchnorm",
                           "05_regularization"]


def test_solutions_full_marks_releases_zero_and_notebooks_in_sync(tmp_path):
    lines: list[str] = []
    problems = check_course(Course.at(REPO_ROOT, tmp_path / "work"), out=lines.append)
    print("\n".join(lines))  # per-notebook run times, shown with -s or on failure
    assert problems == []
    assert len([line for line in lines if "solution: autograde took" in line]) == len(ASSIGNMENTS)


@pytest.mark.parametrize("assignment", ["02_optimizers", "05_regularization"])
def test_half_done_submissions_grade_between_and_feedback_hides_tests(tmp_path, assignment):
    course = Course.at(REPO_ROOT, tmp_path / "work")
    build(course, [assignment], release_root=tmp_path / "release")  # registers it in this gradebook
    fabricate(course, assignment)
    results = {r.student: r for r in autograde(course, assignment)}
    assert all(r.outcome == "graded" for r in results.values())
    assert results["ada"].score > results["ben"].score > results["cy"].score == 0
    pages = generate_feedback(course, assignment)  # raises GraderError on any leak
    assert len(pages) == 3 * len(course.notebook_names(assignment))
