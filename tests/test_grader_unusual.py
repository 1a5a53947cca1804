"""Correct but unusual submissions, graded by the real autograde command in one batch: each
gets full marks, no flag and no message. Writing to stderr, warnings, float32, loops, being
slow, plotting, importing modules, seeding generators, changing NumPy's print or error
settings, star imports and calling a hidden check oneself are not tampering. The fixture
assignment is tests/fixtures/attacks (part1: scale, Stack, answer, why; part2: total).
"""
from __future__ import annotations

import pytest

from fixtures.attacks import kit

pytestmark = pytest.mark.slow

UNUSUAL = {
    "stderr_and_warnings": {
        "scale_impl": "import sys, warnings\n\ndef scale(x, k):\n    print('scaling', x.shape, file=sys.stderr)\n"
                      "    warnings.warn('this is fine', RuntimeWarning)\n    return k * x\n"},
    "float32_loop": {
        "scale_impl": "import numpy as np\n\ndef scale(x, k):\n    out = np.empty_like(x)\n"
                      "    for i in np.ndindex(x.shape):\n        out[i] = x.dtype.type(k) * x[i]\n    return out\n",
        "total_impl": "def total(x):\n    s = 0.0\n    for v in x.flat:\n        s += float(v)\n    return s\n"},
    "slow_but_in_time": {  # 17 calls of 0.2 s: most of the 5 s a cell may take
        "scale_impl": "import time\n\ndef scale(x, k):\n    time.sleep(0.2)\n    return k * x\n"},
    "plots_and_progress": {
        "scale_impl": "%matplotlib inline\nimport sys\nimport matplotlib.pyplot as plt\nimport numpy as np\n"
                      "for i in range(3):\n    print(f'\\rprogress {i}', end='', file=sys.stderr)\n"
                      "fig, ax = plt.subplots()\nax.plot(np.arange(5), np.arange(5) ** 2)\nplt.show()\n\n"
                      "def scale(x, k):\n    return k * x\n"},
    "star_import": {
        "scale_impl": "from numpy import *\n\ndef scale(x, k):\n    return multiply(k, x)\n",
        "total_impl": "from numpy import *\n\ndef total(x):\n    return sum(x)\n"},
    "global_settings": {
        "scale_impl": "import warnings\nimport numpy as np\nnp.seterr(all='ignore')\nnp.set_printoptions(precision=2)\n"
                      "np.random.seed(0)\nrng = np.random.default_rng(1)\nwarnings.simplefilter('ignore')\n"
                      "print(rng.normal(size=3))\n\ndef scale(x, k):\n    return k * x\n"},
    "other_containers": {
        "stack_impl": "from collections import deque\n\nclass Stack(deque):\n    push = deque.append\n",
        "answer_impl": "import numpy as np\nanswer = np.float64(18)\n"},
    "calls_the_check_itself": {
        "scale_impl": "import grader.checks.attacks as mine\n\ndef scale(x, k):\n    return k * x\n\n"
                      "try:\n    mine.check_scale(lambda x, k: x)\nexcept AssertionError as e:\n"
                      "    print('my wrong draft fails:', str(e)[:40])\n"},
    "helpers_and_magics": {
        "scale_impl": "%time _ = sum(range(1000))\nclass CheckFailed(Exception):\n    pass\n\n"
                      "def _times(x, k):\n    return x * k\n\ndef scale(x, k):\n    return _times(x, k)\n",
        "answer_impl": "variance_y = 2\nanswer = 3 ** 2 * variance_y\n"},
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("unusual")
    with kit.clean_jupyter(tmp):
        course = kit.build_course(tmp / "course")
        for name, answers in UNUSUAL.items():
            part1 = {k: v for k, v in answers.items() if k != "total_impl"}
            part2 = {k: v for k, v in answers.items() if k == "total_impl"}
            kit.submit(course, name, kit.standard(course, part1, part2))
        yield kit.grade_all(course)


@pytest.mark.parametrize("name", sorted(UNUSUAL))
def test_full_marks(graded, name):
    result = graded[name]
    assert result.outcome == "graded"
    assert kit.scores(result) == kit.FULL
    assert [(nb.outcome, nb.flags, nb.message) for nb in result.notebooks] == [("graded", [], "")] * 2
    assert result.flags == [] and result.message == ""


def test_stderr_is_kept_but_does_not_fail_the_cell(graded):
    text = kit.outputs(graded["stderr_and_warnings"], "part1", "scale")
    assert "scaling (2,)" in text and "this is fine" in text and '"name": "stderr"' not in text
