"""Adversarial submissions, graded by the real autograde command in one batch (two workers):
tampering with the kernel, reaching outside the sandbox, exhausting resources. Each case
asserts the exact outcome (cell scores, flags, the notebook's outcome); none gains a point,
none stops the batch; tampering that keeps a check from reporting or hides its failure is
flagged, tampering with the kernel's own NumPy, builtins or hooks changes nothing (the checks
run elsewhere). The attacks on the trust boundary itself are in test_grader_trust.py. The fixture
assignment is tests/fixtures/attacks (part1: scale, Stack, answer, why; part2: total).
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field

import pytest

from fixtures.attacks import kit
from grader.sandbox.box import isolation

pytestmark = pytest.mark.slow

# Right on the visible test (an array of 2 entries), wrong on the hidden one: only a hidden
# check that really ran, on a kernel that was not tampered with, can tell.
SNEAKY = "def scale(x, k):\n    return k * x if x.size == 2 else x + k\n"
MARKER = "987654"  # the argument of the process flood's sleepers


@dataclass
class Case:
    answers: dict[str, str]                  # part1 answer cells (the rest: solutions)
    scores: dict[str, float | None]          # part1 cell scores
    flags: list[str] = field(default_factory=list)   # part1 flags, exactly
    outcome: str = "graded"                  # part1 outcome
    message: str = ""                        # part1 message, exactly


def _tampered(cells: str, why: str) -> list[str]:
    return [f"{gid}: tampering: {why}" for gid in cells.split()]


ZERO = {"scale": 0.0, "stack": 0.0, "answer": 0.0, "why": None}
NOT_RUN = ZERO  # the kernel ended in the answer cell: no test after it ran
SCALE_ZERO = {"scale": 0.0, "stack": 1.0, "answer": 1.0, "why": None}

# What the notebook does to its own kernel changes nothing the checker decides: the sneaky
# scale gets 0, the honest stack and answer keep their points, and nothing is flagged.
HARMLESS = {
    "numpy_allclose": "import numpy as np\nnp.allclose = lambda *a, **k: True\n"
                      "np.isclose = lambda a, b, **k: np.ones(np.broadcast(a, b).shape, bool)\n" + SNEAKY,
    "numpy_testing": "import numpy.testing as npt\nnpt.assert_allclose = lambda *a, **k: None\n" + SNEAKY,
    "builtins": "import builtins\nbuiltins.abs = lambda x: 0\n" + SNEAKY,
    "import_hook": "import builtins\n_real = builtins.__import__\n"
                   "builtins.__import__ = lambda name, *a, **k: _real(name, *a, **k)\n" + SNEAKY,
    "core_replaced": "try:\n    import grader.checks._core as core\n    core.compare = lambda *a, **k: None\n"
                     "except ImportError as e:\n    print('no', e.name)\n" + SNEAKY,
    "showtraceback": "get_ipython().showtraceback = lambda *a, **k: None\n" + SNEAKY,
    "custom_exc": "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)\n" + SNEAKY,
    "event_hook": "def hook(result):\n    result.error_in_exec = None\n"
                  "get_ipython().events.register('post_run_cell', hook)\n" + SNEAKY,
    "settrace": "import sys\nsys.settrace(lambda *a: None)\n" + SNEAKY,
    "equal_to_everything": "import numpy as np\nclass Anything:\n    def __eq__(self, other):\n        return True\n"
                           "    def __array__(self, *a, **k):\n        return np.zeros(0)\n"
                           "def scale(x, k):\n    return k * x if x.size == 2 else Anything()\n",
    "ndarray_subclass": "import numpy as np\nclass Liar(np.ndarray):\n    def __eq__(self, other):\n"
                        "        return np.ones(np.shape(other), bool)\n"
                        "def scale(x, k):\n    return k * x if x.size == 2 else (x + k).view(Liar)\n",
    "reference_patched": "import course.attacks_ref as ref\nref.scale.__code__ = (lambda x, k: x + k).__code__\n" + SNEAKY,
}


# Tampering that keeps a hidden check from reporting, or hides its failure: 0 and flagged.
TAMPERING = {
    **{name: Case({"scale_impl": code}, SCALE_ZERO) for name, code in HARMLESS.items()},
    "check_replaced": Case(
        {"scale_impl": "import grader.checks.attacks as m\nm.check_scale = lambda *a, **k: None\n" + SNEAKY},
        SCALE_ZERO, _tampered("scale", "the hidden check check_scale did not run or did not report, yet the "
                                       "cell shows no error")),
    "sys_modules": Case(
        {"scale_impl": "import sys, types, grader.checks\nfake = types.ModuleType('grader.checks.attacks')\n"
                       "fake.check_scale = fake.check_stack = fake.check_answer = lambda *a, **k: None\n"
                       "sys.modules['grader.checks.attacks'] = grader.checks.attacks = fake\n" + SNEAKY},
        ZERO, [f"{gid}: tampering: the hidden check check_{gid} did not run or did not report, yet the cell "
               "shows no error" for gid in ("answer", "scale", "stack")]),
    "input_transformer": Case(
        {"scale_impl": "get_ipython().input_transformers_cleanup.append(\n"
                       "    lambda lines: [l for l in lines if '_c.' not in l])\n" + SNEAKY},
        ZERO, [f"{gid}: tampering: the hidden check check_{gid} did not run or did not report, yet the cell "
               "shows no error" for gid in ("answer", "scale", "stack")]),
    "failure_hidden": Case(
        {"scale_impl": "import grader.checks.attacks as m\n_real = m.check_scale\n"
                       "def quiet(*a, **k):\n    try:\n        _real(*a, **k)\n    except AssertionError:\n"
                       "        pass\nm.check_scale = quiet\n" + SNEAKY},
        SCALE_ZERO, _tampered("scale", "the hidden check check_scale failed, yet the cell shows no error")),
}

def _flood() -> str:
    return ("import subprocess\nstarted = 0\nfor i in range(200):\n    try:\n"
            f"        subprocess.Popen(['sleep', '{MARKER}'], start_new_session=i % 2 == 0)\n"
            "        started += 1\n    except OSError:\n        break\nprint('started', started)\n" + SNEAKY)


RESOURCES = {
    "infinite_loop": Case({"scale_impl": SNEAKY + "while True:\n    pass"}, SCALE_ZERO,
                          message="cell 4 ran past its time limit (5 s) and was interrupted"),
    "ignores_interrupt": Case(
        {"scale_impl": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"},
        NOT_RUN, ["time limit: a cell ran past its time limit (5 s) and the kernel did not stop when interrupted"],
        "time limit", "a cell ran past its time limit (5 s) and the kernel did not stop when interrupted"),
    "sys_exit": Case({"scale_impl": SNEAKY + "import sys\nsys.exit(3)"}, SCALE_ZERO),
    # the same while the hidden check is calling the student's function: the check stops, the
    # next cells are graded (an interrupt), or not run (a dead kernel)
    "loops_in_check": Case({"scale_impl": "def scale(x, k):\n    while x.size != 2:\n        pass\n    return k * x\n"},
                           SCALE_ZERO, ["scale: timed out"], message="cell 5 ran past its time limit (5 s) and was interrupted"),
    "dies_in_check": Case({"scale_impl": "import os\ndef scale(x, k):\n    if x.size != 2:\n        os._exit(3)\n"
                                         "    return k * x\n"}, NOT_RUN,
                          ["kernel died: the kernel exited with status 3 (the notebook called sys.exit, os._exit, "
                           "exit() or quit(), or the kernel failed)"], "kernel died",
                          "the kernel exited with status 3 (the notebook called sys.exit, os._exit, exit() or quit(), "
                          "or the kernel failed)"),
    "os_exit": Case({"scale_impl": "import os\nos._exit(3)"}, NOT_RUN,
                    ["kernel died: the kernel exited with status 3 (the notebook called sys.exit, os._exit, "
                     "exit() or quit(), or the kernel failed)"], "kernel died",
                    "the kernel exited with status 3 (the notebook called sys.exit, os._exit, exit() or quit(), "
                    "or the kernel failed)"),
    "quit": Case({"scale_impl": SNEAKY + "quit()"}, NOT_RUN,
                 ["kernel died: the kernel exited with status 0 (the notebook called sys.exit, os._exit, "
                  "exit() or quit(), or the kernel failed)"], "kernel died",
                 "the kernel exited with status 0 (the notebook called sys.exit, os._exit, exit() or quit(), "
                 "or the kernel failed)"),
    "kill_self": Case({"scale_impl": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"}, NOT_RUN,
                      ["kernel died: the kernel was killed (out of memory, limit 2048 MB, or a kill signal)"],
                      "kernel died", "the kernel was killed (out of memory, limit 2048 MB, or a kill signal)"),
    "segfault": Case({"scale_impl": "import ctypes\nctypes.string_at(0)"}, NOT_RUN,
                     ["kernel died: the kernel crashed (SIGSEGV)"], "kernel died", "the kernel crashed (SIGSEGV)"),
    "kill_parent": Case({"scale_impl": "import os, signal\ntry:\n    os.kill(os.getppid(), signal.SIGKILL)\n"
                                       "except OSError as e:\n    print('refused', type(e).__name__)\n" + SNEAKY},
                        SCALE_ZERO),
    "process_flood": Case({"scale_impl": _flood()}, SCALE_ZERO),
    "print_flood": Case({"scale_impl": "for block in range(100):\n"
                                       "    print('\\n'.join('%020d' % i for i in range(10**4)))\n" + SNEAKY},
                        SCALE_ZERO,
                        message="output beyond 4 MB was dropped"),
    "disk_fill": Case({"scale_impl": "import errno\ntry:\n    with open('big', 'wb') as f:\n"
                                     "        for _ in range(100):\n            f.write(bytes(2**22))\n"
                                     "except OSError as e:\n    print('stopped', errno.errorcode[e.errno])\n" + SNEAKY},
                      SCALE_ZERO),
}

CASES = {**TAMPERING, **RESOURCES}


def _snoop(course, port: int) -> str:
    """Code that tries to read the instructor's sources, the gradebook and a classmate's
    submission, to change the checks, and to reach a port listening on the host; it prints
    what happened."""
    root = course.root
    probes = [("sources", str(root / "solutions" / kit.ASG / "part1.ipynb")),
              ("gradebook", str(root / "work" / "gradebook.db")),
              ("classmate", str(course.submitted / "honest" / kit.ASG / "part1.ipynb"))]
    checks = str(root / "grader" / "checks" / "attacks.py")
    return (f"import socket\nfor label, path in {probes!r}:\n"
            "    try:\n        open(path, 'rb').read(1)\n        print(label, 'READ')\n"
            "    except OSError as e:\n        print(label, type(e).__name__)\n"
            f"try:\n    open({checks!r}, 'a').write('#')\n    print('checks WRITTEN')\n"
            "except OSError as e:\n    print('checks', type(e).__name__)\n"
            f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('network OPEN')\n"
            "except OSError as e:\n    print('network', type(e).__name__)\n")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every case (and one honest student) submitted, then one autograde run with two workers."""
    tmp = tmp_path_factory.mktemp("attacks")
    with kit.clean_jupyter(tmp), socket.create_server(("127.0.0.1", 0)) as listener:
        course = kit.build_course(tmp / "course")
        kit.submit(course, "honest", kit.standard(course))
        for name, case in CASES.items():
            kit.submit(course, name, kit.standard(course, case.answers))
        snoop = _snoop(course, listener.getsockname()[1]) + SNEAKY
        kit.submit(course, "snoop", kit.standard(course, {"scale_impl": snoop}))
        yield course, kit.grade_all(course)


