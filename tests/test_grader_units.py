"""Unit tests of the grader's pieces that need no kernel: catalog, collect, checks' building
blocks, stubbing for the student edition, feedback scrubbing, course.testing."""
from __future__ import annotations

import sys
import traceback
import types
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from course.testing import assert_close, assert_shape
from grader.release.build import stub_function
from grader.catalog import CatalogError, Exercise, load_catalog
from grader.checks import CheckFailed, check
from grader.checks import _core as C
from grader.autograde.collect import Parsed, Roster, collect, parse_filename
from grader.config import REPO_ROOT, Course, DailyPenalty, GraderError, UsageError, nbgrader_config
from grader.nb import CompiledCheckCellMetadata, HideHiddenTests
from grader.results.feedback import verify_feedback

FIXTURE = Path(__file__).parent / "fixtures" / "grader"


# ---------------------------------------------------------------- catalog

def _write_toml(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def test_catalog_reads_the_fixture_entries():
    catalog = load_catalog([FIXTURE / "grader" / "checks"])
    assert [ex.id for ex in catalog.for_assignment("00_fixture")] == ["square", "var_3y", "why_k_squared"]
    square = catalog.get("00_fixture", "fixture", "square")
    assert square.kind == "function" and square.points == 2.0
    assert square.replaces == "course.fixture_ref.square"
    assert square.tol("float32") == (1e-6, 0.0)
    assert square.tol(np.dtype("float16")) == C.DEFAULT_TOL["float64"]  # unknown dtype: default
    assert [ex.id for ex in catalog.functions] == ["square"]
    with pytest.raises(KeyError, match="grader/checks"):
        catalog.get("00_fixture", "fixture", "nope")


@pytest.mark.parametrize("body, message", [
    ('[[exercise]]\nid = "a"\nnotebook = "n"\nkind = "function"\npoints = 1\n', "needs 'function'"),
    ('[[exercise]]\nid = "a"\nnotebook = "n"\nkind = "essay"\npoints = 1\n', "kind 'essay'"),
    ('[[exercise]]\nid = "a"\nnotebook = "n"\nkind = "value"\npoints = 0\n', "positive number"),
    ('[[exercise]]\nid = "a"\nnotebook = "n"\nkind = "value"\npoints = 1\ncolour = 2\n', "unknown field"),
    ('[[exercise]]\nid = "a"\nnotebook = "n"\nkind = "value"\npoints = 1\nreplaces = "course.x"\n',
     "kind = 'function' only"),
    ('[[exercise]]\nid = "a"\nnotebook = "n"\nkind = "value"\npoints = 1\n'
     '[[exercise]]\nid = "a"\nnotebook = "m"\nkind = "value"\npoints = 1\n', "listed twice"),
    ('[[exercise]]\nid = "a"\nnotebook = "n"\nkind = "function"\npoints = 1\nfunction = "f"\n'
     'signature = "f(x)"\ndtypes = ["float64"]\ntolerance = { float64 = 1e-3 }\n', r"\[rtol, atol\]"),
])
def test_catalog_rejects_malformed_entries(tmp_path, body, message):
    _write_toml(tmp_path, "bad", 'assignment = "01_x"\n' + body)
    with pytest.raises(CatalogError, match=message):
        load_catalog([tmp_path])


def test_repository_catalog_loads():
    """The course's own catalog files parse: the checks read their tolerances from them."""
    catalog = Course.at(REPO_ROOT).catalog()
    assert len({ex.key for ex in catalog.exercises}) == len(catalog.exercises)


def test_catalog_needs_the_assignment_name(tmp_path):
    _write_toml(tmp_path, "bad", '[[exercise]]\nid = "a"\n')
    with pytest.raises(CatalogError, match="assignment"):
        load_catalog([tmp_path])


# ---------------------------------------------------------------- collect

@pytest.mark.parametrize("parts, expected", [
    (("smith_jane_12345_attempt_2026-11-01-10-00-00_optimizers.ipynb",),
     Parsed(file="optimizers", name="smith jane", lms_id="12345", timestamp="2026-11-01 10:00:00")),
    (("Jane Smith - optimizers (1).ipynb",), Parsed(file="optimizers (1)", name="Jane Smith")),
    (("smithjane_LATE_12345_678901_optimizers-1.ipynb",),
     Parsed(file="optimizers-1", name="smithjane", lms_id="12345", late=True)),
    (("smithjane_12345_678901_optimizers.ipynb",), Parsed(file="optimizers", name="smithjane", lms_id="12345")),
    (("jsmith", "02_optimizers", "optimizers.ipynb"),
     Parsed(file="optimizers", student="jsmith", assignment="02_optimizers")),
    (("jsmith", "optimizers.ipynb"), Parsed(file="optimizers", student="jsmith")),
    (("optimizers.ipynb",), None),
])
def test_parse_filename(parts, expected):
    assert parse_filename(parts) == expected


def _mini_course(tmp_path: Path) -> Course:
    for asg, names in {"01_alpha": ["alpha", "shared"], "02_beta": ["beta", "shared", "part_2"]}.items():
        folder = tmp_path / "solutions" / asg
        folder.mkdir(parents=True)
        for name in names:
            nbformat.write(nbformat.v4.new_notebook(), folder / f"{name}.ipynb")
    return Course.at(tmp_path, tmp_path / "work")


def test_roster_matches_lms_id_then_full_name_in_any_order(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text("student_id,name,lms_id\njsmith,Jane Smith,12345\nokim,Ödön Kim,\n")
    roster = Roster(path)
    assert roster.match(Parsed(file="x", name="whoever", lms_id="12345")) == ["jsmith"]
    assert roster.match(Parsed(file="x", name="smith jane")) == ["jsmith"]
    assert roster.match(Parsed(file="x", name="KIM O\u0308DO\u0308N")) == ["okim"]  # NFD, upper case
    assert roster.match(Parsed(file="x", name="Kim Odon")) == []  # accents are part of the name
    assert roster.match(Parsed(file="x", student="jsmith")) == ["jsmith"]
    assert roster.match(Parsed(file="x", name="John Doe")) == []
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\n1,x\n")
    with pytest.raises(GraderError, match="lms_id"):
        Roster(bad)


def test_collect_from_lms_zip_normalizes_and_reports(tmp_path):
    course = _mini_course(tmp_path)
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,name,lms_id\njsmith,Jane Smith,12345\nbbrown,Bob Brown,777\n")
    files = {
        "smith_jane_12345_attempt_2026-11-01-10-00-00_alpha.ipynb": "first",
        "smith_jane_12345_attempt_2026-11-02-09-30-00_alpha (1).ipynb": "second",
        "Bob Brown - Beta copy.ipynb": "bob beta",
        "Bob Brown - part_2.ipynb": "bob part 2",
        "Bob Brown - shared.ipynb": "ambiguous",
        "Eve Stone - alpha.ipynb": "eve",
        "alpha.ipynb": "nobody",
        "Bob Brown - homework.ipynb": "unknown notebook",
        "readme.txt": "not a notebook",
    }
    zpath = tmp_path / "lms.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    report = collect(course, zpath, roster=roster)
    sub = course.submitted
    assert (sub / "jsmith/01_alpha/alpha.ipynb").read_text() == "second"   # later attempt wins
    assert (sub / "jsmith/01_alpha/timestamp.txt").read_text().strip() == "2026-11-02 09:30:00"
    assert (sub / "bbrown/02_beta/beta.ipynb").read_text() == "bob beta"
    assert (sub / "bbrown/02_beta/part_2.ipynb").read_text() == "bob part 2"  # exact name kept
    assert sorted(p.name for p in sub.iterdir()) == ["bbrown", "jsmith"]     # ids from the roster only
    assert len(report.collected) == 3
    flagged = {f.source: f.reason for f in report.flags_of("bbrown")}         # Bob's own problems
    assert set(flagged) == {"Bob Brown - shared.ipynb", "Bob Brown - homework.ipynb"}
    assert "several assignments" in flagged["Bob Brown - shared.ipynb"]
    assert "matches no notebook" in flagged["Bob Brown - homework.ipynb"]
    unmatched = dict(report.unmatched)
    assert set(unmatched) == {"Eve Stone - alpha.ipynb", "alpha.ipynb", "readme.txt"}
    assert "not in the roster" in unmatched["Eve Stone - alpha.ipynb"]
    assert "student" in unmatched["alpha.ipynb"]
    assert "replaced by the later attempt" in "\n".join(report.notes)


def test_collect_from_folder_layouts(tmp_path):
    course = _mini_course(tmp_path)
    src = tmp_path / "in"
    (src / "Ann Lee" / "01_alpha").mkdir(parents=True)
    (src / "Ann Lee" / "01_alpha" / "Alpha.ipynb").write_text("ann")
    (src / "Ann Lee" / "01_alpha" / "timestamp.txt").write_text("2026-11-01 12:00:00")
    (src / "zed").mkdir()
    (src / "zed" / "beta.ipynb").write_text("zed")
    (src / "zed" / "shared.ipynb").write_text("zed shared")
    report = collect(course, src, assignment="02_beta")
    assert (course.submitted / "ann_lee/01_alpha/alpha.ipynb").read_text() == "ann"
    assert (course.submitted / "ann_lee/01_alpha/timestamp.txt").read_text().strip() == "2026-11-01 12:00:00"
    assert (course.submitted / "zed/02_beta/beta.ipynb").read_text() == "zed"
    assert (course.submitted / "zed/02_beta/shared.ipynb").read_text() == "zed shared"  # --assignment decides
    assert report.unmatched == []
    with pytest.raises(GraderError, match="does not exist"):
        collect(course, tmp_path / "missing")


# ---------------------------------------------------------------- checks' building blocks

SPEC = Exercise(assignment="01_x", module="m", id="double", notebook="n", kind="function", points=1,
                function="double", signature="double(x)", replaces="fake_course_mod.double",
                dtypes=("float64", "float32"))


@pytest.fixture
def fake_reference(monkeypatch):
    """A module with a reference function, as course.* would provide."""
    mod = types.ModuleType("fake_course_mod")
    exec("def double(x, *, k=2):\n    return k * x\n", mod.__dict__)
    monkeypatch.setitem(sys.modules, "fake_course_mod", mod)
    return mod


def test_call_reports_the_students_line_and_input_mutation():
    def broken(x):
        return x / undefined_name  # noqa: F821

    with pytest.raises(CheckFailed, match=r"f\(x\) raised NameError: .*undefined_name.*line \d+: `return x / undefined_name"):
        C.call(broken, np.ones(3), what="f(x)")

    def inplace(x):
        x *= 2
        return x

    with pytest.raises(CheckFailed, match="changed its argument 1 in place"):
        C.call(inplace, np.ones(3), what="f(x)")

    def not_done(x):
        raise NotImplementedError

    with pytest.raises(CheckFailed, match="not implemented yet"):
        C.call(not_done, np.ones(3), what="f(x)")

    def exits(x):
        sys.exit(3)

    with pytest.raises(CheckFailed, match="raised SystemExit"):
        C.call(exits, np.ones(3), what="f(x)")


class _EqualsEverything:
    def __eq__(self, other):
        return True


@pytest.mark.parametrize("value, message", [
    ([1.0, 2.0], "returned list"),
    (_EqualsEverything(), "returned _EqualsEverything"),
    (np.ones((2, 2)), r"shape \(2, 2\); expected shape \(4,\)"),
    (np.ones(4, dtype=np.float64), "dtype float64 for float32 inputs"),
    (np.array(["a"] * 4), "expected numbers"),
    (True, "returned bool"),
])
def test_as_array_rejects_wrong_types_shapes_and_dtypes(value, message):
    with pytest.raises(CheckFailed, match=message):
        C.as_array(value, what="f(x)", shape=(4,), dtype="float32")


def test_compare_names_index_and_mistake_without_expected_values():
    x = np.array([0.5, 1.5, -2.0, 3.0])
    expected = x * x
    C.compare(x * x + 1e-14, expected, what="sq(x)")  # within float64 tolerance
    with pytest.raises(CheckFailed) as info:
        C.compare(x + x, expected, what="sq(x)", mistakes={"|x|": np.abs(x), "doubled": x + x})
    msg = str(info.value)
    assert "first at index (0,)" in msg and "known mistake: doubled" in msg
    assert "0.25" not in msg and "2.25" not in msg  # expected values stay hidden
    with pytest.raises(CheckFailed, match="your value is nan"):
        C.compare(np.array([np.nan, 1, 1, 1.0]), np.ones(4), what="f")
    # float32 results are judged with float32's tolerance, and must stay float32
    x32 = x.astype(np.float32)
    C.compare(x32 * x32 * np.float32(1 + 1e-6), (x32 * x32), what="sq")
    with pytest.raises(CheckFailed, match="dtype float64"):
        C.compare(x * x, x32 * x32, what="sq")


def test_check_number_hides_the_error_size():
    C.check_number(18, 18.0, what="v")
    C.check_number(np.float32(18.0), 18.0, what="v")
    with pytest.raises(CheckFailed) as info:
        C.check_number(6.0, 18.0, what="v", mistakes={"k Var(y)": 6.0})
    assert str(info.value) == "v = 6.0 is not correct. It matches a known mistake: k Var(y)."
    for bad in ("18", True, None, np.array([18.0])):
        with pytest.raises(CheckFailed, match="should be a number"):
            C.check_number(bad, 18.0, what="v")


def test_guard_blocks_delegation_and_restores(fake_reference):
    original_code = fake_reference.double.__code__
    delegating = lambda x: fake_reference.double(x)  # noqa: E731
    with C.guard(SPEC) as reference:
        assert reference(np.float64(3.0), k=3) == 9.0  # the pristine copy still works, defaults too
        assert reference(np.float64(3.0)) == 6.0
        with pytest.raises(CheckFailed, match="must be your own implementation: it called fake_course_mod.double"):
            C.call(delegating, np.ones(2), what="double(x)")
    assert fake_reference.double.__code__ is original_code
    with pytest.raises(RuntimeError):
        with C.guard(SPEC):
            raise RuntimeError("check failed midway")
    assert fake_reference.double(2) == 4  # restored after an exception too


def test_guard_refuses_what_it_cannot_swap(fake_reference):
    from dataclasses import replace

    fake_reference.builtin = len
    with pytest.raises(TypeError, match="not a Python function"):
        with C.guard(replace(SPEC, replaces="fake_course_mod.builtin")):
            pass
    with pytest.raises(ValueError, match="no 'replaces'"):
        with C.guard(replace(SPEC, replaces=None)):
            pass


def test_rng_is_reproducible_per_key():
    assert C.rng("a", "float32").random() == C.rng("a", "float32").random()
    assert C.rng("a", "float32").random() != C.rng("b", "float32").random()


def test_check_wrapper_returns_none_and_hides_grader_frames():
    def inner_helper():
        raise CheckFailed("wrong answer")

    @check
    def check_thing(answer):
        inner_helper()

    @check
    def check_ok(answer):
        return 3.0  # a number left as a cell's value would be a partial score

    @check
    def check_buggy(answer):
        return {}["missing"]

    assert check_ok(1) is None
    with pytest.raises(CheckFailed, match="could not evaluate your answer"):
        check_buggy(1)
    try:
        check_thing(1)
    except CheckFailed as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        failure = exc
    # the only frames are this test's and one sourceless frame named after the check
    assert [f.filename for f in frames] == [__file__, "<hidden test>"]
    assert frames[-1].name == "check_thing" and not frames[-1].line
    assert failure.__cause__ is None and failure.__suppress_context__


# ---------------------------------------------------------------- student edition stubs

SOURCE = '''"""Module."""
import math


@staticmethod
def helper(x):
    return x


def adam_step(w, g, *, lr=0.1):
    """Adam: w - lr * m_hat / (sqrt(v_hat) + eps)."""
    m = g  # first moment
    return w - lr * m


class Layer:
    def forward(self, x):
        """y = x."""
        return x

    def backward(self, g):
        """Only a docstring."""


def tail():
    return 1
'''


def test_stub_function_replaces_only_the_body():
    out = stub_function(SOURCE, ["adam_step"], "write it in 02")
    ns: dict = {}
    exec(compile(out, "m.py", "exec"), ns)
    with pytest.raises(NotImplementedError, match="write it in 02"):
        ns["adam_step"](1.0, 1.0)
    assert '"""Adam: w - lr * m_hat / (sqrt(v_hat) + eps)."""' in out   # docstring (formula) kept
    assert "m = g" not in out and ns["tail"]() == 1 and ns["Layer"]().forward(5) == 5
    out = stub_function(stub_function(SOURCE, ["Layer", "forward"], "A"), ["Layer", "backward"], "B")
    exec(compile(out, "m.py", "exec"), ns)
    with pytest.raises(NotImplementedError, match="A"):
        ns["Layer"]().forward(1)
    with pytest.raises(NotImplementedError, match="B"):
        ns["Layer"]().backward(1)
    with pytest.raises(GraderError, match="no definition"):
        stub_function(SOURCE, ["missing"], "x")
    with pytest.raises(GraderError, match="one-line"):
        stub_function("def f(x): return x\n", ["f"], "x")


# ---------------------------------------------------------------- gradebook engines

def test_gradebooks_share_an_engine_and_see_a_replaced_file(tmp_path):
    """nbgrader's Gradebook gets one engine per database (its compiled statements are kept),
    and a gradebook file replaced at the same path is read anew, not through a stale connection."""
    from nbgrader.api import Gradebook

    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url) as first, Gradebook(url) as second:
        assert first.engine is second.engine
        first.add_student("ada")
        assert [s.id for s in second.students] == ["ada"]
    left = Gradebook(url)  # not closed: its connection goes back to the pool, still open
    assert [s.id for s in left.students] == ["ada"]
    left.db.remove()
    (tmp_path / "gradebook.db").unlink()
    with Gradebook(url) as fresh:
        assert fresh.students == []
        fresh.add_student("ben")
    with Gradebook(url) as again:
        assert [s.id for s in again.students] == ["ben"]
    with Gradebook(f"sqlite:///{tmp_path / 'other.db'}") as other:
        assert other.engine is not first.engine and other.students == []


# ---------------------------------------------------------------- nbgrader metadata checks

def _corrupt(nb: nbformat.NotebookNode, how: str) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(nb), as_version=4))
    meta = next(c.metadata.nbgrader for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    if how == "points as text":
        meta.points = "two"
    elif how == "unknown cell_type":
        meta.cell_type = 3
    elif how == "no grade_id":
        del meta["grade_id"]
    elif how == "old schema":
        meta.schema_version = 1
    elif how == "duplicate grade_id":
        other = next(c.metadata.nbgrader for c in nb.cells
                     if c.metadata.get("nbgrader", {}).get("grade") and c.metadata.nbgrader is not meta)
        other.grade_id = meta.grade_id
    return nb


@pytest.mark.parametrize("how", [None, "points as text", "unknown cell_type", "no grade_id", "old schema",
                                 "duplicate grade_id"])
def test_compiled_metadata_check_judges_as_nbgraders(how):
    """The autograde pass's CheckCellMetadata (schema compiled once) accepts and rejects the
    same notebooks as nbgrader's, and leaves nbgrader's jsonschema as it found it."""
    from nbgrader.nbgraderformat import common
    from nbgrader.preprocessors import CheckCellMetadata

    source = nbformat.read(REPO_ROOT / "solutions" / "03_initialization" / "initialization.ipynb", as_version=4)
    nb = source if how is None else _corrupt(source, how)
    outcomes = []
    for cls in (CheckCellMetadata, CompiledCheckCellMetadata):
        try:
            cls().preprocess(nb, {})
            outcomes.append("valid")
        except Exception as exc:  # noqa: BLE001 - the type and message are what is compared
            outcomes.append(f"{type(exc).__name__}: {exc}")
    assert outcomes[0] == outcomes[1]
    assert (outcomes[0] == "valid") == (how is None)
    assert common.jsonschema is sys.modules["jsonschema"]


# ---------------------------------------------------------------- feedback scrubbing

def test_hide_hidden_tests_drops_region_and_shortens_traceback():
    cell = nbformat.v4.new_code_cell(
        "assert_close(f(1), 1)\n### BEGIN HIDDEN TESTS\nfrom grader.checks import m as _c; _c.check_f(f)\n### END HIDDEN TESTS")
    cell.outputs = [nbformat.v4.new_output("error", ename="CheckFailed", evalue="f is off",
                                           traceback=["----> 3 from grader.checks import m", "File <hidden test>:13"])]
    cell, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
    assert cell.source == "assert_close(f(1), 1)"
    assert cell.outputs[0].traceback == ["CheckFailed: f is off"]


def test_verify_feedback_sees_through_markup_and_deletes_leaks(tmp_path):
    root = tmp_path / "root"
    (root / "solutions" / "01_x").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "x = 1\n### BEGIN HIDDEN TESTS\n_c.check_x(x, 42)\n### END HIDDEN TESTS")])
    nbformat.write(nb, root / "solutions" / "01_x" / "x.ipynb")
    course = Course.at(root, tmp_path / "work")
    clean, leaky = tmp_path / "clean.html", tmp_path / "leaky.html"
    clean.write_text("<pre>x = 1</pre><p>CheckFailed: x is off</p>")
    leaky.write_text('<pre><span class="n">_c</span>.<span>check_x</span>(x,&#32;42)</pre>')
    problems = verify_feedback(course, "01_x", [clean, leaky])
    assert len(problems) == 1 and "_c.check_x(x, 42)" in problems[0]
    assert clean.exists() and not leaky.exists()


