"""The hidden checks of 06_training_in_practice, called directly (no nbgrader).

The solution notebook's answers pass; correct alternatives (other formulas, loops, float64 work
cast back) pass; realistic wrong answers fail, with the mistake named where the check knows it;
an answer that merely calls the library's reference fails. The library references themselves
are checked against autodiff, simulations and the network's outputs at the end.
"""
from __future__ import annotations

import bisect
import math

import numpy as np
import pytest

import course
from course import Tensor, analysis, backprop, losses, ops, optim, schedules, symmetry
from _checks import fails, solution_cells, solution_namespace
from grader.checks import practice as checks

SOL: dict = {"np": np, "math": math, "Tensor": Tensor, "ops": ops}
for _source in solution_cells("06_training_in_practice", "practice").values():
    exec(_source, SOL)
ANSWERS = solution_namespace("06_training_in_practice", "practice", suffix="_answer")

LOSS_CHECKS = {"perceptron_loss": checks.check_perceptron_loss, "multi_margin_loss": checks.check_multi_margin_loss}
CHECKS = {
    "capped_inverse": checks.check_capped_inverse, "piecewise_constant": checks.check_piecewise_constant,
    "inverse_sqrt": checks.check_inverse_sqrt, "rmsprop_nesterov_step": checks.check_rmsprop_nesterov_step,
    "clip_grad_norm": checks.check_clip_grad_norm, "gradient_step_change": checks.check_gradient_step_change,
    "best_step": checks.check_best_step, "mlp_backward": checks.check_mlp_backward,
    "standard_error": checks.check_standard_error, "terminal_velocity": checks.check_terminal_velocity,
    "equivalent_weights": checks.check_equivalent_weights,
}


# -- the solution passes; the library's own function is refused ----------------------------------------

@pytest.mark.parametrize("name", sorted(LOSS_CHECKS))
def test_solution_losses_pass(name):
    assert LOSS_CHECKS[name](SOL[name], Tensor) is None


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_solution_passes(name):
    assert CHECKS[name](SOL[name]) is None


def test_solution_values_pass():
    checks.check_symmetry_count(ANSWERS["answer_symmetry_count"])
    checks.check_convergent_schedules(ANSWERS["answer_convergent_schedules"])
    checks.check_initial_losses(ANSWERS["answer_initial_cross_entropy"], ANSWERS["answer_initial_hinge"])


@pytest.mark.parametrize("check, delegate", [
    (checks.check_capped_inverse, lambda eta_max=0.1, c=100.0: schedules.capped_inverse(eta_max, c)),
    (checks.check_piecewise_constant, lambda m, v: schedules.piecewise_constant(m, v)),
    (checks.check_inverse_sqrt, lambda lr0: schedules.inverse_sqrt(lr0)),
    (checks.check_rmsprop_nesterov_step, lambda p, g, s, **k: optim.rmsprop_nesterov_step(p, g, s, **k)),
    (checks.check_clip_grad_norm, lambda grads, max_norm: optim.clip_grad_norm(grads, max_norm)),
    (checks.check_gradient_step_change, lambda g, h, lr: analysis.gradient_step_change(g, h, lr)),
    (checks.check_best_step, lambda g, h: analysis.best_step(g, h)),
    (checks.check_mlp_backward, lambda w, z, v, d, a="relu": backprop.mlp_backward(w, z, v, d, a)),
    (checks.check_standard_error, lambda g, n: analysis.standard_error(g, n)),
    (checks.check_terminal_velocity, lambda lr, g, m: analysis.terminal_velocity(lr, g, m)),
    (checks.check_equivalent_weights, lambda *a: symmetry.equivalent_weights(*a)),
])
def test_delegating_to_the_library_fails(check, delegate):
    fails(check, delegate, "must be your own implementation")