def test_every_submission_is_graded_and_the_honest_one_gets_full_marks(graded):
    course, results = graded
    assert sorted(results) == sorted([*CASES, "honest", "snoop"])
    assert all(r.outcome == "graded" for r in results.values())
    assert kit.scores(results["honest"]) == kit.FULL
    assert results["honest"].flags == [] and results["honest"].isolation == isolation()


@pytest.mark.parametrize("name", sorted(CASES))
def test_attack(graded, name):
    if name == "kill_parent" and isolation() == "none":
        pytest.skip("isolation 'none': the kernel runs as the grader's user and may kill its launcher")
    case, result = CASES[name], graded[1][name]
    part1 = kit.notebook_of(result, "part1")
    assert kit.scores(result) == {"part1": case.scores, "part2": kit.FULL["part2"]}  # no point gained
    assert (part1.outcome, part1.flags, part1.message) == (case.outcome, sorted(case.flags), case.message)
    assert kit.notebook_of(result, "part2").flags == []  # the other notebook is graded as usual
    if name in TAMPERING:
        assert all("tampering" in f for f in part1.flags) and bool(part1.flags) == (name not in HARMLESS)


def test_flood_was_bounded_and_nothing_it_started_survives(graded):
    text = kit.outputs(graded[1]["process_flood"], "part1", "scale_impl")
    started = int(text.split("started ")[1].split("\\n")[0])
    limit = 64 if isolation() != "none" else 201  # "none": no uid of its own to count processes by
    assert 0 < started < limit
    assert kit.processes_with(MARKER) == []


