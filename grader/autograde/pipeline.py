"""Autograding in two parts: grade one submission in a scratch course, then record it.

- :func:`grade_submission` (``Job -> Result``) is pure: it builds a throwaway course directory
  holding the submission and a *template* gradebook (the assignment's cells, no students), runs
  nbgrader's autograde there, and returns plain data: scores, comments, flags, times and the
  autograded notebooks' bytes. It touches nothing outside its scratch folder, so a process pool
  or a Dask worker can run it; jobs and results pickle.
- :func:`grader.autograde.record.record` is the single writer: it merges a result into the main
  gradebook, ``work/autograded/`` and the audit tables; :func:`grader.autograde.scheduler.autograde`
  decides what needs grading, runs the jobs (here, in worker processes or on Dask) and
  records the results from one process.

The template holds no other student's data, so student code never sees classmates' grades.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.converters import Autograde
from nbgrader.preprocessors import CheckCellMetadata, Execute
from nbgrader.utils import find_all_files

from grader.config import BLAS_THREAD_VARS, LMS_LATE, Course, GraderError, UsageError, nbgrader_config
from grader.autograde.execute import Context, NotebookRun, SandboxExecute
from grader.nb import CompiledCheckCellMetadata, run_converter
from grader.autograde.preflight import Prepared, TemplateNotebook, load_template, prepare
from grader.autograde.score import NotebookScore, expected_checks, score_notebook, zero_cells
from grader.sandbox.box import isolation
from grader.sandbox.limits import Limits

__all__ = ["Job", "Result", "NotebookResult", "grade_submission", "make_template", "checks_version",
           "make_job", "assignment_files", "kernel_library"]


@dataclass(frozen=True)
class Job:
    """Everything needed to grade one student's submission of one assignment, as plain data."""

    assignment: str
    student: str
    notebooks: dict[str, bytes]          # notebook name (no .ipynb) -> submitted file
    template_db: bytes                   # SQLite file from make_template
    course_root: str                     # put first on the kernel's PYTHONPATH
    timestamp: str | None = None         # submission time (timestamp.txt), for late penalties
    lms_late: bool = False               # no timestamp.txt, but the LMS marked it late (see make_job)
    extra_files: dict[str, bytes] = field(default_factory=dict)  # non-notebook assignment files
    timeout: int = 60                    # seconds per cell
    late_penalty: str = "none"           # see grader.config.nbgrader_config
    checks_version: str = ""
    settings: str = ""                   # grading settings (penalty, timeout, due date) as text
    limits: dict[str, float] = field(default_factory=dict)  # grader.sandbox.limits.Limits overrides

    @property
    def sha256(self) -> str:
        """Identity of the submission's content (notebooks and timestamp)."""
        h = hashlib.sha256()
        for name in sorted(self.notebooks):
            h.update(name.encode() + b"\0" + self.notebooks[name] + b"\0")
        h.update((self.timestamp or "").encode())
        if self.lms_late:
            h.update(b"\0lms late")
        return h.hexdigest()

    @property
    def late_note(self) -> str:
        """What the LMS's late marker does to this job ("" without one), for instructor and student."""
        if not self.lms_late:
            return ""
        if self.timestamp is None:
            return ("the LMS marked this late, but the assignment has no due date, so the marker cannot be "
                    "applied and no late penalty is charged: autograde again with --due (e.g. --due "
                    "2026-11-01T23:59:00+01:00)")
        if self.late_penalty == "none":
            return "the LMS marked this late; its time is unknown, so it is recorded as one day late (no --late-penalty)"
        return "the LMS marked this late; its time is unknown, so it is charged as at most one day late"


