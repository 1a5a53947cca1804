"""Stock nbgrader on this course: the configuration it reads (grader/nbgrader_config.py) lets
every nbgrader command run except autograde, which would run the hidden checks inside the
student's kernel. ``nbgrader autograde`` stops before touching anything; formgrader's Autograde
button (nbgrader's API) saves no grade, and the next ``python -m grader autograde`` grades the
submission again instead of calling it up to date."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from traitlets.config.loader import PyFileConfigLoader

from fixtures.attacks import kit
from grader.autograde.record import load_summary
from grader.cli import main

pytestmark = pytest.mark.slow


def _state(course) -> tuple[dict, dict]:
    files = {str(p.relative_to(course.work)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(course.autograded.rglob("*")) if p.is_file()}
    return load_summary(course, kit.ASG)["submissions"], files


@pytest.fixture()
def graded(tmp_path):
    with kit.clean_jupyter(tmp_path):
        course = kit.build_course(tmp_path / "course")
        kit.submit(course, "s", kit.standard(course))
        assert main(["--root", str(course.root), "autograde", kit.ASG]) == 0
        yield course


def test_stock_autograde_stops_before_touching_anything(graded):
    before = _state(graded)
    done = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", kit.ASG, "--force",
                           f"--NbGrader.config_file={graded.root / 'grader' / 'nbgrader_config.py'}"],
                          cwd=graded.root, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "python -m grader autograde" in done.stderr and "Traceback" not in done.stderr
    assert _state(graded) == before


def test_formgraders_autograde_saves_nothing_and_the_next_run_grades_again(graded, capsys):
    from nbgrader.apps import NbGraderAPI

    before = _state(graded)[0]
    environ, path = dict(os.environ), list(sys.path)
    try:  # the config sets the course's PYTHONPATH and sys.path, as in formgrader's server process
        config = PyFileConfigLoader("nbgrader_config.py", path=str(graded.root / "grader")).load_config()
        outcome = NbGraderAPI(config=config).autograde(kit.ASG, "s", force=True)
    finally:  # not in this one: later tests' kernels would import this fixture's course
        os.environ.clear()
        os.environ.update(environ)
        sys.path[:] = path
    assert not outcome["success"] and "python -m grader autograde" in outcome["log"]
    assert _state(graded)[0] == before  # no grade saved
    capsys.readouterr()
    assert main(["--root", str(graded.root), "autograde", kit.ASG]) == 0
    out = capsys.readouterr().out
    assert "1 graded" in out  # not "up to date": its autograded folder is gone
    assert out.startswith("[1/1, ") and "] s: 5/6 in " in out  # progress: done of all, elapsed
    assert _state(graded)[0]["s"]["score"] == before["s"]["score"]