@pytest.mark.parametrize("name, delegate", [
    ("perceptron_loss", lambda x, y, reduction="mean": losses.perceptron_loss(x, y, reduction)),
    ("multi_margin_loss", lambda x, y, p=1, margin=1.0, reduction="mean": losses.multi_margin_loss(x, y, p, margin, reduction)),
])
def test_delegating_a_loss_fails(name, delegate):
    fails(lambda fn: LOSS_CHECKS[name](fn, Tensor), delegate, "must be your own implementation")


def test_clipping_through_the_in_place_library_version_is_refused():
    def via_params(grads, max_norm):
        params = [course.Parameter(g.copy()) for g in grads]
        for p, g in zip(params, grads):
            p.grad = Tensor(g.copy())
        total = optim.clip_grad_norm_(params, max_norm)
        return [p.grad.data for p in params], total
    fails(checks.check_clip_grad_norm, via_params, "must be your own implementation")


def test_rmsprop_nesterov_through_rmsprop_step_is_refused():
    def via_rmsprop(p, g, s, *, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.9):
        new, st = optim.rmsprop_step(p, g, s, lr=lr, alpha=alpha, eps=eps, momentum=momentum)
        b, old = st["momentum_buffer"], s.get("momentum_buffer")
        return new - lr * momentum * (b if old is None else b - old), st
    fails(checks.check_rmsprop_nesterov_step, via_rmsprop, "must be your own implementation")


# -- losses -----------------------------------------------------------------------------------------------

def _reduce(per, reduction):
    return per if reduction == "none" else per.sum() if reduction == "sum" else per.mean()


def perceptron_student(bug=""):
    def perceptron_loss(input, target, reduction="mean"):
        t = np.asarray(target.data if isinstance(target, Tensor) else target)
        if input.ndim == t.ndim + 1:
            hot = np.arange(input.shape[1]) == t[:, None]
            true = ops.where(hot, input, 0.0).sum(axis=1)
            if bug == "others only":
                per = ops.where(hot, -1e30, input).max(axis=1) - true
            elif bug == "numpy":
                return Tensor(_reduce(input.data.max(axis=1) - true.data, reduction))
            else:
                per = input.max(axis=1) - true
        else:
            per = ops.relu(1 - input * t) if bug == "hinge" else ops.relu(-(input * t))
        if bug == "always mean":
            return per.mean()
        if bug == "array":
            return _reduce(per, reduction).data
        return _reduce(per, reduction)
    return perceptron_loss


def perceptron_float64_inside(input, target, reduction="mean"):
    """Alternative: the binary case as max(0, -ys) through ops.where, multi-class through indexing."""
    t = np.asarray(target)
    if input.ndim == t.ndim + 1:
        true = input[np.arange(input.shape[0]), t]
        per = input.max(axis=1) - true
    else:
        m = -(input * t)
        per = ops.where(m.data > 0, m, 0.0)
    return _reduce(per, reduction)


def test_perceptron_alternative_passes():
    assert checks.check_perceptron_loss(perceptron_float64_inside, Tensor) is None
    assert checks.check_perceptron_loss(perceptron_student(), Tensor) is None


@pytest.mark.parametrize("bug, needles", [
    ("others only", ["ALL classes"]),
    ("hinge", ["hinge loss"]),
    ("always mean", ["reduction"]),
    ("array", ["return a Tensor"]),
    ("numpy", ["no gradient can flow"]),
])
def test_perceptron_mistakes(bug, needles):
    fails(lambda fn: checks.check_perceptron_loss(fn, Tensor), perceptron_student(bug), *needles)


def hinge_student(bug=""):
    def multi_margin_loss(input, target, p=1, margin=1.0, reduction="mean"):
        t = np.asarray(target)
        c = input.shape[1]
        hot = np.arange(c) == t[:, None]
        true = ops.where(hot, input, 0.0).sum(axis=1, keepdims=True)
        m = 1.0 if bug == "margin 1" else margin
        terms = ops.relu(m - true + input)
        if bug != "true included":
            terms = ops.where(hot, 0.0, terms)
        if p == 2 and bug != "p ignored":
            terms = terms * terms
        per = terms.sum(axis=1) / {"no C": 1, "C-1": c - 1}.get(bug, c)
        return _reduce(per, reduction)
    return multi_margin_loss


