"""Shared set-up of the grader's scale-out tests (parallel, distributed, audit).

One built copy of the fixture course (tests/fixtures/grader) per pytest session with six mixed
submissions in a seed working area; :func:`fresh_work` copies that area for each run, and
:func:`serial_baseline` grades one copy serially, once per session, as the reference every
other way of grading must reproduce (:func:`snapshot` compares runs with paths, addresses and
timings normalized)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nbgrader.api import Gradebook

from grader.autograde.record import load_summary
from grader.cli import main
from grader.config import Course
from grader.release.fabricate import assemble_course, fill_submission
from grader.nb import read_notebook, write_notebook
from grader.autograde.scheduler import autograde
from test_grader_pipeline import ASG, DELEGATING, FIXTURE, GRADER_CORE, WRONG_SQUARE

__all__ = ["ASG", "GRADING", "STUDENTS", "jupyter_env", "seed", "fresh_work", "serial_baseline", "snapshot"]

#: Settings every run of these tests grades with (bob is one started day late).
GRADING = dict(late_penalty="0.5", due="2026-11-01 12:00:00")
BLAS_PROBE = ("import os\nprint(*(os.environ.get(v) for v in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', "
              "'MKL_NUM_THREADS')))\nprint(object())  # a memory address: differs between runs\nvar_3y = 18.0")
STDERR_SQUARE = "import sys\n\ndef square(x):\n    print('computing', file=sys.stderr)\n    return x * x"
STUDENTS = ("alice", "bob", "carol", "dave", "erin", "frank")


@contextlib.contextmanager
def jupyter_env(tmp: Path) -> Iterator[None]:
    """Clean Jupyter/IPython config (no developer settings leak in) and the venv's bin on PATH."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR"):
            mp.setenv(var, str(tmp / var.lower()))
        mp.setenv("PATH", os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
        yield


def seed(tmp_path_factory: pytest.TempPathFactory) -> Course:
    """The fixture course, built, with six submissions in its working area (made once per
    session): alice correct (and printing the kernel's BLAS thread settings and an address),
    bob partly wrong and late, carol untouched, dave delegating to the library, erin not
    JSON, frank correct but writing to stderr."""
    base = tmp_path_factory.getbasetemp() / "grader-scale"
    course = Course(base / "root", base / "root" / "seed-work")
    if (base / "done").exists():
        return course
    assemble_course(course.root, [*GRADER_CORE, "course/testing.py", "pyproject.toml"], overlay=FIXTURE)
    assert main(["--root", str(course.root), "--work", str(course.work), "build"]) == 0
    release = read_notebook(course.notebooks / ASG / "fixture.ipynb")
    solution = read_notebook(course.solutions / ASG / "fixture.ipynb")
    notebooks = {
        "alice": (fill_submission(release, solution, {"var_3y_answer": BLAS_PROBE}), "2026-11-01 09:00:00"),
        "bob": (fill_submission(release, solution, {"square_impl": WRONG_SQUARE}), "2026-11-02 11:00:00"),
        "carol": (release, None),
        "dave": (fill_submission(release, solution, {"square_impl": DELEGATING}), None),
        "frank": (fill_submission(release, solution, {"square_impl": STDERR_SQUARE}), None),
    }
    for student, (nb, stamp) in notebooks.items():
        folder = course.submitted / student / ASG
        write_notebook(nb, folder / "fixture.ipynb")
        if stamp:
            (folder / "timestamp.txt").write_text(stamp)
    (course.submitted / "erin" / ASG).mkdir(parents=True)
    (course.submitted / "erin" / ASG / "fixture.ipynb").write_text("{ not json")
    (base / "done").touch()
    return course


def fresh_work(tmp_path_factory: pytest.TempPathFactory, name: str, db: str | None = None) -> Course:
    """A new working area holding the seed's submissions (and, without ``db``, its gradebook
    with the built assignment)."""
    source = seed(tmp_path_factory)
    work = tmp_path_factory.mktemp(name)
    shutil.copytree(source.submitted, work / "submitted")
    if db is None:
        shutil.copy2(source.work / "gradebook.db", work / "gradebook.db")
    return Course(source.root, work, db)


def serial_baseline(tmp_path_factory: pytest.TempPathFactory) -> Course:
    """The seed graded serially, in this process (once per session)."""
    marker = tmp_path_factory.getbasetemp() / "grader-scale" / "serial"
    if marker.exists():
        return Course(seed(tmp_path_factory).root, Path(marker.read_text()))
    course = fresh_work(tmp_path_factory, "serial")
    results = autograde(course, ASG, **GRADING)
    assert sorted(r.student for r in results) == sorted(STUDENTS)
    marker.write_text(str(course.work))
    return course


_VOLATILE = [(re.compile(r"0x[0-9a-fA-F]+"), "0x?"),
             (re.compile(re.escape(tempfile.gettempdir()) + r"/[^\s'\"\\]+"), "<tmp>")]


def _normalize(value: Any) -> Any:
    """Text with memory addresses and temporary paths replaced; cell timings dropped."""
    if isinstance(value, str):
        for pattern, repl in _VOLATILE:
            value = pattern.sub(repl, value)
        return value
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items() if k not in ("execution", "seconds", "graded_at", "run")}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def snapshot(course: Course) -> dict[str, Any]:
    """Everything a run recorded, normalized: summary entries, the gradebook's grades, comments,
    late penalties and flags, and the autograded notebooks (what feedback is made from)."""
    book = {}
    with Gradebook(course.db_url) as gb:
        for sub in gb.assignment_submissions(ASG):
            for snb in sub.notebooks:
                book[(sub.student.id, snb.name)] = {
                    "late_penalty": snb.late_submission_penalty, "flagged": snb.flagged,
                    "grades": {g.name: (g.auto_score, g.manual_score, g.needs_manual_grade) for g in snb.grades},
                    "comments": {c.name: c.auto_comment for c in snb.comments}}
    autograded = {str(p.relative_to(course.autograded)): _normalize(json.loads(p.read_text()))
                  for p in sorted(course.autograded.glob(f"*/{ASG}/*.ipynb"))}
    return {"summary": _normalize(load_summary(course, ASG)["submissions"]), "gradebook": book,
            "autograded": autograded}