def test_verify_feedback_lets_a_student_show_what_their_own_answer_writes(tmp_path):
    """A student's answer that names a forbidden text (a comment on grader.checks) keeps its
    page; the same text once more than the answers write it (from a hidden test), or written
    only in a locked cell of the submission (which nbgrader overwrites), is a leak."""
    root = tmp_path / "root"
    (root / "solutions" / "01_x").mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "### BEGIN HIDDEN TESTS\nfrom grader.checks import x as _c\n### END HIDDEN TESTS")]),
        root / "solutions" / "01_x" / "x.ipynb")
    course = Course.at(root, tmp_path / "work")
    answer = nbformat.v4.new_code_cell("x = 1  # graded by grader.checks", metadata={
        "nbgrader": {"solution": True, "grade_id": "x_impl", "grade": False, "locked": False}})
    locked = nbformat.v4.new_code_cell("# grader.checks", metadata={
        "nbgrader": {"solution": False, "grade_id": "x_test", "grade": True, "locked": True, "points": 1}})
    pages = {}
    for student, cells, shown in (("ann", [answer], 1), ("bo", [answer], 2), ("cal", [locked], 1)):
        folder = course.submitted / student / "01_x"
        folder.mkdir(parents=True)
        nbformat.write(nbformat.v4.new_notebook(cells=cells), folder / "x.ipynb")
        pages[student] = course.feedback / student / "01_x" / "x.html"
        pages[student].parent.mkdir(parents=True)
        pages[student].write_text("<pre>x = 1  # graded by grader.checks</pre>" * shown)
    problems = verify_feedback(course, "01_x", sorted(pages.values()))
    assert [p.split("/feedback/")[1].split("/")[0] for p in problems] == ["bo", "cal"]
    assert all("'grader.checks'" in p for p in problems)
    assert pages["ann"].exists() and not pages["bo"].exists() and not pages["cal"].exists()