def hinge_loops(input, target, p=1, margin=1.0, reduction="mean"):
    """Alternative: the full sum minus the true class's own term margin^p, per example in a loop."""
    t = np.asarray(target)
    rows = []
    for i in range(input.shape[0]):
        s = input[i]
        terms = ops.relu(margin - s[int(t[i])] + s)
        if p == 2:
            terms = terms * terms
        rows.append((terms.sum() - margin ** p) / input.shape[1])
    per = ops.stack(rows) if hasattr(ops, "stack") else None
    return _reduce(per, reduction)


def test_hinge_alternatives_pass():
    assert checks.check_multi_margin_loss(hinge_student(), Tensor) is None
    if hasattr(ops, "stack"):
        assert checks.check_multi_margin_loss(hinge_loops, Tensor) is None


@pytest.mark.parametrize("bug, needles", [
    ("true included", ["true class is included"]),
    ("no C", ["division by the number of classes"]),
    ("C-1", ["C − 1"]),
    ("margin 1", ["margin is ignored"]),
    ("p ignored", ["p = 2 is ignored"]),
])
def test_hinge_mistakes(bug, needles):
    fails(lambda fn: checks.check_multi_margin_loss(fn, Tensor), hinge_student(bug), *needles)


# -- schedules --------------------------------------------------------------------------------------------

class CappedSchedule:
    """Alternative: a callable object with an if branch."""

    def __init__(self, eta_max=0.1, c=100.0):
        self.eta_max, self.c = eta_max, c

    def __call__(self, t):
        return self.eta_max if t <= self.c / self.eta_max else self.c / t


@pytest.mark.parametrize("make", [CappedSchedule, lambda eta_max=0.1, c=100.0: schedules.Schedule(
    lambda t: min(eta_max, c / t), 1, "mine")])
def test_capped_inverse_alternatives_pass(make):
    assert checks.check_capped_inverse(make) is None


@pytest.mark.parametrize("make, needle", [
    (lambda eta_max=0.1, c=100.0: lambda t: min(eta_max, c * t), "c·t"),
    (lambda eta_max=0.1, c=100.0: lambda t: max(eta_max, c / t), "max instead of min"),
    (lambda eta_max=0.1, c=100.0: lambda t: c / t, "cap is missing"),
    (lambda eta_max=0.1, c=100.0: lambda t: min(eta_max, c / (t + 1)), "counted from 0"),
    (lambda eta_max=0.01, c=100.0: lambda t: min(eta_max, c / t), "defaults"),
    (lambda eta_max=0.1, c=100.0: 0.1, "must return a function"),
])
def test_capped_inverse_mistakes(make, needle):
    fails(checks.check_capped_inverse, make, needle)


def test_piecewise_alternatives_pass():
    assert checks.check_piecewise_constant(lambda m, v: lambda t: v[bisect.bisect_right(m, t)]) is None

    def loop(milestones, values):
        def rate(t):
            for m, v in zip(milestones, values):
                if t < m:
                    return v
            return values[-1]
        return rate
    assert checks.check_piecewise_constant(loop) is None


@pytest.mark.parametrize("make, needle", [
    (lambda m, v: lambda t: v[sum(x < t for x in m)], "one step late"),
    (lambda m, v: lambda t: v[sum(x <= t + 1 for x in m)], "one step early"),
    (lambda m, v: lambda t: v[-1], "only the last value"),
])
def test_piecewise_mistakes(make, needle):
    fails(checks.check_piecewise_constant, make, needle)


def test_inverse_sqrt_alternatives_pass():
    assert checks.check_inverse_sqrt(lambda lr0: lambda t: lr0 * t ** -0.5) is None
    assert checks.check_inverse_sqrt(lambda lr0: lambda t: lr0 / np.sqrt(t)) is None


