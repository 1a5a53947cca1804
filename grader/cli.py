"""``python -m grader`` / ``deeptrain-grader``: the instructor's commands over the grading flow.

    build      solutions/ -> notebooks/ (+ --verify, --student-edition DIR)
    check      solutions score full marks, releases zero, catalog and notebooks agree
    collect    a folder or LMS zip -> work/submitted/<student>/<assignment>/
    autograde  grade submissions (scratch copy per submission, --workers N or --scheduler ADDRESS
               to grade in parallel, one writer to the gradebook, resumable, --regrade)
    feedback   HTML feedback without hidden tests
    manual     template (answers and rubrics, --merge) / import hand-graded scores (CSV)
    export     grades for an LMS import (generic, Canvas or Moodle CSV) keyed by a roster
    report     per-exercise table and histogram
    validate   run a notebook's visible tests (what a student sees)
    selfcheck  grade your own notebook with the hidden checks, recording nothing
    catalog    every graded cell of the course

Exit status, every command: 0 done; 1 a grading failure (a submission that could not be graded,
failing checks or visible tests, collected files that need attention; listed above it); 2 bad
input, nothing done (a missing or unknown assignment, an unreadable or corrupt zip, notebook,
roster or CSV, a bad option or database URL, a gradebook or scheduler that cannot be reached;
a gradebook lost mid-run keeps what was printed), with one paragraph on stderr naming the
problem and the fix.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from grader.defaults import DB_ENV, ZipLimits  # light: --help and a bad option need no nbgrader
from grader.errors import GraderError, UsageError

if TYPE_CHECKING:
    from grader.autograde.pipeline import Result
    from grader.config import Course

__all__ = ["main"]


def _course(args: argparse.Namespace) -> Course:
    from grader.config import Course

    return Course.at(args.root, args.work, args.db)


def cmd_build(args: argparse.Namespace) -> int:
    from grader.release.build import build, student_edition, verify_release

    course = _course(args)
    course.check_assignment(*args.assignments)
    if args.verify:
        problems = verify_release(course)
        print("\n".join(problems) or "notebooks/ is up to date with solutions/")
        return 1 if problems else 0
    for path in build(course, args.assignments or None):
        print(f"wrote {path.relative_to(course.root)}")
    if args.student_edition:
        dest = Path(args.student_edition).resolve()
        stubbed = student_edition(course, dest, verify=False)  # just built
        print(f"student edition in {dest}: notebooks/, course/ with {len(stubbed)} reference "
              f"function(s) stubbed: {', '.join(ex.replaces for ex in stubbed) or 'none'}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from grader.check import check_course

    course = _course(args)
    course.check_assignment(*args.assignments)
    problems = check_course(course, args.assignments or None, timeout=args.timeout)
    if problems:
        print(f"\n{len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems))
        return 1
    print("check passed")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    """Exit 0: every file collected; 1: collected, but the students and files listed need
    attention; 2: nothing collected, the command's input is wrong."""
    from grader.autograde.collect import collect

    course = _course(args)
    limits = ZipLimits(max_bytes=args.max_unzipped_mb << 20, max_members=args.max_members)
    report = collect(course, Path(args.source), assignment=args.assignment,
                     roster=Path(args.roster) if args.roster else None, limits=limits, replace=args.replace)
    students = {s.student for s in report.collected}
    print(f"collected {len(report.collected)} notebook(s) of {len(students)} student(s) into {course.submitted}")
    for note in report.notes:
        print(f"  note: {note}")
    for flag in report.flagged:
        print(f"  FLAGGED {flag.student}: {flag.source}: {flag.reason}")
    for source, reason in report.unmatched:
        print(f"  NOT COLLECTED: {source}: {reason}")
    if not (report.flagged or report.unmatched):
        return 0
    flagged = sorted({f.student for f in report.flagged})
    print(f"needs attention: {len(flagged)} student(s) flagged ({', '.join(flagged) or 'none'}), "
          f"{len(report.unmatched)} file(s) of no known student")
    return 1


