"""The hidden checks of 04_batchnorm, called directly (no nbgrader).

The solution notebook's functions pass; correct alternatives (one-pass variance, loops over
features, float64 work cast back to float32, the staged graph for the closed form and back,
other arrangements of the same formulas) pass; realistic wrong answers fail, and where the check
knows the mistake its message names it; a function that merely calls the library fails.
"""
from __future__ import annotations


import numpy as np
import pytest

import course
from course import functional as F
from course.fast import numpy as fast
from _checks import fails, solution_namespace
from grader.checks import batchnorm as checks

SOL = solution_namespace("04_batchnorm", "batchnorm")


# -- the solution passes; the library's own functions are refused -----------------------------------

@pytest.mark.parametrize("name", ["batchnorm_forward", "batchnorm_backward_graph", "batchnorm_backward",
                                  "update_running_stats", "fold_batchnorm"])
def test_solution_passes(name):
    assert getattr(checks, f"check_{name}")(SOL[name]) is None


def test_solution_numbers_pass():
    ns = solution_namespace("04_batchnorm", "batchnorm", suffix="_answer")
    assert checks.check_slip_std(ns["answer_slip_std"]) is None
    assert checks.check_running_var(ns["answer_running_var"]) is None


def _via_layer(x, gamma, beta, eps=1e-5):
    layer = course.nn.BatchNorm1d(x.shape[1], eps=eps, dtype=x.dtype)
    layer.weight.data[...], layer.bias.data[...] = gamma, beta
    y = layer(x).data
    return y, x.mean(0), x.var(0)


def _via_autodiff(dy, x, gamma, mean, var, eps=1e-5):
    xs, g, b = (course.Tensor(a, requires_grad=True) for a in (x, gamma, np.zeros_like(gamma)))
    y, _, _ = F.batch_norm_composite(xs, g, b, eps)
    (y * course.Tensor(dy)).sum().backward()
    return xs.grad.data, g.grad.data, b.grad.data


def _own_autodiff(dy, x, gamma, mean, var, eps=1e-5):
    """A student's own Tensor graph differentiated by course's autodiff: not a hand-written backward."""
    xs, g, b = (course.Tensor(a, requires_grad=True) for a in (x, gamma, np.zeros_like(gamma)))
    xc = xs - xs.mean(axis=0)
    y = xc / ((xc * xc).mean(axis=0) + eps).sqrt() * g + b
    (y * course.Tensor(dy)).sum().backward()
    return xs.grad.data, g.grad.data, b.grad.data


@pytest.mark.parametrize("check, delegate", [
    (checks.check_batchnorm_forward, lambda x, g, b, eps=1e-5: F.batchnorm_forward(x, g, b, eps)),
    (checks.check_batchnorm_forward, lambda x, g, b, eps=1e-5: fast._batchnorm_forward_numpy(x, g, b, eps)),
    (checks.check_batchnorm_forward, lambda x, g, b, eps=1e-5: tuple(
        a.data if isinstance(a, course.Tensor) else a
        for a in F.batch_norm_composite(course.Tensor(x), g, b, eps))),
    (checks.check_batchnorm_forward, lambda x, g, b, eps=1e-5: (
        F.batchnorm_inference(x, g, b, x.mean(0), x.var(0), eps), x.mean(0), x.var(0))),
    (checks.check_batchnorm_forward, _via_layer),
    (checks.check_batchnorm_backward, lambda dy, x, g, m, v, eps=1e-5: F.batchnorm_backward(dy, x, g, m, v, eps)),
    (checks.check_batchnorm_backward, lambda dy, x, g, m, v, eps=1e-5: fast._batchnorm_backward_numpy(dy, x, g, m, v, eps)),
    (checks.check_batchnorm_backward, _via_autodiff),
    (checks.check_batchnorm_backward, _own_autodiff),
    (checks.check_batchnorm_backward_graph,
     lambda dy, x, g, m, v, eps=1e-5: F.batchnorm_backward(dy, x, g, m, v, eps)),
    (checks.check_batchnorm_backward_graph, _via_autodiff),
    (checks.check_batchnorm_backward_graph, _own_autodiff),
    (checks.check_update_running_stats,
     lambda rm, rv, m, v, n, momentum=0.1: F.update_running_stats(rm, rv, m, v, n, momentum)),
    (checks.check_fold_batchnorm, lambda g, b, rm, rv, eps=1e-5: F.fold_batchnorm(g, b, rm, rv, eps)),
    (checks.check_fold_batchnorm, lambda g, b, rm, rv, eps=1e-5: (
        F.batchnorm_inference(np.ones_like(g), g, b, rm, rv, eps)
        - F.batchnorm_inference(np.zeros_like(g), g, b, rm, rv, eps),
        F.batchnorm_inference(np.zeros_like(g), g, b, rm, rv, eps))),
])
def test_delegating_to_the_library_fails(check, delegate):
    fails(check, delegate, "must be your own implementation")