@pytest.mark.parametrize("make, needle", [
    (lambda lr0: lambda t: lr0 / t, "1/t decay"),
    (lambda lr0: lambda t: lr0 * math.sqrt(t), "grows"),
    (lambda lr0: lambda t: lr0 / math.sqrt(t + 1), "counted from 0"),
])
def test_inverse_sqrt_mistakes(make, needle):
    fails(checks.check_inverse_sqrt, make, needle)


# -- RMSProp with Nesterov ---------------------------------------------------------------------------------

def rmsprop_nesterov_student(bug=""):
    def step(param, grad, state, *, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.9):
        r = alpha * state.get("square_avg", np.zeros_like(param)) + (1 - alpha) * grad * grad
        s = grad / (np.sqrt(r + eps) if bug == "eps inside" else np.sqrt(r) + eps)
        old = state.get("momentum_buffer", np.zeros_like(param))
        b = momentum * old + s
        new_state = state if bug == "mutates" else dict(state)
        new_state["square_avg"], new_state["momentum_buffer"] = r, b
        if bug == "no look-ahead":
            return param - lr * b, new_state
        if bug == "old buffer":
            return param - lr * (s + momentum * old), new_state
        if bug == "velocity":
            v = momentum * (-lr * old) - lr * s
            new_state["momentum_buffer"] = v
            return param + v, new_state
        if bug == "float64":
            return (param - lr * (s + momentum * b)).astype(np.float64), new_state
        return param - lr * (s + momentum * b), new_state
    return step


def rmsprop_nesterov_loops(param, grad, state, *, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.9):
    """Alternative: coordinate by coordinate, in float64, cast back."""
    r_old, b_old = state.get("square_avg"), state.get("momentum_buffer")
    new, r, b = np.empty_like(param), np.empty_like(param), np.empty_like(param)
    for i in np.ndindex(param.shape):
        g = float(grad[i])
        ri = (1 - alpha) * g * g + (alpha * float(r_old[i]) if r_old is not None else 0.0)
        si = g / (math.sqrt(ri) + eps)
        bi = si + (momentum * float(b_old[i]) if b_old is not None else 0.0)
        r[i], b[i], new[i] = ri, bi, float(param[i]) - lr * (si + momentum * bi)
    return new, {**state, "square_avg": r, "momentum_buffer": b}


def test_rmsprop_nesterov_alternatives_pass():
    assert checks.check_rmsprop_nesterov_step(rmsprop_nesterov_student()) is None
    assert checks.check_rmsprop_nesterov_step(rmsprop_nesterov_loops) is None


@pytest.mark.parametrize("bug, needles", [
    ("no look-ahead", ["plain momentum"]),
    ("old buffer", ["plain momentum", "old buffer"]),
    ("velocity", ["velocity"]),
    ("eps inside", ["eps inside the square root"]),
    ("mutates", ["state"]),
    ("float64", ["dtype"]),
])
def test_rmsprop_nesterov_mistakes(bug, needles):
    fails(checks.check_rmsprop_nesterov_step, rmsprop_nesterov_student(bug), *needles)


# -- clipping ------------------------------------------------------------------------------------------------

def clip_student(bug=""):
    def clip_grad_norm(grads, max_norm):
        norms = [float(np.sqrt(np.sum(g.astype(np.float64) ** 2))) for g in grads]
        total = math.sqrt(sum(n * n for n in norms))
        if bug == "per array":
            return [g * min(1.0, max_norm / (n + 1e-6)) for g, n in zip(grads, norms)], total
        if bug == "values":
            return [np.clip(g, -max_norm, max_norm) for g in grads], total
        if bug == "in place":
            for g in grads:
                g *= min(1.0, max_norm / (total + 1e-6))
            return grads, total
        factor = max_norm / (total + 1e-6) if bug == "always" else min(1.0, max_norm / (total + (0 if bug == "no 1e-6" else 1e-6)))
        clipped = [g * factor for g in grads]
        if bug == "norm after":
            return clipped, total * min(1.0, factor)
        if bug == "squared":
            return clipped, total ** 2
        return clipped, total
    return clip_grad_norm


