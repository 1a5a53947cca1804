"""Autograding in two parts: grade one submission in a scratch course, then record it.

- :func:`grade_submission` (``Job -> Result``) is pure: it builds a throwaway course directory
  holding the submission and a *template* gradebook (the assignment's cells, no students), runs
  nbgrader's autograde there, and returns plain data: scores, comments, flags, times and the
  autograded notebooks' bytes. It touches nothing outside its scratch folder, so a process pool
  or a Dask worker can run it; jobs and results pickle.
- :func:`record` is the single writer: it merges a result into the main gradebook, writes the
  autograded notebooks to ``work/autograded/`` and the entry of ``work/summary/<asg>.json``.
  Call it from one process only (SQLite allows one writer).

The template holds no other student's data, so student code never sees classmates' grades.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.converters import Autograde
from nbgrader.utils import find_all_files, parse_utc

from grader.config import Course, GraderError, environment, kernel_env, nbgrader_config
from grader.nb import HIDDEN_BEGIN, run_converter

__all__ = ["Job", "Result", "NotebookResult", "grade_submission", "record", "autograde",
           "make_template", "checks_version", "make_job", "load_summary", "assignment_files"]


@dataclass(frozen=True)
class Job:
    """Everything needed to grade one student's submission of one assignment, as plain data."""

    assignment: str
    student: str
    notebooks: dict[str, bytes]          # notebook name (no .ipynb) -> submitted file
    template_db: bytes                   # SQLite file from make_template
    course_root: str                     # put first on the kernel's PYTHONPATH
    timestamp: str | None = None         # submission time (timestamp.txt), for late penalties
    extra_files: dict[str, bytes] = field(default_factory=dict)  # non-notebook assignment files
    timeout: int = 60                    # seconds per cell
    late_penalty: str = "none"           # see grader.config.nbgrader_config
    checks_version: str = ""
    settings: str = ""                   # grading settings (penalty, timeout, due date) as text

    @property
    def sha256(self) -> str:
        """Identity of the submission's content (notebooks and timestamp)."""
        h = hashlib.sha256()
        for name in sorted(self.notebooks):
            h.update(name.encode() + b"\0" + self.notebooks[name] + b"\0")
        h.update((self.timestamp or "").encode())
        return h.hexdigest()


@dataclass
class NotebookResult:
    """Grades of one notebook. ``cells`` maps grade_id -> auto_score (None: graded by hand),
    max_score, needs_manual_grade; ``score`` sums the auto scores, ``max_score`` all cells."""

    name: str
    outcome: str                          # graded | missing
    seconds: float
    score: float
    max_score: float
    cells: dict[str, dict[str, Any]]
    comments: dict[str, str | None]
    late_penalty: float | None
    flags: list[str]
    autograded: bytes | None = None


@dataclass
class Result:
    """What :func:`grade_submission` found; ``outcome`` is ``graded`` or ``error``."""

    assignment: str
    student: str
    outcome: str
    seconds: float
    sha256: str
    checks_version: str
    settings: str = ""
    timestamp: str | None = None
    message: str = ""
    notebooks: list[NotebookResult] = field(default_factory=list)
    log: str = ""

    @property
    def score(self) -> float:
        return sum(nb.score for nb in self.notebooks)

    @property
    def max_score(self) -> float:
        return sum(nb.max_score for nb in self.notebooks)


