"""The audit trail of autograding, with real nbgrader on the fixture assignment: a run killed
halfway (SIGKILL or Ctrl-C) keeps every grade it recorded and the next run grades only the
rest; re-running changes nothing; fixing a check and regrading one exercise touches only that
exercise; a failed attempt never replaces a recorded grade."""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys

import pytest

from _grader_scale import ASG, GRADING, fresh_work, jupyter_env, serial_baseline, snapshot
from grader.autograde.record import FAILED, Recorder, audit_log, load_summary
from grader.config import REPO_ROOT, Course
from grader.autograde.pipeline import checks_version, make_job
from grader.autograde.scheduler import autograde, failed_result

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def env(tmp_path_factory):
    with jupyter_env(tmp_path_factory.mktemp("jupyter")):
        yield


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return serial_baseline(tmp_path_factory)


RECORDED_LINE = re.compile(r"^\[\d+/\d+, [^\]]*\] \w+: ([A-Z]+ |[\d.]+/[\d.]+ in )")  # [done/all, time] graded, or OUTCOME message


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_an_interrupted_run_keeps_its_grades_and_the_next_one_resumes(serial, tmp_path_factory, sig):
    course = fresh_work(tmp_path_factory, f"killed-{sig.name}")
    some = ["alice", "bob", "carol", "erin"]
    cmd = [sys.executable, "-m", "grader", "--root", str(course.root), "--work", str(course.work),
           # one worker: after the first recorded result three jobs remain, one after another, so
           # the signal lands mid-run even when this test process is descheduled for a moment
           "autograde", ASG, *(f"--student={s}" for s in some), "--workers", "1",
           "--late-penalty", GRADING["late_penalty"], "--due", GRADING["due"]]
    run = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in run.stdout:  # a printed result is a recorded one
            if RECORDED_LINE.match(line):
                run.send_signal(sig)
                break
        _, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == (-9 if sig == signal.SIGKILL else 130), err
    if sig == signal.SIGINT:
        assert "interrupted: every result printed above is recorded" in err
    first = [row["student"] for row in audit_log(course, ASG)]
    assert first and len(first) < len(some), first

    resumed = autograde(course, ASG, some, workers=2, **GRADING)
    assert sorted(r.student for r in resumed) == sorted(set(some) - set(first))  # none twice
    assert sorted(row["student"] for row in audit_log(course, ASG)) == some
    ours, reference = snapshot(course), snapshot(serial)
    assert ours["summary"] == {s: reference["summary"][s] for s in some}
    assert ours["gradebook"] == {k: v for k, v in reference["gradebook"].items() if k[0] in some}
    assert ours["autograded"] == {k: v for k, v in reference["autograded"].items() if k.split("/")[0] in some}

    summary_file = course.summaries / f"{ASG}.json"
    before = json.loads(summary_file.read_text())
    assert autograde(course, ASG, some, workers=2, **GRADING) == []  # idempotent: nothing to grade
    after = json.loads(summary_file.read_text())
    assert after["submissions"] == before["submissions"] and len(audit_log(course, ASG)) == len(some)
    entry = after["submissions"]["alice"]
    assert {"outcome", "score", "max_score", "seconds", "checks_version", "sha256", "settings"} <= entry.keys()
    assert {"outcome", "score", "max_score", "seconds", "flags", "cells"} <= entry["notebooks"]["fixture"].keys()


def _buggy(check_source: str) -> str:
    """The fixture's checks with a bug in each: square expects x*x + 1, var_3y expects 7."""
    buggy = check_source.replace("reference(x), what=what", "reference(x) + 1, what=what").replace(
        "k**2 * var_y, what=", "k * var_y + 1, what=")
    assert buggy.count("+ 1") == 2
    return buggy


