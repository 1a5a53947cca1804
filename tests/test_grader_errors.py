"""The exit-code convention of ``python -m grader`` (issue 12 E): bad input exits 2 with one
paragraph on stderr that names the problem and its fix, and no traceback; a grading failure exits
1; success 0. One row per bad input of issue 12 item 6 (a corrupt zip, an unknown assignment for
export, a postgres:// URL, a gradebook that cannot be reached, a notebook that is not JSON) and
the others found around them.

Every row runs in this process through ``grader.cli.main(argv)`` (its return value is the exit
status; stdout and stderr captured at the file descriptors, so a log handler that writes to the
real stderr is seen too). A few rows also run as real subprocesses, through ``python -m grader``
and the ``deeptrain-grader`` script, and must print exactly what the in-process run printed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from grader.cli import main
from grader.config import DB_ENV, REPO_ROOT

ASG = "01_autodiff"
NOWHERE = "postgresql://grader@127.0.0.1:1/class"  # nothing listens on port 1


@dataclass(frozen=True)
class Row:
    args: tuple[str, ...]  # "{t}" is the test's folder
    status: int
    says: str              # in the paragraph on stderr (status 2) or on stdout


def row(status: int, says: str, *args: str) -> Row:
    return Row(args, status, says)


ROWS = {
    # collect
    "collect: no such source": row(2, "does not exist; give the folder or .zip", "collect", "{t}/nothere.zip"),
    "collect: not a zip": row(2, "neither a folder nor a readable zip file", "collect", "{t}/text.zip"),
    "collect: zip cut short": row(2, "neither a folder nor a readable zip file", "collect", "{t}/cut.zip"),
    "collect: unknown --assignment": row(2, "--assignment 99_nope: no such assignment", "collect", "{t}/export",
                                         "--assignment", "99_nope"),
    "collect: roster missing": row(2, "roster {t}/nothere.csv does not exist", "collect", "{t}/export",
                                   "--roster", "{t}/nothere.csv"),
    "collect: roster not UTF-8": row(2, "is not UTF-8 text", "collect", "{t}/export", "--roster", "{t}/latin1.csv"),
    "collect: roster without its columns": row(2, "roster needs columns student_id,name,lms_id", "collect",
                                               "{t}/export", "--roster", "{t}/columns.csv"),
    "collect: roster with a duplicate id": row(2, "student_id 'ann' already on line 2", "collect", "{t}/export",
                                               "--roster", "{t}/dupes.csv"),
    "collect: past --max-members": row(2, "--max-members 2", "collect", "{t}/two.zip", "--max-members", "1"),
    # export
    "export: unknown --assignment": row(2, "assignment(s) 99_nope not in the gradebook", "export", "--roster", "{t}/roster.csv",
                                        "--assignment", "99_nope"),
    "export: assignment not in the gradebook": row(2, "03_initialization not in the gradebook", "export",
                                                   "--roster", "{t}/roster.csv", "--assignment", "03_initialization"),
    "export: roster missing": row(2, "roster {t}/nothere.csv does not exist", "export", "--roster", "{t}/nothere.csv"),
    "export: bad --canvas-id": row(2, "--canvas-id '01_autodiff=abc': write ASSIGNMENT=ID", "export", "--roster",
                                   "{t}/roster.csv", "--format", "canvas", "--canvas-id", "01_autodiff=abc"),
    "export: --total for canvas": row(2, "--total is for the generic format", "export", "--roster",
                                      "{t}/roster.csv", "--format", "canvas", "--total"),
    # autograde
    "autograde: unknown assignment": row(2, "no assignment '99_nope'", "autograde", "99_nope"),
    "autograde: not built into the gradebook": row(2, "run `python -m grader build` first", "autograde",
                                                   "03_initialization"),
    "autograde: unknown --exercise": row(2, "has no graded cell 'nope'", "autograde", ASG, "--exercise", "nope"),
    "autograde: unknown --student": row(2, "no submission of 01_autodiff for ['nobody']", "autograde", ASG,
                                        "--student", "nobody"),
    "autograde: bad --late-penalty": row(2, "late penalty '7%'", "autograde", ASG, "--late-penalty", "7%"),
    "autograde: bad --due": row(2, "--due 'tomorrow' is not a time", "autograde", ASG, "--due", "tomorrow"),
    "autograde: --workers 0": row(2, "--workers 0: give a number of processes >= 1", "autograde", ASG,
                                  "--workers", "0"),
    # feedback, report, manual
    "feedback: unknown assignment": row(2, "no assignment '99_nope'", "feedback", "99_nope"),
    "feedback: nothing autograded": row(2, "nothing of 01_autodiff is autograded", "feedback", ASG),
    "report: unknown assignment": row(2, "no assignment '99_nope'", "report", "99_nope", "--mistakes"),
    "manual template: not in the gradebook": row(2, "assignment 02_optimizers is not in the gradebook",
                                                 "manual", "template", "02_optimizers", "--out", "{t}/sheet.csv"),
    "manual import: CSV missing": row(2, "CSV {t}/nothere.csv does not exist", "manual", "import", "{t}/nothere.csv"),
    "manual import: CSV without its columns": row(2, "needs columns", "manual", "import", "{t}/columns.csv"),
    "manual import: CSV not UTF-8": row(2, "is not UTF-8 text", "manual", "import", "{t}/latin1.csv"),
    # validate, build, check, catalog
    "validate: not JSON": row(2, "notjson.ipynb: not a notebook that can be opened (NotJSONError", "validate",
                              "{t}/notjson.ipynb"),
    "validate: not UTF-8": row(2, "binary.ipynb: not a notebook that can be opened", "validate", "{t}/binary.ipynb"),
    "validate: no such notebook": row(2, "no such notebook file", "validate", "{t}/nothere.ipynb"),
    "build: unknown assignment": row(2, "no assignment '99_nope'", "build", "99_nope"),
    "check: unknown assignment": row(2, "no assignment '99_nope'", "check", "99_nope"),
    "catalog: unknown assignment": row(2, "no assignment '99_nope'", "catalog", "--assignment", "99_nope"),
    # the gradebook
    "--db not a URL": row(2, "gradebook URL 'gradebook' is not a database URL", "--db", "gradebook", "report", ASG),
    "--db without a driver": row(2, "no database driver for mysql", "--db", "mysql://u@localhost/x", "report", ASG),
    "--db unreachable": row(2, "127.0.0.1:1", "--db", NOWHERE, "report", ASG),
    "--db postgres:// unreachable": row(2, "cannot open the gradebook postgresql://", "--db",
                                        NOWHERE.replace("postgresql", "postgres"), "report", ASG),
    "--root without solutions/": row(2, "has no solutions/ folder; pass --root COURSE_ROOT", "--root", "{t}",
                                     "report", ASG),
    # not bad input
    "collect: a flagged student": row(1, "FLAGGED bo: bo/01_autodiff/timestamp.txt", "collect", "{t}/messy"),
    "catalog: fine": row(0, "01_autodiff (", "catalog", "--assignment", ASG),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """The bad (and a few good) inputs, and a gradebook that knows 01_autodiff only."""
    t = tmp_path_factory.mktemp("errors")
    (t / "export" / "ann" / ASG).mkdir(parents=True)
    (t / "export" / "ann" / ASG / "autodiff.ipynb").write_text("{}")
    (t / "messy" / "bo" / ASG).mkdir(parents=True)
    (t / "messy" / "bo" / ASG / "autodiff.ipynb").write_text("{}")
    (t / "messy" / "bo" / ASG / "timestamp.txt").write_text("soon")
    (t / "text.zip").write_text("not a zip")
    with zipfile.ZipFile(t / "two.zip", "w") as zf:
        zf.writestr(f"ann/{ASG}/autodiff.ipynb", "{}")
        zf.writestr(f"bo/{ASG}/autodiff.ipynb", "{}")
    whole = (t / "two.zip").read_bytes()
    (t / "cut.zip").write_bytes(whole[: len(whole) - 30])  # the end of the central directory is gone
    (t / "roster.csv").write_text("student_id,name,lms_id\nann,Ann Lee,1\n")
    (t / "latin1.csv").write_bytes("student_id,name,lms_id,score\nann,Zoë Müller,1,2\n".encode("latin-1"))
    (t / "columns.csv").write_text("who,what\nann,2\n")
    (t / "dupes.csv").write_text("student_id,name,lms_id\nann,Ann Lee,1\nann,Ann Other,2\n")
    (t / "notjson.ipynb").write_text("{ not json")
    (t / "binary.ipynb").write_bytes(b"\xff\xfe\x00garbage")
    (t / "work").mkdir()
    with Gradebook(f"sqlite:///{t / 'work' / 'gradebook.db'}") as gb:
        gb.add_assignment(ASG)
    return t


# one real subprocess per exit status, through both entry points
SUBPROCESS = {"catalog: fine": "python -m grader", "collect: a flagged student": "deeptrain-grader",
              "collect: not a zip": "deeptrain-grader"}


def argv(inputs: Path, r: Row) -> list[str]:
    args = [a.replace("{t}", str(inputs)) for a in r.args]
    if "--root" not in args:
        args = ["--root", str(REPO_ROOT), *args]
    return ["--work", str(inputs / "work"), *args]


def check(r: Row, inputs: Path, status: int, out: str, err: str) -> None:
    """The row's exit status, and its message in the one stderr paragraph (2) or on stdout."""
    assert "Traceback" not in err + out, err[-3000:]
    assert status == r.status, (status, out[-1000:], err[-1000:])
    says = r.says.replace("{t}", str(inputs))
    if r.status == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, err  # one paragraph
        assert says in err, err
    else:
        assert says in out, out


