"""Grades in and out of the gradebook as CSV: hand-graded scores in, LMS grade files out."""
from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import MissingEntry

from grader.autograde.record import answer_texts, open_gradebook
from grader.autograde.collect import Roster
from grader.config import Course, UsageError, read_input
from grader.nb import without_solution_markers

__all__ = ["MANUAL_COLUMNS", "FORMATS", "manual_template", "import_manual", "export_grades",
           "parse_canvas_ids", "ExportReport", "Sheet"]

#: Columns of the hand-grading sheet; ``answer`` and ``rubric`` are for reading only.
MANUAL_COLUMNS = ["student", "assignment", "notebook", "grade_id", "max_score", "score", "comment",
                  "answer", "rubric"]
_KEY = ("student", "assignment", "notebook", "grade_id")


@dataclass
class Sheet:
    """What :func:`manual_template` wrote."""

    path: Path
    rows: int                # rows in the sheet
    kept: int = 0            # filled-in rows kept from the sheet already there (merge)
    reopened: list[str] = field(default_factory=list)  # filled-in rows emptied: the answer changed


def _filled(row: dict[str, str]) -> bool:
    return bool((row.get("score") or "").strip() or (row.get("comment") or "").strip())


def _read_sheet(path: Path) -> list[dict[str, str]]:
    """The rows of an existing hand-grading sheet (none if there is no file)."""
    if not path.exists():
        return []
    reader = csv.DictReader(io.StringIO(read_input(path, "hand-grading sheet"), newline=""))
    rows = list(reader)
    header = set(reader.fieldnames or [])
    missing = {*_KEY, "score"} - header
    if rows and missing:
        raise UsageError(f"{path} is not a hand-grading sheet (no {', '.join(sorted(missing))} column); "
                         "pick another --out, or move the file away")
    return rows


def _notebook_texts(path: Path) -> dict[str, str] | None:
    """:func:`grader.autograde.record.answer_texts` of the notebook at ``path`` (None: no readable file)."""
    return answer_texts(path.read_bytes()) if path.exists() else None


def _rubric(texts: dict[str, str] | None, grade_id: str) -> str:
    """The model answer (and rubric) of a cell from the solution notebook, without markers."""
    return without_solution_markers((texts or {}).get(grade_id, "")).strip()


def _pending_rows(course: Course, assignment: str) -> list[dict[str, str]]:
    """A row per answer that still needs a hand grade: score and comment empty, the student's
    answer (from work/autograded/) and the rubric (from solutions/) beside it."""
    rows, solutions = [], {}
    with open_gradebook(course.db_url) as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise UsageError(f"assignment {assignment} is not in the gradebook {course.db_url}; known: "
                             f"{', '.join(a.name for a in gb.assignments) or 'none'}") from None
        for sub in gb.assignment_submissions(assignment):
            for nb in sub.notebooks:
                pending = [g for g in nb.grades if g.needs_manual_grade]
                if not pending:
                    continue
                where = course.autograded / sub.student.id / assignment / f"{nb.name}.ipynb"
                answers = _notebook_texts(where)
                if nb.name not in solutions:
                    solutions[nb.name] = _notebook_texts(course.solutions / assignment / f"{nb.name}.ipynb")
                rows += [{"student": sub.student.id, "assignment": assignment, "notebook": nb.name,
                          "grade_id": g.name, "max_score": f"{g.max_score:g}", "score": "", "comment": "",
                          "answer": (f"[no autograded notebook {where}: open the submission]" if answers is None
                                     else answers.get(g.name, "")),
                          "rubric": _rubric(solutions[nb.name], g.name)} for g in pending]
    return rows


def _merge(old: list[dict[str, str]], fresh: list[dict[str, str]]) -> tuple[list[dict[str, str]], int, list[str]]:
    """``fresh`` rows, with the filled-in rows of ``old`` in place of theirs; a filled-in row
    whose answer is no longer the student's is emptied (its score graded another text).
    Returns the rows, how many were kept and the reopened ones."""
    now = {tuple(r[k] for k in _KEY): r for r in fresh}
    rows, kept, reopened = dict(now), 0, []
    for row in old:
        key = tuple(row.get(k, "") for k in _KEY)
        if not _filled(row):
            continue
        if key in now and "answer" in row and row["answer"] != now[key]["answer"]:
            reopened.append("/".join((key[0], key[2], key[3])) + f" (was {row.get('score') or 'no score'})")
            continue
        rows[key] = {c: row.get(c) or now.get(key, {}).get(c, "") for c in MANUAL_COLUMNS}
        kept += 1
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[2], k[3]))], kept, reopened


