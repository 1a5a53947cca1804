"""Hidden checks of 03_initialization, called directly (no nbgrader).

The library's reference (an unguarded copy) and correct alternatives pass; realistic wrong
answers fail, with a message that names the mistake where the check can tell it apart.
"""
from __future__ import annotations

import json
import math
import types
from pathlib import Path

import numpy as np
import pytest

import course.init as I
from _checks import fails
from grader.checks import initialization as chk
from grader.nb import split_hidden


def unguarded(fn):
    """A copy of a library function: the check's guard blocks the original, not the copy."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    return copy




# -- building blocks of the students' answers ---------------------------------------------------

def fans(shape):
    r = math.prod(shape[2:])
    return shape[1] * r, shape[0] * r


def gain(nonlinearity, a):
    if nonlinearity == "leaky_relu":
        return math.sqrt(2 / (1 + a * a))
    return {"linear": 1.0, "sigmoid": 1.0, "tanh": 5 / 3, "relu": math.sqrt(2)}[nonlinearity]


def xavier_var(shape, gain=1.0):
    fi, fo = fans(shape)
    return gain**2 * 2 / (fi + fo)


def he_var(shape, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"unknown mode {mode!r}")
    fi, fo = fans(shape)
    return gain(nonlinearity, a) ** 2 / (fi if mode == "fan_in" else fo)


def normal_init(var_of, draw="normal"):
    """An initializer drawing N(0, var_of(shape, **options)) in one of several correct ways."""
    def f(shape, rng=None, *, dtype=np.float32, **options):
        gen = np.random.default_rng(rng)
        std = math.sqrt(var_of(shape, **options))
        if draw == "normal":
            return gen.normal(0.0, std, size=shape).astype(dtype)
        if draw == "standard_normal":  # drawn directly in the requested dtype
            return gen.standard_normal(shape, dtype=dtype) * dtype(std)
        if draw == "rows":  # a loop over the rows
            w = np.empty(shape, dtype=dtype)
            for i in range(shape[0]):
                w[i] = gen.normal(0.0, std, size=shape[1:])
            return w
        if draw == "library":  # course.init.normal is not an exercise: allowed
            return I.normal(shape, gen, std=std, dtype=dtype)
        raise AssertionError(draw)
    return f


def uniform_init(var_of, draw="uniform"):
    """An initializer drawing U[-b, b] with b = sqrt(3 var_of(shape, **options))."""
    def f(shape, rng=None, *, dtype=np.float32, **options):
        gen = np.random.default_rng(rng)
        b = math.sqrt(3 * var_of(shape, **options))
        if draw == "uniform":
            return gen.uniform(-b, b, size=shape).astype(dtype)
        if draw == "random":
            return ((2 * gen.random(shape) - 1) * b).astype(dtype)
        if draw == "loop":  # a loop over the rows
            w = np.empty(shape, dtype=dtype)
            for i in range(shape[0]):
                w[i] = gen.uniform(-b, b, size=shape[1:])
            return w
        raise AssertionError(draw)
    return f


# -- fans ----------------------------------------------------------------------------------------

def fans_checked(shape):
    if len(shape) < 2:
        raise ValueError("need 2 dimensions")
    return fans(shape)


def test_fans_reference_and_alternatives_pass():
    chk.check_fans(unguarded(I.fans))
    chk.check_fans(fans_checked)

    def numpy_style(shape):  # np.prod gives NumPy integers; a list is a fine pair too
        shape = np.asarray(shape)
        if shape.ndim != 1 or shape.size < 2:
            raise ValueError("at least 2 dimensions")
        r = np.prod(shape[2:])
        return [shape[1] * r, shape[0] * r]
    chk.check_fans(numpy_style)

    def float_fans(shape):  # the receptive field by a division: whole-valued floats
        if len(shape) < 2:
            raise ValueError("at least 2 dimensions")
        r = np.prod(shape, dtype=float) / (shape[0] * shape[1])
        return shape[1] * r, shape[0] * r
    chk.check_fans(float_fans)
    fails(chk.check_fans, lambda s: (s[1] + 0.5, s[0]) if len(s) > 1 else 1 / 0, "whole numbers")


@pytest.mark.parametrize("wrong, needle", [
    (lambda s: (s[0] * math.prod(s[2:]), s[1] * math.prod(s[2:])), "swapped"),
    (lambda s: (s[1], s[0]), "receptive field"),
    (lambda s: (s[1] * math.prod(s[2:]), s[0]), "fan_out must also"),
    (lambda s: (s[0], s[1]), "swapped"),
])
def test_fans_wrong_answers_fail(wrong, needle):
    def answer(shape):
        if len(shape) < 2:
            raise ValueError
        return wrong(shape)
    fails(chk.check_fans, answer, needle)


def test_fans_needs_value_error_for_1d_shapes():
    fails(chk.check_fans, fans, "ValueError")  # fans((5,)) raises IndexError
    fails(chk.check_fans, lambda s: (s[-1], s[0]) if len(s) == 1 else fans_checked(s), "raise ValueError")


def test_fans_guard():
    fails(chk.check_fans, lambda shape: I.fans(shape), "own implementation")


# -- calculate_gain ------------------------------------------------------------------------------

def gain_fn(relu=math.sqrt(2), tanh=5 / 3, leaky=lambda a: math.sqrt(2 / (1 + a * a)), default=0.01,
            strict=True):
    def calculate_gain(nonlinearity, param=None):
        if nonlinearity in ("linear", "sigmoid"):
            return 1.0
        if nonlinearity == "tanh":
            return tanh
        if nonlinearity == "relu":
            return relu
        if nonlinearity == "leaky_relu":
            return leaky(default if param is None else param)
        if strict:
            raise ValueError(nonlinearity)
        return 1.0
    return calculate_gain


def test_calculate_gain_passes():
    chk.check_calculate_gain(unguarded(I.calculate_gain))
    chk.check_calculate_gain(gain_fn())
    chk.check_calculate_gain(gain_fn(leaky=lambda a: (2 / (1 + a**2)) ** 0.5, tanh=1.6666667))


@pytest.mark.parametrize("answer, needle", [
    (gain_fn(relu=2.0), "square root"),
    (gain_fn(tanh=1.0), "5/3"),
    (gain_fn(leaky=lambda a: math.sqrt(2 / (1 + a))), "squared"),
    (gain_fn(leaky=lambda a: 2 / (1 + a * a)), "square root"),
    (gain_fn(default=0.0), "0.01"),
    (gain_fn(strict=False), "ValueError"),
])
def test_calculate_gain_wrong_answers_fail(answer, needle):
    fails(chk.check_calculate_gain, answer, needle)


def test_calculate_gain_guard():
    fails(chk.check_calculate_gain, lambda n, p=None: I.calculate_gain(n, p), "own implementation")


# -- Xavier ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("draw", ["normal", "standard_normal", "rows", "library"])
def test_xavier_normal_alternatives_pass(draw):
    chk.check_xavier_normal(normal_init(xavier_var, draw))


def test_xavier_normal_reference_passes():
    chk.check_xavier_normal(unguarded(I.xavier_normal))


def _xavier_normal_with(std_of):
    def xavier_normal(shape, rng=None, *, gain=1.0, dtype=np.float32):
        fi, fo = fans(shape)
        return np.random.default_rng(rng).normal(0, std_of(fi, fo, gain), size=shape).astype(dtype)
    return xavier_normal


@pytest.mark.parametrize("std_of, needle", [
    (lambda fi, fo, g: g / math.sqrt(fi), "LeCun"),
    (lambda fi, fo, g: g * math.sqrt(2 / math.sqrt(fi + fo)), "notes' slip"),
    (lambda fi, fo, g: g**2 * 2 / (fi + fo), "square root"),
    (lambda fi, fo, g: math.sqrt(2 / (fi + fo)), "gain is ignored"),
    (lambda fi, fo, g: g * math.sqrt(1 / (fi + fo)), "factor 2"),
    (lambda fi, fo, g: math.sqrt(g * 2 / (fi + fo)), "not squared"),
])
def test_xavier_normal_wrong_scale_fails(std_of, needle):
    fails(chk.check_xavier_normal, _xavier_normal_with(std_of), needle)


def test_xavier_normal_dtype_and_rng_mistakes_fail():
    std = lambda s, g: g * math.sqrt(2 / sum(fans(s)))  # noqa: E731
    fails(chk.check_xavier_normal,
          lambda s, rng=None, *, gain=1.0, dtype=np.float32: np.random.default_rng(rng).normal(0, std(s, gain), s),
          "dtype")
    fails(chk.check_xavier_normal,
          lambda s, rng=None, *, gain=1.0, dtype=np.float32:
              np.random.default_rng().normal(0, std(s, gain), s).astype(dtype),
          "rng argument")
    fails(chk.check_xavier_normal,
          lambda s, rng=None, *, gain=1.0, dtype=np.float32: np.random.normal(0, std(s, gain), s).astype(dtype),
          "rng argument")
    fails(chk.check_xavier_normal,
          lambda s, rng=None, *, gain=1.0, dtype=np.float32:
              np.random.default_rng(0 if rng is None else rng).normal(0, std(s, gain), s).astype(dtype),
          "fresh generator")
    fails(chk.check_xavier_normal,
          lambda s, rng=None, *, gain=1.0, dtype=np.float32:
              np.random.default_rng(42).normal(0, std(s, gain), s).astype(dtype),
          "different seeds")


def test_xavier_normal_distribution_mistakes_fail():
    # uniform draws with the right variance: not normal
    fails(chk.check_xavier_normal, uniform_init(xavier_var), "uniform")

    def one_row(shape, rng=None, *, gain=1.0, dtype=np.float32):
        row = np.random.default_rng(rng).normal(0, math.sqrt(xavier_var(shape, gain)), size=shape[1:])
        return np.broadcast_to(row, shape).astype(dtype)
    fails(chk.check_xavier_normal, one_row, "copies")


def test_xavier_normal_guard():
    fails(chk.check_xavier_normal, lambda s, rng=None, **kw: I.xavier_normal(s, rng, **kw), "own implementation")


@pytest.mark.parametrize("draw", ["uniform", "random", "loop"])
def test_xavier_uniform_alternatives_pass(draw):
    chk.check_xavier_uniform(uniform_init(xavier_var, draw))


def test_xavier_uniform_reference_passes():
    chk.check_xavier_uniform(unguarded(I.xavier_uniform))


def _xavier_uniform_with(bound_of, low=None):
    def xavier_uniform(shape, rng=None, *, gain=1.0, dtype=np.float32):
        fi, fo = fans(shape)
        b = bound_of(fi, fo, gain)
        return np.random.default_rng(rng).uniform(-b if low is None else low, b, size=shape).astype(dtype)
    return xavier_uniform


@pytest.mark.parametrize("answer, needle", [
    (_xavier_uniform_with(lambda fi, fo, g: g * math.sqrt(6 / (fi + fo)), low=0.0), "[0, a]"),
    (_xavier_uniform_with(lambda fi, fo, g: g * math.sqrt(3 / (fi + fo))), "sqrt(3/(fan_in + fan_out))"),
    (_xavier_uniform_with(lambda fi, fo, g: g * 6 / (fi + fo)), "without the square root"),
    (_xavier_uniform_with(lambda fi, fo, g: math.sqrt(6 / (fi + fo))), "gain is ignored"),
    (_xavier_uniform_with(lambda fi, fo, g: g * math.sqrt(2 / (fi + fo))), "std used as the uniform bound"),
    (_xavier_uniform_with(lambda fi, fo, g: math.sqrt(6 * g / (fi + fo))), "inside the square root"),
    (lambda s, rng=None, *, gain=1.0, dtype=np.float32:  # normal draws with std = the bound
        np.random.default_rng(rng).normal(0, gain * math.sqrt(6 / sum(fans(s))), s).astype(dtype),
     "normal distribution with std equal to the bound"),
    (normal_init(xavier_var), "outside [-a, a]"),
])
def test_xavier_uniform_wrong_answers_fail(answer, needle):
    fails(chk.check_xavier_uniform, answer, needle)


def test_xavier_uniform_dtype_and_guard():
    fails(chk.check_xavier_uniform,
          lambda s, rng=None, *, gain=1.0, dtype=np.float32:
              np.random.default_rng(rng).uniform(-1, 1, s) * gain * math.sqrt(6 / sum(fans(s))),
          "dtype")
    fails(chk.check_xavier_uniform, lambda s, rng=None, **kw: I.xavier_uniform(s, rng, **kw), "own implementation")


# -- He / Kaiming ------------------------------------------------------------------------------------

@pytest.mark.parametrize("draw", ["normal", "standard_normal", "rows", "library"])
def test_kaiming_normal_alternatives_pass(draw):
    chk.check_kaiming_normal(normal_init(he_var, draw))


def test_kaiming_normal_reference_passes():
    chk.check_kaiming_normal(unguarded(I.kaiming_normal))


def _he(draw_std, *, uniform=False, bound_factor=math.sqrt(3), low_zero=False):
    """A He initializer whose std comes from ``draw_std(shape, a, mode, nonlinearity)``."""
    def f(shape, rng=None, *, a=0.0, mode="fan_in", nonlinearity="leaky_relu", dtype=np.float32):
        gen = np.random.default_rng(rng)
        std = draw_std(shape, a, mode, nonlinearity)
        if uniform:
            b = bound_factor * std
            return gen.uniform(0 if low_zero else -b, b, size=shape).astype(dtype)
        return gen.normal(0, std, size=shape).astype(dtype)
    return f


def _fan(shape, mode, swap=False):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"unknown mode {mode!r}")
    fi, fo = fans(shape)
    if swap:
        fi, fo = fo, fi
    return fi if mode == "fan_in" else fo


HE_MISTAKES = [
    # fan_out taken for fan_in: shape[0] instead of shape[1]
    (lambda s, a, m, n: gain(n, a) / math.sqrt(_fan(s, m, swap=True)), "wrong dimension"),
    # the variance gain^2/fan used as the standard deviation
    (lambda s, a, m, n: gain(n, a) ** 2 / _fan(s, m), "square root"),
    # no gain: N(0, 1/fan)
    (lambda s, a, m, n: 1 / math.sqrt(_fan(s, m)), "gain is ignored"),
    # mode ignored: always fan_in
    (lambda s, a, m, n: gain(n, a) / math.sqrt(_fan(s, "fan_in")), "wrong dimension"),
    # slope not squared
    (lambda s, a, m, n: (math.sqrt(2 / (1 + a)) if n == "leaky_relu" else gain(n, a)) / math.sqrt(_fan(s, m)),
     "not squared"),
    # nonlinearity ignored: ReLU's gain everywhere
    (lambda s, a, m, n: math.sqrt(2) / math.sqrt(_fan(s, m)), "used for tanh"),
]


@pytest.mark.parametrize("std_of, needle", HE_MISTAKES)
def test_kaiming_normal_wrong_answers_fail(std_of, needle):
    fails(chk.check_kaiming_normal, _he(std_of), needle)


def test_kaiming_normal_dtype_and_guard():
    fails(chk.check_kaiming_normal,
          lambda s, rng=None, *, a=0.0, mode="fan_in", nonlinearity="leaky_relu", dtype=np.float32:
              np.random.default_rng(rng).normal(0, math.sqrt(he_var(s, a, mode, nonlinearity)), s),
          "dtype")
    fails(chk.check_kaiming_normal, lambda s, rng=None, **kw: I.kaiming_normal(s, rng, **kw), "own implementation")
    fails(chk.check_kaiming_normal, lambda s, rng=None, **kw: I.he_normal(s, rng, **kw), "own implementation")


@pytest.mark.parametrize("draw", ["uniform", "random"])
def test_kaiming_uniform_alternatives_pass(draw):
    chk.check_kaiming_uniform(uniform_init(he_var, draw))


def test_kaiming_uniform_reference_passes():
    chk.check_kaiming_uniform(unguarded(I.kaiming_uniform))


def _he_std(s, a, m, n):
    return gain(n, a) / math.sqrt(_fan(s, m))


def _slide_bound(shape, rng=None, *, a=0.0, mode="fan_in", nonlinearity="leaky_relu", dtype=np.float32):
    b = 4 / sum(fans(shape))
    return np.random.default_rng(rng).uniform(-b, b, size=shape).astype(dtype)


@pytest.mark.parametrize("answer, needle", [
    # sqrt(3/fan_in) with no gain
    (_he(lambda s, a, m, n: 1 / math.sqrt(_fan(s, m)), uniform=True), "gain is ignored"),
    # sqrt(6/fan) times the gain: ReLU's factor 2 counted twice
    (_he(_he_std, uniform=True, bound_factor=math.sqrt(6)), "already holds"),
    (_slide_bound, "4/(fan_in + fan_out)"),
    (_he(_he_std, uniform=True, low_zero=True), "[0, a]"),
    (_he(lambda s, a, m, n: gain(n, a) / math.sqrt(_fan(s, m, swap=True)), uniform=True), "wrong dimension"),
    (_he(_he_std, uniform=True, bound_factor=1.0), "std used as the uniform bound"),
    (_he(_he_std), "outside [-a, a]"),  # normal draws with the right variance
])
def test_kaiming_uniform_wrong_answers_fail(answer, needle):
    fails(chk.check_kaiming_uniform, answer, needle)


def test_kaiming_uniform_guard():
    fails(chk.check_kaiming_uniform, lambda s, rng=None, **kw: I.he_uniform(s, rng, **kw), "own implementation")


def test_not_implemented_is_reported():
    def stub(shape, rng=None, **kw):
        raise NotImplementedError()
    fails(chk.check_kaiming_uniform, stub, "not implemented")


# -- numeric answers -----------------------------------------------------------------------------------

def test_numeric_answers():
    chk.check_answer_distinct_units(1)
    chk.check_answer_distinct_units(np.int64(1))
    fails(chk.check_answer_distinct_units, 32, "same gradient")
    fails(chk.check_answer_distinct_units, 2)
    fails(chk.check_answer_distinct_units, "1", "number")

    chk.check_answer_leaky_he_var(2 / (1.0625 * 400))
    chk.check_answer_leaky_he_var(0.004706)  # four significant digits
    fails(chk.check_answer_leaky_he_var, 2 / 400, "ignores the negative slope")
    fails(chk.check_answer_leaky_he_var, 2 / (1.25 * 400), "squared")
    fails(chk.check_answer_leaky_he_var, 2 / (1.0625 * 100), "fan_in = 400")
    fails(chk.check_answer_leaky_he_var, math.sqrt(2 / (1.0625 * 400)), "standard deviation")

    chk.check_answer_he_uniform_bound(math.sqrt(6 / 64))
    chk.check_answer_he_uniform_bound(0.3062)
    fails(chk.check_answer_he_uniform_bound, 4 / (64 + 256), "slide")
    fails(chk.check_answer_he_uniform_bound, math.sqrt(3 / 64), "gain")
    fails(chk.check_answer_he_uniform_bound, math.sqrt(6 / 320), "Xavier")
    fails(chk.check_answer_he_uniform_bound, math.sqrt(6 / 256), "fan_in = 64")
    fails(chk.check_answer_he_uniform_bound, math.sqrt(2 / 64), "standard deviation")


# -- the statistics themselves ------------------------------------------------------------------

@pytest.mark.parametrize("name, dist", [("xavier_normal", "normal"), ("xavier_uniform", "uniform"),
                                        ("kaiming_normal", "normal"), ("kaiming_uniform", "uniform")])
def test_variance_tolerance_is_six_standard_errors_and_excludes_every_known_mistake(name, dist):
    n = math.prod(chk.SHAPE)
    rel_se = math.sqrt((2.0 if dist == "normal" else 0.8) / n)  # sd of s^2 / sigma^2
    cases = (chk._xavier_cases if name.startswith("xavier") else chk._kaiming_cases)(dist == "uniform")
    for dtype in chk.SPEC[name].dtypes:
        rtol = chk.SPEC[name].tol(dtype)[0]
        assert 5.5 * rel_se < rtol < 6.5 * rel_se
        for shape, kwargs, var, mistakes in cases:
            assert math.prod(shape) == n
            for mistake, wrong_var in mistakes.items():
                # a mistake whose variance lay within the tolerance would pass unnoticed
                assert abs(wrong_var / var - 1) > 2 * rtol, (name, kwargs, mistake)


# -- the solution notebook and the catalog agree with these checks ---------------------------------

def solution_notebook() -> list[types.SimpleNamespace]:
    """The solution notebook's cells (id, cell_type, source, metadata), read as plain JSON."""
    path = Path(__file__).resolve().parents[1] / "solutions" / "03_initialization" / "initialization.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [types.SimpleNamespace(id=c["id"], cell_type=c["cell_type"], metadata=c["metadata"],
                                  source="".join(c["source"])) for c in cells]


