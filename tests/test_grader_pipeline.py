"""End to end with real nbgrader on the fixture assignment (tests/fixtures/grader), in a
throwaway course root: build, check, autograde four fabricated submissions, hand grades,
feedback, export, report, validate, the student edition and the CLI."""
from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from grader.autograde.record import load_summary, record
from grader.release.build import student_edition, verify_release
from grader.check import check_course
from grader.cli import main
from grader.config import REPO_ROOT, Course
from grader.results.export import export_grades, import_manual, manual_template
from grader.release.fabricate import assemble_course, fill_submission
from grader.results.feedback import forbidden_texts, generate_feedback
from grader.autograde.pipeline import grade_submission, make_job, make_template
from grader.nb import read_notebook, write_notebook
from grader.results.report import report
from grader.autograde.scheduler import autograde
from grader.release.validate import validate

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).parent / "fixtures" / "grader"
ASG = "00_fixture"

WRONG_SQUARE = "def square(x):\n    return x + x if x.size > 3 else x * x"   # right on the visible test
# The grader package without the real assignments' checks: the fixture brings its own.
GRADER_CORE = [str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "grader").rglob("*.py")) if "checks" not in p.parts] + [
    "grader/checks/__init__.py", "grader/checks/_core.py"]
DELEGATING = "from course.fixture_ref import square as _lib\n\ndef square(x):\n    return _lib(x)"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Clean Jupyter/IPython config (no developer settings leak in) and the venv's bin on PATH."""
    tmp = tmp_path_factory.mktemp("jupyter")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR"):
            mp.setenv(var, str(tmp / var.lower()))
        mp.setenv("PATH", os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
        yield


@pytest.fixture(scope="module")
def course(env, tmp_path_factory) -> Course:
    """Fixture course root, built, with four graded submissions:
    alice correct, bob partly wrong and late, carol untouched, dave delegating to the library."""
    root = assemble_course(tmp_path_factory.mktemp("course"), [*GRADER_CORE, "course/testing.py", "pyproject.toml"],
                           overlay=FIXTURE)
    c = Course.at(root, root / "work")
    times = {}
    start = time.perf_counter()
    problems = check_course(c, out=lambda line: None)
    times["check"] = time.perf_counter() - start
    # notebooks/ does not exist yet: the only problem is that it is missing
    assert problems == [f"notebooks/{ASG}: missing (run `python -m grader build`)"]
    assert main(["--root", str(root), "build"]) == 0
    release = read_notebook(c.notebooks / ASG / "fixture.ipynb")
    solution = read_notebook(c.solutions / ASG / "fixture.ipynb")
    submissions = {
        "alice": (fill_submission(release, solution), "2026-11-01 09:00:00"),
        "bob": (fill_submission(release, solution, {"square_impl": WRONG_SQUARE}), "2026-11-02 11:00:00"),
        "carol": (release, None),
        "dave": (fill_submission(release, solution, {"square_impl": DELEGATING,
                                                     "var_3y_answer": "import numpy as np\nvar_3y = np.float64(18)"}), None),
    }
    for student, (nb, stamp) in submissions.items():
        folder = c.submitted / student / ASG
        write_notebook(nb, folder / "fixture.ipynb")
        if stamp:
            (folder / "timestamp.txt").write_text(stamp)
    start = time.perf_counter()
    results = autograde(c, ASG, late_penalty="0.5", due="2026-11-01 12:00:00")
    times["autograde 4 submissions"] = time.perf_counter() - start
    print("\n" + ", ".join(f"{k}: {v:.1f} s" for k, v in times.items()))  # shown with pytest -s
    assert [r.outcome for r in results] == ["graded"] * 4, [r.message for r in results]
    return c


def _cells(course: Course, student: str) -> dict[str, float | None]:
    cells = load_summary(course, ASG)["submissions"][student]["notebooks"]["fixture"]["cells"]
    return {gid: cell["auto_score"] for gid, cell in cells.items()}


def test_scores_follow_the_answers(course):
    assert _cells(course, "alice") == {"square": 2.0, "var_3y": 1.0, "why_k_squared": None}
    assert _cells(course, "bob") == {"square": 0.0, "var_3y": 1.0, "why_k_squared": None}
    assert _cells(course, "carol") == {"square": 0.0, "var_3y": 0.0, "why_k_squared": 0.0}
    assert _cells(course, "dave") == {"square": 0.0, "var_3y": 1.0, "why_k_squared": None}
    summary = load_summary(course, ASG)["submissions"]
    assert summary["bob"]["notebooks"]["fixture"]["late_penalty"] == 0.5   # 1 started day x 0.5 x 1 point
    assert summary["alice"]["notebooks"]["fixture"]["late_penalty"] is None
    assert all(len(s["checks_version"]) == 12 and s["seconds"] > 0 for s in summary.values())


def _outputs(course: Course, student: str) -> dict[str, str]:
    nb = read_notebook(course.autograded / student / ASG / "fixture.ipynb")
    return {c.metadata["nbgrader"]["grade_id"]: json.dumps(c.get("outputs", [])) for c in nb.cells
            if c.cell_type == "code"}


def test_autograded_outputs_explain_without_grader_internals(course):
    bob, dave = _outputs(course, "bob"), _outputs(course, "dave")
    assert "It matches a known mistake: x + x (doubled, not squared)" in bob["square"]
    # dave delegates to the library: a grading kernel has the student edition, whose stub names
    # the exercise (already in the visible test)
    assert "square is exercise 'square' of 00_fixture" in dave["square"]
    check_source = (course.root / "grader" / "checks" / "fixture.py").read_text()
    for outputs in (bob, dave, _outputs(course, "carol")):
        text = "".join(outputs.values())
        assert str(course.root / "grader") not in text and "grader/checks" not in text
        assert "C.compare" not in text and "def check_square" not in text
        assert not any(line.strip() in text for line in check_source.splitlines() if len(line.strip()) > 25)
        assert "stderr" not in text
    assert "<hidden test>" in bob["square"]  # the one sourceless frame the traceback ends in


def test_rerun_is_idempotent(course):
    seen = []
    assert autograde(course, ASG, late_penalty="0.5", on_result=lambda r, s: seen.append((r, s))) == []
    assert seen == [(None, s) for s in ("alice", "bob", "carol", "dave")]


def test_a_broken_submission_is_reported_and_recorded_alone(course):
    """grade_submission is pure and picklable (for a process pool); a notebook that is not JSON
    is graded as 'unreadable' (0 points, flagged for review) and recorded like any other."""
    folder = course.submitted / "eve" / ASG
    folder.mkdir(parents=True)
    (folder / "fixture.ipynb").write_text("{ not json")
    job = make_job(course, ASG, "eve", folder, make_template(course.db_url, ASG, course.notebooks / ASG))
    result = grade_submission(pickle.loads(pickle.dumps(job)))
    assert pickle.loads(pickle.dumps(result)).outcome == "graded"
    (nb,) = result.notebooks
    assert (nb.outcome, nb.score) == ("unreadable", 0)
    assert nb.flags and nb.flags[0].startswith("unreadable notebook")
    record(result, course)
    entry = load_summary(course, ASG)["submissions"]["eve"]
    assert entry["outcome"] == "graded"
    with Gradebook(course.db_url) as gb:
        assert gb.find_submission(ASG, "eve").score == 0
        gb.remove_student("eve")  # the later tests' roster has no eve
    shutil.rmtree(course.submitted / "eve")


def test_manual_grades_feedback_export_report(course, tmp_path):
    sheet = tmp_path / "manual.csv"
    assert manual_template(course, ASG, sheet).rows == 3  # alice, bob, dave wrote an answer
    rows = list(csv.DictReader(sheet.open()))
    for row in rows:
        row["score"], row["comment"] = {"alice": ("2", "complete"), "bob": ("1", "mean step missing"),
                                        "dave": ("0", "")}[row["student"]]
    with sheet.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, rows[0].keys())
        writer.writeheader()
        writer.writerows(rows)
    assert import_manual(course, sheet) == 3

    start = time.perf_counter()
    pages = generate_feedback(course, ASG)
    print(f"\nfeedback: {time.perf_counter() - start:.1f} s")
    assert [p.parent.parent.name for p in pages] == ["alice", "bob", "carol", "dave", "eve"]
    assert "Not graded: unreadable." in (course.feedback / "eve" / ASG / "fixture.html").read_text()
    needles = forbidden_texts(course, ASG)
    assert "from grader.checks import fixture as _c; _c.check_square(square)" in needles
    for page in pages:
        text = page.read_text()
        assert not [n for n in needles if n in text]
    bob_page = (course.feedback / "bob" / ASG / "fixture.html").read_text()
    assert "x + x (doubled, not squared)" in bob_page and "mean step missing" in bob_page

    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,name,lms_id\nalice,Alice A,11\nbob,Bob B,12\ncarol,Carol C,13\n"
                      "dave,Dave D,14\nerin,Erin E,15\n")
    out = tmp_path / "grades.csv"
    result = export_grades(course, roster, out)
    assert result.pending == [] and result.not_in_roster == []
    table = {r["student_id"]: r for r in csv.DictReader(out.open())}
    assert list(table["alice"]) == ["student_id", "name", "lms_id", f"{ASG} (max 5)"]  # no total unless asked
    got = {s: r[f"{ASG} (max 5)"] for s, r in table.items()}
    assert got == {"alice": "5", "bob": "1.5", "carol": "0", "dave": "1", "erin": ""}  # bob: 2 - 0.5 late; erin: no submission
    assert table["bob"]["lms_id"] == "12"

    png = tmp_path / "hist.png"
    text = report(course, ASG, png=png, students=True)
    assert "fixture/square" in text and "4 submissions" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validate_shows_visible_test_messages(course):
    ok, text = validate(course.submitted / "carol" / ASG / "fixture.ipynb", root=course.root)
    assert not ok and "NameError: name 'var_3y' is not defined" in text and "NotImplementedError" in text
    ok, text = validate(course.submitted / "alice" / ASG / "fixture.ipynb", root=course.root)
    assert ok, text


