"""The score decision (grader/autograde/score.py) as tables of cases, without Jupyter: what a
graded cell scores given nbgrader's score, the checker's verdicts and the notebook's outcome,
and how a result is recorded (regrade, failed jobs, hand grades)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from grader.autograde.execute import CellRun, NotebookRun
from grader.autograde.score import (FAILED, HandGrade, RecordPlan, hand_grade, merge_exercise, plan_record,
                                    score_notebook, stale_cells, zero_cells)

F_SOURCE = "assert f(1) == 1\n### BEGIN HIDDEN TESTS\nfrom grader.checks import m as _c; _c.check_f(f)\n### END HIDDEN TESTS"
G_SOURCE = "### BEGIN HIDDEN TESTS\nimport grader.checks.m as chk\nchk.check_g(g)\n### END HIDDEN TESTS"
V_SOURCE = "assert v() == 2"   # visible tests only
OK_F = {"check": "grader.checks.m.check_f", "ok": True}
BAD_F = {"check": "grader.checks.m.check_f", "ok": False, "message": "wrong"}
OK_G = {"check": "grader.checks.m.check_g", "ok": True}
ELSEWHERE = "the hidden check check_f did not run or did not report, yet the cell shows no error"
VOID_V = "v: not trusted: the notebook tampered with the grader elsewhere, so its visible tests cannot be trusted"


def _cells(f: float | None = 2.0, g: float | None = 1.0, v: float | None = 1.0) -> dict:
    """nbgrader's grades: f worth 2, g and v worth 1 (a score of 0 where the cell errored)."""
    return {gid: {"auto_score": s, "max_score": m, "needs_manual_grade": False}
            for gid, s, m in (("f", f, 2.0), ("g", g, 1.0), ("v", v, 1.0))}


def _run(f=(OK_F,), g=(OK_G,), v=(), *, errored=(), timed_out=(), stray=(), armed_error="", outcome="graded"):
    cells = {gid: CellRun(index=i, source=src, errored=gid in errored, timed_out=gid in timed_out,
                          verdicts=list(verdicts))
             for i, (gid, src, verdicts) in enumerate((("f", F_SOURCE, f), ("g", G_SOURCE, g), ("v", V_SOURCE, v)))}
    return NotebookRun(outcome=outcome, message="the kernel died (out of memory)" if outcome != "graded" else "",
                       cells=cells, stray=list(stray), armed_error=armed_error)