def test_catalog_and_hidden_lines_match_the_solution_notebook():
    nb = solution_notebook()
    graded = {c.metadata["nbgrader"]["grade_id"]: c for c in nb
              if c.metadata.get("nbgrader", {}).get("grade")}
    assert set(graded) == set(chk.SPEC)
    for gid, cell in graded.items():
        spec = chk.SPEC[gid]
        assert cell.metadata["nbgrader"]["points"] == spec.points, gid
        assert (cell.cell_type == "markdown") == (spec.kind == "written"), gid
    auto = {gid for gid, cell in graded.items() if cell.cell_type == "code"}
    hidden = ["\n".join(split_hidden(cell.source)[1]) for gid, cell in graded.items() if gid in auto]
    assert sorted(hidden) == sorted(
        f"from grader.checks import initialization as _c; _c.check_{g}({g})" for g in auto)
    assert all(hasattr(chk, f"check_{g}") for g in auto)


def test_solution_notebook_functions_pass_the_checks():
    """The solution cells of Part 4 (run without the experiments) pass their hidden checks."""
    nb = solution_notebook()
    namespace: dict = {"np": np, "math": math}
    for cell in nb:
        if cell.id.endswith("_impl"):
            exec(compile(cell.source, cell.id, "exec"), namespace)  # noqa: S102 - our own notebook
    for name in ("fans", "calculate_gain", "xavier_normal", "xavier_uniform", "kaiming_normal",
                 "kaiming_uniform"):
        getattr(chk, f"check_{name}")(namespace[name])


