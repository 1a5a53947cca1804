"""Parallel autograding on this machine (``--workers N``), with real nbgrader on the fixture
assignment: the same grades, comments, flags and autograded notebooks as serial grading; BLAS
pinned to one thread in every grading kernel; a worker that dies fails only its own job."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import threading
import time

import pytest

from _grader_scale import ASG, GRADING, STUDENTS, fresh_work, jupyter_env, serial_baseline, snapshot
from grader.autograde.record import FAILED, audit_log, load_summary
from grader.cli import main
from grader.config import BLAS_THREAD_VARS, kernel_env
from grader.autograde.scheduler import autograde

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def env(tmp_path_factory):
    with jupyter_env(tmp_path_factory.mktemp("jupyter")):
        yield


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return serial_baseline(tmp_path_factory)


def test_the_serial_baseline_is_not_trivial(serial):
    """The reference the other runs must equal holds full, partial and zero marks, an error,
    a late penalty and a flag."""
    summary = load_summary(serial, ASG)["submissions"]
    scores = {s: e["notebooks"].get("fixture", {}).get("cells", {}) for s, e in summary.items()}
    assert scores["alice"]["square"]["auto_score"] == 2.0 and scores["alice"]["var_3y"]["auto_score"] == 1.0
    assert scores["bob"]["square"]["auto_score"] == 0.0 and scores["carol"]["var_3y"]["auto_score"] == 0.0
    erin = summary["erin"]  # not JSON: an error, or graded with nothing and flagged
    assert erin["score"] == 0 and (erin["outcome"] != "graded" or erin["notebooks"]["fixture"]["flags"])
    assert summary["bob"]["notebooks"]["fixture"]["late_penalty"] == 0.5
    assert summary["frank"]["notebooks"]["fixture"]["flags"] or scores["frank"]["square"]["auto_score"] == 2.0


def test_grading_kernels_run_one_blas_thread(serial, monkeypatch):
    for var in BLAS_THREAD_VARS:
        monkeypatch.setenv(var, "8")  # the instructor's own setting does not reach the kernels
    assert all(kernel_env(serial.root)[var] == "1" for var in BLAS_THREAD_VARS)
    nb = json.loads((serial.autograded / "alice" / ASG / "fixture.ipynb").read_text())
    printed = ["".join(o["text"]) for c in nb["cells"] for o in c.get("outputs", [])
               if c["metadata"].get("nbgrader", {}).get("grade_id") == "var_3y_answer" and o.get("name") == "stdout"]
    assert printed and printed[0].startswith("1 1 1\n"), printed


def test_two_workers_grade_exactly_like_serial(serial, tmp_path_factory):
    course = fresh_work(tmp_path_factory, "workers2")
    results = autograde(course, ASG, workers=2, **GRADING)
    assert sorted(r.student for r in results) == sorted(STUDENTS)
    assert snapshot(course) == snapshot(serial)
    assert sorted(row["student"] for row in audit_log(course, ASG)) == sorted(STUDENTS)


def _kill_a_worker_soon(killed: list[int]) -> threading.Thread:
    """SIGKILL the first grading worker seen, 0.5 s after it appears (its job is under way)."""
    def run() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = [p for p in mp.active_children() if p.name == "grader-worker"]
            if workers:
                time.sleep(0.5)
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append(workers[0].pid)
                return
            time.sleep(0.05)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_dead_worker_fails_only_its_job_and_the_next_run_grades_it(serial, tmp_path_factory):
    course = fresh_work(tmp_path_factory, "killed-worker")
    some = ["alice", "bob", "carol"]
    killed: list[int] = []
    thread = _kill_a_worker_soon(killed)
    results = autograde(course, ASG, some, workers=2, **GRADING)
    thread.join()
    assert killed, "no worker was seen"
    failed = [r for r in results if r.outcome == FAILED]
    assert len(failed) == 1 and "killed by signal 9" in failed[0].message, [r.message for r in results]
    assert sorted(r.student for r in results) == some
    assert all(r.outcome == "graded" for r in results if r is not failed[0])
    retried = autograde(course, ASG, some, workers=2, **GRADING)
    assert [(r.student, r.outcome) for r in retried] == [(failed[0].student, "graded")]
    ours, reference = snapshot(course), snapshot(serial)
    assert ours["summary"] == {s: reference["summary"][s] for s in some}
    assert ours["autograded"] == {k: v for k, v in reference["autograded"].items() if k.split("/")[0] in some}


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers 0: give a number of processes >= 1"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "either --workers"),
    (["--exercise", "nope"], "00_fixture has no graded cell 'nope'; its exercises: square, var_3y, why_k_squared"),
    (["--db", "not a url"], "gradebook URL 'not a url' is not a database URL"),
    (["--db", "postgresql+nodriver://u@127.0.0.1/x"], "no database driver for postgresql+nodriver"),
])
def test_autograde_flags_explain_bad_values(serial, capsys, args, message):
    argv = ["--root", str(serial.root), "--work", str(serial.work), "autograde", ASG, *args]
    assert main(argv) == 2  # bad input
    assert message in capsys.readouterr().err
