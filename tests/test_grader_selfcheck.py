"""``python -m grader selfcheck``: a self-learner's notebook graded by the hidden checks.

Real runs of the command on a half-done 02_optimizers notebook as a student would have it (the
release with some answers filled in, one of them with a known mistake, one left as the stub):
each exercise says pass, the named mistake, or the error, nothing is written to the course's
working area, and bad input is one clear error.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.config import REPO_ROOT
from grader.release.fabricate import fill_submission
from grader.nb import without_solution_markers

pytestmark = pytest.mark.slow
ASG, NB = "02_optimizers", "optimizers"


def _selfcheck(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", "--root", str(REPO_ROOT), "--work", str(cwd / "work"),
                           "selfcheck", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def _cell(nb: nbformat.NotebookNode, grade_id: str) -> str:
    return next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def test_a_half_done_notebook_gets_pass_the_named_mistake_or_the_error(tmp_path: Path) -> None:
    solution = nbformat.read(REPO_ROOT / "solutions" / ASG / f"{NB}.ipynb", as_version=4)
    release = nbformat.read(REPO_ROOT / "notebooks" / ASG / f"{NB}.ipynb", as_version=4)
    adam = without_solution_markers(_cell(solution, "adam_step_impl"))
    corrected = "v_hat = v / (1 - beta2 ** t)"
    assert corrected in adam, "the model Adam changed: update the mistake this test makes"
    answers = {"adam_step_impl": adam.replace(corrected, "v_hat = v"), "newton_step_impl": None}
    folder = tmp_path / "mine"
    folder.mkdir()
    mine = folder / "my_optimizers.ipynb"  # renamed, outside the course: found by its cells
    nbformat.write(fill_submission(release, solution, answers), mine)
    before = mine.read_bytes()

    run = _selfcheck(str(mine), "--assignment", ASG, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = {line.split()[0]: line for line in run.stdout.splitlines() if line.startswith("  ") and line.split()}
    assert "pass" in lines["sgd_step"], run.stdout
    assert "known mistake" in lines["adam_step"] and "bias-corrected" in lines["adam_step"], run.stdout
    assert "not implemented yet" in lines["newton_step"], run.stdout
    assert "graded by hand" in lines["newton_saddle"], run.stdout
    assert "autograded:" in run.stdout
    assert "BEGIN HIDDEN" not in run.stdout and "check_" not in run.stdout
    assert mine.read_bytes() == before, "selfcheck changed the student's notebook"
    assert not (tmp_path / "work").exists(), "selfcheck recorded something in the working area"


@pytest.mark.parametrize("args, needle", [
    (["missing.ipynb"], "is not a file"),
    (["{nb}", "--assignment", "07_nothing"], "no assignment '07_nothing'"),
    (["{nb}"], "cannot tell which assignment"),
])
def test_bad_input_is_one_clear_error(tmp_path: Path, args: list[str], needle: str) -> None:
    nb = tmp_path / "scratch.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), nb)
    run = _selfcheck(*[a.format(nb=nb) for a in args], cwd=tmp_path)
    assert run.returncode == 2 and needle in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