class _TimedAutograde(Autograde):
    """nbgrader's Autograde, timing each notebook (sanitizing + executing) into ``seconds``."""

    seconds: dict[str, float]

    def convert_single_notebook(self, notebook_filename: str) -> None:
        start = time.perf_counter()
        try:
            super().convert_single_notebook(notebook_filename)
        finally:
            name = Path(notebook_filename).stem
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def checks_version(course: Course) -> str:
    """Hash of every file under grader/checks: which checks produced a grade."""
    h = hashlib.sha256()
    for path in sorted(course.checks_dir.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".toml"):
            h.update(str(path.relative_to(course.checks_dir)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def make_template(db_url: str, assignment: str) -> bytes:
    """An SQLite gradebook holding only ``assignment``'s structure (due date, notebooks, cells,
    source of locked cells), copied from the gradebook at ``db_url``."""
    with tempfile.TemporaryDirectory(prefix="grader-template-") as tmp:
        path = Path(tmp) / "template.db"
        with Gradebook(db_url) as main, Gradebook(f"sqlite:///{path}") as tpl:
            try:
                a = main.find_assignment(assignment)
            except MissingEntry:
                raise GraderError(f"assignment {assignment} is not in the gradebook {db_url}; run "
                                  "`python -m grader build` first") from None
            tpl.add_assignment(a.name, duedate=a.duedate)
            for nb in a.notebooks:
                tpl.add_notebook(nb.name, a.name, kernelspec=nb.kernelspec)
                for c in nb.grade_cells:
                    tpl.add_grade_cell(c.name, nb.name, a.name, max_score=c.max_score, cell_type=c.cell_type)
                for c in nb.solution_cells:
                    tpl.add_solution_cell(c.name, nb.name, a.name)
                for c in nb.task_cells:
                    tpl.add_task_cell(c.name, nb.name, a.name, max_score=c.max_score, cell_type=c.cell_type)
                for c in nb.source_cells:
                    tpl.add_source_cell(c.name, nb.name, a.name, cell_type=c.cell_type, locked=c.locked,
                                        source=c.source, checksum=c.checksum)
        return path.read_bytes()


def _flags(nb: nbformat.NotebookNode) -> list[str]:
    """Reasons for an instructor to look at a graded notebook: stderr output or timeouts in
    test cells (nbgrader scores both as failures), and hidden checks that could not run."""
    flags = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade"):
            continue
        gid = meta["grade_id"]
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stderr":
                flags.append(f"{gid}: wrote to stderr")
            elif out.output_type == "error" and out.ename == "CellTimeoutError":
                flags.append(f"{gid}: timed out")
            elif out.output_type == "error" and HIDDEN_BEGIN in cell.source and (
                    "hidden test could not evaluate" in out.evalue
                    or (out.ename in ("ImportError", "ModuleNotFoundError") and "grader" in out.evalue)):
                flags.append(f"{gid}: hidden check error: {out.ename}: {out.evalue}")
    return sorted(set(flags))


def grade_submission(job: Job) -> Result:
    """Autograde one submission in a scratch course and return its grades as plain data."""
    start = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="grader-job-"))
    try:
        (scratch / "gradebook.db").write_bytes(job.template_db)
        source = scratch / "solutions" / job.assignment
        source.mkdir(parents=True)
        for rel, data in job.extra_files.items():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            (source / rel).write_bytes(data)
        submitted = scratch / "submitted" / job.student / job.assignment
        submitted.mkdir(parents=True)
        for name, data in job.notebooks.items():
            (submitted / f"{name}.ipynb").write_bytes(data)
        if job.timestamp:
            (submitted / "timestamp.txt").write_text(job.timestamp)
        config = nbgrader_config(Course(scratch, scratch), timeout=job.timeout, late_penalty=job.late_penalty)
        seconds: dict[str, float] = {}
        base = dict(assignment=job.assignment, student=job.student, sha256=job.sha256,
                    checks_version=job.checks_version, settings=job.settings, timestamp=job.timestamp)
        try:
            with environment(kernel_env(Path(job.course_root))):
                log = run_converter(_TimedAutograde, config, assignment=job.assignment,
                                    student=job.student, force=True, create_student=True,
                                    seconds=seconds)
        except GraderError as exc:
            return Result(outcome="error", seconds=time.perf_counter() - start, message=str(exc), **base)
        notebooks = _read_grades(scratch, job, seconds)
        return Result(outcome="graded", seconds=time.perf_counter() - start, notebooks=notebooks,
                      log=log, **base)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _read_grades(scratch: Path, job: Job, seconds: dict[str, float]) -> list[NotebookResult]:
    results = []
    out_dir = scratch / "autograded" / job.student / job.assignment
    with Gradebook(f"sqlite:///{scratch / 'gradebook.db'}") as gb:
        for snb in gb.find_submission(job.assignment, job.student).notebooks:
            cells = {g.name: {"auto_score": g.auto_score, "max_score": g.max_score,
                              "needs_manual_grade": g.needs_manual_grade} for g in snb.grades}
            path = out_dir / f"{snb.name}.ipynb"
            data = path.read_bytes() if path.exists() else None
            results.append(NotebookResult(
                name=snb.name, outcome="graded" if data is not None else "missing",
                seconds=round(seconds.get(snb.name, 0.0), 3),
                score=sum(c["auto_score"] or 0.0 for c in cells.values()),
                max_score=sum(c["max_score"] for c in cells.values()), cells=cells,
                comments={c.name: c.auto_comment for c in snb.comments},
                late_penalty=snb.late_submission_penalty,
                flags=_flags(nbformat.reads(data.decode(), as_version=4)) if data else [],
                autograded=data))
    return sorted(results, key=lambda r: r.name)


def record(result: Result, course: Course) -> None:
    """Merge a result into the main gradebook, work/autograded/ and the summary (one writer).

    Manual scores already in the gradebook stay; a cell with one is marked for review again,
    as nbgrader does when it regrades."""
    if result.outcome == "graded":
        a, s = result.assignment, result.student
        with Gradebook(course.db_url) as gb:
            gb.update_or_create_student(s)
            gb.update_or_create_submission(a, s, timestamp=parse_utc(result.timestamp) if result.timestamp else None)
            for nb in result.notebooks:
                snb = gb.find_submission_notebook(nb.name, a, s)
                snb.late_submission_penalty = nb.late_penalty
                snb.flagged = bool(snb.flagged) or bool(nb.flags)
                for gid, cell in nb.cells.items():
                    grade = gb.find_grade(gid, nb.name, a, s)
                    grade.auto_score = cell["auto_score"]
                    grade.needs_manual_grade = cell["needs_manual_grade"] or grade.manual_score is not None
                for gid, text in nb.comments.items():
                    gb.find_comment(gid, nb.name, a, s).auto_comment = text
            gb.db.commit()
        dest = course.autograded / s / a
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for nb in result.notebooks:
            if nb.autograded is not None:
                (dest / f"{nb.name}.ipynb").write_bytes(nb.autograded)
        if result.timestamp:
            (dest / "timestamp.txt").write_text(result.timestamp)
    _update_summary(course, result)