def manual_template(course: Course, assignment: str, out: Path, merge: bool = False) -> Sheet:
    """Write the hand-grading sheet of ``assignment``: a row per answer that still needs a hand
    grade, with the student's answer and the rubric to read, score and comment to fill in, for
    :func:`import_manual`. A sheet at ``out`` with any score or comment filled in is never
    overwritten: refused, or with ``merge`` its filled-in rows are kept and the new answers
    added (a filled-in row whose answer has changed since is emptied and listed)."""
    old = _read_sheet(out)
    if not merge and any(_filled(r) for r in old):
        raise UsageError(f"{out} has {sum(map(_filled, old))} row(s) with a score or comment filled in; "
                         "`manual template --merge` keeps them and adds the new answers (or move the "
                         "file away for a fresh sheet)")
    rows, kept, reopened = _merge(old if merge else [], _pending_rows(course, assignment))
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, MANUAL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return Sheet(path=out, rows=len(rows), kept=kept, reopened=reopened)


def import_manual(course: Course, path: Path) -> int:
    """Set manual scores (and comments) from a CSV with columns student, assignment, notebook,
    grade_id, score[, comment]; other columns (answer, rubric) are ignored. Every row is
    checked first; one bad row imports nothing. Rows with an empty score are skipped.
    Returns the number of grades set."""
    rows = list(csv.DictReader(io.StringIO(read_input(path, "CSV"), newline="")))
    needed = {"student", "assignment", "notebook", "grade_id", "score"}
    if not rows or needed - set(rows[0]):
        raise UsageError(f"{path}: needs columns {sorted(needed)} (and optionally comment); "
                         "`python -m grader manual template` writes one")
    errors, updates = [], []
    with open_gradebook(course.db_url) as gb:
        for line, row in enumerate(rows, start=2):
            if not row["score"].strip():
                continue
            where = f"{path}:{line} ({row['student']}/{row['assignment']}/{row['notebook']}/{row['grade_id']})"
            try:
                grade = gb.find_grade(row["grade_id"], row["notebook"], row["assignment"], row["student"])
                score = float(row["score"])
            except MissingEntry:
                errors.append(f"{where}: no such graded cell for this student (autograde first?)")
                continue
            except ValueError:
                errors.append(f"{where}: score {row['score']!r} is not a number")
                continue
            if not 0 <= score <= grade.max_score:
                errors.append(f"{where}: score {score} outside 0..{grade.max_score}")
                continue
            updates.append((grade, score, (row.get("comment") or "").strip(), row))
        if errors:
            more = f"; and {len(errors) - 10} more" if len(errors) > 10 else ""
            raise UsageError(f"nothing imported; fix these rows and import again: {'; '.join(errors[:10])}{more}")
        for grade, score, comment, row in updates:
            grade.manual_score = score
            grade.needs_manual_grade = False
            if comment:
                try:
                    gb.find_comment(row["grade_id"], row["notebook"], row["assignment"],
                                    row["student"]).manual_comment = comment
                except MissingEntry:  # a test cell has no comment slot; the score still counts
                    pass
        gb.db.commit()
    return len(updates)


#: Export formats: ``generic`` (student_id, name, lms_id, per assignment "NAME (max M)"),
#: ``canvas`` (Canvas's gradebook import CSV), ``moodle`` (Moodle's CSV grade import).
FORMATS = ("generic", "canvas", "moodle")


@dataclass
class ExportReport:
    """Rows written, and what an instructor should know before uploading them."""

    rows: int
    pending: list[str]        # "student/assignment": answers still waiting for a hand grade
    not_in_roster: list[str]  # students with grades but no roster row (in the generic file only)
    skipped: list[str] = field(default_factory=list)  # assignments nobody has a grade in: no column


@dataclass
class _Grades:
    """What the gradebook holds: maxima of the assignments asked for, in gradebook order, and
    per student the score of each assignment they have a submission of (after late penalty)."""

    maxima: dict[str, float]
    scores: dict[str, dict[str, float]]
    pending: list[tuple[str, str]]  # (student, assignment) with answers waiting for a hand grade