def test_the_library_works_again_after_a_check():
    checks.check_batchnorm_forward(SOL["batchnorm_forward"])
    x = np.random.default_rng(0).standard_normal((5, 3))
    y, _, _ = F.batchnorm_forward(x, np.ones(3), np.zeros(3))
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-12)


# -- forward -----------------------------------------------------------------------------------------

def forward_student(bug=""):
    def batchnorm_forward(x, gamma, beta, eps=1e-5):
        axis = 1 if bug == "axis" else 0
        mean = x.mean(axis=axis, keepdims=bug == "axis")
        if bug == "in place":
            x -= mean
            xc = x
        else:
            xc = x - mean
        var = xc.var(axis=axis, ddof=1 if bug == "unbiased" else 0, keepdims=bug == "axis")
        if bug == "eps outside":
            xhat = xc / (np.sqrt(var) + eps)
        elif bug == "no sqrt":
            xhat = xc / (var + eps)
        else:
            xhat = xc / np.sqrt(var + eps)
        y = gamma * xhat + beta
        if bug == "float64":
            y = y.astype(np.float64)
        if bug == "std":
            return y, mean, np.sqrt(var)
        if bug == "pair":
            return y, mean
        return y, mean, var
    return batchnorm_forward


@pytest.mark.parametrize("bug, needles", [
    ("unbiased", ["known mistake", "N − 1"]),
    ("eps outside", ["known mistake", "outside the square root"]),
    ("no sqrt", ["known mistake", "no square root", "transcript"]),
    ("axis", ["known mistake", "over the features"]),
    ("std", ["var from", "known mistake", "standard deviation"]),
    ("in place", ["changed its argument 1 in place"]),
    ("float64", ["dtype float64", "float32"]),
    ("pair", ["expected a tuple (y, mean, var)"]),
])
def test_forward_mistakes_fail(bug, needles):
    fails(checks.check_batchnorm_forward, forward_student(bug), *needles)


def test_forward_wrong_default_eps_fails():
    def bn(x, gamma, beta, eps=1e-8):
        return SOL["batchnorm_forward"](x, gamma, beta, eps)
    fails(checks.check_batchnorm_forward, bn, "default eps is 1e-08")


def test_forward_without_affine_fails():
    def bn(x, gamma, beta, eps=1e-5):
        y, m, v = SOL["batchnorm_forward"](x, np.ones_like(gamma), np.zeros_like(beta), eps)
        return y, m, v
    fails(checks.check_batchnorm_forward, bn, "γ and β are not applied")


def forward_one_pass(x, gamma, beta, eps=1e-5):
    """Alternative: E[x²] − E[x]², in the input's dtype."""
    mean = np.mean(x, axis=0)
    var = np.mean(x * x, axis=0) - mean * mean
    return gamma * (x - mean) / np.sqrt(var + eps) + beta, mean, var


def forward_loops(x, gamma, beta, eps=1e-5):
    """Alternative: one feature at a time, plain Python sums, into fresh arrays."""
    n, d = x.shape
    y, mean, var = np.empty_like(x), np.empty(d, x.dtype), np.empty(d, x.dtype)
    for j in range(d):
        col = x[:, j]
        m = sum(col) / n
        v = sum((c - m) ** 2 for c in col) / n
        mean[j], var[j] = m, v
        y[:, j] = gamma[j] * (col - m) / (v + eps) ** 0.5 + beta[j]
    return y, mean, var


def forward_float64_work(x, gamma, beta, eps=1e-5):
    """Alternative: compute in float64 and cast back, np.var, a tuple built from a list."""
    x64 = x.astype(np.float64)
    mean, var = x64.mean(0), np.var(x64, axis=0)
    y = gamma.astype(np.float64) * (x64 - mean) / np.sqrt(var + eps) + beta
    return [a.astype(x.dtype) for a in (y, mean, var)]


@pytest.mark.parametrize("fn", [forward_one_pass, forward_loops, forward_float64_work])
def test_forward_alternatives_pass(fn):
    assert checks.check_batchnorm_forward(fn) is None


# -- backward ----------------------------------------------------------------------------------------