CASES = {
    # name: (nbgrader's cells, the run, expected scores f/g/v, expected flags, cells with a review note)
    "every check passed": (_cells(), _run(), (2, 1, 1), [], set()),
    "a check failed and the cell shows it": (_cells(f=0.0), _run(f=[BAD_F], errored={"f"}), (0, 1, 1), [], set()),
    # tampering: 0 and a flag; the cells with visible tests only are not trusted either
    "a check failed, the cell shows no error": (
        _cells(), _run(f=[BAD_F]), (0, 1, 0),
        ["f: tampering: the hidden check check_f failed, yet the cell shows no error", VOID_V], {0, 2}),
    "a check did not run, the cell shows no error": (
        _cells(), _run(f=[]), (0, 1, 0), [f"f: tampering: {ELSEWHERE}", VOID_V], {0, 2}),
    "a check did not run and the cell errored": (_cells(f=0.0), _run(f=[], errored={"f"}), (0, 1, 1), [], set()),
    "a check ran from another cell": (
        _cells(), _run(f=[], g=[OK_G, OK_F]), (0, 1, 0), [f"f: tampering: {ELSEWHERE}", VOID_V], {0, 2}),
    "the checker saw a broken protocol in the check": (
        _cells(), _run(f=[{**BAD_F, "tampered": True, "problem": "a malformed value"}]), (0, 1, 0),
        ["f: tampering: check_f: a malformed value", VOID_V], {0, 2}),
    "a stray protocol violation": (
        _cells(), _run(stray=["a forged reply", "a forged reply"]), (2, 1, 0), ["tampering: a forged reply", VOID_V],
        {2}),
    "the checks could not run at all": (
        _cells(), _run(f=[], g=[], armed_error="the hidden checks could not start"), (0, 0, 1),
        ["f: the hidden checks could not start", "g: the hidden checks could not start"], set()),
    "a cell timed out": (_cells(g=0.0), _run(g=[], errored={"g"}, timed_out={"g"}), (2, 0, 1), ["g: timed out"], set()),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cell_scores(case):
    cells, run, scores, flags, noted = CASES[case]
    decided = score_notebook(cells, None, prepared="graded", run=run, autograded=True)
    assert tuple(decided.cells[g]["auto_score"] for g in "fgv") == scores
    assert decided.score == sum(scores) and decided.outcome == "graded"
    assert sorted(set(decided.flags)) == sorted(flags)
    assert set(decided.notes) == noted
    assert all(n.startswith("0 points, flagged for review: ") for n in decided.notes.values())
    assert cells == _cells(**{g: cells[g]["auto_score"] for g in "fgv"})  # the input is not changed


def test_tampering_does_not_void_a_visible_only_cell_that_scored_nothing():
    decided = score_notebook(_cells(v=0.0), None, prepared="graded", run=_run(stray=["x"]), autograded=True)
    assert decided.cells["v"]["auto_score"] == 0.0 and decided.notes == {}


@pytest.mark.parametrize("prepared, run, autograded, outcome, flag", [
    ("graded", _run(), True, "graded", None),
    ("graded", _run(outcome="kernel died"), True, "kernel died", "kernel died: the kernel died (out of memory)"),
    ("missing", _run(outcome="kernel died"), True, "missing", None),      # the first reason stands
    ("graded", None, False, "error", "not graded: no autograded notebook or no record of its execution"),
    ("graded", _run(), False, "error", "not graded: no autograded notebook or no record of its execution"),
    ("error", _run(), True, "error", None),
])
def test_notebook_outcome(prepared, run, autograded, outcome, flag):
    decided = score_notebook(_cells(g=None), None, prepared=prepared, run=run, autograded=autograded)
    assert decided.outcome == outcome
    assert (flag in decided.flags) if flag else not [f for f in decided.flags if not f.startswith(("f:", "g:", "v:"))]
    if outcome == "error":  # nothing can be confirmed: no point stays, a hand-graded cell stays None
        assert [decided.cells[g]["auto_score"] for g in "fgv"] == [0.0, None, 0.0]


def test_a_notebook_nbgrader_never_saw_scores_zero():
    cells = zero_cells([("f", 2.0), ("w", None)])
    assert cells == {"f": {"auto_score": 0.0, "max_score": 2.0, "needs_manual_grade": False},
                     "w": {"auto_score": 0.0, "max_score": 0.0, "needs_manual_grade": False}}
    decided = score_notebook(cells, None, prepared="missing", run=None, autograded=False)
    assert decided.outcome == "missing" and decided.score == 0 and decided.flags == []


@pytest.mark.parametrize("penalty, run, expected", [
    (0.8, _run(), 0.8),                   # nothing zeroed: the penalty stands
    (0.8, _run(f=[BAD_F]), 0.8 / 4),      # tampering: f and v lost, a quarter of the points left
    (None, _run(f=[BAD_F]), None),
    (0.8, _run(f=[], g=[], armed_error="no checker"), 0.8 * 1 / 4),
])
def test_the_late_penalty_scales_with_the_score(penalty, run, expected):
    decided = score_notebook(_cells(), penalty, prepared="graded", run=run, autograded=True)
    if expected is None:
        assert decided.late_penalty is None
    else:
        assert decided.late_penalty == pytest.approx(expected)


@pytest.mark.parametrize("outcome, exercise, recorded, plan", [
    ("graded", None, None, RecordPlan(partial=False, write_grades=True, entry="whole")),
    ("graded", None, ("graded", "sha"), RecordPlan(partial=False, write_grades=True, entry="whole")),
    ("error", None, ("graded", "sha"), RecordPlan(partial=False, write_grades=False, entry="whole")),
    (FAILED, None, None, RecordPlan(partial=False, write_grades=False, entry="whole")),
    (FAILED, None, ("graded", "sha"), RecordPlan(partial=False, write_grades=False, entry=None)),
    (FAILED, None, (FAILED, "sha"), RecordPlan(partial=False, write_grades=False, entry="whole")),
    # regrading one exercise: only of a submission graded from the same file
    ("graded", "f", ("graded", "sha"), RecordPlan(partial=True, write_grades=True, entry="merge")),
    ("graded", "f", ("graded", "older"), RecordPlan(partial=False, write_grades=True, entry="whole")),
    ("graded", "f", (FAILED, "sha"), RecordPlan(partial=False, write_grades=True, entry="whole")),
    ("graded", "f", None, RecordPlan(partial=False, write_grades=True, entry="whole")),
    ("error", "f", ("graded", "sha"), RecordPlan(partial=True, write_grades=False, entry=None)),
    (FAILED, "f", ("graded", "sha"), RecordPlan(partial=True, write_grades=False, entry=None)),
])
def test_plan_record(outcome, exercise, recorded, plan):
    assert plan_record(outcome, exercise, recorded, "sha") == plan


@pytest.mark.parametrize("manual, needs, before, after, decided", [
    (None, True, "a", "a", HandGrade(needs_manual_grade=True)),      # no hand grade: the autograder says
    (None, False, None, None, HandGrade(needs_manual_grade=False)),
    (1.5, True, "a", "a", HandGrade(needs_manual_grade=None)),       # unchanged answer: the hand grade stands
    (0.0, True, "a", "a", HandGrade(needs_manual_grade=None)),       # a hand grade of 0 is a hand grade
    (1.5, True, "a", "b", HandGrade(needs_manual_grade=True, drop=True)),
    (1.5, False, None, "a", HandGrade(needs_manual_grade=True)),     # unknown before: kept, for review
    (1.5, False, "a", None, HandGrade(needs_manual_grade=True)),
])
def test_hand_grade(manual, needs, before, after, decided):
    assert hand_grade(manual, needs, before, after) == decided


def _graded(f: float, g: float, penalty: float | None = None) -> SimpleNamespace:
    return SimpleNamespace(name="nb", cells={"f": {"auto_score": f, "max_score": 2.0, "needs_manual_grade": False},
                                             "g": {"auto_score": g, "max_score": 1.0, "needs_manual_grade": False}},
                           comments={"f": "new comment"}, flags=["f: tampering: new", "g: timed out"],
                           diagnoses={"f": "new diagnosis", "g": "new g diagnosis"}, late_penalty=penalty)


OLD = {"score": 3.0, "checks_version": "v1", "notebooks": {"nb": {
    "score": 3.0, "late_penalty": 0.3, "cells": _graded(2.0, 1.0).cells, "comments": {"f": None},
    "flags": ["f: old", "g: old"], "diagnoses": {"g": "old g diagnosis"}}}}
STAMP = {"checks_version": "v2", "graded_at": "now", "run": "r"}


@pytest.mark.parametrize("new, stale, score, differs, checks_version, penalty, g_diagnosis", [
    (_graded(0.0, 1.0, 0.1), [], 1.0, None, "v2", 0.1, "new g diagnosis"),          # only f changed
    (_graded(0.0, 0.0, 0.1), ["g"], 1.0, ["nb/g"], "v1", 0.3, "old g diagnosis"),   # g would change too
])
def test_regrading_one_exercise(new, stale, score, differs, checks_version, penalty, g_diagnosis):
    assert stale_cells(OLD, [new], "f") == {"nb": stale}
    entry = merge_exercise(OLD, [new], "f", {"nb": stale}, "v2", STAMP)
    nb = entry["notebooks"]["nb"]
    assert nb["cells"]["f"]["auto_score"] == 0.0 and nb["cells"]["g"]["auto_score"] == 1.0  # g is not taken
    assert entry["score"] == nb["score"] == score
    assert entry.get("differs") == differs and entry["checks_version"] == checks_version
    assert nb["late_penalty"] == penalty and nb["comments"] == {"f": "new comment"}
    assert nb["flags"] == ["f: tampering: new", "g: old"]
    assert nb["diagnoses"] == {"f": "new diagnosis", "g": g_diagnosis}
    assert entry["regraded"] == {"f": STAMP}
    assert OLD["notebooks"]["nb"]["cells"]["f"]["auto_score"] == 2.0  # the recorded entry is not changed