def _read_grades(course: Course, assignments: list[str] | None) -> _Grades:
    """Scores after the late penalty, ``max(0, score - penalty)``, of ``assignments`` (all)."""
    with open_gradebook(course.db_url) as gb:
        known = [a.name for a in gb.assignments]
        unknown = [a for a in assignments or [] if a not in known]
        if unknown:
            raise UsageError(f"assignment(s) {', '.join(unknown)} not in the gradebook {course.db_url}; "
                             f"known: {', '.join(known) or 'none (run `python -m grader build`)'}")
        names = assignments or known
        grades = _Grades({a: gb.find_assignment(a).max_score for a in names}, {}, [])
        for a in names:
            for sub in gb.assignment_submissions(a):
                penalty = sub.late_submission_penalty or 0.0
                grades.scores.setdefault(sub.student.id, {})[a] = max(0.0, sub.score - penalty)
                if sub.needs_manual_grade:
                    grades.pending.append((sub.student.id, a))
    return grades


def parse_canvas_ids(pairs: list[str]) -> dict[str, str]:
    """``["01_autodiff=1234", ...]`` -> ``{"01_autodiff": "1234"}`` (Canvas assignment ids)."""
    ids = {}
    for pair in pairs:
        name, _, number = pair.partition("=")
        if not (name and number.isdigit()):
            raise UsageError(f"--canvas-id {pair!r}: write ASSIGNMENT=ID with the number from the "
                             "assignment's Canvas URL (.../assignments/1234), e.g. 01_autodiff=1234")
        ids[name] = number
    return ids


def _value(score: float | None, missing_as_zero: bool) -> str:
    """A grade cell: the score, or for no submission empty (0 only when asked)."""
    if score is None:
        return "0" if missing_as_zero else ""
    return f"{score:g}"


def _field(row: dict[str, str], name: str) -> str:
    return (row.get(name) or "").strip()


def _generic(grades: _Grades, columns: list[str], rows: list[tuple[str, dict[str, str]]],
             cell: Callable[[str, str], str], total: bool) -> list[list[str]]:
    """``student_id,name,lms_id``, then ``NAME (max M)`` per assignment[, ``total (max T)``]."""
    header = ["student_id", "name", "lms_id", *(f"{a} (max {grades.maxima[a]:g})" for a in columns)]
    if total:
        header.append(f"total (max {sum(grades.maxima[a] for a in columns):g})")
    out = [header]
    for sid, r in rows:
        values = [cell(sid, a) for a in columns]
        extra = [f"{sum(float(v) for v in values if v):g}"] if total else []
        out.append([sid, _field(r, "name"), _field(r, "lms_id"), *values, *extra])
    return out


def _canvas(grades: _Grades, columns: list[str], rows: list[tuple[str, dict[str, str]]],
            cell: Callable[[str, str], str], canvas_ids: dict[str, str]) -> list[list[str]]:
    """Canvas's gradebook CSV (Grades > Import): ``Student, ID, SIS User ID, SIS Login ID,
    Section``, one column per assignment, ``Name (1234)`` with the Canvas assignment id from
    ``--canvas-id`` (Canvas matches by that id; a bare name matches an assignment of that
    title, or Canvas creates one), and the ``    Points Possible`` row second, as Canvas's own
    export has it. Filled from the roster: Student <- name, ID (the Canvas user id, which
    Canvas matches first) <- lms_id, SIS User ID <- sis_user_id, SIS Login ID <- sis_login_id,
    Section <- section (the last three optional columns; empty if absent). Every student
    needs lms_id, sis_user_id or sis_login_id. Canvas lists the changes for review before
    applying them."""
    unnamed = [sid for sid, r in rows if not any(_field(r, c) for c in ("lms_id", "sis_user_id", "sis_login_id"))]
    if unnamed:
        raise UsageError(f"canvas export: no Canvas identifier for {', '.join(unnamed)} in the roster; fill "
                         "their lms_id with the Canvas user id (column ID of Canvas's gradebook export), or "
                         "add a sis_user_id or sis_login_id column")
    out = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
            *(f"{a} ({canvas_ids[a]})" if a in canvas_ids else a for a in columns)],
           ["    Points Possible", "", "", "", "", *(f"{grades.maxima[a]:g}" for a in columns)]]
    out += [[_field(r, "name"), _field(r, "lms_id"), _field(r, "sis_user_id"), _field(r, "sis_login_id"),
             _field(r, "section"), *(cell(sid, a) for a in columns)] for sid, r in rows]
    return out


