"""The gradient checker is itself checked: it accepts true gradients, rejects a VJP that is off
by 0.1 %, names the wrong entry, and catches a VJP that is right once but not differentiable."""
from __future__ import annotations

import numpy as np
import pytest

from course import backend as B
from course import ops
from course.autodiff import Tensor, defvjp, primitive
from course.gradcheck import (
    directional_check,
    gradcheck,
    gradgradcheck,
    numerical_grad,
    relative_error,
)


def tensor(values) -> Tensor:
    return Tensor(B.asarray(np.asarray(values, dtype=np.float64)))


@primitive
def exp_scaled_vjp(a):
    """exp, with a VJP deliberately 0.1 % too large."""
    return B.xp.exp(a)


defvjp(exp_scaled_vjp, lambda g, out, a: g * out * 1.001)


@primitive
def exp_one_wrong_entry(a):
    """exp, with a VJP off by 0.1 % at flat index 5 only."""
    return B.xp.exp(a)


def _one_entry_off(g: Tensor, out: Tensor, a: Tensor) -> Tensor:
    xp = B.xp
    n = a.size
    bump = xp.reshape(xp.astype(xp.arange(n, device=a.device) == 5, a.dtype), a.shape) * 0.001
    return g * out * (1 + bump)


defvjp(exp_one_wrong_entry, _one_entry_off)


@primitive
def exp_raw_vjp(a):
    """exp, with a VJP computed on raw arrays: right values, but invisible to double backward."""
    return B.xp.exp(a)


defvjp(exp_raw_vjp, lambda g, out, a: g * B.xp.exp(a.data))


@primitive
def sum_to_row_forgets_unbroadcast(a, b):
    return a + b


defvjp(sum_to_row_forgets_unbroadcast, lambda g, out, a, b: g, lambda g, out, a, b: g)


def random_input(shape=(3, 4), seed=0) -> Tensor:
    return tensor(np.random.default_rng(seed).standard_normal(shape))


# -- relative_error and numerical_grad ---------------------------------------------------------

def test_relative_error_is_the_worst_entry_of_the_formula(backend):
    a = B.asarray(np.array([1.0, 0.0, -2.0, 1e-12]))
    b = B.asarray(np.array([1.1, 0.0, -2.0, 0.0]))
    # entry 0: 0.1 / 2.1; entry 1: 0 / tiny = 0; entry 3: 1e-12 / max(1e-12, 1e-8) = 1e-4
    assert relative_error(a, b) == pytest.approx(0.1 / 2.1, rel=1e-12)
    assert relative_error(a[3:], b[3:]) == pytest.approx(1e-4, rel=1e-12)
    assert relative_error(a[3:], b[3:], tiny=1e-30) == pytest.approx(1.0)
    assert relative_error(tensor([2.0]), tensor([2.0])) == 0.0


def test_relative_error_refuses_different_shapes():
    with pytest.raises(ValueError, match=r"shapes differ, \(2,\) vs \(3,\)"):
        relative_error(np.zeros(2), np.zeros(3))


@pytest.mark.parametrize(("order", "eps", "bound"), [(2, 1e-6, 1e-8), (4, 1e-3, 1e-10), (6, 1e-3, 1e-11)])
def test_numerical_grad_stencils_reach_their_accuracy(backend, order, eps, bound):
    x = random_input()
    num = numerical_grad(lambda t: (t * t * t).sum(), x, eps=eps, order=order)
    exact = 3 * x.numpy() ** 2
    assert np.max(np.abs(B.to_numpy(num) - exact)) < bound


def test_numerical_grad_passes_raw_arrays_through_and_returns_one_array_per_input(backend):
    xp = backend.xp
    a, b = random_input((2, 3), 1).data, random_input((3,), 2).data
    seen = []

    def f(x, y):
        seen.append(type(x))
        return xp.sum(x * y)

    ga, gb = numerical_grad(f, [a, b])
    assert set(seen) == {type(a)}
    np.testing.assert_allclose(B.to_numpy(ga), np.broadcast_to(B.to_numpy(b), (2, 3)), rtol=1e-9)
    np.testing.assert_allclose(B.to_numpy(gb), B.to_numpy(a).sum(axis=0), rtol=1e-9)


def test_numerical_grad_explains_bad_input():
    x = np.arange(3)
    with pytest.raises(TypeError, match="floating-point"):
        numerical_grad(lambda t: t.sum(), x)
    with pytest.raises(ValueError, match="single number"):
        numerical_grad(lambda t: t * 2, np.ones(3))
    with pytest.raises(ValueError, match="order must be 2, 4 or 6"):
        numerical_grad(lambda t: t.sum(), np.ones(3), order=3)


# -- gradcheck ---------------------------------------------------------------------------------

