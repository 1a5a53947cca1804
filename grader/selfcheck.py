"""``selfcheck``: a self-learner grades their own notebook with the hidden checks.

The notebook is graded exactly as ``autograde`` grades a submission (a fresh release build as the
template, a sandboxed kernel running the student edition of ``course``, the hidden checks in a
checker process beside it), but nothing is recorded: no gradebook of the course is touched and
the notebook itself is not changed. Per exercise it says: pass, the named mistake the hidden
check found, the error the cell raised, or that the cell is graded by hand. Hidden values and
hidden-test source are never shown, as in feedback.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from grader.release.build import build
from grader.config import Course, UsageError
from grader.autograde.pipeline import NotebookResult, Result, checks_version, grade_submission, make_job, make_template

__all__ = ["selfcheck", "ExerciseLine", "exercise_lines", "render"]


def _assignment_of(course: Course, notebook: Path, assignment: str | None) -> str:
    """The assignment a notebook belongs to: the one named, else its folder's name, else the
    assignment that has a notebook of that name."""
    if assignment:
        course.check_assignment(assignment)
        return assignment
    known = course.assignments()
    if notebook.parent.name in known:
        return notebook.parent.name
    owners = [a for a in known if (course.solutions / a / notebook.name).exists()]
    if len(owners) == 1:
        return owners[0]
    raise UsageError(f"cannot tell which assignment {notebook.name} belongs to (its folder "
                      f"{notebook.parent.name!r} is not one): name it with --assignment, one of: {', '.join(known)}.")


def selfcheck(course: Course, notebook: Path, *, assignment: str | None = None, timeout: int = 60) -> Result:
    """Grade ``notebook`` against the hidden checks of its assignment, recording nothing."""
    if not notebook.is_file():
        raise UsageError(f"{notebook} is not a file: give the path of your .ipynb notebook.")
    name = _assignment_of(course, notebook, assignment)
    with tempfile.TemporaryDirectory(prefix="grader-selfcheck-") as tmp:
        release, db_url = Path(tmp) / "release", f"sqlite:///{tmp}/gradebook.db"
        course = Course.at(course.root, Path(tmp) / "work")  # nbgrader's folders, never the course's
        build(course, [name], release_root=release, db_url=db_url)
        folder = Path(tmp) / "submitted" / name
        folder.mkdir(parents=True)
        shutil.copyfile(notebook, folder / notebook.name)  # autograde matches a renamed notebook
        template = make_template(db_url, name, release / name)
        return grade_submission(make_job(course, name, "selfcheck", folder, template, timeout=timeout,
                                         checks_version=checks_version(course, name)))


@dataclass(frozen=True)
class ExerciseLine:
    """One graded cell as the self-learner sees it."""

    grade_id: str
    score: float | None      # None: graded by hand
    max_score: float
    verdict: str             # "pass", or what is wrong


def _errors(data: bytes | None) -> dict[str, str]:
    """grade_id -> the first line of the error a graded cell of the autograded notebook shows."""
    if data is None:
        return {}
    out = {}
    for cell in nbformat.reads(data.decode(), as_version=4).cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if gid and errors:
            first = (str(errors[-1].get("evalue", "")).strip().splitlines() or [""])[0]
            out[gid] = f"{errors[-1].get('ename', 'Error')}: {first}".rstrip(": ")
    return out


def exercise_lines(nb: NotebookResult) -> list[ExerciseLine]:
    """Per graded cell, in the notebook's order: the score and the reason it is not full."""
    errors = _errors(nb.autograded)
    lines = []
    for gid, cell in nb.cells.items():
        score, top = cell["auto_score"], cell["max_score"]
        if score is None:
            verdict = "graded by hand (not checked here)"
        elif score >= top:
            verdict = "pass"
        else:
            diagnosis = nb.diagnoses.get(gid, "").strip()
            verdict = diagnosis or errors.get(gid) or "the cell's tests fail"
        lines.append(ExerciseLine(gid, score, top, verdict))
    return lines


def render(result: Result) -> str:
    """The report ``python -m grader selfcheck`` prints."""
    if result.outcome != "graded":
        return f"could not grade the notebook: {result.message}"
    out = []
    for nb in result.notebooks:
        if nb.outcome != "graded":
            out.append(f"{result.assignment}/{nb.name}: {nb.outcome}: {nb.message}")
            continue
        lines = exercise_lines(nb)
        width = max((len(line.grade_id) for line in lines), default=0)
        out.append(f"{result.assignment}/{nb.name}, graded as autograde grades it (hidden checks included):")
        for line in lines:
            score = "  -" if line.score is None else f"{line.score:3g}"
            text = line.verdict.replace("\n", "\n" + " " * (width + 16))
            out.append(f"  {line.grade_id:<{width}}  {score}/{line.max_score:<3g}  {text}")
        auto = [line for line in lines if line.score is not None]
        out.append(f"  autograded: {sum(line.score for line in auto):g}/{sum(line.max_score for line in auto):g}"
                   f" points; {sum(line.max_score for line in lines if line.score is None):g} more graded by hand")
        out += [f"  note: {flag}" for flag in nb.flags]
    return "\n".join(out)
