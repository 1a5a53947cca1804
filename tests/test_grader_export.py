"""Grades out for an LMS import and hand grades in (issue 12, parts C and D).

Fast (a gradebook filled through nbgrader's API, no grading run): each export format's header
rows exactly as the format documents them (Canvas's gradebook CSV: ``Student, ID, SIS User ID,
SIS Login ID, Section``, ``Name (id)`` columns, the ``    Points Possible`` row second; Moodle's
CSV grade import: an identifier column it maps, then one column per grade item); an assignment
nobody has a grade in has no column; no submission is an empty cell, never 0, unless asked;
the hand-grading sheet refuses to overwrite graded rows and merges.

Slow (the fixture course of tests/fixtures/attacks graded by the real autograde): a hand grade
survives ``autograde --regrade`` while the answer is unchanged and ``export`` counts it; a
changed answer needs a hand grade again.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from fixtures.attacks import kit
from grader.cli import main
from grader.config import Course, GraderError
from grader.results.export import MANUAL_COLUMNS, export_grades, import_manual, manual_template, parse_canvas_ids

CANVAS_STUDENT = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
ROSTER = ("student_id,name,lms_id,email,sis_user_id,section\n"
          "alice,Alice A,101,alice@uni.example,S-1,Mon\n"
          "bob,Bob B,102,bob@uni.example,,Tue\n"
          "carol,Carol C,103,carol@uni.example,S-3,Mon\n")


def _markdown_answer(gid: str, source: str, points: float = 2) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(source, metadata={"nbgrader": {
        "grade": True, "solution": True, "locked": False, "grade_id": gid, "points": points,
        "schema_version": 3}})


def _write_nb(path: Path, cells: list[nbformat.NotebookNode]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nbformat.v4.new_notebook(cells=cells)))


@pytest.fixture
def course(tmp_path) -> Course:
    """A gradebook without any grading run. 01_a (5 points: q1 autograded 3, why by hand 2),
    02_b (4), 03_c (2, nobody graded). alice: 01_a 3 + hand 2, 02_b 4 minus 1 late; bob: 01_a
    1, why waiting for a hand grade, no 02_b; carol: nothing; zed (not in the roster): 02_b 2."""
    c = Course.at(tmp_path, tmp_path / "work")
    c.work.mkdir()
    with Gradebook(c.db_url) as gb:
        for name, cells in {"01_a": [("q1", 3, "code"), ("why", 2, "markdown")], "02_b": [("q2", 4, "code")],
                            "03_c": [("q3", 2, "code")]}.items():
            gb.add_assignment(name)
            gb.add_notebook("nb", name)
            for gid, points, kind in cells:
                gb.add_grade_cell(gid, "nb", name, max_score=points, cell_type=kind)
                if kind == "markdown":
                    gb.add_solution_cell(gid, "nb", name)
        grades = {("alice", "01_a"): {"q1": 3, "why": (2, "clear")}, ("alice", "02_b"): {"q2": 4},
                  ("bob", "01_a"): {"q1": 1, "why": None}, ("zed", "02_b"): {"q2": 2}}
        for (student, asg), cells in grades.items():
            gb.update_or_create_student(student)
            gb.add_submission(asg, student)
            for gid, value in cells.items():
                grade = gb.find_grade(gid, "nb", asg, student)
                if isinstance(value, tuple):
                    grade.manual_score = value[0]
                    gb.find_comment(gid, "nb", asg, student).manual_comment = value[1]
                elif value is not None:
                    grade.auto_score = value
                grade.needs_manual_grade = value is None
        gb.find_submission_notebook("nb", "02_b", "alice").late_submission_penalty = 1.0
        gb.db.commit()
    return c


def _table(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def _roster(tmp_path: Path, text: str = ROSTER) -> Path:
    path = tmp_path / "roster.csv"
    path.write_text(text)
    return path


def test_generic_has_graded_assignments_and_empty_cells(course, tmp_path):
    out = tmp_path / "grades.csv"
    report = export_grades(course, _roster(tmp_path), out)
    assert _table(out) == [["student_id", "name", "lms_id", "01_a (max 5)", "02_b (max 4)"],
                           ["alice", "Alice A", "101", "5", "3"],   # 02_b: 4 - 1 late
                           ["bob", "Bob B", "102", "1", ""],        # no 02_b submission: empty, not 0
                           ["carol", "Carol C", "103", "", ""],
                           ["zed", "", "", "", "2"]]                 # graded, not in the roster
    assert (report.rows, report.skipped) == (4, ["03_c"])          # nobody graded 03_c: no column
    assert report.pending == ["bob/01_a"] and report.not_in_roster == ["zed"]


def test_generic_total_and_zeros_only_when_asked(course, tmp_path):
    out = tmp_path / "grades.csv"
    export_grades(course, _roster(tmp_path), out, ["01_a", "02_b"], total=True)
    assert _table(out)[:3] == [["student_id", "name", "lms_id", "01_a (max 5)", "02_b (max 4)", "total (max 9)"],
                               ["alice", "Alice A", "101", "5", "3", "8"], ["bob", "Bob B", "102", "1", "", "1"]]
    report = export_grades(course, _roster(tmp_path), out, missing_as_zero=True)
    assert _table(out)[0][3:] == ["01_a (max 5)", "02_b (max 4)", "03_c (max 2)"] and report.skipped == []
    assert _table(out)[3] == ["carol", "Carol C", "103", "0", "0", "0"]


def test_canvas_gradebook_csv(course, tmp_path):
    """Canvas's importer reads the student columns up to Section, matches a student by ID (the
    Canvas user id) or the SIS ids, an assignment by the id in ``Name (id)``, and the second row
    starting with Points Possible as the maxima. Students without a grade get no row."""
    out = tmp_path / "canvas.csv"
    report = export_grades(course, _roster(tmp_path), out, fmt="canvas", canvas_ids=parse_canvas_ids(["01_a=1234"]))
    assert _table(out) == [[*CANVAS_STUDENT, "01_a (1234)", "02_b"],
                           ["    Points Possible", "", "", "", "", "5", "4"],
                           ["Alice A", "101", "S-1", "", "Mon", "5", "3"],
                           ["Bob B", "102", "", "", "Tue", "1", ""]]
    assert report.rows == 2 and report.not_in_roster == ["zed"]


def test_canvas_needs_an_identifier(course, tmp_path):
    roster = _roster(tmp_path, "student_id,name,lms_id\nalice,Alice A,101\nbob,Bob B,\n")
    with pytest.raises(GraderError, match=r"no Canvas identifier for bob .*lms_id.*sis_user_id or sis_login_id"):
        export_grades(course, roster, tmp_path / "canvas.csv", fmt="canvas")


def test_moodle_grade_import_csv(course, tmp_path):
    out = tmp_path / "moodle.csv"
    export_grades(course, _roster(tmp_path), out, fmt="moodle")
    assert _table(out) == [["Email address", "01_a", "02_b"], ["alice@uni.example", "5", "3"],
                           ["bob@uni.example", "1", ""]]
    export_grades(course, _roster(tmp_path, "student_id,name,lms_id,id_number\nalice,A,1,N-1\nbob,B,2,N-2\n"),
                  out, ["02_b"], fmt="moodle")
    assert _table(out) == [["ID number", "02_b"], ["N-1", "3"]]


def test_moodle_needs_email_or_id_number(course, tmp_path):
    with pytest.raises(GraderError, match=r"roster.csv has no email or id_number column.*add one"):
        export_grades(course, _roster(tmp_path, "student_id,name,lms_id\nalice,A,1\n"), tmp_path / "m.csv",
                      fmt="moodle")


@pytest.mark.parametrize("kwargs, message", [
    ({"assignments": ["09_nope"]}, r"09_nope not in the gradebook .*known: 01_a, 02_b, 03_c"),
    ({"fmt": "canvas", "total": True}, r"--total is for the generic format"),
    ({"fmt": "canvas", "canvas_ids": {"09_nope": "1"}}, r"--canvas-id names 09_nope"),
    ({"fmt": "blackboard"}, r"use one of generic, canvas, moodle"),
])
def test_export_refuses_with_a_reason(course, tmp_path, kwargs, message):
    with pytest.raises(GraderError, match=message):
        export_grades(course, _roster(tmp_path), tmp_path / "x.csv", **kwargs)
    with pytest.raises(GraderError, match=r"ASSIGNMENT=ID"):
        parse_canvas_ids(["01_a:1234"])


def test_export_command(course, tmp_path, capsys):
    roster = _roster(tmp_path)
    assert main(["--root", str(course.root), "export", "--roster", str(roster), "--format", "canvas",
                 "--canvas-id", "02_b=77"]) == 0
    assert _table(course.work / "exports" / "grades-canvas.csv")[0] == [*CANVAS_STUDENT, "01_a", "02_b (77)"]
    printed = capsys.readouterr().out
    assert "nobody has a grade yet: 03_c" in printed and "bob/01_a" in printed and "not in the canvas file: zed" in printed


def _sheet(course: Course, tmp_path: Path) -> Path:
    """work/autograded/ and solutions/ notebooks for the sheet: bob's answer, the model answer."""
    _write_nb(course.autograded / "bob" / "01_a" / "nb.ipynb", [_markdown_answer("why", "Because k squared.")])
    _write_nb(course.solutions / "01_a" / "nb.ipynb",
              [_markdown_answer("why", "### BEGIN SOLUTION\nModel answer.\n\n**Rubric.** 2 points.\n### END SOLUTION")])
    return tmp_path / "sheet.csv"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _save(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, MANUAL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_sheet_shows_answer_and_rubric(course, tmp_path):
    sheet = _sheet(course, tmp_path)
    assert manual_template(course, "01_a", sheet).rows == 1
    assert _rows(sheet) == [{"student": "bob", "assignment": "01_a", "notebook": "nb", "grade_id": "why",
                             "max_score": "2", "score": "", "comment": "", "answer": "Because k squared.",
                             "rubric": "Model answer.\n\n**Rubric.** 2 points."}]
    (course.autograded / "bob" / "01_a" / "nb.ipynb").unlink()
    manual_template(course, "01_a", sheet)  # nothing filled in yet: rewritten
    assert _rows(sheet)[0]["answer"].startswith("[no autograded notebook ")


def test_sheet_with_grades_is_kept(course, tmp_path):
    sheet = _sheet(course, tmp_path)
    manual_template(course, "01_a", sheet)
    rows = _rows(sheet)
    rows[0].update(score="1.5", comment="half")
    graded_elsewhere = {**rows[0], "student": "alice", "answer": "", "score": "2", "comment": ""}   # already imported
    _save(sheet, rows + [graded_elsewhere])
    before = sheet.read_text()
    with pytest.raises(GraderError, match=re.escape(f"{sheet} has 2 row(s) with a score or comment") + ".*--merge"):
        manual_template(course, "01_a", sheet)
    assert sheet.read_text() == before

    result = manual_template(course, "01_a", sheet, merge=True)
    assert (result.rows, result.kept, result.reopened) == (2, 2, [])
    assert [(r["student"], r["score"], r["comment"]) for r in _rows(sheet)] == [("alice", "2", ""), ("bob", "1.5", "half")]
    assert import_manual(course, sheet) == 2   # answer and rubric columns are not read

    _write_nb(course.autograded / "bob" / "01_a" / "nb.ipynb", [_markdown_answer("why", "Rewritten.")])
    with Gradebook(course.db_url) as gb:  # as autograde leaves a changed answer
        grade = gb.find_grade("why", "nb", "01_a", "bob")
        grade.manual_score, grade.needs_manual_grade = None, True
        gb.db.commit()
    result = manual_template(course, "01_a", sheet, merge=True)
    assert result.reopened == ["bob/nb/why (was 1.5)"] and result.kept == 1
    assert [(r["student"], r["score"], r["answer"]) for r in _rows(sheet)] == [("alice", "2", ""), ("bob", "", "Rewritten.")]


def test_sheet_refuses_with_a_reason(course, tmp_path):
    other = tmp_path / "roster.csv"
    other.write_text(ROSTER)
    with pytest.raises(GraderError, match=r"is not a hand-grading sheet"):
        manual_template(course, "01_a", other)
    with pytest.raises(GraderError, match=r"assignment 09_nope is not in the gradebook .*known: 01_a, 02_b, 03_c"):
        manual_template(course, "09_nope", tmp_path / "sheet.csv")


# --- end to end: regrading keeps hand grades --------------------------------------------------

WHY = {"alice": "The constant comes out squared: Var(3y) = 9 Var(y).", "bob": "Variance is linear."}


def _grade(course: Course, student: str) -> tuple[float | None, str | None, bool]:
    with Gradebook(course.db_url) as gb:
        grade = gb.find_grade("why", "part1", kit.ASG, student)
        comment = gb.find_comment("why", "part1", kit.ASG, student)
        return grade.manual_score, comment.manual_comment, grade.needs_manual_grade


@pytest.mark.slow
def test_regrade_keeps_unchanged_hand_grades(tmp_path, capsys):
    """Grade, grade by hand, regrade: the unchanged answer keeps its hand grade and export counts
    it; the changed answer needs a hand grade again, and the merged sheet reopens its row."""
    with kit.clean_jupyter(tmp_path):
        course = kit.build_course(tmp_path / "course")
        for student, why in WHY.items():
            kit.submit(course, student, kit.standard(course, {"why": why}))
        assert [r.outcome for r in kit.grade_all(course).values()] == ["graded"] * 2
        sheet = course.work / "manual" / f"{kit.ASG}.csv"
        root = ["--root", str(course.root)]
        assert main([*root, "manual", "template", kit.ASG]) == 0
        rows = _rows(sheet)
        assert [(r["student"], r["grade_id"], r["answer"]) for r in rows] == [("alice", "why", WHY["alice"]),
                                                                           ("bob", "why", WHY["bob"])]
        assert all("**Rubric (1 point).**" in r["rubric"] for r in rows)
        rows[0].update(score="1", comment="clear")
        rows[1].update(score="0", comment="not linear")
        _save(sheet, rows)
        assert main([*root, "manual", "import", str(sheet)]) == 0
        assert main([*root, "manual", "template", kit.ASG]) != 0
        assert "--merge" in capsys.readouterr().err

        kit.submit(course, "bob", kit.standard(course, {"why": "Variance scales with k squared."}))
        assert main([*root, "autograde", kit.ASG, "--regrade", "--workers", "2", "--timeout", str(kit.TIMEOUT)]) == 0
        assert _grade(course, "alice") == (1.0, "clear", False)   # the hand grade stands
        assert _grade(course, "bob") == (None, None, True)        # a new answer: graded by hand again

        roster = tmp_path / "roster.csv"
        roster.write_text("student_id,name,lms_id\nalice,Alice A,1\nbob,Bob B,2\n")
        report = export_grades(course, roster, tmp_path / "grades.csv")
        assert _table(tmp_path / "grades.csv")[1:] == [["alice", "Alice A", "1", "6"], ["bob", "Bob B", "2", "5"]]
        assert report.pending == [f"bob/{kit.ASG}"]

        result = manual_template(course, kit.ASG, sheet, merge=True)
        assert result.reopened == ["bob/part1/why (was 0)"] and result.kept == 1
        assert [(r["student"], r["score"], r["answer"]) for r in _rows(sheet)] == [
            ("alice", "1", WHY["alice"]), ("bob", "", "Variance scales with k squared.")]
