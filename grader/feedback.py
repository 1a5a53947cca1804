"""Feedback HTML for students: nbgrader's generate_feedback, minus every trace of hidden tests.

nbgrader shows hidden tests in feedback by design (its issues #917, #1363). Two layers keep
them out: :class:`HideHiddenTests` removes the hidden-test regions from the cells and cuts the
error tracebacks of those cells down to ``ExceptionName: message``; then :func:`verify_feedback`
reads the rendered text of every page and rejects (deletes) any that still shows a hidden-test
line, a hidden-test marker or a path into grader/.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

from nbconvert.exporters.exporter import ResourcesDict
from nbformat import NotebookNode
from nbgrader.preprocessors import ClearHiddenTests

from grader.config import Course, GraderError

__all__ = ["HideHiddenTests", "generate_feedback", "verify_feedback", "forbidden_texts"]


class HideHiddenTests(ClearHiddenTests):
    """Drop hidden-test regions and shorten the tracebacks of the cells that had one."""

    enforce_metadata = False  # feedback only reads; the source was validated at build time

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict,
                        index: int) -> tuple[NotebookNode, ResourcesDict]:
        if self._remove_hidden_test_region(cell):
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources


def forbidden_texts(course: Course, assignment: str) -> list[str]:
    """What must never reach a student: hidden-test lines, the markers, grader paths."""
    from grader.nb import HIDDEN_BEGIN, HIDDEN_END, hidden_test_lines, read_notebook

    texts = [HIDDEN_BEGIN, HIDDEN_END, "grader.checks", "grader/checks", "<hidden test>",
             str(course.root / "grader")]
    for path in sorted((course.solutions / assignment).glob("*.ipynb")):
        texts += hidden_test_lines(read_notebook(path))
    return sorted(set(texts))


def _visible_text(page: str) -> str:
    """The page's text as a reader sees it: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())


def verify_feedback(course: Course, assignment: str, pages: list[Path]) -> list[str]:
    """Problems found in feedback pages (empty when clean); offending pages are deleted."""
    needles = [" ".join(t.split()) for t in forbidden_texts(course, assignment)]
    problems = []
    for page in pages:
        text = _visible_text(page.read_text(encoding="utf-8"))
        leaked = [n for n in needles if n in text]
        if leaked:
            problems.append(f"{page}: shows {leaked[0]!r}; page deleted")
            page.unlink()
    return problems


def generate_feedback(course: Course, assignment: str, students: list[str] | None = None) -> list[Path]:
    """Write ``work/feedback/<student>/<assignment>/<notebook>.html`` for autograded submissions
    and verify every page; GraderError lists any leak (those pages are deleted)."""
    from nbgrader.converters import GenerateFeedback

    from grader.config import nbgrader_config
    from grader.nb import run_converter

    config = nbgrader_config(course)
    for student in students or ["*"]:
        run_converter(GenerateFeedback, config, assignment=assignment, student=student, force=True)
    pages = sorted(p for student in (students or ["*"])
                   for p in course.feedback.glob(f"{student}/{assignment}/*.html"))
    problems = verify_feedback(course, assignment, pages)
    if problems:
        raise GraderError("feedback leaked hidden-test content:\n" + "\n".join(problems))
    return pages