def clip_concatenated(grads, max_norm):
    """Alternative: np.linalg.norm of the concatenation, a tuple back, the norm as a 0-d array."""
    total = np.linalg.norm(np.concatenate([g.ravel() for g in grads]).astype(np.float64))
    factor = float(max_norm / (total + 1e-6))
    return tuple(g * factor if factor < 1 else g.copy() for g in grads), np.asarray(total)


def test_clip_alternatives_pass():
    assert checks.check_clip_grad_norm(clip_student()) is None
    assert checks.check_clip_grad_norm(clip_concatenated) is None


@pytest.mark.parametrize("bug, needles", [
    ("per array", ["its own norm", "ONE norm"]),
    ("values", ["clip_grad_value_"]),
    ("always", ["scaled up"]),
    ("no 1e-6", ["1e-6"]),
    ("norm after", ["after clipping"]),
    ("squared", ["N²"]),
    ("in place", ["in place"]),
])
def test_clip_mistakes(bug, needles):
    fails(checks.check_clip_grad_norm, clip_student(bug), *needles)


# -- the second-order step -------------------------------------------------------------------------------------

def test_step_change_alternatives_pass():
    assert checks.check_gradient_step_change(lambda g, h, lr: np.einsum("i,ij,j", g, h, g) * lr * lr / 2 - lr * np.dot(g, g)) is None
    assert checks.check_gradient_step_change(
        lambda g, h, lr: float(0.5 * (lr * g) @ h @ (lr * g) - (lr * g) @ g)) is None
    assert checks.check_best_step(lambda g, h: np.dot(g, g) / np.einsum("i,ij,j", g, h, g)) is None


@pytest.mark.parametrize("fn, needle", [
    (lambda g, h, lr: lr * (g @ g) - 0.5 * lr * lr * (g @ h @ g), "the sign"),
    (lambda g, h, lr: lr * lr * (g @ h @ g) - lr * (g @ g), "½"),
    (lambda g, h, lr: 0.5 * lr * (g @ h @ g) - lr * (g @ g), "lr instead of lr²"),
    (lambda g, h, lr: -lr * (g @ g), "first-order"),
    (lambda g, h, lr: np.array([0.5 * lr * lr * (g @ h @ g) - lr * (g @ g)]), "shape"),
])
def test_step_change_mistakes(fn, needle):
    fails(checks.check_gradient_step_change, fn, needle)


@pytest.mark.parametrize("fn, needle", [
    (lambda g, h: (g @ h @ g) / (g @ g), "upside down"),
    (lambda g, h: 2 * (g @ g) / (g @ h @ g), "half of it"),
    (lambda g, h: 1 / np.linalg.eigvalsh(h)[-1], "1/λmax"),
])
def test_best_step_mistakes(fn, needle):
    fails(checks.check_best_step, fn, needle)


# -- backprop --------------------------------------------------------------------------------------------------

def backprop_student(bug=""):
    def mlp_backward(weights, zs, vs, delta, activation="relu"):
        phi = np.tanh if activation == "tanh" else (lambda z: np.maximum(z, 0))
        gw, gb = [None] * len(weights), [None] * len(weights)
        for layer in reversed(range(len(weights))):
            gw[layer] = vs[layer].T @ delta if bug == "transposed" else delta.T @ vs[layer]
            gb[layer] = delta.mean(axis=0) if bug == "mean bias" else delta.sum(axis=0)
            if layer:
                z = zs[layer - 1]
                at = phi(z) if bug == "at v" else z
                local = (at > 0).astype(z.dtype) if activation == "relu" else 1 - np.tanh(at) ** 2
                delta = (delta @ weights[layer]) * (1 if bug == "no phi'" else local)
        return gw, gb
    return mlp_backward