def backward_student(bug=""):
    def batchnorm_backward(dy, x, gamma, mean, var, eps=1e-5):
        n = x.shape[0]
        std = np.sqrt(var + eps) if bug != "eps ignored" else np.sqrt(var)
        xhat = (x - mean) / std
        dbeta = dy.mean(0) if bug == "dbeta mean" else dy.sum(0)
        dgamma = dy.sum(0) if bug == "dgamma sum" else (dy * xhat).sum(0)
        s1, s2 = dy.sum(0), (dy * xhat).sum(0)
        if bug == "no mean term":
            s1 = 0
        if bug == "no xhat term":
            s2 = 0
        g = 1.0 if bug == "no gamma" else gamma
        dx = g / (n * std) * (n * dy - s1 - xhat * s2)
        if bug == "constant stats":
            dx = gamma * dy / std
        if bug == "in place":
            dy *= gamma
        return dx, dgamma, dbeta
    return batchnorm_backward


BACKWARD_CASES = [
    ("no mean term", ["dx from", "known mistake", "−Σdy"]),
    ("no xhat term", ["dx from", "known mistake", "−x̂·Σ(dy·x̂)"]),
    ("constant stats", ["dx from", "known mistake", "constants"]),
    ("no gamma", ["dx from", "known mistake", "factor γ"]),
    ("eps ignored", ["dx from", "known mistake", "ε is left out"]),
    ("dgamma sum", ["dgamma from", "known mistake", "forgets x̂"]),
    ("dbeta mean", ["dbeta from", "known mistake", "sum Σ dy"]),
    ("in place", ["changed its argument 1 in place"]),
]


@pytest.mark.parametrize("bug, needles", BACKWARD_CASES)
def test_backward_mistakes_fail(bug, needles):
    fails(checks.check_batchnorm_backward, backward_student(bug), *needles)


@pytest.mark.parametrize("bug, needles", BACKWARD_CASES[:3] + BACKWARD_CASES[5:6])
def test_graph_backward_mistakes_fail(bug, needles):
    fails(checks.check_batchnorm_backward_graph, backward_student(bug), *needles)


def graph_student(bug=""):
    """The staged backward with one node's local derivative wrong."""
    def batchnorm_backward_graph(dy, x, gamma, mean, var, eps=1e-5):
        n = x.shape[0]
        xc = x - mean
        s = np.sqrt(var + eps)
        xhat = xc / s
        dbeta, dgamma = dy.sum(0), (dy * xhat).sum(0)
        dxhat = dy * gamma
        dxc = dxhat / s
        ds = -(dxhat * xc).sum(0) / (s * s)
        dvar = ds / 2 if bug == "dsqrt" else ds / (2 * s)
        if bug != "var path dropped":
            dxc = dxc + dvar * 2 * xc / n
        dmean = -dxc.sum(0)
        dx = dxc if bug == "mean path dropped" else dxc + dmean / n
        return dx, dgamma, dbeta
    return batchnorm_backward_graph


@pytest.mark.parametrize("bug, needles", [
    ("var path dropped", ["known mistake", "through the batch variance"]),
    ("mean path dropped", ["known mistake", "through the batch mean"]),
    ("dsqrt", ["dx from"]),
])
def test_graph_node_mistakes_fail(bug, needles):
    fails(checks.check_batchnorm_backward_graph, graph_student(bug), *needles)


def backward_mean_form(dy, x, gamma, mean, var, eps=1e-5):
    """Alternative: dx = γ/σ·(dy − mean(dy) − x̂·mean(dy·x̂))."""
    std = np.sqrt(var + eps)
    xhat = (x - mean) / std
    dx = gamma / std * (dy - dy.mean(0) - xhat * (dy * xhat).mean(0))
    return dx, (dy * xhat).sum(0), dy.sum(0)


def backward_loops(dy, x, gamma, mean, var, eps=1e-5):
    """Alternative: loops over features and samples."""
    n, d = x.shape
    dx, dgamma, dbeta = np.empty_like(x), np.empty_like(gamma), np.empty_like(gamma)
    for j in range(d):
        s = (var[j] + eps) ** 0.5
        xhat = [(x[i, j] - mean[j]) / s for i in range(n)]
        dbeta[j] = sum(dy[i, j] for i in range(n))
        dgamma[j] = sum(dy[i, j] * xhat[i] for i in range(n))
        for i in range(n):
            dx[i, j] = gamma[j] / (n * s) * (n * dy[i, j] - dbeta[j] - xhat[i] * dgamma[j])
    return dx, dgamma, dbeta


def backward_float64_work(dy, x, gamma, mean, var, eps=1e-5):
    out = SOL["batchnorm_backward"](*(a.astype(np.float64) for a in (dy, x, gamma, mean, var)), eps)
    return tuple(a.astype(x.dtype) for a in out)


@pytest.mark.parametrize("fn", [backward_mean_form, backward_loops, backward_float64_work,
                                lambda *a, **k: SOL["batchnorm_backward_graph"](*a, **k)])
def test_backward_alternatives_pass(fn):
    assert checks.check_batchnorm_backward(fn) is None