def in_process(inputs: Path, r: Row, monkeypatch: pytest.MonkeyPatch,
               capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``main(argv)`` run as the subprocess would be (cwd, no $GRADER_DB_URL); it must leave the
    environment and cwd as they were, but for its interpreter's bin/ put first on PATH."""
    monkeypatch.chdir(inputs)
    monkeypatch.delenv(DB_ENV, raising=False)
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))  # main() prepends to it; restored after
    env, path = dict(os.environ), os.environ["PATH"]
    capfd.readouterr()
    status = main(argv(inputs, r))
    out, err = capfd.readouterr()
    assert Path.cwd() == inputs.resolve(), f"main() changed the working folder to {Path.cwd()}"
    changed = sorted(k for k in env.keys() | os.environ.keys() if k != "PATH" and env.get(k) != os.environ.get(k))
    assert not changed, f"main() left these environment variables changed: {changed}"
    assert os.environ["PATH"].endswith(path), "main() dropped entries of PATH"
    return status, out, err


@pytest.mark.parametrize("name", ROWS)
def test_exit_status_and_one_paragraph(inputs, name, monkeypatch, capfd):
    r = ROWS[name]
    check(r, inputs, *in_process(inputs, r, monkeypatch, capfd))


@pytest.mark.slow  # each starts an interpreter that imports nbgrader
@pytest.mark.parametrize("name", SUBPROCESS)
def test_entry_points_print_the_same(inputs, name, monkeypatch, capfd):
    """The real entry points: same exit status, stdout and stderr as ``main`` in this process."""
    r, entry = ROWS[name], SUBPROCESS[name].split()
    bin_dir = Path(sys.executable).parent
    entry[0] = sys.executable if entry[0] == "python" else shutil.which(entry[0], path=bin_dir)
    assert entry[0], f"no {SUBPROCESS[name]} in {bin_dir}: run `make install`"
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])}
    env.pop(DB_ENV, None)
    done = subprocess.run([*entry, *argv(inputs, r)], cwd=inputs, env=env, capture_output=True,
                          text=True, timeout=300)
    check(r, inputs, done.returncode, done.stdout, done.stderr)
    assert (done.returncode, done.stdout, done.stderr) == in_process(inputs, r, monkeypatch, capfd)


HEAVY = ("nbgrader", "sqlalchemy", "nbconvert")


@pytest.mark.parametrize("argv", [["--help"], ["collect", "--help"], ["autograde"]], ids=" ".join)
def test_help_and_bad_options_load_no_nbgrader(argv):
    """--help and an argparse error (exit 0 and 2) answer in a fraction of a second: the CLI
    loads nbgrader, SQLAlchemy and nbconvert only once a command runs."""
    code = ("import sys\nfrom grader.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            f"    print(e.code, sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == f"{2 if argv == ['autograde'] else 0} []", \
        f"imported at start-up (make the import lazy): {done.stdout[-500:]} {done.stderr[-500:]}"