def _duration(seconds: float) -> str:
    """'42 s', '3 min 5 s', '1 h 2 min'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def cmd_autograde(args: argparse.Namespace) -> int:
    from grader.autograde.scheduler import autograde

    course = _course(args)
    course.check_assignment(args.assignment)
    counts = {"up to date": 0}
    folders = {p.parent.name for p in course.submitted.glob(f"*/{args.assignment}") if p.is_dir()}
    total = len(set(args.student) & folders if args.student else folders)
    start = time.perf_counter()

    def progress() -> str:
        """'[12/40, 1 min 5 s, about 2 min left]': done of all, elapsed, the rest at this pace."""
        done, graded = sum(counts.values()), sum(n for k, n in counts.items() if k != "up to date")
        elapsed = time.perf_counter() - start
        left = f", about {_duration(elapsed / graded * (total - done))} left" if graded and done < total else ""
        return f"[{done}/{total}, {_duration(elapsed)}{left}]"

    def show(result: Result | None, student: str) -> None:
        if result is None:
            counts["up to date"] += 1
            return
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
        if result.outcome != "graded":
            print(f"{progress()} {student}: {result.outcome.upper()} {(result.message or '').splitlines()[0]}",
                  flush=True)
            return
        flags = "; ".join(f for nb in result.notebooks for f in nb.flags)
        if args.exercise:
            cells = [nb.cells[args.exercise] for nb in result.notebooks if args.exercise in nb.cells]
            what = "; ".join(f"{args.exercise} {c['auto_score'] or 0:g}/{c['max_score']:g}" for c in cells)
        else:
            what = f"{result.score:g}/{result.max_score:g}"
        print(f"{progress()} {student}: {what} in {result.seconds:.1f} s" + (f"  [flagged: {flags}]" if flags else ""),
              flush=True)  # printed once recorded: a line here is a grade that survives a kill
        if result.late:
            print(f"  {student}: {result.late}", flush=True)

    try:
        results = autograde(course, args.assignment, args.student or None, regrade=args.regrade,
                            exercise=args.exercise, workers=args.workers, scheduler=args.scheduler,
                            timeout=args.timeout, late_penalty=args.late_penalty, due=args.due,
                            on_result=show)
    except KeyboardInterrupt:
        print(f"interrupted: every result printed above is recorded; run the same command again to "
              f"grade the rest ({course.summaries / (args.assignment + '.json')})", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - start
    where = f"Dask at {args.scheduler}" if args.scheduler else f"{args.workers} worker(s)"
    rate = f", {60 * len(results) / seconds:.1f} per minute" if results else ""
    print(f"{len(results)} submission(s) graded in {seconds:.1f} s with {where}{rate}; "
          + ", ".join(f"{n} {k}" for k, n in counts.items()))
    print(f"summary: {course.summaries / (args.assignment + '.json')}")
    return 1 if any(r.outcome != "graded" for r in results) else 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from grader.results.feedback import generate_feedback

    course = _course(args)
    course.check_assignment(args.assignment)
    pages = generate_feedback(course, args.assignment, args.student or None)
    print(f"{len(pages)} feedback page(s) in {course.feedback}, checked: no hidden tests, no grader paths")
    return 0


def cmd_manual(args: argparse.Namespace) -> int:
    from grader.results.export import import_manual, manual_template

    course = _course(args)
    if args.action == "template":
        course.check_assignment(args.assignment)
        out = Path(args.out or course.work / "manual" / f"{args.assignment}.csv")
        out.parent.mkdir(parents=True, exist_ok=True)
        sheet = manual_template(course, args.assignment, out, merge=args.merge)
        kept = f", {sheet.kept} filled-in row(s) kept" if args.merge else ""
        print(f"{sheet.rows} row(s){kept}: fill in score (and comment) in {out}, reading answer and "
              f"rubric, then `python -m grader manual import {out}`")
        for row in sheet.reopened:
            print(f"  reopened {row}: the answer changed since it was graded")
    else:
        print(f"imported {import_manual(course, Path(args.csv))} manual score(s)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from grader.results.export import export_grades, parse_canvas_ids

    course = _course(args)
    out = Path(args.out or course.work / "exports" / f"grades-{args.format}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    report = export_grades(course, Path(args.roster), out, args.assignment or None, fmt=args.format,
                           missing_as_zero=args.missing_as_zero, total=args.total,
                           canvas_ids=parse_canvas_ids(args.canvas_id or []))
    print(f"wrote {report.rows} row(s) to {out}")
    if report.skipped:
        print(f"  not exported, nobody has a grade yet: {', '.join(report.skipped)} (--missing-as-zero exports 0s)")
    if report.pending:
        print(f"  warning: {len(report.pending)} submission(s) still have answers to grade by hand "
              f"(`python -m grader manual template`): {', '.join(report.pending)}")
    if report.not_in_roster:
        where = "" if args.format == "generic" else f", so not in the {args.format} file"
        print(f"  warning: graded but not in the roster{where}: {', '.join(report.not_in_roster)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from grader.results.report import mistakes, report

    course = _course(args)
    course.check_assignment(args.assignment)
    suffix = "-mistakes" if args.mistakes else ""
    png = Path(args.png) if args.png else course.reports / f"{args.assignment}{suffix}.png"
    if args.mistakes:
        print(mistakes(course, args.assignment, png=png))
    else:
        print(report(course, args.assignment, png=png, students=args.students))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from grader.release.validate import validate

    ok, text = validate(Path(args.notebook), root=_course(args).root, timeout=args.timeout)
    print(text)
    return 0 if ok else 1


def cmd_selfcheck(args: argparse.Namespace) -> int:
    from grader.selfcheck import render, selfcheck

    result = selfcheck(_course(args), Path(args.notebook), assignment=args.assignment, timeout=args.timeout)
    print(render(result))
    return 0 if result.outcome == "graded" else 1


def cmd_catalog(args: argparse.Namespace) -> int:
    course = _course(args)
    if args.assignment:
        course.check_assignment(args.assignment)
    catalog = course.catalog()
    exercises = [ex for ex in catalog.exercises if not args.assignment or ex.assignment == args.assignment]
    if args.json:
        print(json.dumps([asdict(ex) for ex in exercises], indent=1))
        return 0
    if not exercises:
        print("the catalog is empty (grader/checks/*.toml)")
    current = None
    for ex in exercises:
        if ex.assignment != current:
            current = ex.assignment
            total = sum(e.points for e in exercises if e.assignment == current)
            print(f"{current} ({total:g} points)")
        line = f"  {ex.notebook}/{ex.id}  [{ex.kind}, {ex.points:g} pt]  {ex.summary}"
        if ex.kind == "function":
            line += f"\n      {ex.signature}"
            if ex.dtypes:
                line += "\n      dtypes: " + ", ".join(f"{d} rtol={ex.tol(d)[0]:g} atol={ex.tol(d)[1]:g}"
                                                   for d in ex.dtypes)
            if ex.replaces:
                line += f"\n      replaces {ex.replaces}"
        if ex.variants:
            line += "\n      accepts: " + "; ".join(ex.variants)
        print(line)
    return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default=argparse.SUPPRESS,
                        help="course root holding solutions/, notebooks/, course/, grader/ (default: the current folder if it has solutions/, else this checkout)")
    common.add_argument("--work", default=argparse.SUPPRESS,
                        help="working area for submissions, gradebook, feedback (default: ROOT/work)")
    common.add_argument("--db", default=argparse.SUPPRESS, metavar="URL",
                        help=f"gradebook database, e.g. postgresql://user:password@host/dbname (default: ${DB_ENV}, "
                             "else WORK/gradebook.db); PostgreSQL needs the cluster extra")
    parser = argparse.ArgumentParser(prog="python -m grader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--db", default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("build", cmd_build, "generate notebooks/ from solutions/ and register assignments in the gradebook")
    p.add_argument("assignments", nargs="*", help="assignment folders (default: all)")
    p.add_argument("--verify", action="store_true", help="only compare notebooks/ with a fresh build; exit 1 if they differ")
    p.add_argument("--student-edition", metavar="DIR", help="also write the student hand-out to the new folder DIR")

    p = add("check", cmd_check, "solutions score full marks, untouched releases zero; catalog and notebooks agree")
    p.add_argument("assignments", nargs="*", help="assignment folders (default: all)")
    p.add_argument("--timeout", type=int, default=60, help="seconds per cell (default 60)")

    p = add("collect", cmd_collect, "copy submissions from a folder or LMS zip into WORK/submitted")
    p.epilog = ("exit status: 0 all collected; 1 collected, but flagged students or files of no known "
                "student need attention (listed); 2 bad input (no such folder or zip, a corrupt zip, a bad "
                "roster, an unknown --assignment), nothing collected")
    p.add_argument("source", help="folder or .zip")
    p.add_argument("--assignment", help="assignment of flat files (default: from the notebook name)")
    p.add_argument("--roster", help="CSV student_id,name,lms_id: the student ids, found by LMS id or full name "
                   "(files it does not name are not collected)")
    p.add_argument("--max-unzipped-mb", type=int, default=ZipLimits.max_bytes >> 20, metavar="MB",
                   help="most a zip's notebooks may unpack to; past it nothing is collected (a zip bomb) "
                   f"(default {ZipLimits.max_bytes >> 20})")
    p.add_argument("--max-members", type=int, default=ZipLimits.max_members, metavar="N",
                   help=f"most entries a zip may have (default {ZipLimits.max_members})")
    p.add_argument("--replace", action="store_true",
                   help="this export is newer than what was collected: take its files where they differ from "
                   "earlier ones and neither time says which is newer (the replaced files are set aside)")

    p = add("autograde", cmd_autograde, "grade submissions: scratch copy per submission, here, in --workers "
            "processes or on a Dask --scheduler; one writer to the gradebook; resumes where a killed run stopped")
    p.add_argument("assignment")
    p.add_argument("--student", action="append", help="grade only this student (repeatable)")
    p.add_argument("--regrade", "--force", action="store_true",
                   help="grade again submissions that are up to date (same file, checks and settings)")
    p.add_argument("--exercise", metavar="GRADE_ID",
                   help="regrade every submission but record only this exercise (after fixing its check)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="grade N submissions at a time in worker processes (default 1: in this process)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="grade on the Dask cluster at ADDRESS (e.g. tcp://10.0.0.5:8786); needs the cluster extra")
    p.add_argument("--timeout", type=int, default=60, help="seconds per cell (default 60)")
    p.add_argument("--late-penalty", default="none", metavar="none|zero|FRACTION",
                   help="late notebooks: no penalty, score 0, or lose FRACTION (e.g. 0.1) of the score per started day")
    p.add_argument("--due", help="deadline, ISO 8601 (e.g. 2026-11-01T23:59:00+01:00); stored in the gradebook")

    p = add("feedback", cmd_feedback, "write HTML feedback without hidden tests")
    p.add_argument("assignment")
    p.add_argument("--student", action="append", help="only this student (repeatable)")

    p = add("manual", cmd_manual, "hand-graded scores: write a CSV to fill in, or import one")
    msub = p.add_subparsers(dest="action", required=True)
    t = msub.add_parser("template", parents=[common], help="CSV of the answers waiting for a hand grade")
    t.add_argument("assignment")
    t.add_argument("--out", help="CSV to write (default WORK/manual/ASSIGNMENT.csv)")
    t.add_argument("--merge", action="store_true",
                   help="the CSV has scores or comments filled in: keep those rows and add the new answers")
    i = msub.add_parser("import", parents=[common], help="import student,assignment,notebook,grade_id,score[,comment]")
    i.add_argument("csv")

    p = add("export", cmd_export, "write the grades for an LMS import, keyed by a roster: only what was graded "
            "(an assignment nobody has a grade in has no column, no submission is an empty cell)")
    p.add_argument("--roster", required=True, help="CSV student_id,name,lms_id; canvas may use sis_user_id, "
                   "sis_login_id, section; moodle needs email or id_number")
    p.add_argument("--format", choices=["generic", "canvas", "moodle"], default="generic",  # grader.results.export.FORMATS
                   help="generic (student_id,name,lms_id, one column per assignment), canvas (gradebook "
                   "import CSV) or moodle (CSV grade import); default generic")
    p.add_argument("--out", help="CSV to write (default WORK/exports/grades-FORMAT.csv)")
    p.add_argument("--assignment", action="append", help="only these assignments (repeatable; default all)")
    p.add_argument("--missing-as-zero", action="store_true",
                   help="0 for no submission, and a column for every assignment asked for (an LMS import "
                   "then overwrites grades given elsewhere)")
    p.add_argument("--total", action="store_true", help="add a total column (generic format only)")
    p.add_argument("--canvas-id", action="append", metavar="ASSIGNMENT=ID",
                   help="the Canvas assignment id of an assignment (repeatable): its column becomes 'ASSIGNMENT (ID)'")

    p = add("report", cmd_report, "per-exercise score table and a histogram of totals, or --mistakes")
    p.add_argument("assignment")
    p.add_argument("--png", help="chart file (default WORK/reports/ASSIGNMENT.png, -mistakes.png with --mistakes)")
    p.add_argument("--students", action="store_true", help="also list every student's total")
    p.add_argument("--mistakes", action="store_true",
                   help="what the class got wrong: the named mistakes the hidden checks diagnosed, per exercise")

    p = add("validate", cmd_validate, "run a notebook and show its failing visible tests")
    p.add_argument("notebook")
    p.add_argument("--timeout", type=int, default=60, help="seconds per cell (default 60)")

    p = add("selfcheck", cmd_selfcheck, "grade a notebook with the hidden checks, as autograde would, recording "
            "nothing: per exercise pass, the named mistake, or the error (full repository only)")
    p.add_argument("notebook")
    p.add_argument("--assignment", help="the notebook's assignment (default: from its folder or file name)")
    p.add_argument("--timeout", type=int, default=60, help="seconds per cell (default 60)")

    p = add("catalog", cmd_catalog, "list every graded cell: points, signatures, dtypes, tolerances")
    p.add_argument("--assignment", help="only this assignment")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m grader`` and the ``deeptrain-grader`` script."""
    args = _parser().parse_args(argv)
    # nbgrader starts `alembic` and kernels through PATH: this interpreter's bin/ goes first.
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    from sqlalchemy.exc import DBAPIError

    try:
        return args.func(args)
    except GraderError as exc:  # UsageError: exit 2, nothing done; otherwise 1, a grading failure
        error = exc
    except DBAPIError as exc:  # the gradebook's server went away or refused (PostgreSQL)
        first = str(exc.orig or exc).strip().splitlines()[0][:300]
        error = UsageError(
            f"the gradebook database stopped answering ({type(exc.orig or exc).__name__}: {first}). Every "
            "result printed above is recorded (each submission commits on its own): once the database is "
            "back, run the same command again and it carries on where it stopped.")
    print(f"error: {error}", file=sys.stderr)
    return error.exit_status