@pytest.mark.parametrize("fn", [backward_mean_form, backward_loops,
                                lambda *a, **k: SOL["batchnorm_backward"](*a, **k)])
def test_graph_alternatives_pass(fn):
    assert checks.check_batchnorm_backward_graph(fn) is None


# -- running statistics ------------------------------------------------------------------------------

def running_student(bug=""):
    def update_running_stats(running_mean, running_var, mean, var, n, momentum=0.1):
        m = 1 - momentum if bug.startswith("keras") else momentum
        unbiased = var if bug in ("biased", "keras biased") else var * n / (n - 1)
        if bug == "in place":
            running_mean *= 1 - m
            running_mean += m * mean
            return running_mean, (1 - m) * running_var + m * unbiased
        return (1 - m) * running_mean + m * mean, (1 - m) * running_var + m * unbiased
    if bug == "default":
        def update_running_stats_default(running_mean, running_var, mean, var, n, momentum=0.9):
            return update_running_stats(running_mean, running_var, mean, var, n, momentum)
        return update_running_stats_default
    return update_running_stats


@pytest.mark.parametrize("bug, needles", [
    ("biased", ["new_var", "known mistake", "unbiased"]),
    ("keras", ["new_mean", "known mistake", "Keras"]),
    ("keras biased", ["known mistake", "Keras"]),
    ("in place", ["changed its argument 1 in place"]),
    ("default", ["known mistake", "default momentum is 0.9"]),
])
def test_running_mistakes_fail(bug, needles):
    fails(checks.check_update_running_stats, running_student(bug), *needles)


def running_delta_form(running_mean, running_var, mean, var, n, momentum=0.1):
    """Alternative: r + m·(batch − r)."""
    return (running_mean + momentum * (mean - running_mean),
            running_var + momentum * (var * (n / (n - 1)) - running_var))


def test_running_alternative_passes():
    assert checks.check_update_running_stats(running_delta_form) is None


# -- folding -------------------------------------------------------------------------------------------

def fold_student(bug=""):
    def fold_batchnorm(gamma, beta, running_mean, running_var, eps=1e-5):
        std = {"var": running_var + eps, "eps outside": np.sqrt(running_var) + eps}.get(
            bug, np.sqrt(running_var + eps))
        a = gamma / std
        b = {"plus": beta + a * running_mean, "gamma mean": beta - gamma * running_mean}.get(bug, beta - a * running_mean)
        return (b, a) if bug == "swapped" else (a, b)
    return fold_batchnorm


@pytest.mark.parametrize("bug, needles", [
    ("var", ["a from", "known mistake", "variance"]),
    ("eps outside", ["a from", "known mistake", "outside the square root"]),
    ("plus", ["b from", "known mistake", "subtracted"]),
    ("gamma mean", ["b from", "known mistake", "β − γ·E"]),
    ("swapped", ["known mistake", "swapped"]),
])
def test_fold_mistakes_fail(bug, needles):
    fails(checks.check_fold_batchnorm, fold_student(bug), *needles)


def fold_power_form(gamma, beta, running_mean, running_var, eps=1e-5):
    """Alternative: (V + ε)^(−1/2) and b = β − γ·E/√(V + ε)."""
    return gamma * (running_var + eps) ** -0.5, beta - gamma * running_mean / np.sqrt(running_var + eps)


def test_fold_alternative_passes():
    assert checks.check_fold_batchnorm(fold_power_form) is None


# -- numbers ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, needle", [(1.0, "square root in place"), (0.2, "variance of x̂"),
                                           (0.5164, "unbiased"), ("0.447", "should be a number")])
def test_slip_std_mistakes(value, needle):
    fails(checks.check_slip_std, value, needle)


def test_slip_std_accepts_three_digits():
    assert checks.check_slip_std(0.4472) is None


@pytest.mark.parametrize("value, needle", [(1.25, "biased"), (3.7, "Keras"), (3.25, "weighs the old"),
                                           ((0.9 + 0.35) * 8 / 7, "whole running")])
def test_running_var_mistakes(value, needle):
    fails(checks.check_running_var, value, needle)


def test_running_stats_momentum_zero_is_not_the_default():
    """An explicit momentum=0.0 keeps the running statistics; `momentum or 0.1` does not."""
    def update_running_stats(running_mean, running_var, mean, var, n, momentum=0.1):
        momentum = momentum or 0.1
        return ((1 - momentum) * running_mean + momentum * mean,
                (1 - momentum) * running_var + momentum * var * n / (n - 1))
    message = fails(checks.check_update_running_stats, update_running_stats, "momentum=0.0")
    assert "momentum=0.1" not in message.split(" at step")[0]