def test_gradcheck_accepts_true_gradients(backend):
    x, w = random_input((3, 4), 0), random_input((4, 2), 1)
    for report in (gradcheck(ops.exp, [x]), gradcheck(lambda a, b: ops.tanh(a @ b), [x, w])):
        assert report.passed and report.max_error < 1e-9, report
        assert "passed" in str(report)


def test_gradcheck_rejects_a_vjp_off_by_a_tenth_of_a_percent(backend):
    report = gradcheck(exp_scaled_vjp, [random_input()])
    assert not report.passed
    assert report.max_error == pytest.approx(0.001 / 2.001, rel=1e-4)
    assert report.analytic == pytest.approx(report.numeric * 1.001, rel=1e-8)
    assert "FAILED" in str(report) and not bool(report)


def test_gradcheck_names_the_wrong_entry(backend):
    report = gradcheck(lambda a, b: a * exp_one_wrong_entry(b), [random_input((3, 4), 3), random_input((3, 4), 4)])
    assert not report.passed
    assert (report.input, report.index) == (1, (1, 1))  # flat index 5 of a (3, 4) array
    assert "input 1, index (1, 1)" in str(report)


def test_gradcheck_catches_a_vjp_that_does_not_sum_broadcast_axes_back(backend):
    with pytest.raises(ValueError, match=r"input 1 has shape \(3, 4\) but the input has shape \(4,\)"):
        gradcheck(sum_to_row_forgets_unbroadcast, [random_input((3, 4)), random_input((4,))])


def test_gradcheck_contracts_vector_outputs_with_fixed_weights():
    x = random_input()
    assert gradcheck(ops.exp, [x], seed=1).max_error == gradcheck(ops.exp, [x], seed=1).max_error
    # the contraction is what catches the error: every entry gets a different output weight
    assert not gradcheck(exp_scaled_vjp, [x], seed=2).passed


def test_gradcheck_runs_inside_no_grad():
    from course import no_grad

    with no_grad():
        assert gradcheck(ops.tanh, [random_input()]).passed


def test_gradcheck_tolerates_an_all_zero_gradient(backend):
    """f does not depend on x: both gradients are zero up to rounding, which is no failure."""
    assert gradcheck(lambda t: (t - t).sum() + 1.0, [random_input()]).passed
    assert gradgradcheck(lambda t: ops.sqrt(t) * ops.sqrt(t), [tensor([0.5, 1.5, 2.0])], rng=0).passed


def test_float32_gets_a_float32_tolerance():
    x = Tensor(B.asarray(np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32)))
    report = gradcheck(ops.tanh, [x])
    assert report.tol == 1e-2 and report.passed, report


# -- second derivatives ------------------------------------------------------------------------

def test_gradgradcheck_accepts_true_second_derivatives(backend):
    x, w = random_input((3, 4), 0), random_input((4, 2), 1)
    report = gradgradcheck(lambda a, b: ops.log_softmax(ops.tanh(a @ b)), [x, w], rng=0)
    assert report.passed and report.max_error < 1e-9, report


def test_gradgradcheck_catches_a_vjp_that_double_backward_cannot_see(backend):
    x = random_input()
    assert gradcheck(exp_raw_vjp, [x]).passed  # first derivatives are right...
    report = gradgradcheck(exp_raw_vjp, [x], rng=0)
    assert not report.passed, report  # ...but the Hessian misses the exp(a) factor's own slope
    assert report.kind == "Hessian-vector product"


def test_gradgradcheck_rejects_a_wrong_first_derivative_too(backend):
    assert not gradgradcheck(lambda a: exp_scaled_vjp(a) * exp_scaled_vjp(a), [random_input()], rng=0).passed


# -- directional check -------------------------------------------------------------------------

def test_directional_check_on_a_large_input(backend):
    x = random_input((60, 50), 5)
    w = random_input((50, 40), 6)
    good = directional_check(lambda a: ops.tanh(a @ w), x, rng=0)
    assert good.passed and good.max_error < 1e-9, good
    assert good.input is None and "directional derivative" in str(good)
    bad = directional_check(lambda a: exp_scaled_vjp(a * 0.1) @ w, x, rng=0)
    assert not bad.passed, bad


def test_directional_check_takes_an_explicit_direction(backend):
    x = random_input((4,), 7)
    v = B.asarray(np.array([1.0, 0.0, 0.0, 0.0]))
    report = directional_check(lambda a: (a * a).sum(), x, v)
    assert report.analytic == pytest.approx(2 * x.numpy()[0], rel=1e-12)
    with pytest.raises(ValueError, match=r"direction 0 has shape \(3,\)"):
        directional_check(lambda a: a.sum(), x, B.asarray(np.ones(3)))
