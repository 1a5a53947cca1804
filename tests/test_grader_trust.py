"""The trust boundary, attacked: submissions that implement nothing and try to take the answers
from the grading kernel (walking the stack into the check, copying or wrapping the library's
reference, answering with classes and loosening what judges them, detecting the grading run,
reading the checks' source, using the checks as an oracle). Graded by the real autograde
command (two workers, with an honest classmate in the batch) in every isolation mode this
host offers: each gets 0 on every exercise it attacks, and no hidden-check text reaches
anything the student sees. The fixture assignment is tests/fixtures/attacks.
"""
from __future__ import annotations

import json

import pytest

from fixtures.attacks import kit
from grader.sandbox.box import MODES, _works, isolation

pytestmark = pytest.mark.slow

# Text of the fixture's hidden checks that no attack here earns (a mistake none of them makes,
# a docstring, the source): none may be readable or in memory in the kernel, or in the
# student's outputs. (A mistake an answer does make is named to the student, by design.) The
# snooping code builds them at run time, so its own source does not match.
SECRETS = ("the constant must come out squared", "Var(3y) = 9 Var(y) = 18", "def check_scale", 'SPEC["scale"]')

_FIND = '''
import gc, os, sys, time, types
_marks = [m.replace("|", "") for m in MARKS]
def _leaks():
    found, start = [], time.monotonic()
    for obj in gc.get_objects():
        texts = [obj] if type(obj) is str else [c for c in obj.co_consts if type(c) is str] \\
            if isinstance(obj, types.CodeType) else []
        for t in texts:
            if t not in _marks and any(m in t for m in _marks):
                found.append("memory")
    for folder in {*sys.path, os.getcwd(), os.path.expanduser("~"), "/tmp", "/"}:
        for root, dirs, files in os.walk(folder or "."):
            if time.monotonic() - start > 2.5 or root.startswith(("/proc", "/sys", "/dev", "/usr")):
                dirs[:] = []
                continue
            for name in files:
                if name.endswith((".py", ".toml")) and ("check" in name or "attacks" in name):
                    try:
                        text = open(os.path.join(root, name), errors="replace").read()
                    except OSError:
                        continue
                    if any(m in text for m in _marks):
                        found.append("file " + os.path.join(root, name))
    return found
'''.replace("MARKS", repr(tuple(s[:4] + "|" + s[4:] for s in SECRETS)))

# Each attack: answer cells of part1 -> (the part1 scores it must get, what it must print).
WALK = '''import sys, numpy as np
def scale(x, k):
    frame = sys._getframe(1)
    while frame is not None:
        for name, value in list(frame.f_locals.items()):
            if callable(value) and value is not scale and getattr(value, "__name__", "") in ("reference", "pristine", "scale", "blocked"):
                try:
                    return value(x, k)
                except Exception:
                    pass
            if type(value) is np.ndarray and value.shape == x.shape and value is not x:
                return value
        frame = frame.f_back
    return x + k
'''
COPY = '''import types, course.attacks_ref as ref
_copy = types.FunctionType(ref.scale.__code__, ref.scale.__globals__)
def scale(x, k):
    return _copy(x, k)
'''
ALIAS = '''import functools, course.attacks_ref as ref
_real = {}
for _name, _fn in list(vars(ref).items()):
    if callable(_fn) and not _name.startswith("_"):
        _real[_name] = _fn
        setattr(ref, _name, functools.wraps(_fn)(lambda *a, _f=_fn, **k: _f(*a, **k)))
def scale(x, k):
    return _real["scale"](x, k)
'''
CLASS = '''import sys
for _name in ("grader.checks._core", "grader.checks"):
    _m = sys.modules.get(_name)
    if _m is not None and hasattr(_m, "DEFAULT_TOL"):
        _m.DEFAULT_TOL.update(float64=(1.0, 1.0), float32=(1.0, 1.0))
class Anything:
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__
class Stack(list):
    push = list.append
    def pop(self):
        list.pop(self, 0)
        return Anything()
'''
DETECT = '''import os, sys
signals = sorted(k for k in os.environ if "GRADE" in k.upper()) + [os.environ.get("NBGRADER_EXECUTION", "-"), os.getcwd()]
print("sees", signals)
grading = "grader" in sys.modules
''' + WALK.replace("    return x + k\n", "    if not grading:\n        raise NotImplementedError\n    return x + k\n")
READ = _FIND + '''print("leaks", _leaks())
def scale(x, k):
    for where in _leaks():
        print("found", where)
    return x + k
'''
ORACLE_SCALE = '''from grader.checks import attacks as _oracle
candidates = [lambda x, k: x + k, lambda x, k: x - k, lambda x, k: x * k, lambda x, k: x]
scale = None
for _candidate in candidates:
    try:
        _oracle.check_scale(_candidate)
        scale = _candidate
        break
    except AssertionError as e:
        print("oracle:", str(e)[:60])
if scale is None:
    scale = candidates[0]
'''
ORACLE_ANSWER = '''from grader.checks import attacks as _oracle
answer = -1.0
for _guess in range(0, 30):
    try:
        _oracle.check_answer(float(_guess))
        answer = float(_guess)
        break
    except AssertionError:
        pass
print("oracle answer", answer)
'''
FULL1 = kit.FULL["part1"]
ATTACKS = {
    "stack_walk": ({"scale_impl": WALK}, {**FULL1, "scale": 0.0}),
    "copied_code": ({"scale_impl": COPY}, {**FULL1, "scale": 0.0}),
    "aliased_library": ({"scale_impl": ALIAS}, {**FULL1, "scale": 0.0}),
    "class_answer": ({"stack_impl": CLASS}, {**FULL1, "stack": 0.0}),
    "detects_grading": ({"scale_impl": DETECT}, {**FULL1, "scale": 0.0}),
    "reads_source": ({"scale_impl": READ}, {**FULL1, "scale": 0.0}),
    "oracle": ({"scale_impl": ORACLE_SCALE, "answer_impl": ORACLE_ANSWER}, {**FULL1, "scale": 0.0, "answer": 0.0}),
}