# ---------------------------------------------------------------- config

def test_daily_penalty_and_config_choices(tmp_path):
    plugin = DailyPenalty(fraction=0.25)
    assert plugin.late_submission_penalty("s", 8.0, 1) == 2.0            # 1 s late: one started day
    assert plugin.late_submission_penalty("s", 8.0, 86400 * 2.5) == 6.0  # three started days
    assert plugin.late_submission_penalty("s", 8.0, 86400 * 9) == 8.0    # never more than the score
    course = Course(tmp_path, tmp_path / "work")
    cfg = nbgrader_config(course, late_penalty="0.1", timeout=7)
    assert cfg.AssignLatePenalties.plugin_class is DailyPenalty and cfg.DailyPenalty.fraction == 0.1
    assert cfg.Execute.timeout == 7
    assert cfg.CourseDirectory.db_url == f"sqlite:///{tmp_path / 'work' / 'gradebook.db'}"
    assert nbgrader_config(course, late_penalty="zero").LateSubmissionPlugin.penalty_method == "zero"
    for bad in ("later", "2"):
        with pytest.raises(GraderError, match="late penalty"):
            nbgrader_config(course, late_penalty=bad)


# ---------------------------------------------------------------- course.testing

def test_assert_close_messages():
    assert_close([1.0, 2.0], np.array([1.0, 2.0 + 1e-9]))
    with pytest.raises(AssertionError, match=r"sq: shape \(2,\), expected \(3,\)"):
        assert_close(np.ones(2), np.ones(3), what="sq")
    with pytest.raises(AssertionError, match=r"sq: 1 of 3 values differ; first at index \(1,\): got 5.0, expected 4.0"):
        assert_close(np.array([1.0, 5.0, 9.0]), np.array([1.0, 4.0, 9.0]), what="sq")
    with pytest.raises(AssertionError, match="dtype float64, expected float32"):
        assert_close(np.ones(2), np.ones(2, np.float32), check_dtype=True)
    assert_close(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))