def test_release_is_what_build_generates(course):
    assert verify_release(course) == []
    nb_path = course.notebooks / ASG / "fixture.ipynb"
    original = nb_path.read_text()
    try:
        nb_path.write_text(original.replace("Squares", "Cubes"))
        assert verify_release(course) == [f"notebooks/{ASG}/fixture.ipynb: differs from a fresh build "
                                          "(run `python -m grader build`)"]
    finally:
        nb_path.write_text(original)


def test_student_edition(course, tmp_path):
    dest = tmp_path / "edition"
    stubbed = student_edition(course, dest, verify=False)
    assert [ex.replaces for ex in stubbed] == ["course.fixture_ref.square"]
    assert not (dest / "grader").exists() and not (dest / "solutions").exists()
    assert (dest / "notebooks" / ASG / "fixture.ipynb").read_bytes() == \
        (course.notebooks / ASG / "fixture.ipynb").read_bytes()
    probe = subprocess.run([sys.executable, "-c", "import course.fixture_ref as f; f.square(2)"],
                           cwd=dest, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(dest)})
    assert "NotImplementedError: square is exercise 'square' of 00_fixture" in probe.stderr
    assert "include = [\"course*\"]" in (dest / "pyproject.toml").read_text()


def test_cli_catalog_and_errors(course, capsys):
    assert main(["catalog", "--root", str(course.root)]) == 0
    assert "replaces course.fixture_ref.square" in capsys.readouterr().out
    assert main(["--root", str(course.root), "autograde", ASG, "--student", "nobody"]) == 2  # bad input
    assert "no submission of 00_fixture for ['nobody']" in capsys.readouterr().err