#: Roster columns Moodle's import can identify a user by, with the header Moodle's export uses.
_MOODLE_IDS = {"email": "Email address", "id_number": "ID number"}


def _moodle(roster: Roster, roster_path: Path, columns: list[str], rows: list[tuple[str, dict[str, str]]],
            cell: Callable[[str, str], str]) -> list[list[str]]:
    """Moodle's CSV grade import (Grades > Import > CSV file): the column to pick under
    "Identify user by" -- ``Email address`` from the roster's email column (mapped to Email
    address), else ``ID number`` from id_number (mapped to ID number) -- then one column per
    grade item, named after the assignment (map each to its grade item, or to a new one).
    Moodle reads an empty cell as "no grade" and clears a grade it has there: where grades of an
    assignment were also entered in Moodle, export that assignment alone (students without its
    grade then get no row)."""
    key = next((c for c in _MOODLE_IDS if c in roster.rows[0]), None)
    if key is None:
        raise UsageError(f"moodle export: {roster_path} has no email or id_number column, which Moodle's "
                         "grade import identifies users by (Email address or ID number, both in Moodle's "
                         "grade export); add one to the roster")
    blank = [sid for sid, r in rows if not _field(r, key)]
    if blank:
        raise UsageError(f"moodle export: no {key} for {', '.join(blank)} in {roster_path}; fill it in")
    return [[_MOODLE_IDS[key], *columns]] + [[_field(r, key), *(cell(sid, a) for a in columns)]
                                             for sid, r in rows]


def export_grades(course: Course, roster_path: Path, out: Path, assignments: list[str] | None = None, *,
                  fmt: str = "generic", missing_as_zero: bool = False, total: bool = False,
                  canvas_ids: dict[str, str] | None = None) -> ExportReport:
    """Write the grades of ``assignments`` (default all) as ``fmt`` (:data:`FORMATS`).

    An LMS import overwrites, so the file holds only what was graded here: an assignment
    nobody has a grade in gets no column, and a student without a submission of an exported
    assignment an empty cell, never 0 (``missing_as_zero``: every assignment asked for, 0 for
    no submission). Scores are after the late penalty. No total unless ``total`` (generic only:
    an LMS would take it for one more assignment). The generic file has every roster row plus
    the graded students not in the roster; canvas and moodle have the roster students with a
    grade in the file (a student left out keeps what the LMS has)."""
    if fmt not in FORMATS:
        raise UsageError(f"export format {fmt!r}: use one of {', '.join(FORMATS)}")
    if total and fmt != "generic":
        raise UsageError(f"--total is for the generic format: {fmt} would import a total column as one "
                         "more assignment (the LMS computes its own total)")
    roster = Roster(roster_path)
    grades = _read_grades(course, assignments)
    unknown_ids = sorted(set(canvas_ids or {}) - set(grades.maxima))
    if unknown_ids:
        raise UsageError(f"--canvas-id names {', '.join(unknown_ids)}, not exported; exported: "
                         f"{', '.join(grades.maxima)}")
    columns = [a for a in grades.maxima if missing_as_zero or any(a in s for s in grades.scores.values())]
    extra = sorted(set(grades.scores) - roster.ids)
    rows = [(r["student_id"].strip(), r) for r in roster.rows]
    if fmt == "generic":
        rows += [(s, {}) for s in extra]
    elif not missing_as_zero:
        rows = [(sid, r) for sid, r in rows if any(a in grades.scores.get(sid, {}) for a in columns)]

    def cell(sid: str, a: str) -> str:
        return _value(grades.scores.get(sid, {}).get(a), missing_as_zero)

    if fmt == "generic":
        table = _generic(grades, columns, rows, cell, total)
    elif fmt == "canvas":
        table = _canvas(grades, columns, rows, cell, canvas_ids or {})
    else:
        table = _moodle(roster, roster_path, columns, rows, cell)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(table)
    return ExportReport(rows=len(rows), pending=sorted(f"{s}/{a}" for s, a in grades.pending if a in columns),
                        not_in_roster=extra, skipped=[a for a in grades.maxima if a not in columns])