def backprop_per_example(weights, zs, vs, delta, activation="relu"):
    """Alternative: the notes' column form, one example at a time, summed; tuples back."""
    gw = [np.zeros_like(w) for w in weights]
    gb = [np.zeros(w.shape[0], dtype=w.dtype) for w in weights]
    for n in range(delta.shape[0]):
        d = delta[n][:, None]
        for layer in reversed(range(len(weights))):
            gw[layer] += d @ vs[layer][n][None, :]
            gb[layer] += d[:, 0]
            if layer:
                z = zs[layer - 1][n][:, None]
                local = (z > 0) if activation == "relu" else 1 - np.tanh(z) ** 2
                d = local * (weights[layer].T @ d)
    return tuple(gw), tuple(gb)


def test_backprop_alternatives_pass():
    assert checks.check_mlp_backward(backprop_student()) is None
    assert checks.check_mlp_backward(backprop_per_example) is None


@pytest.mark.parametrize("bug, needles", [
    ("no phi'", ["φ'(z) is missing"]),
    ("at v", ["activation v = φ(z)"]),
    ("mean bias", ["averages over the examples"]),
    ("transposed", ["transposed"]),
])
def test_backprop_mistakes(bug, needles):
    fails(checks.check_mlp_backward, backprop_student(bug), *needles)


# -- noise, momentum, symmetries -----------------------------------------------------------------------------------

def test_standard_error_alternatives_pass():
    assert checks.check_standard_error(
        lambda g, n: (np.sqrt(((g - g.mean(axis=0)) ** 2).mean(axis=0)) / math.sqrt(n)).astype(g.dtype)) is None


@pytest.mark.parametrize("fn, needle", [
    (lambda g, n: g.std(axis=0) / n, "σ/n"),
    (lambda g, n: g.std(axis=0) * math.sqrt(n), "SHRINKS"),
    (lambda g, n: g.var(axis=0) / math.sqrt(n), "variance"),
    (lambda g, n: g.std(axis=0, ddof=1) / math.sqrt(n), "ddof=1"),
    (lambda g, n: g.std() / math.sqrt(n), "shape"),
    (lambda g, n: (g.std(axis=0) / math.sqrt(n)).astype(np.float64), "dtype"),
])
def test_standard_error_mistakes(fn, needle):
    fails(checks.check_standard_error, fn, needle)


def test_terminal_velocity_alternatives_pass():
    def simulated(lr, g, momentum):  # in the gradient's dtype, so float32 runs in float32
        v = np.zeros_like(g)
        for _ in range(20000):
            v = momentum * v - lr * g
        return np.linalg.norm(v)
    assert checks.check_terminal_velocity(simulated) is None
    assert checks.check_terminal_velocity(lambda lr, g, m: lr * math.sqrt(float((g ** 2).sum())) / (1 - m)) is None
    assert checks.check_terminal_velocity(lambda lr, g, m: lr * np.linalg.norm(g.astype(np.float64)) / (1 - m)) is None


def test_terminal_velocity_is_checked_on_float32_gradients():
    def float64_only(lr, g, m):
        return lr * np.linalg.norm(g) / (1 - m) if g.dtype == np.float64 else 0.0
    fails(checks.check_terminal_velocity, float64_only, "(float32)")


@pytest.mark.parametrize("fn, needle", [
    (lambda lr, g, m: lr * np.linalg.norm(g) / (1 + m), "1/(1 + α)"),
    (lambda lr, g, m: lr * np.linalg.norm(g) * m / (1 - m), "α/(1 − α)"),
    (lambda lr, g, m: lr * np.linalg.norm(g) / (1 - m) ** 2, "(1 − α)²"),
    (lambda lr, g, m: lr * np.abs(g).sum() / (1 - m), "Euclidean"),
    (lambda lr, g, m: np.linalg.norm(g) / (1 - m), "lr is missing"),
])
def test_terminal_velocity_mistakes(fn, needle):
    fails(checks.check_terminal_velocity, fn, needle)