def _modes() -> list[str]:
    """Every isolation mode that works on this host (``uid`` needs root and an interpreter
    other users may run; this host's reasons are printed)."""
    works = [m for m in MODES if m == "none" or _works(m)]
    for m in sorted(set(MODES) - set(works)):
        print(f"isolation {m!r} does not work on this host: not attacked here")
    return works


@pytest.fixture(scope="module", params=_modes())
def graded(request, tmp_path_factory, monkeypatch_module):
    mode = request.param
    monkeypatch_module.setenv("GRADER_ISOLATION", mode)
    assert isolation() == mode
    tmp = tmp_path_factory.mktemp(f"trust-{mode}")
    with kit.clean_jupyter(tmp):
        course = kit.build_course(tmp / "course")
        kit.submit(course, "honest", kit.standard(course))
        for name, (answers, _) in ATTACKS.items():
            kit.submit(course, name, kit.standard(course, answers))
        yield mode, course, kit.grade_all(course)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _seen(result) -> str:
    """Everything of the autograded notebooks the student sees (outputs of every cell)."""
    texts = []
    for nb in result.notebooks:
        book = json.loads(nb.autograded.decode())
        texts += [json.dumps(cell.get("outputs", [])) for cell in book["cells"]]
    return "\n".join(texts)


def test_the_honest_classmate_keeps_full_marks(graded):
    mode, _, results = graded
    assert sorted(results) == sorted([*ATTACKS, "honest"])
    assert kit.scores(results["honest"]) == kit.FULL
    assert results["honest"].flags == [] and results["honest"].isolation == mode


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_gains_nothing(graded, name):
    mode, _, results = graded
    result, (_, part1) = results[name], ATTACKS[name]
    assert result.outcome == "graded" and result.isolation == mode
    assert kit.scores(result) == {"part1": part1, "part2": kit.FULL["part2"]}
    assert result.flags == []  # none of them tampers with the protocol: they simply get nothing
    seen = _seen(result)
    if mode != "namespaces" and name == "reads_source":
        print(f"isolation {mode!r}: files on disk that other users (uid) or the grader (none) may read "
              "are readable, the course root included unless it is mode 700")
        return
    assert not any(secret in seen for secret in SECRETS), name


def test_nothing_of_the_checks_is_in_the_kernel(graded):
    mode, _, results = graded
    text = kit.outputs(results["reads_source"], "part1", "scale_impl")
    leaks = text.split("leaks ")[1].split("\\n")[0]
    assert "memory" not in leaks  # in every mode: no check's text in the kernel's memory
    if mode == "namespaces":
        assert leaks == "[]"  # nor in any file it can read
    else:
        print(f"isolation {mode!r}: {leaks.count('file ')} readable files hold check text (the course root is open)")


def test_the_grading_run_looks_like_a_students_validate(graded):
    mode, _, results = graded
    text = kit.outputs(results["detects_grading"], "part1", "scale_impl")
    # no variable of the grader's; nbgrader's own says "validate", as in the student's Lab
    assert "sees ['NBGRADER_EXECUTION', 'validate', " in text
    if mode == "namespaces":
        assert "sees ['NBGRADER_EXECUTION', 'validate', '/home/student/00_attacks']" in text


def test_the_oracle_learns_nothing(graded):
    _, _, results = graded
    assert "oracle answer -1.0" in kit.outputs(results["oracle"], "part1", "answer_impl")
    assert "check_scale runs only as the hidden test of its own" in kit.outputs(results["oracle"], "part1", "scale_impl")
