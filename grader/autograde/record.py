"""The single writer of grading results, and the audit trail it keeps.

Two tables of our own live in the gradebook database beside nbgrader's (SQLite or
PostgreSQL alike), so a result's grades and its audit rows commit in ONE transaction: a run
killed at any point has either recorded a submission completely or not at all.

- ``grader_result``: per (assignment, student) the last usable result: the inputs it was graded
  from (submission hash, checks version, settings) and its summary entry (JSON: outcome,
  score, max, flags, seconds per notebook and cell, ...). Deciding what is up to date reads it.
- ``grader_audit_log``: one row per recorded result, never changed: run, inputs, outcome, score.

``work/summary/<assignment>.json`` is an export of ``grader_result`` (:func:`write_summary`).
The tables are created after nbgrader's (it takes a database with tables for an old gradebook).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.utils import parse_utc
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from grader.autograde.score import FAILED, HandGrade, hand_grade, merge_exercise, of_exercise, plan_record, stale_cells
from grader.config import Course, UsageError

if TYPE_CHECKING:
    from grader.autograde.pipeline import Result

__all__ = ["Recorder", "Inputs", "record", "load_summary", "write_summary", "audit_log", "FAILED",
           "open_gradebook", "answer_texts"]

_META = MetaData()
_RESULT = Table(
    "grader_result", _META,
    Column("assignment", String(128), primary_key=True),
    Column("student", String(128), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("checks_version", String(64), nullable=False),
    Column("settings", Text, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("entry", Text, nullable=False),
)
_LOG = Table(
    "grader_audit_log", _META,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run", String(32), nullable=False),
    Column("assignment", String(128), nullable=False),
    Column("student", String(128), nullable=False),
    Column("exercise", String(128)),                  # None: the whole submission was recorded
    Column("sha256", String(64), nullable=False),
    Column("checks_version", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("score", Float, nullable=False),
    Column("max_score", Float, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("recorded_at", String(32), nullable=False),
)


@dataclass(frozen=True)
class Inputs:
    """What a recorded result was graded from; equal inputs and a final outcome: up to date."""

    sha256: str
    checks_version: str
    settings: str
    outcome: str


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def open_gradebook(db_url: str) -> Gradebook:
    """nbgrader's Gradebook at ``db_url``, with errors that say how to fix a bad URL, a missing
    driver or an unreachable server."""
    try:
        make_url(db_url)
        return Gradebook(db_url)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:  # NoSuchModuleError is an ArgumentError
        raise UsageError(f"no database driver for {make_url(db_url).drivername} ({exc}); for "
                         "PostgreSQL install the cluster extra: pip install 'deeptrain-course[cluster]'") from None
    except ArgumentError:
        raise UsageError(f"gradebook URL {db_url!r} is not a database URL; use e.g. "
                         "sqlite:////path/gradebook.db or postgresql://user:password@host:5432/dbname") from None
    except OperationalError as exc:
        first = (str(exc.orig).strip().splitlines() or [""])[0]
        url = make_url(db_url)
        fix = ("that its folder exists and is writable" if url.get_backend_name() == "sqlite" else
               "that the database server is running and that host, port, user and password in the URL are right")
        raise UsageError(f"cannot open the gradebook {url.render_as_string()}: {first}; check {fix}, then run "
                         "the same command again") from None


def _entry(result: Result, run: str) -> dict[str, Any]:
    """The summary entry of a result: its fields (not the log or the notebooks' bytes) plus
    totals, and per notebook its outcome, score, max, cells, comments, flags and seconds."""
    entry = {k: v for k, v in asdict(result).items() if k not in ("notebooks", "log", "assignment", "student")}
    entry.update(score=result.score, max_score=result.max_score, seconds=round(result.seconds, 3),
                 graded_at=_now(), run=run)
    entry["notebooks"] = {nb.name: {k: v for k, v in asdict(nb).items() if k not in ("name", "autograded")}
                          for nb in result.notebooks}
    return entry


def answer_texts(data: bytes | None) -> dict[str, str] | None:
    """Per grade_id, the answer a graded cell judges: a written answer's own source; for a test
    cell, the answer cells since the previous graded cell. None: no readable notebook."""
    if data is None:
        return None
    try:
        nb = nbformat.reads(data.decode(), as_version=4)
    except (ValueError, UnicodeDecodeError):  # nbformat's NotJSONError is a ValueError
        return None
    texts: dict[str, str] = {}
    since: list[str] = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and meta.get("grade_id"):
            texts[meta["grade_id"]] = cell.source if meta.get("solution") else "\n\n".join(since)
            since = []
        elif meta.get("solution"):
            since.append(cell.source)
    return texts


def _splice(old: bytes, new: bytes, exercise: str) -> bytes:
    """Notebook ``old`` with the cells of grade_id ``exercise`` (outputs included) from ``new``."""
    gid = lambda cell: cell.metadata.get("nbgrader", {}).get("grade_id")  # noqa: E731
    fresh = {gid(c): c for c in nbformat.reads(new.decode(), as_version=4).cells}
    nb = nbformat.reads(old.decode(), as_version=4)
    nb.cells = [fresh[exercise] if gid(c) == exercise and exercise in fresh else c for c in nb.cells]
    return (nbformat.writes(nb) + "\n").encode()


def _replace_dir(dest: Path, files: dict[str, bytes]) -> None:
    """Make folder ``dest`` hold exactly ``files``: written beside it, then swapped in."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    old = dest.with_name(tmp.name + ".old")
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


class Recorder:
    """The single writer: records results into the gradebook, work/autograded/ and the audit
    tables. Use one per run, from one process (SQLite allows one writer); a context manager."""

    def __init__(self, course: Course, run: str | None = None) -> None:
        self.course = course
        self.run = run or uuid.uuid4().hex[:12]
        course.work.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
        self.gradebook = open_gradebook(course.db_url)  # first: nbgrader creates its schema
        _META.create_all(self.gradebook.engine)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.gradebook.db.rollback()  # an interrupted record leaves nothing half-written
        self.gradebook.close()

    def inputs(self, assignment: str) -> dict[str, Inputs]:
        """Per student, the inputs of the recorded result of ``assignment``."""
        rows = self.gradebook.db.execute(select(_RESULT).where(_RESULT.c.assignment == assignment))
        return {r.student: Inputs(r.sha256, r.checks_version, r.settings, r.outcome) for r in rows}

    def entries(self, assignment: str) -> dict[str, dict[str, Any]]:
        """Per student, the summary entry of the recorded result of ``assignment``."""
        rows = self.gradebook.db.execute(select(_RESULT.c.student, _RESULT.c.entry)
                                         .where(_RESULT.c.assignment == assignment))
        return {student: json.loads(entry) for student, entry in sorted(rows)}

    def record(self, result: Result, exercise: str | None = None) -> None:
        """Record ``result`` (all of it, or only exercise ``exercise``, a grade_id) and commit.

        What changes is :func:`grader.autograde.score.plan_record`'s decision: a
        :data:`FAILED` job only adds a log row (and an entry if there is none yet); with
        ``exercise``, a submission already graded from the same file gets only that exercise's
        cells (scores, comments, flags and the cell in the autograded notebook); a hand grade
        stands while the answer it graded is unchanged (:func:`grader.autograde.score.hand_grade`).
        """
        a, s = result.assignment, result.student
        db = self.gradebook.db
        row = db.execute(select(_RESULT).where(_RESULT.c.assignment == a, _RESULT.c.student == s)).first()
        old = json.loads(row.entry) if row else None
        plan = plan_record(result.outcome, exercise, (row.outcome, row.sha256) if row else None, result.sha256)
        if plan.entry == "merge":
            stale = stale_cells(old, result.notebooks, exercise)
            self._write_grades(result, exercise, stale)
            stamp = {"checks_version": result.checks_version, "graded_at": _now(), "run": self.run}
            entry = merge_exercise(old, result.notebooks, exercise, stale, result.checks_version, stamp)
        else:
            if plan.write_grades:
                self._write_grades(result)
            entry = _entry(result, self.run) if plan.entry == "whole" else None
        if entry is not None:
            values = {k: entry[k] for k in ("sha256", "checks_version", "settings", "outcome")}
            values["entry"] = json.dumps(entry)
            if row:
                db.execute(update(_RESULT).where(_RESULT.c.assignment == a, _RESULT.c.student == s)
                           .values(**values))
            else:
                db.execute(insert(_RESULT).values(assignment=a, student=s, **values))
        db.execute(insert(_LOG).values(
            run=self.run, assignment=a, student=s, exercise=exercise if plan.partial else None,
            sha256=result.sha256, checks_version=result.checks_version, outcome=result.outcome,
            score=result.score, max_score=result.max_score, seconds=round(result.seconds, 3),
            recorded_at=_now()))
        db.commit()

    def _write_grades(self, result: Result, exercise: str | None = None,
                      stale: dict[str, list[str]] | None = None) -> None:
        """Scores and comments (of every cell, or of ``exercise``) into nbgrader's tables, left
        uncommitted; the autograded notebooks into work/autograded/<student>/<assignment>/.
        A notebook's late penalty follows unless it has ``stale`` cells (see score.merge_exercise).
        Hand grades follow the answers: the notebook recorded before against the new one."""
        gb, a, s = self.gradebook, result.assignment, result.student
        dest = self.course.autograded / s / a
        if exercise is None:  # both commit on their own: a bare submission row is harmless
            gb.update_or_create_student(s)
            gb.update_or_create_submission(a, s, timestamp=parse_utc(result.timestamp) if result.timestamp else None)
        for nb in result.notebooks:
            snb = gb.find_submission_notebook(nb.name, a, s)
            flags = [f for f in nb.flags if of_exercise(f, exercise)]
            snb.flagged = bool(snb.flagged) or bool(flags)
            if not (stale or {}).get(nb.name):
                snb.late_submission_penalty = nb.late_penalty
            old = dest / f"{nb.name}.ipynb"
            before = answer_texts(old.read_bytes() if old.exists() else None) or {}
            after = answer_texts(nb.autograded) or {}
            for gid, cell in nb.cells.items():
                if exercise is None or gid == exercise:
                    grade = gb.find_grade(gid, nb.name, a, s)
                    grade.auto_score = cell["auto_score"]
                    self._hand_grade(grade, hand_grade(grade.manual_score, cell["needs_manual_grade"],
                                                       before.get(gid), after.get(gid)))
            for gid, text in nb.comments.items():
                if exercise is None or gid == exercise:
                    gb.find_comment(gid, nb.name, a, s).auto_comment = text
        files = {f"{nb.name}.ipynb": nb.autograded for nb in result.notebooks if nb.autograded is not None}
        if exercise is not None:
            files = {name: _splice((dest / name).read_bytes(), data, exercise) if (dest / name).exists() else data
                     for name, data in files.items()}
        if result.timestamp:
            files["timestamp.txt"] = result.timestamp.encode()
        _replace_dir(dest, files)

    def _hand_grade(self, grade: Any, decided: HandGrade) -> None:
        """Apply :func:`grader.autograde.score.hand_grade`'s decision to a gradebook grade."""
        if decided.needs_manual_grade is not None:
            grade.needs_manual_grade = decided.needs_manual_grade
        if decided.drop:
            grade.manual_score = None
            try:
                self.gradebook.find_comment(grade.name, grade.notebook.name, grade.assignment.name,
                                            grade.student.id).manual_comment = None
            except MissingEntry:  # a test cell has no comment
                pass

    def write_summary(self, assignment: str) -> Path:
        """Export the recorded entries of ``assignment`` to work/summary/<assignment>.json
        (replaced atomically: a reader never sees half a file)."""
        summary = {"assignment": assignment, "written_at": _now(), "submissions": self.entries(assignment)}
        self.course.summaries.mkdir(parents=True, exist_ok=True)
        path = self.course.summaries / f"{assignment}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    def log(self, assignment: str) -> Iterator[dict[str, Any]]:
        """The audit log rows of ``assignment``, oldest first."""
        rows = self.gradebook.db.execute(select(_LOG).where(_LOG.c.assignment == assignment).order_by(_LOG.c.id))
        for row in rows:
            yield dict(row._mapping)

    def exercises(self, assignment: str) -> list[str]:
        """grade_ids of the graded cells of ``assignment``, from the gradebook."""
        try:
            a = self.gradebook.find_assignment(assignment)
        except MissingEntry:
            raise UsageError(f"assignment {assignment} is not in the gradebook {self.course.db_url}; "
                             "run `python -m grader build` first") from None
        return sorted(c.name for nb in a.notebooks for c in nb.grade_cells)


def record(result: Result, course: Course, exercise: str | None = None) -> None:
    """Record one result (see :meth:`Recorder.record`)."""
    with Recorder(course) as rec:
        rec.record(result, exercise)


def _has_gradebook(course: Course) -> bool:
    return course.db is not None or (course.work / "gradebook.db").exists()


def load_summary(course: Course, assignment: str) -> dict[str, Any]:
    """Per student, the recorded entry of ``assignment``: what work/summary/<assignment>.json
    holds after a run, read from the gradebook (the source of truth)."""
    if not _has_gradebook(course):
        return {"assignment": assignment, "submissions": {}}
    with Recorder(course) as rec:
        return {"assignment": assignment, "submissions": rec.entries(assignment)}


def write_summary(course: Course, assignment: str) -> Path:
    """Write work/summary/<assignment>.json from the gradebook (see :meth:`Recorder.write_summary`)."""
    with Recorder(course) as rec:
        return rec.write_summary(assignment)


def audit_log(course: Course, assignment: str) -> list[dict[str, Any]]:
    """Every recorded result of ``assignment``, oldest first: run, student, exercise, inputs,
    outcome, score, max_score, seconds, recorded_at."""
    if not _has_gradebook(course):
        return []
    with Recorder(course) as rec:
        return list(rec.log(assignment))
