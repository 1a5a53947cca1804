"""The one place that decides a graded cell's score (nbgrader's ``saveautogrades.py`` plays
this role in nbgrader). Pure functions over plain data; the pipeline and the recorder do the
reading and writing. In the order they apply to a submission:

1. **nbgrader's score.** nbgrader's autograde scores each graded cell (a test cell that
   raised scores 0). A notebook it never saw scores 0 on every graded cell (:func:`zero_cells`).
2. **The notebook's outcome** (:func:`notebook_outcome`): a notebook that could not be run
   to the end says why; one that errored keeps no point (nothing about it can be confirmed).
3. **The hidden checks** (:func:`expected_checks`, :func:`judge`): the checker ran them in a
   process of its own while the kernel answered their calls. nbgrader's score of a cell
   stands only if every hidden check of the cell ran and passed there. A check that did not
   run or failed although the cell shows no error (the notebook caught or hid the failure), a
   broken protocol and a check called from anywhere but its own cell are *tampering*: 0 points
   and a flag. After tampering anywhere in the notebook, a cell with visible tests only is not
   trusted either (:func:`apply_verdicts`).
4. **The late penalty**, a share of the score, scales with what is left (:func:`score_notebook`).
5. **Recording** (:func:`plan_record`): a failed job changes no grade; regrading one
   exercise of an unchanged submission takes only that exercise, and lists the other cells
   whose score would change (:func:`stale_cells`, :func:`merge_exercise`); a hand grade
   stands while the answer it graded is unchanged (:func:`hand_grade`).
"""
from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from grader.nb import split_hidden

__all__ = ["FAILED", "zero_cells", "total", "notebook_outcome", "expected_checks", "judge", "CellVerdict",
           "apply_verdicts", "score_notebook", "NotebookScore", "plan_record", "RecordPlan", "stale_cells",
           "merge_exercise", "hand_grade", "HandGrade", "of_exercise"]

#: Outcome of a job that produced no grade (its process died, its worker was lost, the checks
#: changed under it): such a submission is graded again by the next run.
FAILED = "failed"

Cells = dict[str, dict[str, Any]]   # grade_id -> {"auto_score", "max_score", "needs_manual_grade"}


class CellRunLike(Protocol):
    """A graded code cell as the executor saw it (:class:`grader.autograde.execute.CellRun`)."""

    index: int
    source: str
    errored: bool
    timed_out: bool
    verdicts: list[dict[str, Any]]


class NotebookRunLike(Protocol):
    """A notebook's execution (:class:`grader.autograde.execute.NotebookRun`)."""

    outcome: str
    message: str
    cells: dict[str, Any]          # grade_id -> CellRunLike
    armed_error: str
    stray: list[str]


class GradedNotebook(Protocol):
    """A notebook's grades (:class:`grader.autograde.pipeline.NotebookResult`)."""

    name: str
    cells: Cells
    comments: dict[str, str | None]
    flags: list[str]
    diagnoses: dict[str, str]
    late_penalty: float | None


# -- 1. nbgrader's score -----------------------------------------------------------------------

def zero_cells(graded: Iterable[tuple[str, float | None]]) -> Cells:
    """A notebook nbgrader never saw: every graded cell (grade_id, points) 0, as nbgrader
    scores a missing one."""
    return {gid: {"auto_score": 0.0, "max_score": points or 0.0, "needs_manual_grade": False}
            for gid, points in graded}


def total(cells: Mapping[str, Mapping[str, Any]]) -> float:
    """Sum of the auto scores (a cell graded by hand has None)."""
    return sum(c["auto_score"] or 0.0 for c in cells.values())


def _zeroed(cell: Mapping[str, Any]) -> dict[str, Any]:
    # a cell with a score gets 0; one without (None: graded by hand) keeps None
    return {**cell, "auto_score": 0.0 if cell["auto_score"] else cell["auto_score"]}


# -- 2. the notebook's outcome -------------------------------------------------------------------