def test_writes_are_bounded(graded):
    text = kit.outputs(graded[1]["disk_fill"], "part1", "scale_impl")
    assert "stopped EFBIG" in text  # the file-size limit (64 MB) before 400 MB were written


def test_refused_to_kill_its_parent(graded):
    if isolation() == "none":
        pytest.skip("isolation 'none': the kernel runs as the grader's user and may signal its launcher")
    assert "refused PermissionError" in kit.outputs(graded[1]["kill_parent"], "part1", "scale_impl")


def test_nothing_outside_the_sandbox_is_reachable(graded):
    mode = isolation()
    if mode == "none":
        pytest.skip("no sandbox on this host (not root, no user namespaces): the kernel runs as the grader")
    text = kit.outputs(graded[1]["snoop"], "part1", "scale_impl")
    if mode == "namespaces":
        for line in ("sources FileNotFoundError", "gradebook FileNotFoundError", "classmate FileNotFoundError",
                     "checks FileNotFoundError", "network OSError"):
            assert line in text
    else:
        print(f"isolation {mode}: world-readable files and the network stay reachable; only writes are checked")
    assert kit.scores(graded[1]["snoop"])["part1"] == SCALE_ZERO


# -- limits lowered for one submission (graded directly, one after another) ------------------------

LIMITED = {  # case, the limits it runs under
    "memory_bomb": (Case({"scale_impl": "import numpy as np\ndef bomb():\n    blocks = []\n    while True:\n"
                                        "        blocks.append(np.ones(2**23))\n" + SNEAKY + "bomb()"},
                         SCALE_ZERO, message="a cell ran out of memory (limit 768 MB)"), {"memory_mb": 768}),
    "cpu_burner": (Case({"scale_impl": SNEAKY + "while True:\n    pass"}, NOT_RUN,
                        ["kernel died: the kernel used up its CPU-time limit (3 s)"], "kernel died",
                        "the kernel used up its CPU-time limit (3 s)"), {"cpu_seconds": 3}),
    # 2 x 4.7 s of sleep alone passes the 9 s notebook limit on any machine; each cell stays
    # under the 5 s cell limit.
    "slow_notebook": (Case({"scale_impl": "import time\ntime.sleep(4.7)\ndef scale(x, k):\n    return k * x\n",
                            "stack_impl": "import time\ntime.sleep(4.7)\nclass Stack(list):\n    push = list.append\n"},
                           {"scale": 2.0, "stack": 0.0, "answer": 0.0, "why": None},
                           ["time limit: the notebook's time limit (9 s) was reached"], "time limit",
                           "the notebook's time limit (9 s) was reached"), {"notebook_seconds": 9}),
}


@pytest.mark.parametrize("name", sorted(LIMITED))
def test_limited(graded, name):
    (case, limits), course = LIMITED[name], graded[0]
    kit.submit(course, name, kit.standard(course, case.answers))
    result = kit.grade_one(course, name, **limits)
    part1 = kit.notebook_of(result, "part1")
    assert result.outcome == "graded"
    assert kit.scores(result) == {"part1": case.scores, "part2": kit.FULL["part2"]}
    assert (part1.outcome, part1.flags, part1.message) == (case.outcome, sorted(case.flags), case.message)