def equivalent_loops(w1, b1, w2, perm, scale):
    """Alternative: unit by unit into new arrays."""
    n1, nb, n2 = np.empty_like(w1), np.empty_like(b1), np.empty_like(w2)
    for j, i in enumerate(perm):
        n1[j], nb[j], n2[:, j] = scale[i] * w1[i], scale[i] * b1[i], w2[:, i] / scale[i]
    return n1, nb, n2


def test_equivalent_weights_alternatives_pass():
    assert checks.check_equivalent_weights(equivalent_loops) is None


@pytest.mark.parametrize("fn, needle", [
    (lambda w1, b1, w2, p, c: ((c[:, None] * w1)[p], (c * b1)[p], w2[:, p]), "outputs changed"),
    (lambda w1, b1, w2, p, c: ((c[:, None] * w1)[p], b1[p], (w2 / c)[:, p]), "outputs changed"),
    (lambda w1, b1, w2, p, c: (w1[p], b1[p], w2[p] if w2.shape[0] == w1.shape[0] else w2[:, ::-1]), "outputs changed"),
    (lambda w1, b1, w2, p, c: symmetry_inverse(w1, b1, w2, p, c), "inverted"),
])
def test_equivalent_weights_mistakes(fn, needle):
    fails(checks.check_equivalent_weights, fn, needle)


def symmetry_inverse(w1, b1, w2, perm, scale):
    q = np.argsort(perm)
    return (scale[:, None] * w1)[q], (scale * b1)[q], (w2 / scale)[:, q]


# -- numeric answers ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, needle", [(24 * 3, "n!·m"), (math.factorial(12), "(n·m)!"), (64, "n^m"),
                                           (6 ** 4, "(m!)^n"), (13000, "not correct"), ("13824", "number")])
def test_symmetry_count_mistakes(value, needle):
    fails(checks.check_symmetry_count, value, needle)


def test_convergent_schedules_accepts_other_spellings():
    for value in ({"b", "e"}, ["e", "b"], ("B", "E"), "b, e", frozenset("be")):
        checks.check_convergent_schedules(value)


@pytest.mark.parametrize("value, needle", [({"b", "c", "e"}, "1/√t"), ({"b", "d", "e"}, "1/t²"), ({"b"}, "missing"),
                                           ({"a", "b", "e"}, "constant rate"), ({"b", "e", "g"}, "geometric"), (2, "set of letters")])
def test_convergent_schedules_mistakes(value, needle):
    fails(checks.check_convergent_schedules, value, needle)


@pytest.mark.parametrize("ce, hinge, needle", [(1.0, 0.9, "natural log"), (0.1, 0.9, "1/C"), (math.log(10), 9.0, "divides the sum by C"),
                                               (math.log(10), 1.0, "not in the sum"), (math.log(10), 0.0, "violates")])
def test_initial_losses_mistakes(ce, hinge, needle):
    fails(lambda pair: checks.check_initial_losses(*pair), (ce, hinge), needle)


def test_initial_losses_accept_three_digits():
    checks.check_initial_losses(2.303, 0.9)


# -- the library references -------------------------------------------------------------------------------------------

def test_mlp_backward_matches_autodiff():
    gen = np.random.default_rng(5)
    for sizes, activation in (((4, 6, 3), "relu"), ((3, 5, 4, 2), "tanh")):
        weights = [gen.standard_normal((o, i)) for i, o in zip(sizes, sizes[1:])]
        biases = [gen.standard_normal(o) for o in sizes[1:]]
        x, y = gen.standard_normal((7, sizes[0])), gen.standard_normal((7, sizes[-1]))
        zs, vs = backprop.mlp_forward(weights, biases, x, activation)
        gw, gb = backprop.mlp_backward(weights, zs, vs, zs[-1] - y, activation)
        ws, bs = [Tensor(w, requires_grad=True) for w in weights], [Tensor(b, requires_grad=True) for b in biases]
        v = Tensor(x)
        for i, (w, b) in enumerate(zip(ws, bs)):
            v = v @ w.T + b
            if i < len(ws) - 1:
                v = ops.relu(v) if activation == "relu" else ops.tanh(v)
        grads = course.grad(0.5 * ((v - y) * (v - y)).sum(), ws + bs)
        for mine, auto in zip(gw + gb, grads):
            np.testing.assert_allclose(mine, auto.data, rtol=1e-10, atol=1e-12)


