"""Correct alternatives the catalog accepts, through the real pipeline: visible tests and hidden
checks both take them (a tuple from topological_order, vjp_sum's (ga, None), a float count,
fans as whole-valued floats). One submission per assignment, graded by autograde."""
from __future__ import annotations

import pytest

from grader.release.build import build
from grader.config import Course
from grader.release.fabricate import assemble_course, fill_submission
from grader.nb import read_notebook, write_notebook
from grader.autograde.scheduler import autograde

pytestmark = pytest.mark.slow

VARIANTS = {
    ("01_autodiff", "autodiff"): {
        "topological_order_code": (
            "def topological_order(root):\n"
            "    post, seen, stack = [], {id(root)}, [(root, iter(root.parents))]\n"
            "    while stack:\n"
            "        node, parents = stack[-1]\n"
            "        nxt = next((p for p in parents if id(p) not in seen), None)\n"
            "        if nxt is None:\n"
            "            stack.pop()\n"
            "            post.append(node)\n"
            "        else:\n"
            "            seen.add(id(nxt))\n"
            "            stack.append((nxt, iter(nxt.parents)))\n"
            "    return tuple(reversed(post))\n"),
        "vjp_sum_code": (
            "def vjp_sum(g, a, axis=None):\n"
            "    if axis is not None:\n"
            "        g = np.expand_dims(g, axis)\n"
            "    return np.broadcast_to(g, a.shape).copy(), None\n"),
        "answers_code": ("answer_fd_evals = 2.0 * (784 * 100 + 100 + 100 * 10 + 10)\n"
                         "answer_jacobian_passes = 10\n"),
    },
    ("03_initialization", "initialization"): {
        "fans_impl": (
            "def fans(shape):\n"
            "    if len(shape) < 2:\n"
            "        raise ValueError('a weight has at least 2 dimensions')\n"
            "    receptive = np.prod(shape, dtype=float) / (shape[0] * shape[1])\n"
            "    return shape[1] * receptive, shape[0] * receptive\n"),
    },
}
CELLS = {"01_autodiff": ("topological_order", "vjp_sum", "answer_fd_evals"), "03_initialization": ("fans",)}


def graded_cells(tmp_path, submissions, assignments):
    """{assignment: {grade_id: cell result}} of one student's submission (answer cells replaced
    as ``submissions`` says, the rest the model solution), graded by autograde without flags."""
    root = assemble_course(tmp_path / "root", ["course", "grader", "solutions", "pyproject.toml"])
    course = Course(root, tmp_path / "work")
    build(course, list(assignments), db_url=course.db_url)
    for (asg, name), answers in submissions.items():
        release = read_notebook(course.notebooks / asg / f"{name}.ipynb")
        solution = read_notebook(course.solutions / asg / f"{name}.ipynb")
        write_notebook(fill_submission(release, solution, answers), course.submitted / "s1" / asg / f"{name}.ipynb")
    out = {}
    for asg in assignments:
        (result,) = autograde(course, asg, workers=1, timeout=60)
        assert result.flags == [], result.flags
        out[asg] = {gid: c for nb in result.notebooks for gid, c in nb.cells.items()}
    return out


def test_accepted_variants_get_full_marks(tmp_path):
    for asg, graded in graded_cells(tmp_path, VARIANTS, CELLS).items():
        for gid in CELLS[asg]:
            assert graded[gid]["auto_score"] == graded[gid]["max_score"] > 0, (asg, gid, graded[gid])
        assert sum(c["auto_score"] or 0 for c in graded.values()) == sum(
            c["max_score"] for c in graded.values() if not c["needs_manual_grade"]), (asg, graded)


# One mistake is charged once: a submission whose only mistake is in an earlier exercise gets
# full marks for the later exercises that build on it (visible tests on stand-ins, hidden checks
# with the reference swapped in through the grading kernel's proxy).
EARLIER_WRONG = {
    ("01_autodiff", "autodiff"): {
        "vjp_add_mul_code": (
            "def unbroadcast(g, shape):\n"
            "    lead = g.ndim - len(shape)\n"
            "    g = g.sum(axis=tuple(range(lead)))\n"
            "    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)\n"
            "    return g.sum(axis=stretched, keepdims=True) if stretched else g\n\n\n"
            "def vjp_add(g, a, b):\n"
            "    return unbroadcast(g, a.shape), unbroadcast(g, b.shape)\n\n\n"
            "def vjp_mul(g, a, b):\n"
            "    return unbroadcast(g * a, a.shape), unbroadcast(g * b, b.shape)   # wrong: swapped\n"),
    },
    ("02_optimizers", "optimizers"): {
        "sgd_step_impl": (
            "def sgd_step(param, grad, state, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):\n"
            "    g = grad + weight_decay * param\n"
            "    new_state = dict(state)\n"
            "    if momentum != 0:\n"
            "        b = momentum * state.get('momentum_buffer', np.zeros_like(param)) + (1 - dampening) * g\n"
            "        new_state['momentum_buffer'] = b\n"
            "        g = g + momentum * b if nesterov else b\n"
            "    return param - lr * g, new_state\n"),
        "adam_step_impl": (
            "def adam_step(param, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):\n"
            "    t = state.get('step', 0) + 1\n"
            "    g = grad + weight_decay * param\n"
            "    m = betas[0] * state.get('exp_avg', np.zeros_like(param)) + (1 - betas[0]) * g\n"
            "    v = betas[1] * state.get('exp_avg_sq', np.zeros_like(param)) + (1 - betas[1]) * g * g\n"
            "    return param - lr * m / (np.sqrt(v) + eps), {**state, 'step': t, 'exp_avg': m, 'exp_avg_sq': v}\n"),
    },
    ("03_initialization", "initialization"): {
        "fans_impl": "def fans(shape):\n    return shape[0], shape[1]\n",
        "calculate_gain_impl": "def calculate_gain(nonlinearity, param=None):\n    return 1.0\n",
    },
    ("05_regularization", "regularization"): {
        "dropout_mask_impl": "def dropout_mask(u, p, *, mode='inverted'):\n    return (u < p).astype(u.dtype)\n",
    },
}
#: (cells that must score 0, cells that build on them and must get full marks)
CHARGED_ONCE = {
    "01_autodiff": (("vjp_mul",), ("backward", "vjp_add")),
    "02_optimizers": (("sgd_step", "adam_step"), ("sgd_nesterov", "adam_first_step")),
    "03_initialization": (("fans", "calculate_gain"),
                          ("xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform")),
    "05_regularization": (("dropout_mask",), ("dropout",)),
}


def test_one_mistake_is_charged_once(tmp_path):
    for asg, graded in graded_cells(tmp_path, EARLIER_WRONG, CHARGED_ONCE).items():
        wrong, dependent = CHARGED_ONCE[asg]
        for gid in wrong:
            assert graded[gid]["auto_score"] == 0, (asg, gid, graded[gid])
        for gid in dependent:
            assert graded[gid]["auto_score"] == graded[gid]["max_score"] > 0, (asg, gid, graded[gid])