def test_fixing_a_check_and_regrading_one_exercise_changes_only_that_exercise(serial, tmp_path_factory):
    origin = serial_baseline(tmp_path_factory)
    root = tmp_path_factory.mktemp("regrade-root")
    shutil.copytree(origin.root, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("seed-work"))
    course = Course(root, fresh_work(tmp_path_factory, "regrade").work)
    checks = root / "grader" / "checks" / "fixture.py"
    fixed = checks.read_text()
    some = ["alice", "bob"]

    checks.write_text(_buggy(fixed))
    autograde(course, ASG, some, workers=2, **GRADING)
    cells = lambda: {s: {g: c["auto_score"] for g, c in load_summary(course, ASG)["submissions"][s]  # noqa: E731
                         ["notebooks"]["fixture"]["cells"].items()} for s in some}
    assert cells() == {"alice": {"square": 0.0, "var_3y": 0.0, "why_k_squared": None},
                       "bob": {"square": 0.0, "var_3y": 0.0, "why_k_squared": None}}
    buggy_version = checks_version(course, ASG)

    checks.write_text(fixed)
    results = autograde(course, ASG, some, exercise="var_3y", workers=2, **GRADING)
    assert sorted(r.student for r in results) == some
    assert cells() == {"alice": {"square": 0.0, "var_3y": 1.0, "why_k_squared": None},   # square untouched
                       "bob": {"square": 0.0, "var_3y": 1.0, "why_k_squared": None}}
    alice = load_summary(course, ASG)["submissions"]["alice"]
    assert alice["differs"] == ["fixture/square"] and alice["checks_version"] == buggy_version
    assert alice["regraded"]["var_3y"]["checks_version"] == checks_version(course, ASG)
    nb = json.loads((course.autograded / "alice" / ASG / "fixture.ipynb").read_text())
    errors = {c["metadata"]["nbgrader"]["grade_id"]: any(o["output_type"] == "error" for o in c["outputs"])
              for c in nb["cells"] if c["cell_type"] == "code"}
    assert errors["square"] and not errors["var_3y"]  # the notebook shows what was recorded
    assert sorted(((r["student"], r["exercise"] or "") for r in audit_log(course, ASG))) == \
        [("alice", ""), ("alice", "var_3y"), ("bob", ""), ("bob", "var_3y")]

    bob = load_summary(course, ASG)["submissions"]["bob"]  # wrong square: 0 under either checks
    assert "differs" not in bob and bob["checks_version"] == checks_version(course, ASG)

    # alice's square grade is stale under the fixed checks: a plain run regrades her alone, and
    # then every grade is what a run that only ever saw the fixed checks records
    assert [r.student for r in autograde(course, ASG, some, workers=2, **GRADING)] == ["alice"]
    ours, reference = snapshot(course), snapshot(serial)
    assert ours["summary"]["alice"] == reference["summary"]["alice"]
    assert ours["summary"]["bob"]["notebooks"] == reference["summary"]["bob"]["notebooks"]
    assert ours["gradebook"] == {k: v for k, v in reference["gradebook"].items() if k[0] in some}


def test_a_failed_attempt_never_replaces_a_recorded_grade(serial, tmp_path_factory):
    course = Course(serial.root, tmp_path_factory.mktemp("failed-attempt") / "work")
    shutil.copytree(serial.work, course.work)
    before = load_summary(course, ASG)["submissions"]
    job = make_job(course, ASG, "alice", course.submitted / "alice" / ASG, b"",
                   checks_version=before["alice"]["checks_version"], settings=before["alice"]["settings"])
    with Recorder(course) as rec:
        rec.record(failed_result(job, "the grading process died (killed by signal 9)"))
    assert load_summary(course, ASG)["submissions"] == before
    assert audit_log(course, ASG)[-1]["outcome"] == FAILED
    assert autograde(course, ASG, **GRADING) == []  # the recorded grade still stands


def test_checks_version_covers_only_the_assignments_own_checks(tmp_path):
    checks = tmp_path / "grader" / "checks"
    checks.mkdir(parents=True)
    for name, asg in (("one", "01_one"), ("two", "02_two")):
        (checks / f"{name}.toml").write_text(f'assignment = "{asg}"\n')
        (checks / f"{name}.py").write_text("def check(): pass\n")
    (checks / "_core.py").write_text("SHARED = 1\n")
    course = Course(tmp_path, tmp_path / "work")
    versions = lambda: (checks_version(course, "01_one"), checks_version(course, "02_two"),  # noqa: E731
                        checks_version(course))
    v1 = versions()
    (checks / "two.py").write_text("def check(): return None\n")
    v2 = versions()
    assert v2[0] == v1[0] and v2[1] != v1[1] and v2[2] != v1[2]
    (checks / "_core.py").write_text("SHARED = 2\n")
    v3 = versions()
    assert all(a != b for a, b in zip(v2, v3))