@dataclass
class NotebookResult:
    """Grades of one notebook. ``cells`` maps grade_id -> auto_score (None: graded by hand),
    max_score, needs_manual_grade; ``score`` sums the auto scores, ``max_score`` all cells.
    ``flags`` ask for an instructor's review ("<grade_id>: why" for a cell); ``message`` says
    what happened to the notebook (repairs, limits hit); ``diagnoses`` maps a graded cell whose
    hidden check failed to the check's message (what ``report --mistakes`` counts)."""

    name: str
    outcome: str                          # graded | missing | unreadable | kernel died | time limit | error
    seconds: float
    score: float
    max_score: float
    cells: dict[str, dict[str, Any]]
    comments: dict[str, str | None]
    late_penalty: float | None
    flags: list[str]
    autograded: bytes | None = None
    message: str = ""
    diagnoses: dict[str, str] = field(default_factory=dict)


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
    late: str = ""                       # what the LMS's late marker did (Job.late_note)
    notebooks: list[NotebookResult] = field(default_factory=list)
    log: str = ""
    flags: list[str] = field(default_factory=list)   # every notebook's flags, "<notebook>: <flag>"
    isolation: str = ""                               # grader.sandbox.box mode the kernels ran in

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


def checks_version(course: Course, assignment: str | None = None) -> str:
    """Hash of the files under grader/checks: which checks produced a grade. With
    ``assignment``, another assignment's module (the .py and .toml whose catalog names that
    assignment) is left out, so fixing one assignment's checks leaves the others up to date."""
    others = set()
    if assignment is not None:
        for toml in course.checks_dir.glob("*.toml"):
            if tomllib.loads(toml.read_text(encoding="utf-8")).get("assignment") != assignment:
                others.add(toml.stem)
    h = hashlib.sha256()
    for path in sorted(course.checks_dir.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".toml") and not (
                path.parent == course.checks_dir and path.stem in others):
            h.update(str(path.relative_to(course.checks_dir)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def kernel_library(course_root: Path) -> Path:
    """A folder holding the student edition of ``course_root``'s ``course/`` (see
    :func:`grader.release.build.edition_library`): what grading kernels import. Built once per host and
    content (library and catalogs), in a private folder that sandbox uids may read."""
    from grader.release.build import edition_library

    course = Course(course_root, course_root)
    h = hashlib.sha256()
    for path in sorted([*(course_root / "course").rglob("*.py"), *course.checks_dir.glob("*.toml")]):
        if "__pycache__" not in path.parts:
            h.update(str(path.relative_to(course_root)).encode() + b"\0" + path.read_bytes())
    folder = Path(tempfile.gettempdir()) / f"grader-edition-{os.geteuid()}-{h.hexdigest()[:16]}"
    try:
        st = folder.lstat()
        if st.st_uid != os.geteuid() or st.st_mode & 0o022 or not folder.is_dir():
            raise GraderError(f"{folder} is not this user's: remove it, the grader builds it again")
        return folder
    except FileNotFoundError:
        pass
    tmp = Path(tempfile.mkdtemp(prefix="grader-edition-build-"))
    try:
        edition_library(course, tmp)
        for root, dirs, names in os.walk(tmp):
            os.chmod(root, 0o755)
            for name in names:
                os.chmod(os.path.join(root, name), 0o644)
        os.rename(tmp, folder)
    except OSError:  # another worker won the race
        shutil.rmtree(tmp, ignore_errors=True)
        if not folder.is_dir():
            raise
    return folder


def make_template(db_url: str, assignment: str, release: Path) -> bytes:
    """An SQLite gradebook holding only ``assignment``'s structure (due date, notebooks, cells,
    source of locked cells), copied from the gradebook at ``db_url``. Cells are written in the
    order of the release notebooks in ``release`` (a gradebook has no cell order: PostgreSQL
    returns them in any order), which :func:`grader.autograde.preflight.load_template` reads back."""
    with tempfile.TemporaryDirectory(prefix="grader-template-") as tmp:
        path = Path(tmp) / "template.db"
        with Gradebook(db_url) as main, Gradebook(f"sqlite:///{path}") as tpl:
            try:
                a = main.find_assignment(assignment)
            except MissingEntry:
                raise UsageError(f"assignment {assignment} is not in the gradebook {db_url}; run "
                                 "`python -m grader build` first") from None
            tpl.add_assignment(a.name, duedate=a.duedate)
            for nb in a.notebooks:
                order = _release_order(release / f"{nb.name}.ipynb")
                tpl.add_notebook(nb.name, a.name, kernelspec=nb.kernelspec)
                for c in nb.grade_cells:
                    tpl.add_grade_cell(c.name, nb.name, a.name, max_score=c.max_score, cell_type=c.cell_type)
                for c in nb.solution_cells:
                    tpl.add_solution_cell(c.name, nb.name, a.name)
                for c in nb.task_cells:
                    tpl.add_task_cell(c.name, nb.name, a.name, max_score=c.max_score, cell_type=c.cell_type)
                for c in sorted(nb.source_cells, key=lambda c: (order.get(c.name, len(order)), c.name)):
                    tpl.add_source_cell(c.name, nb.name, a.name, cell_type=c.cell_type, locked=c.locked,
                                        source=c.source, checksum=c.checksum)
        return path.read_bytes()


def _release_order(path: Path) -> dict[str, int]:
    """grade_id -> position of the cell in a release notebook."""
    if not path.is_file():
        raise UsageError(f"{path} is missing: run `python -m grader build` to write the release notebooks")
    cells = nbformat.read(path, as_version=4).cells
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in cells]
    return {gid: i for i, gid in enumerate(ids) if gid}


def grade_submission(job: Job) -> Result:
    """Autograde one submission in a scratch course and return its grades as plain data.

    1. :func:`grader.autograde.preflight.prepare` matches the submitted files to the assignment's
       notebooks and repairs them (unreadable, missing, renamed, stripped, reordered...);
    2. nbgrader's autograde runs each notebook in its own sandboxed kernel
       (:class:`grader.autograde.execute.SandboxExecute`, limits of :class:`grader.sandbox.limits.Limits`);
    3. the hidden checks run in a checker process next to each kernel, which holds no
       answer (it runs the student edition of ``course``); their verdicts decide which cells
       keep nbgrader's score (:mod:`grader.autograde.score`); tampering scores 0 and is flagged.

    Outcome ``graded`` whenever the submission could be looked at (each notebook has its own
    outcome); ``error`` only when the grader itself could not run (bad limits, no gradebook).
    """
    start = time.perf_counter()
    base = dict(assignment=job.assignment, student=job.student, sha256=job.sha256,
                checks_version=job.checks_version, settings=job.settings, timestamp=job.timestamp)
    scratch = Path(tempfile.mkdtemp(prefix="grader-job-"))
    try:
        try:
            limits = Limits.for_job(job.timeout, job.limits)
            mode = isolation()
            db_url = f"sqlite:///{scratch / 'gradebook.db'}"
            (scratch / "gradebook.db").write_bytes(job.template_db)
            template = load_template(db_url, job.assignment)
        except (ValueError, MissingEntry) as exc:
            return Result(outcome="error", seconds=time.perf_counter() - start, message=str(exc), **base)
        prepared = prepare(job.notebooks, template)
        _write_course(scratch, job, prepared, mode)
        runs: dict[str, NotebookRun] = {}
        seconds: dict[str, float] = {}
        log = _autograde(scratch, job, prepared, template, mode, limits, runs, seconds)
        notebooks = _results(scratch, job, prepared, template, runs, seconds, limits)
        late = job.late_note
        if late and job.timestamp and job.late_penalty != "none":  # charged: the feedback says why
            note = f"**Late submission.** {late[0].upper()}{late[1:]}."
            for nb in notebooks:
                if nb.autograded is not None:
                    nb.autograded = _with_note(nb.autograded, note)
        flags = [f"{nb.name}: {flag}" for nb in notebooks for flag in nb.flags] + ([f"late: {late}"] if late else [])
        message = "; ".join(([late] if late else []) + prepared.messages
                            + [f"{nb.name}: {nb.message}" for nb in notebooks if nb.message])
        return Result(outcome="graded", seconds=time.perf_counter() - start, notebooks=notebooks, log=log,
                      message=message, flags=flags, isolation=mode, late=late, **base)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_course(scratch: Path, job: Job, prepared: Prepared, mode: str) -> None:
    """The scratch course: template gradebook, the assignment's files, the prepared notebooks.
    With a sandbox uid, everything but the kernels' own folders is closed to it."""
    source = scratch / "solutions" / job.assignment
    source.mkdir(parents=True)
    for rel, data in job.extra_files.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(data)
    submitted = scratch / "submitted" / job.student / job.assignment
    submitted.mkdir(parents=True)
    for name, verdict in prepared.notebooks.items():
        if verdict.data is not None:
            (submitted / f"{name}.ipynb").write_bytes(verdict.data)
    if job.timestamp:
        (submitted / "timestamp.txt").write_text(job.timestamp)
    (scratch / "autograded").mkdir()
    if mode == "uid":
        for entry in scratch.iterdir():
            os.chmod(entry, 0o700 if entry.is_dir() else 0o600)
        os.chmod(scratch, 0o711)


def _autograde(scratch: Path, job: Job, prepared: Prepared, template: dict[str, TemplateNotebook],
               mode: str, limits: Limits, runs: dict[str, NotebookRun], seconds: dict[str, float]) -> str:
    """nbgrader autograde, one notebook at a time (a failure stays that notebook's); returns the log."""
    modules = sorted({name.split(".")[2] for nb in template.values() for cell in nb.cells if cell.grade
                      for name in expected_checks(cell.source)})
    config = nbgrader_config(Course(scratch, scratch), timeout=int(limits.cell_seconds),
                             late_penalty=job.late_penalty)
    context = Context(scratch=scratch, course_root=Path(job.course_root), library=kernel_library(Path(job.course_root)),
                      assignment=job.assignment, mode=mode, limits=limits, files=dict(job.extra_files), env={},
                      checker_env=_checker_env(job.course_root), check_modules=modules)
    executor = SandboxExecute.bound(context, runs)
    swap = {Execute: executor, CheckCellMetadata: CompiledCheckCellMetadata}
    for stage in ("sanitize_preprocessors", "autograde_preprocessors"):
        config.Autograde[stage] = [swap.get(p, p) for p in Autograde.class_traits()[stage].default()]
    config.OverwriteCells.add_missing_cells = True
    # nbconvert validates the notebook after each of the 11 preprocessors; once, after the
    # last, finds the same invalid notebook (not in nbgrader_config: with no preprocessor at
    # all, nbconvert 7 fails on its own unbound variable there)
    config.Exporter.optimistic_validation = True
    logs = []
    for name, verdict in prepared.notebooks.items():
        if verdict.data is None:
            continue
        try:
            logs.append(run_converter(_TimedAutograde, config, assignment=job.assignment, student=job.student,
                                      notebook=name, force=True, create_student=True, seconds=seconds))
        except GraderError as exc:
            verdict.outcome = "error"
            reason = str(exc).splitlines()[0]
            verdict.messages.append(f"nbgrader could not grade it: {reason}")
            verdict.flags.append(f"could not be graded: {reason}")
            logs.append(str(exc))
    return "\n".join(logs)


def _checker_env(course_root: str) -> dict[str, str]:
    env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/bin", "/bin"]),
           "PYTHONPATH": course_root, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONNOUSERSITE": "1", "LANG": "C.UTF-8", "MPLBACKEND": "Agg"}
    env.update(dict.fromkeys(BLAS_THREAD_VARS, "1"))
    return env


def _results(scratch: Path, job: Job, prepared: Prepared, template: dict[str, TemplateNotebook],
             runs: dict[str, NotebookRun], seconds: dict[str, float], limits: Limits) -> list[NotebookResult]:
    """One result per notebook of the assignment: nbgrader's grades, kept only where the
    checker's verdicts confirm them (decided by :func:`grader.autograde.score.score_notebook`)."""
    graded = _gradebook_cells(scratch, job)
    out_dir = scratch / "autograded" / job.student / job.assignment
    results = []
    for name, tmpl in sorted(template.items()):
        verdict, run = prepared.notebooks[name], runs.get(name)
        missing = zero_cells((c.name, c.points) for c in tmpl.cells if c.grade)
        cells, comments, penalty = graded.get(name) or (missing, {}, None)
        path = out_dir / f"{name}.ipynb"
        data = path.read_bytes() if verdict.data is not None and path.exists() else None
        messages = list(verdict.messages)
        if run is not None:
            messages += [m for m in [run.message, *run.notes] if m]
        decided = score_notebook(cells, penalty, prepared=verdict.outcome, run=run, autograded=data is not None)
        if data is not None and run is not None and not run.armed_error and decided.notes:
            data = _annotate(data, decided)
        diagnoses = {gid: "\n".join(v["message"] for v in cell.verdicts + cell.diagnosed
                                    if not v.get("ok") and v.get("message"))
                     for gid, cell in (run.cells.items() if run is not None else ())}
        results.append(NotebookResult(
            name=name, outcome=decided.outcome, seconds=round(seconds.get(name, 0.0), 3), score=decided.score,
            max_score=sum(c["max_score"] for c in decided.cells.values()), cells=decided.cells, comments=comments,
            late_penalty=decided.late_penalty, flags=sorted(set(verdict.flags + decided.flags)), autograded=data,
            message="; ".join(messages),
            diagnoses={gid: text for gid, text in diagnoses.items() if text}))
    return results


def _with_note(data: bytes, text: str) -> bytes:
    """An autograded notebook with a markdown cell ``text`` first, which its feedback page shows."""
    nb = nbformat.reads(data.decode(), as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(text))
    return (nbformat.writes(nb) + "\n").encode()


def _gradebook_cells(scratch: Path, job: Job) -> dict[str, tuple[dict[str, dict[str, Any]], dict[str, str | None], float | None]]:
    """Per notebook nbgrader's grades (cells, comments, late penalty), if it graded any."""
    out = {}
    with Gradebook(f"sqlite:///{scratch / 'gradebook.db'}") as gb:
        try:
            submission = gb.find_submission(job.assignment, job.student)
        except MissingEntry:
            return {}
        for snb in submission.notebooks:
            cells = {g.name: {"auto_score": g.auto_score, "max_score": g.max_score,
                              "needs_manual_grade": g.needs_manual_grade} for g in snb.grades}
            out[snb.name] = (cells, {c.name: c.auto_comment for c in snb.comments}, snb.late_submission_penalty)
    return out


def _annotate(data: bytes, decided: NotebookScore) -> bytes:
    """The autograded notebook with each review note of ``decided`` as an error output of its
    cell (so feedback shows why the cell lost its points)."""
    nb = nbformat.reads(data.decode(), as_version=4)
    for index, note in decided.notes.items():
        nb.cells[index].outputs.append(nbformat.v4.new_output(
            "error", ename="GraderReview", evalue=note, traceback=[f"GraderReview: {note}"]))
    return (nbformat.writes(nb) + "\n").encode()


def assignment_files(course: Course, assignment: str) -> dict[str, bytes]:
    """Non-notebook files of the assignment's source folder (data the notebooks read)."""
    source = course.solutions / assignment
    ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.ipynb"]
    return {os.path.relpath(p, source): Path(p).read_bytes() for p in find_all_files(str(source), ignore)}


def make_job(course: Course, assignment: str, student: str, folder: Path, template_db: bytes, *,
             due: datetime.datetime | None = None, **options: Any) -> Job:
    """A job for the notebooks in ``folder`` (and its timestamp.txt, if any); ``options`` are
    further :class:`Job` fields (timeout, late_penalty, checks_version, settings).

    Without a timestamp.txt, collect's ``lms_late.txt`` (the LMS marked it late, time unknown)
    makes the time ``due`` (the assignment's due date, naive UTC) + 1 s: one started day late,
    the least the marker implies. A real timestamp.txt always wins."""
    stamp = folder / "timestamp.txt"
    timestamp = stamp.read_text().strip() if stamp.exists() else ""
    lms_late = not timestamp and (folder / LMS_LATE).is_file()
    if lms_late and due is not None:
        timestamp = str(due + datetime.timedelta(seconds=1))
    return Job(assignment=assignment, student=student,
               notebooks={p.stem: p.read_bytes() for p in sorted(folder.glob("*.ipynb"))},
               template_db=template_db, course_root=str(course.root), timestamp=timestamp or None,
               extra_files=assignment_files(course, assignment), lms_late=lms_late, **options)
