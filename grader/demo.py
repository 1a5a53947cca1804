"""``python -m grader.demo``: the whole instructor workflow once, on three made-up students.

It builds the release notebooks from solutions/, fabricates three submissions of every
assignment — ``ada`` (the model answers), ``ben`` (every other code answer left undone),
``cy`` (the release untouched) —, autogrades them with real nbgrader, writes their feedback
and prints the grade tables. Everything it writes goes to a working area (default
``demo-out/work``), never into the course's own ``work/``.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from grader.release.build import build
from grader.cli import main as grader_cli
from grader.config import Course
from grader.release.fabricate import fill_submission
from grader.nb import read_notebook, write_notebook
from grader.results.report import report

STUDENTS = ("ada", "ben", "cy")


def fabricate(course: Course, assignment: str) -> None:
    """Write the three demo students' submissions of ``assignment`` into the working area."""
    for name in course.notebook_names(assignment):
        release = read_notebook(course.notebooks / assignment / f"{name}.ipynb")
        solution = read_notebook(course.solutions / assignment / f"{name}.ipynb")
        answers = [c.metadata.nbgrader.grade_id for c in solution.cells if c.cell_type == "code"
                   and c.metadata.get("nbgrader", {}).get("solution")]
        undone = {grade_id: None for grade_id in answers[1::2]}  # None keeps the release's stub
        notebooks = {"ada": fill_submission(release, solution),
                     "ben": fill_submission(release, solution, undone),
                     "cy": release}
        for student, nb in notebooks.items():
            folder = course.submitted / student / assignment
            folder.mkdir(parents=True, exist_ok=True)
            write_notebook(nb, folder / f"{name}.ipynb")


def run(work: Path, assignments: list[str] | None = None) -> None:
    course = Course.at(None, work)
    if work.exists():
        shutil.rmtree(work)  # a fresh gradebook: the demo shows one complete run
    start = time.perf_counter()
    for path in build(course, assignments):
        print(f"built {path.relative_to(course.root)}")
    for assignment in assignments or course.assignments():
        fabricate(course, assignment)
        common = ["--root", str(course.root), "--work", str(work)]
        grader_cli([*common, "autograde", assignment])
        grader_cli([*common, "feedback", assignment])
        print(report(course, assignment, students=True), end="\n\n")
    print(f"feedback pages in {course.feedback}; gradebook {course.db_url}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="demo-out/work", help="working area (default %(default)s)")
    parser.add_argument("assignments", nargs="*", help="assignments to run (default: all)")
    args = parser.parse_args(argv)
    run(Path(args.work).resolve(), args.assignments or None)


if __name__ == "__main__":
    main()