def test_assert_shape_with_wildcards():
    assert_shape(np.zeros((3, 4)), (None, 4))
    with pytest.raises(AssertionError, match=r"shape \(3, 4\), expected \(any, 5\)"):
        assert_shape(np.zeros((3, 4)), (None, 5), what="h")
    with pytest.raises(AssertionError, match="expected"):
        assert_shape(np.zeros(3), (3, 1))


def test_a_postgres_url_is_read_as_postgresql(tmp_path):
    course = Course.at(tmp_path, tmp_path / "work", "postgres://grader:pw@db.example.org:5432/class")
    assert course.db_url == "postgresql://grader:pw@db.example.org:5432/class"
    assert Course.at(tmp_path, tmp_path / "work").db_url == f"sqlite:///{tmp_path / 'work' / 'gradebook.db'}"


def test_validate_names_a_broken_file_and_a_cell_out_of_time(tmp_path):
    from grader.release.validate import validate

    broken = tmp_path / "broken.ipynb"
    broken.write_text("not json {")
    with pytest.raises(UsageError, match=r"^broken.ipynb: not a notebook that can be opened .*File > Download"):
        validate(broken)
    slow = tmp_path / "slow.ipynb"
    cells = [nbformat.v4.new_code_cell(src) for src in ("x = 1", "import time\ntime.sleep(30)", "assert x == 1")]
    for i, cell in enumerate(cells):  # autograded test cells: what validate reports on
        cell.metadata["nbgrader"] = {"grade": True, "grade_id": f"t{i}", "points": 1, "solution": False,
                                     "locked": True, "schema_version": 3}
    nbformat.write(nbformat.v4.new_notebook(cells=cells), slow)
    ok, text = validate(slow, timeout=2)
    assert not ok and text.splitlines() == ["slow.ipynb: 1 cell(s) fail", "  - import time",
                                            "      ran past the 2 s limit per cell and was stopped (an endless loop?)"]