def test_terminal_velocity_matches_a_simulated_run_and_best_step_minimizes_the_change():
    g = np.array([0.3, -0.4, 1.2])
    v = np.zeros(3)
    for _ in range(2000):
        v = 0.95 * v - 0.02 * g
    assert analysis.terminal_velocity(0.02, g, 0.95) == pytest.approx(np.linalg.norm(v), rel=1e-9)
    h = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
    best = analysis.best_step(g, h)
    lrs = np.linspace(0, 3 * best, 301)
    changes = [analysis.gradient_step_change(g, h, lr) for lr in lrs]
    assert lrs[int(np.argmin(changes))] == pytest.approx(best, rel=0.02)
    assert analysis.gradient_step_change(g, h, 2 * best) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="negative curvature"):
        analysis.best_step(np.array([1.0, 0.0]), np.diag([-1.0, 1.0]))


def test_standard_error_matches_resampled_minibatches():
    gen = np.random.default_rng(0)
    per_example = gen.standard_normal((400, 3)) * [1.0, 2.0, 0.5] + 1.0
    means = np.stack([per_example[gen.integers(0, 400, 25)].mean(axis=0) for _ in range(4000)])
    np.testing.assert_allclose(means.std(axis=0), analysis.standard_error(per_example, 25), rtol=0.05)


def test_equivalent_weights_keep_the_function_and_the_notes_alpha_must_be_positive():
    gen = np.random.default_rng(1)
    w1, b1, w2 = gen.standard_normal((4, 3)), gen.standard_normal(4), gen.standard_normal((2, 4))
    x = gen.standard_normal((9, 3))
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    f = lambda a, b, c, phi: phi(x @ a.T + b) @ c.T  # noqa: E731
    perm = np.array([3, 1, 0, 2])
    np.testing.assert_allclose(f(*symmetry.equivalent_weights(w1, b1, w2, perm, np.array([0.5, 2.0, 3.0, 1.5])), relu),
                               f(w1, b1, w2, relu))
    flips = np.array([-1.0, 1.0, -1.0, -1.0])
    np.testing.assert_allclose(f(*symmetry.equivalent_weights(w1, b1, w2, perm, flips), np.tanh), f(w1, b1, w2, np.tanh))
    assert not np.allclose(f(*symmetry.equivalent_weights(w1, b1, w2, perm, -np.ones(4)), relu), f(w1, b1, w2, relu))
    with pytest.raises(ValueError, match="permutation"):
        symmetry.equivalent_weights(w1, b1, w2, [0, 0, 1, 2], np.ones(4))


def test_functional_clipping_keeps_the_direction_and_the_in_place_version_agrees():
    a, b = np.array([3.0, 0.0]), np.array([[0.0], [4.0]])
    (ca, cb), total = optim.clip_grad_norm([a, b], 1.0)
    assert total == 5.0 and np.allclose(ca, a / (5 + 1e-6)) and np.allclose(cb, b / (5 + 1e-6))
    p, q = course.Parameter(np.zeros(2)), course.Parameter(np.zeros((2, 1)))
    p.grad, q.grad = Tensor(a.copy()), Tensor(b.copy())
    assert optim.clip_grad_norm_([p, q], 1.0) == total
    np.testing.assert_array_equal(p.grad.data, ca)
    assert optim.clip_grad_norm([], 1.0) == ([], 0.0)
