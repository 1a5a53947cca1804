"""The six real assignments, end to end with real nbgrader (once each: the slow part of CI).

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

import html
import shutil

import nbformat
import pytest

from grader.config import REPO_ROOT, Course
from grader.release.build import build
from grader.check import check_course
from grader.demo import fabricate
from grader.results.feedback import generate_feedback
from grader.autograde.scheduler import autograde

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


@pytest.mark.parametrize("assignment", ["02_optimizers", "05_regularization", "06_training_in_practice"])
def test_half_done_submissions_grade_between_and_feedback_hides_tests(tmp_path, assignment):
    course = Course.at(REPO_ROOT, tmp_path / "work")
    build(course, [assignment], release_root=tmp_path / "release")  # registers it in this gradebook
    fabricate(course, assignment)
    results = {r.student: r for r in autograde(course, assignment)}
    assert all(r.outcome == "graded" for r in results.values())
    assert results["ada"].score > results["ben"].score > results["cy"].score == 0
    pages = generate_feedback(course, assignment)  # raises GraderError on any leak
    assert len(pages) == 3 * len(course.notebook_names(assignment))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_feedback_on_the_model_solution_is_small_and_keeps_outputs_and_images(tmp_path, assignment):
    """The page of a graded model solution stays under 300 KB (nbgrader's own: 0.27-0.67 MB
    after our image shrinking, 1.4-2.4 MB before) and still shows what the student needs:
    the score table, highlighted code, every printed line and every plot."""
    course = Course.at(REPO_ROOT, tmp_path / "work")
    build(course, [assignment], release_root=tmp_path / "release")
    for name in course.notebook_names(assignment):
        dest = course.submitted / "model" / assignment / f"{name}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(course.solutions / assignment / f"{name}.ipynb", dest)
    (result,) = autograde(course, assignment)
    pages = generate_feedback(course, assignment)  # raises GraderError on any hidden-test leak
    assert len(pages) == len(course.notebook_names(assignment))
    for page in pages:
        text, size = page.read_text(encoding="utf-8"), page.stat().st_size
        print(f"{page.name}: {size / 1000:.0f} KB")
        assert size < 300_000, f"{page.name}: {size} bytes"
        graded = nbformat.read(course.autograded / "model" / assignment / page.with_suffix(".ipynb").name, 4)
        outputs = [o for c in graded.cells if c.cell_type == "code" for o in c.outputs]
        plots = [o for o in outputs if "image/png" in o.get("data", {})]
        printed = [line for o in outputs if o.output_type == "stream" for line in o.text.splitlines() if line.strip()]
        assert text.count('src="data:image/png;base64,') == len(plots) > 0
        assert all(html.escape(line, quote=False) in text for line in printed) and printed
        nb = next(n for n in result.notebooks if n.name == page.stem)
        assert f"{page.stem} (Score: {nb.score:.1f} / {nb.max_score:.1f})" in text and 'class="highlight' in text
        assert '<span class="k">def</span>' in text  # keywords keep their colour