# -- one exercise at a time, conv weights, integer seeds, unknown modes -----------------------------

def _in_notebook(source):
    """The functions of ``source`` defined in one namespace, as in a notebook."""
    ns = {"np": np, "math": math}
    exec(source, ns)
    return ns


NOTEBOOK_INITIALIZERS = """
def fans(shape):
    return shape[0], shape[1]                    # wrong: swapped, no receptive field

def calculate_gain(nonlinearity, param=None):
    return 1.0                                   # wrong: no gain

def he_std(shape, a, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(mode)
    fan_in, fan_out = fans(shape)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)

def xavier_normal(shape, rng=None, *, gain=1.0, dtype=np.float32):
    fan_in, fan_out = fans(shape)
    return np.random.default_rng(rng).normal(0, gain * math.sqrt(2 / (fan_in + fan_out)), shape).astype(dtype)

def xavier_uniform(shape, rng=None, *, gain=1.0, dtype=np.float32):
    fan_in, fan_out = fans(shape)
    b = gain * math.sqrt(6 / (fan_in + fan_out))
    return np.random.default_rng(rng).uniform(-b, b, shape).astype(dtype)

def kaiming_normal(shape, rng=None, *, a=0.0, mode="fan_in", nonlinearity="leaky_relu", dtype=np.float32):
    return np.random.default_rng(rng).normal(0, he_std(shape, a, mode, nonlinearity), shape).astype(dtype)

def kaiming_uniform(shape, rng=None, *, a=0.0, mode="fan_in", nonlinearity="leaky_relu", dtype=np.float32):
    b = math.sqrt(3) * he_std(shape, a, mode, nonlinearity)
    return np.random.default_rng(rng).uniform(-b, b, shape).astype(dtype)
"""