def notebook_outcome(prepared: str, run: NotebookRunLike | None, autograded: bool) -> tuple[str, list[str]]:
    """The outcome of a notebook and the flags that say why, from preflight's outcome
    (``prepared``), the executor's ``run`` (None: it never ran) and whether nbgrader wrote an
    autograded notebook."""
    outcome, flags = prepared, []
    if run is not None and run.outcome != "graded" and outcome == "graded":
        outcome = run.outcome
        flags.append(f"{run.outcome}: {run.message}")
    if outcome == "graded" and (not autograded or run is None):
        outcome = "error"
        flags.append("not graded: no autograded notebook or no record of its execution")
    return outcome, flags


# -- 3. the hidden checks ------------------------------------------------------------------------

_IMPORT = re.compile(r"from\s+grader\.checks\s+import\s+(\w+)(?:\s+as\s+(\w+))?")
_IMPORT_MODULE = re.compile(r"import\s+grader\.checks\.(\w+)\s+as\s+(\w+)")
_CALL = re.compile(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.(check_\w+)\s*\(")


def expected_checks(source: str) -> list[str]:
    """``grader.checks.<module>.<check>`` names the hidden region(s) of a test cell call."""
    text = "\n".join(split_hidden(source)[1])
    aliases = {alias or module: module for module, alias in _IMPORT.findall(text)}
    aliases.update({alias: module for module, alias in _IMPORT_MODULE.findall(text)})
    names = []
    for prefix, check in _CALL.findall(text):
        module = aliases.get(prefix) or (prefix.split(".")[-1] if prefix.startswith("grader.checks.") else None)
        if module:
            names.append(f"grader.checks.{module}.{check}")
    return names


@dataclass
class CellVerdict:
    """What :func:`judge` decided for one graded cell."""

    trusted: bool                    # nbgrader's score may stand
    flags: list[str] = field(default_factory=list)
    tampered: bool = False


def judge(grade_id: str, source: str, errored: bool, verdicts: Iterable[Mapping[str, Any]]) -> CellVerdict:
    """Decide a graded cell from the checker's ``verdicts`` of the checks it ran while the cell
    ran; ``errored``: the cell shows an error (nbgrader scores it 0 anyway, so a check that did
    not run or failed is no sign of tampering there)."""
    expected = expected_checks(source)
    if not expected:
        return CellVerdict(trusted=True)
    pending = list(expected)
    flags: list[str] = []
    ok, tampered = True, False

    def flag(why: str) -> None:
        nonlocal tampered
        tampered = True
        flags.append(f"{grade_id}: tampering: {why}")

    for verdict in verdicts:
        name = str(verdict.get("check", ""))
        if name in pending:
            pending.remove(name)
        check = name.rsplit(".", 1)[-1]
        if verdict.get("ok") is True:
            continue
        ok = False
        if verdict.get("tampered"):
            flag(f"{check}: {verdict.get('problem')}")
        elif not errored:
            flag(f"the hidden check {check} failed, yet the cell shows no error")
    if pending:
        ok = False
        if not errored:
            missing = ", ".join(dict.fromkeys(n.rsplit(".", 1)[-1] for n in pending))
            flag(f"the hidden check {missing} did not run or did not report, yet the cell shows no error")
    return CellVerdict(trusted=ok and not tampered, flags=flags, tampered=tampered)


def apply_verdicts(cells: Cells, run: NotebookRunLike) -> tuple[Cells, list[str], dict[int, str]]:
    """The cells the checker's verdicts do not confirm set to 0: returns the new cells, the
    flags and, per cell index, the note the autograded notebook shows ("0 points, flagged for
    review: why"). When the checks could not run at all (``run.armed_error``: the grader's own
    failure) nothing is confirmed and nothing is tampering: the cells with hidden checks lose
    their points, with no note."""
    cells = {gid: dict(c) for gid, c in cells.items()}
    flags: list[str] = []
    notes: dict[int, str] = {}
    if run.armed_error:
        for gid, cell in run.cells.items():
            if expected_checks(cell.source):
                flags.append(f"{gid}: {run.armed_error}")
                cells[gid] = _zeroed(cells[gid])
        return cells, flags, notes
    decided = {gid: judge(gid, cell.source, cell.errored, cell.verdicts) for gid, cell in run.cells.items()}
    stray = list(dict.fromkeys(run.stray))
    flags += [f"tampering: {why}" for why in stray]
    tampered = bool(stray) or any(v.tampered for v in decided.values())
    for gid, cell in run.cells.items():
        verdict = decided[gid]
        flags += verdict.flags
        if cell.timed_out:
            flags.append(f"{gid}: timed out")
        trusted = verdict.trusted and not (tampered and not expected_checks(cell.source))
        if trusted or not cells.get(gid, {}).get("auto_score"):
            continue
        cells[gid]["auto_score"] = 0.0
        reasons = [f.split(": ", 1)[1] for f in verdict.flags] or [
            "the notebook tampered with the grader elsewhere, so its visible tests cannot be trusted"]
        if not verdict.flags:
            flags.append(f"{gid}: not trusted: {reasons[0]}")
        notes[cell.index] = "0 points, flagged for review: " + "; ".join(reasons)
    return cells, flags, notes


# -- 4. the notebook's score ---------------------------------------------------------------------

@dataclass
class NotebookScore:
    """What :func:`score_notebook` decided for one notebook."""

    outcome: str
    cells: Cells
    score: float
    late_penalty: float | None
    flags: list[str] = field(default_factory=list)
    notes: dict[int, str] = field(default_factory=dict)   # cell index -> review note to show


def score_notebook(cells: Cells, penalty: float | None, *, prepared: str, run: NotebookRunLike | None,
                   autograded: bool) -> NotebookScore:
    """A notebook's final grades from nbgrader's ``cells`` and late ``penalty``: steps 2 to 4."""
    outcome, flags = notebook_outcome(prepared, run, autograded)
    if outcome == "error":  # nothing about it can be confirmed
        cells = {gid: _zeroed(c) for gid, c in cells.items()}
    before = total(cells)
    notes: dict[int, str] = {}
    if autograded and run is not None:
        cells, more, notes = apply_verdicts(cells, run)
        flags += more
    score = total(cells)
    if penalty and before > 0:  # penalties are a share of the score: scale with it
        penalty = penalty * score / before
    return NotebookScore(outcome=outcome, cells=cells, score=score, late_penalty=penalty, flags=flags, notes=notes)


# -- 5. recording --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordPlan:
    """How :meth:`grader.autograde.record.Recorder.record` records a result."""

    partial: bool          # only the regraded exercise's cells change
    write_grades: bool     # the gradebook's scores and the autograded notebooks change
    entry: str | None      # the summary entry: "whole" (replaced), "merge" (one exercise) or None (kept)


def plan_record(outcome: str, exercise: str | None, recorded: tuple[str, str] | None, sha256: str) -> RecordPlan:
    """The plan for a result of ``outcome`` for submission ``sha256`` (all of it, or only
    exercise ``exercise``), given the ``recorded`` result's (outcome, sha256), if any.

    - A :data:`FAILED` job changes no grade; it leaves an entry only where there is none (or
      only a failed one): the next run grades the submission again.
    - With ``exercise``, a submission already graded from the same file gets only that
      exercise's cells; a new or changed submission is recorded whole.
    """
    partial = (exercise is not None and recorded is not None and recorded[0] == "graded"
               and recorded[1] == sha256)
    if outcome == FAILED or (partial and outcome != "graded"):
        keep = recorded is not None and recorded[0] != FAILED
        return RecordPlan(partial=partial, write_grades=False, entry=None if keep else "whole")
    if partial:
        return RecordPlan(partial=True, write_grades=True, entry="merge")
    return RecordPlan(partial=False, write_grades=outcome == "graded", entry="whole")


def of_exercise(flag: str, exercise: str | None) -> bool:
    """Whether ``flag`` ("<grade_id>: why") is exercise ``exercise``'s (None: every flag is)."""
    return exercise is None or flag.startswith(f"{exercise}:")


def stale_cells(old: Mapping[str, Any], notebooks: Sequence[GradedNotebook], exercise: str) -> dict[str, list[str]]:
    """Per notebook, the cells besides ``exercise`` whose score in the recorded entry ``old``
    the new grades change."""
    return {nb.name: [gid for gid, cell in nb.cells.items() if gid != exercise and cell["auto_score"]
                      != old["notebooks"].get(nb.name, {}).get("cells", {}).get(gid, {}).get("auto_score")]
            for nb in notebooks}


def merge_exercise(old: Mapping[str, Any], notebooks: Sequence[GradedNotebook], exercise: str,
                   stale: Mapping[str, list[str]], checks_version: str, stamp: dict[str, Any]) -> dict[str, Any]:
    """The recorded entry ``old`` with exercise ``exercise`` (a grade_id) taken from the new
    grades. Where no other cell of a notebook changes, its late penalty (a share of its score)
    comes along, and if no cell at all changes the entry's checks version moves to
    ``checks_version``; otherwise the stale cells are listed under ``differs`` (a plain
    autograde then regrades them all). ``stamp`` (checks version, time, run) goes under
    ``regraded``."""
    entry = copy.deepcopy(dict(old))
    for nb in notebooks:
        now = entry["notebooks"].get(nb.name)
        if now is None or exercise not in nb.cells:
            continue
        now["cells"][exercise] = nb.cells[exercise]
        if exercise in nb.comments:  # comments belong to answer cells: only a written one is both
            now["comments"][exercise] = nb.comments[exercise]
        now["flags"] = sorted([f for f in now["flags"] if not of_exercise(f, exercise)]
                              + [f for f in nb.flags if of_exercise(f, exercise)])
        # a check's message goes with its score: stale cells keep their recorded score and message
        keep, old_diagnoses = set(stale[nb.name]), now.get("diagnoses", {})
        now["diagnoses"] = {**{g: t for g, t in nb.diagnoses.items() if g not in keep},
                            **{g: t for g, t in old_diagnoses.items() if g in keep}}
        now["score"] = total(now["cells"])
        if not stale[nb.name]:
            now["late_penalty"] = nb.late_penalty
    entry["score"] = sum(nb["score"] for nb in entry["notebooks"].values())
    differs = [f"{name}/{gid}" for name, gids in stale.items() for gid in gids]
    if differs:
        entry["differs"] = differs
    else:
        entry.pop("differs", None)
        entry["checks_version"] = checks_version
    entry.setdefault("regraded", {})[exercise] = stamp
    return entry


@dataclass(frozen=True)
class HandGrade:
    """What becomes of a cell's hand grade when the cell is recorded again."""

    needs_manual_grade: bool | None   # None: left as it is
    drop: bool = False                # the manual score and comment are cleared


def hand_grade(manual_score: float | None, needs: bool, before: str | None, after: str | None) -> HandGrade:
    """A cell recorded again (``needs``: whether the autograder says it needs a hand grade;
    ``before``/``after``: the answer text recorded before and now, None when unknown).
    nbgrader's SaveAutoGrades marks every cell with a manual score for review again; here a
    hand grade stands while the answer it graded is unchanged, is dropped once that answer
    changed (the cell needs a hand grade again), and is kept but marked for review when either
    text is unknown (no notebook recorded before, or none now)."""
    if manual_score is None:
        return HandGrade(needs_manual_grade=needs)
    if before is None or after is None:
        return HandGrade(needs_manual_grade=True)
    if before != after:
        return HandGrade(needs_manual_grade=True, drop=True)
    return HandGrade(needs_manual_grade=None)