def load_summary(course: Course, assignment: str) -> dict[str, Any]:
    """``work/summary/<assignment>.json``: per student, the last autograde's outcome and grades."""
    path = course.summaries / f"{assignment}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"assignment": assignment, "submissions": {}}


def _update_summary(course: Course, result: Result) -> None:
    summary = load_summary(course, result.assignment)
    entry = {k: v for k, v in asdict(result).items() if k not in ("notebooks", "log", "assignment", "student")}
    entry.update(score=result.score, max_score=result.max_score, seconds=round(result.seconds, 3),
                 graded_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    entry["notebooks"] = {nb.name: {k: v for k, v in asdict(nb).items() if k not in ("name", "autograded")}
                          for nb in result.notebooks}
    summary["submissions"][result.student] = entry
    summary["submissions"] = dict(sorted(summary["submissions"].items()))
    course.summaries.mkdir(parents=True, exist_ok=True)
    path = course.summaries / f"{result.assignment}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # atomic: an interrupted run never leaves half a summary


def assignment_files(course: Course, assignment: str) -> dict[str, bytes]:
    """Non-notebook files of the assignment's source folder (data the notebooks read)."""
    source = course.solutions / assignment
    ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.ipynb"]
    return {os.path.relpath(p, source): Path(p).read_bytes() for p in find_all_files(str(source), ignore)}


def make_job(course: Course, assignment: str, student: str, folder: Path, template_db: bytes,
             **options: Any) -> Job:
    """A job for the notebooks in ``folder`` (and its timestamp.txt, if any); ``options`` are
    further :class:`Job` fields (timeout, late_penalty, checks_version, settings)."""
    stamp = folder / "timestamp.txt"
    timestamp = stamp.read_text().strip() if stamp.exists() else ""
    return Job(assignment=assignment, student=student,
               notebooks={p.stem: p.read_bytes() for p in sorted(folder.glob("*.ipynb"))},
               template_db=template_db, course_root=str(course.root), timestamp=timestamp or None,
               extra_files=assignment_files(course, assignment), **options)


def autograde(course: Course, assignment: str, students: Iterable[str] | None = None, *,
              force: bool = False, timeout: int = 60, late_penalty: str = "none",
              due: str | None = None, on_result: Callable[[Result | None, str], None] | None = None
              ) -> list[Result]:
    """Grade every submission in work/submitted/*/<assignment> (or only ``students``).

    A submission whose content and checks are unchanged since its last successful grading is
    skipped unless ``force``: re-running is idempotent and an interrupted run resumes.
    ``due`` (ISO 8601, e.g. 2026-11-01T23:59:00+01:00) sets the deadline for late penalties.
    ``on_result(result, student)`` reports progress (result None: skipped, up to date).
    """
    with Gradebook(course.db_url) as gb:
        if due is not None:
            gb.update_or_create_assignment(assignment, duedate=parse_utc(due))
        try:
            duedate = gb.find_assignment(assignment).duedate
        except MissingEntry:
            duedate = None  # make_template below says what to do
    template = make_template(course.db_url, assignment)
    version = checks_version(course)
    settings = f"late_penalty={late_penalty} timeout={timeout} due={duedate}"
    folders = {p.parent.name: p for p in sorted(course.submitted.glob(f"*/{assignment}")) if p.is_dir()}
    wanted = list(students) if students is not None else sorted(folders)
    missing = [s for s in wanted if s not in folders]
    if missing:
        raise GraderError(f"no submission of {assignment} for {missing} under {course.submitted}")
    done = load_summary(course, assignment)["submissions"]
    results = []
    for student in wanted:
        job = make_job(course, assignment, student, folders[student], template, timeout=timeout,
                       late_penalty=late_penalty, checks_version=version, settings=settings)
        last = done.get(student, {})
        unchanged = all(last.get(k) == v for k, v in (("outcome", "graded"), ("sha256", job.sha256),
                                                      ("checks_version", version), ("settings", settings)))
        if not force and unchanged and (course.autograded / student / assignment).is_dir():
            if on_result:
                on_result(None, student)
            continue
        result = grade_submission(job)
        record(result, course)
        results.append(result)
        if on_result:
            on_result(result, student)
    return results
