"""The six real assignments, end to end with real nbgrader (once each: the slow part of CI).

- ``notebooks/`` is exactly what ``build`` makes of ``solutions/``; the releases hold no hidden
  test, rubric or grader reference; the catalog matches the graded cells;
- every solution notebook runs top to bottom and scores full marks, every untouched release
  scores zero on its autograded cells, and no graded cell writes to stderr.
The assignments graded as a class (half-done and tampering submissions, feedback, PostgreSQL):
tests/test_real_class.py.
The wrong answers and correct alternatives of each exercise are tested by calling the checks
directly (tests/test_checks_*.py), which is fast.
"""
from __future__ import annotations

import pytest

from grader.config import REPO_ROOT, Course
from grader.check import check_course

pytestmark = pytest.mark.slow

ASSIGNMENTS = Course.at(REPO_ROOT).assignments()


def test_there_are_six_assignments():
    assert ASSIGNMENTS == ["01_autodiff", "02_optimizers", "03_initialization", "04_batchnorm",
                           "05_regularization", "06_training_in_practice"]


def test_solutions_full_marks_releases_zero_and_notebooks_in_sync(tmp_path):
    lines: list[str] = []
    problems = check_course(Course.at(REPO_ROOT, tmp_path / "work"), out=lines.append)
    print("\n".join(lines))  # per-notebook run times, shown with -s or on failure
    assert problems == []
    assert len([line for line in lines if "solution: autograde took" in line]) == len(ASSIGNMENTS)