@pytest.mark.parametrize("name", ["xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform"])
def test_initializers_are_judged_with_the_reference_fans_and_gain(name):
    """Wrong fans and calculate_gain in the notebook cost their own exercises only."""
    ns = _in_notebook(NOTEBOOK_INITIALIZERS)
    fails(chk.check_fans, ns["fans"])
    fails(chk.check_calculate_gain, ns["calculate_gain"])
    getattr(chk, f"check_{name}")(ns[name])
    assert ns["fans"]((3, 5)) == (3, 5), "the notebook's own fans is put back"


def test_conv_weights_without_receptive_field_fail():
    def var_no_field(shape, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
        if mode not in ("fan_in", "fan_out"):
            raise ValueError(mode)
        return gain(nonlinearity, a) ** 2 / (shape[1] if mode == "fan_in" else shape[0])
    fails(chk.check_kaiming_normal, normal_init(var_no_field), "(140, 60, 5, 5)", "receptive field")
    fails(chk.check_xavier_uniform,
          uniform_init(lambda shape, gain=1.0: gain ** 2 * 2 / (shape[0] + shape[1])), "receptive field")


def test_integer_seed_must_be_honoured():
    def f(shape, rng=None, *, dtype=np.float32, **options):
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng()  # ints ignored
        return gen.normal(0, math.sqrt(xavier_var(shape, **options)), shape).astype(dtype)
    fails(chk.check_xavier_normal, f, "the same integer seed")


def test_unknown_mode_must_raise_value_error():
    def f(shape, rng=None, *, a=0.0, mode="fan_in", nonlinearity="leaky_relu", dtype=np.float32):
        fi, fo = fans(shape)
        std = gain(nonlinearity, a) / math.sqrt(fo if mode == "fan_out" else fi)   # any other mode: fan_in
        return np.random.default_rng(rng).normal(0, std, shape).astype(dtype)
    fails(chk.check_kaiming_normal, f, "mode='fan_avg'", "raise ValueError")
    def g(shape, rng=None, *, a=0.0, mode="fan_in", nonlinearity="leaky_relu", dtype=np.float32):
        if mode not in ("fan_in", "fan_out"):
            raise KeyError(mode)
        return normal_init(he_var)(shape, rng, a=a, mode=mode, nonlinearity=nonlinearity, dtype=dtype)
    fails(chk.check_kaiming_normal, g, "raised KeyError", "line ")


def test_a_uniform_bound_too_small_is_named_not_called_one_sided():
    message = fails(chk.check_xavier_uniform,
                    uniform_init(lambda shape, gain=1.0: xavier_var(shape, gain) / 2), "sqrt(3/(fan_in + fan_out))")
    assert "[0, a]" not in message
