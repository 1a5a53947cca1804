"""Grades in and out of the gradebook as CSV: hand-graded scores in, LMS totals out."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from grader.collect import Roster
from grader.config import Course, GraderError

__all__ = ["MANUAL_COLUMNS", "manual_template", "import_manual", "export_grades", "ExportReport"]

MANUAL_COLUMNS = ["student", "assignment", "notebook", "grade_id", "max_score", "score", "comment"]


def manual_template(course: Course, assignment: str, out: Path) -> int:
    """Write a CSV of every answer that still needs grading by hand (score and comment empty),
    ready for :func:`import_manual`. Returns the number of rows."""
    rows = []
    with Gradebook(course.db_url) as gb:
        for sub in gb.assignment_submissions(assignment):
            for nb in sub.notebooks:
                for grade in nb.grades:
                    if grade.needs_manual_grade:
                        rows.append({"student": sub.student.id, "assignment": assignment,
                                     "notebook": nb.name, "grade_id": grade.name,
                                     "max_score": grade.max_score, "score": "", "comment": ""})
    rows.sort(key=lambda r: (r["student"], r["notebook"], r["grade_id"]))
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, MANUAL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def import_manual(course: Course, path: Path) -> int:
    """Set manual scores (and comments) from a CSV with columns student, assignment, notebook,
    grade_id, score[, comment]. Every row is checked first; one bad row imports nothing.
    Rows with an empty score are skipped. Returns the number of grades set."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    needed = {"student", "assignment", "notebook", "grade_id", "score"}
    if not rows or needed - set(rows[0]):
        raise GraderError(f"{path}: needs columns {sorted(needed)} (and optionally comment); "
                          "`python -m grader manual template` writes one")
    errors, updates = [], []
    with Gradebook(course.db_url) as gb:
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
            updates.append((grade, score, row.get("comment", "").strip(), row))
        if errors:
            raise GraderError("nothing imported; fix these rows:\n" + "\n".join(errors))
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


@dataclass
class ExportReport:
    """Rows written, and what an instructor should know before uploading them."""

    rows: int
    pending: list[str]        # "student/assignment": answers still waiting for a hand grade
    not_in_roster: list[str]  # students with grades but no roster row (still exported)


def export_grades(course: Course, roster_path: Path, out: Path,
                  assignments: list[str] | None = None) -> ExportReport:
    """Write the LMS CSV: ``student_id,name,lms_id``, then per assignment the score after the
    late penalty (``max(0, score - penalty)``, 0 without a submission), then ``total``; column
    names carry the maxima (``01_x (max 12)``). Students with grades but no roster row are
    exported too, and listed in the report."""
    roster = Roster(roster_path)
    pending: list[str] = []
    with Gradebook(course.db_url) as gb:
        names = assignments or [a.name for a in gb.assignments]
        maxima = {a: gb.find_assignment(a).max_score for a in names}
        scores: dict[str, dict[str, float]] = {}
        for a in names:
            for sub in gb.assignment_submissions(a):
                penalty = sub.late_submission_penalty or 0.0
                scores.setdefault(sub.student.id, {})[a] = max(0.0, sub.score - penalty)
                if sub.needs_manual_grade:
                    pending.append(f"{sub.student.id}/{a}")
    rows = [(r["student_id"].strip(), r["name"], r["lms_id"]) for r in roster.rows]
    extra = sorted(set(scores) - roster.ids)
    rows += [(s, "", "") for s in extra]
    columns = [f"{a} (max {maxima[a]:g})" for a in names]
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student_id", "name", "lms_id", *columns, f"total (max {sum(maxima.values()):g})"])
        for sid, name, lms in rows:
            got = [scores.get(sid, {}).get(a, 0.0) for a in names]
            writer.writerow([sid, name, lms, *(f"{g:g}" for g in got), f"{sum(got):g}"])
    return ExportReport(rows=len(rows), pending=sorted(pending), not_in_roster=extra)