def test_feedback_images_are_redrawn_small_on_white():
    import base64
    import io

    from PIL import Image

    from grader.results.feedback import IMAGE_WIDTH, _smaller_png

    plot = Image.new("RGBA", (960, 720), (0, 0, 0, 0))  # a transparent figure with a red stripe
    for x in range(960):
        for y in range(300, 320):
            plot.putpixel((x, y), (200, 30, 30, 255))
    raw = io.BytesIO()
    plot.save(raw, "PNG")
    data = base64.b64encode(raw.getvalue()).decode()
    small = Image.open(io.BytesIO(base64.b64decode(_smaller_png(data))))
    assert small.size == (IMAGE_WIDTH, round(720 * IMAGE_WIDTH / 960)) and small.mode == "P"
    rgb = small.convert("RGB")
    near = lambda a, b: max(abs(x - y) for x, y in zip(a, b)) <= 4  # noqa: E731 - a palette
    assert near(rgb.getpixel((10, 10)), (255, 255, 255))  # transparency became white, not black
    assert near(rgb.getpixel((10, round(310 * IMAGE_WIDTH / 960))), (200, 30, 30))  # the stripe keeps its colour
    assert _smaller_png("bm90IGFuIGltYWdl") == "bm90IGFuIGltYWdl"  # not an image: left alone


def test_feedback_code_drops_only_the_tags_of_unstyled_tokens():
    from grader.results.feedback import _plain_tokens

    css = "<style>.highlight .k { color: #008000 }\n.highlight .o { color: #666 }</style>"
    code = ('<span class="k">def</span> <span class="n">f</span><span class="p">(</span><span class="n">x'
            '</span><span class="p">):</span> <span class="o">-</span><span class="ansi-red-fg">x</span>')
    assert _plain_tokens(css + code) == css + ('<span class="k">def</span> f(x): <span class="o">-</span>'
                                               '<span class="ansi-red-fg">x</span>')


def test_a_gradebook_that_stops_answering_gets_one_paragraph_and_a_way_on(monkeypatch, capsys):
    from sqlalchemy.exc import OperationalError

    import grader.cli as cli

    def gone(args):
        raise OperationalError("UPDATE grade", {}, Exception(
            "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally"))

    monkeypatch.setattr(cli, "cmd_report", gone)
    assert cli.main(["report", "02_optimizers"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "server closed the connection unexpectedly" in err and "run the same command again" in err
