"""Grading for deeptrain-course: nbgrader, headless, from source notebooks to LMS grades.

Data flow::

    solutions/<asg>/*.ipynb          instructor sources: solutions, visible + hidden tests
      -> build                       nbgrader generate_assignment (+ gradebook entry)
    notebooks/<asg>/*.ipynb          release notebooks, committed, never edited by hand
      -> students (or the student edition: notebooks + course with references stubbed)
      -> collect                     folder / LMS zip, names normalised, timestamps kept
    work/submitted/<student>/<asg>/
      -> autograde                   grade_submission(job) in a scratch course per submission
                                     (here, in worker processes or on Dask), then
                                     record(result): one writer, with an audit trail
    work/gradebook.db, work/autograded/, work/summary/<asg>.json
      -> manual import               hand-graded written answers (or formgrader)
      -> feedback / export / report  HTML without hidden tests, LMS CSV, score table + histogram

Hidden tests are one-line calls into :mod:`grader.checks` (one module per assignment, its
catalog in a .toml beside it), so feedback never shows their source or expected values.

Public pieces (imported on first use, so ``import grader.checks`` stays light in kernels):
:class:`Course`, :class:`GraderError`, :class:`UsageError`, :func:`nbgrader_config`, :func:`build`,
:func:`student_edition`, :func:`check_course`, :func:`collect`, :class:`Job`,
:class:`Result`, :func:`grade_submission`, :func:`record`, :func:`autograde`,
:func:`generate_feedback`, :func:`export_grades`, :func:`import_manual`, :func:`report`,
:func:`validate`, :func:`load_catalog`, :func:`main`.
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "Course": "config", "GraderError": "config", "UsageError": "config", "nbgrader_config": "config",
    "build": "release.build", "student_edition": "release.build", "check_course": "check",
    "collect": "autograde.collect", "Job": "autograde.pipeline", "Result": "autograde.pipeline",
    "grade_submission": "autograde.pipeline", "record": "autograde.record", "autograde": "autograde.scheduler",
    "generate_feedback": "results.feedback", "export_grades": "results.export",
    "import_manual": "results.export", "report": "results.report", "validate": "release.validate",
    "load_catalog": "catalog", "main": "cli",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use."""
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"grader.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'grader' has no attribute {name!r}")
