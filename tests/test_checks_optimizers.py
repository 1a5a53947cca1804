"""The hidden checks of 02_optimizers, called directly (no nbgrader).

The solution notebook's functions pass; correct alternatives (other arrangements of the same
formula, loops, float64 work cast back, other state layouts that keep PyTorch's entries) pass;
realistic wrong answers fail, and where the check knows the mistake its message names it; a
function that merely calls the library's reference fails.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from course import optim, schedules
from _checks import fails, solution_namespace
from grader.checks import CheckFailed
from grader.checks import optimizers as checks

SOL = solution_namespace("02_optimizers", "optimizers")


# -- the solution passes; the library's own function is refused -------------------------------------

@pytest.mark.parametrize("name, check", [
    ("sgd_step", checks.check_sgd_step), ("sgd_step", checks.check_sgd_nesterov),
    ("adagrad_step", checks.check_adagrad_step), ("rmsprop_step", checks.check_rmsprop_step),
    ("adam_step", checks.check_adam_step), ("newton_step", checks.check_newton_step),
    ("linear_decay", checks.check_linear_decay),
])
def test_solution_passes(name, check):
    assert check(SOL[name]) is None


def _via_kernel(name, p, g, s, **hyper):
    """The in-place kernel of course.fast on copies: the library's formula under another name."""
    from course.fast import numpy as fast

    p, state = p.copy(), {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
    getattr(fast, name)(p, g, state, **hyper)
    return p, state


@pytest.mark.parametrize("check, delegate", [
    (checks.check_sgd_step, lambda p, g, s, **k: optim.sgd_step(p, g, s, **k)),
    (checks.check_sgd_nesterov, lambda p, g, s, **k: optim.sgd_step(p, g, s, **k)),
    (checks.check_adagrad_step, lambda p, g, s, **k: optim.adagrad_step(p, g, s, **k)),
    (checks.check_rmsprop_step, lambda p, g, s, **k: optim.rmsprop_step(p, g, s, **k)),
    (checks.check_adam_step, lambda p, g, s, **k: optim.adam_step(p, g, s, **k)),
    (checks.check_adam_step, lambda p, g, s, **k: _via_kernel("_adam_numpy", p, g, s, decoupled=False,
                                                              **{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                                                                 "weight_decay": 0.0, "amsgrad": False, **k})),
    (checks.check_sgd_step, lambda p, g, s, **k: _via_kernel("_sgd_numpy", p, g, s, **{
        "momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0, **k})),
    (checks.check_newton_step, lambda p, g, h, s, **k: optim.newton_step(p, g, h, s, **k)),
    (checks.check_linear_decay, lambda lr0, tau, lr_tau=None: schedules.linear_decay(lr0, tau, lr_tau)),
])
def test_delegating_to_the_library_fails(check, delegate):
    fails(check, delegate, "must be your own implementation")


def test_adamw_with_zero_decay_is_refused():
    def via_adamw(p, g, s, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        return optim.adamw_step(p + 0.0, g + weight_decay * p, s, lr=lr, betas=betas, eps=eps, weight_decay=0.0)
    fails(checks.check_adam_step, via_adamw, "must be your own implementation")


def test_adam_through_the_optimizer_class_is_refused():
    import course

    def via_class(p, g, s, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        param = course.Parameter(p.copy())
        param.grad = course.Tensor(g.copy())
        opt = optim.Adam([param], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        opt.state[0] = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
        opt.step()
        return param.data.copy(), dict(opt.state[0])
    fails(checks.check_adam_step, via_class, "must be your own implementation")


# -- SGD -------------------------------------------------------------------------------------------

def sgd_student(bug=""):
    """A student's sgd_step, correct unless ``bug`` names a mistake."""
    def sgd_step(param, grad, state, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        g = grad if bug in ("wd ignored", "wd after") else grad + (2 if bug == "wd doubled" else 1) * weight_decay * param
        new_state = state if bug == "mutates state" else dict(state)
        if momentum:
            if bug == "velocity":
                v = momentum * state.get("momentum_buffer", np.zeros_like(param)) - lr * g
                new_state["momentum_buffer"] = v
                return param + v, new_state
            b = state.get("momentum_buffer")
            if b is None:
                b = (1 - dampening) * g if bug == "damped first" else g.copy()
                if bug == "lr twice":
                    b = lr * g
            else:
                keep = 1 if bug == "no dampening" else 1 - dampening
                b = momentum * b + keep * (lr * g if bug == "lr twice" else g)
            new_state["momentum_buffer"] = b
            if nesterov and bug == "no look-ahead":
                d = b
            elif nesterov and bug == "direction stored":
                b = g + momentum * b
                new_state["momentum_buffer"] = b
                d = b
            elif nesterov and bug == "no mu":
                d = g + b
            else:
                d = g + momentum * b if nesterov else b
        else:
            d = g
        if bug == "wd after":
            d = d + weight_decay * param
        if bug == "uphill":
            return param + lr * d, new_state
        if bug == "in place":
            param -= lr * d
            return param, new_state
        if bug == "float64":
            return (param - lr * d).astype(np.float64), new_state
        if bug == "no state":
            return param - lr * d
        return param - lr * d, new_state
    return sgd_step


def sgd_loops(param, grad, state, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    """Alternative: one coordinate at a time, into fresh arrays."""
    new = np.empty_like(param)
    old_b = state.get("momentum_buffer")
    b = np.empty_like(param)
    for i in np.ndindex(param.shape):
        g = grad[i] + weight_decay * param[i]
        if momentum:
            b[i] = g if old_b is None else momentum * old_b[i] + (1 - dampening) * g
            g = g + momentum * b[i] if nesterov else b[i]
        new[i] = param[i] - lr * g
    return new, ({**state, "momentum_buffer": b} if momentum else dict(state))


def sgd_float64_inside(param, grad, state, **hyper):
    """Alternative: compute in float64, hand back the input's dtype."""
    state64 = {k: v.astype(np.float64) for k, v in state.items()}
    new, new_state = SOL["sgd_step"](param.astype(np.float64), grad.astype(np.float64), state64, **hyper)
    return new.astype(param.dtype), {k: v.astype(param.dtype) for k, v in new_state.items()}


@pytest.mark.parametrize("alternative", [sgd_loops, sgd_float64_inside, sgd_student()])
def test_sgd_alternatives_pass(alternative):
    checks.check_sgd_step(alternative)
    checks.check_sgd_nesterov(alternative)


@pytest.mark.parametrize("bug, needles", [
    ("uphill", ["uphill"]),
    ("lr twice", ["learning rate is applied twice"]),
    ("velocity", ["notes' velocity"]),
    ("wd after", ["after the momentum"]),
    ("wd ignored", ["weight_decay is ignored"]),
    ("wd doubled", ["2λ·p"]),
    ("damped first", ["dampening is applied at the first step"]),
    ("no dampening", ["dampening is ignored"]),
    ("in place", ["changed its argument 1 in place"]),
    ("mutates state", ["added or removed keys of the state dict"]),
    ("float64", ["dtype float64 for float32"]),
    ("no state", ["expected a pair (new_param, new_state)"]),
])
def test_sgd_mistakes_fail(bug, needles):
    fails(checks.check_sgd_step, sgd_student(bug), *needles)


@pytest.mark.parametrize("bug, needles", [
    ("no look-ahead", ["plain momentum"]),
    ("direction stored", ["updated the same way"]),
    ("no mu", ["not scaled by the momentum"]),
])
def test_nesterov_mistakes_fail(bug, needles):
    checks.check_sgd_step(sgd_student(bug))  # the plain part is right...
    fails(checks.check_sgd_nesterov, sgd_student(bug), *needles)  # ...Nesterov is not


@pytest.mark.parametrize("bug", ["damped first", "no dampening", "lr twice", "wd doubled", "wd after", "wd ignored"])
def test_nesterov_is_not_charged_for_the_plain_rule(bug):
    """One mistake is charged once: the Nesterov step is judged against the student's own
    buffer and gradient, so a wrong buffer rule or weight decay fails sgd_step only."""
    fails(checks.check_sgd_step, sgd_student(bug))
    checks.check_sgd_nesterov(sgd_student(bug))


def test_hidden_global_counter_fails():
    calls = {"n": 0}

    def sgd_step(param, grad, state, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        calls["n"] += 1  # a hidden state: the first call of each run is "special"
        out, new_state = SOL["sgd_step"](param, grad, state, lr=lr, momentum=momentum, dampening=dampening,
                                         nesterov=nesterov, weight_decay=weight_decay)
        return (out if calls["n"] % 2 else out + 1e-3), new_state
    fails(checks.check_sgd_step, sgd_step)


# -- AdaGrad ---------------------------------------------------------------------------------------

def adagrad_student(bug=""):
    def adagrad_step(param, grad, state, *, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                     initial_accumulator_value=0.0, eps=1e-10):
        t = state.get("step", 0) + 1
        g = grad if bug == "wd ignored" else grad + weight_decay * param
        start = 0.0 if bug == "init ignored" else initial_accumulator_value
        r = state["sum"] if "sum" in state else np.full_like(param, start)
        if bug == "sum of g":
            r = r + g
            denom = np.sqrt(r ** 2) + eps
        elif bug == "only current":
            r = g * g
            denom = np.sqrt(r) + eps
        elif bug == "in place" and "sum" in state:
            r += g * g
            denom = np.sqrt(r) + eps
        else:
            r = r + g * g
            denom = {"no sqrt": r + eps, "eps inside": np.sqrt(r + eps)}.get(bug, np.sqrt(r) + eps)
        k = {"decay ignored": 0, "decay t": t}.get(bug, t - 1)
        lr_t = lr / (1 + k * lr_decay)
        return param - lr_t * g / denom, {**state, "step": t, "sum": r}
    return adagrad_step


def adagrad_alternative(param, grad, state, *, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                        initial_accumulator_value=0.0, eps=1e-10):
    """Alternative: np.square, np.add, the decayed rate written as a product."""
    t = state.get("step", 0) + 1
    g = np.add(grad, np.multiply(weight_decay, param))
    r = np.square(g) + state.get("sum", initial_accumulator_value + np.zeros_like(param))
    step = g / np.add(np.sqrt(r), eps)
    return param - step * (lr * (1 + (t - 1) * lr_decay) ** -1), {"step": t, "sum": r}


@pytest.mark.parametrize("alternative", [adagrad_alternative, adagrad_student()])
def test_adagrad_alternatives_pass(alternative):
    checks.check_adagrad_step(alternative)


@pytest.mark.parametrize("bug, needles", [
    ("sum of g", ["(Σg)²"]),
    ("only current", ["history is not accumulated"]),
    ("no sqrt", ["instead of √r"]),
    ("eps inside", ["eps is inside the square root"]),
    ("decay ignored", ["lr_decay is ignored"]),
    ("decay t", ["uses t instead of t − 1"]),
    ("init ignored", ["initial_accumulator_value is ignored"]),
    ("wd ignored", ["weight_decay is ignored"]),
    ("in place", ["changed state['sum'] in place"]),
])
def test_adagrad_mistakes_fail(bug, needles):
    fails(checks.check_adagrad_step, adagrad_student(bug), *needles)


# -- RMSProp ---------------------------------------------------------------------------------------

def rmsprop_student(bug=""):
    def rmsprop_step(param, grad, state, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                     momentum=0.0, centered=False):
        g = grad if bug == "wd ignored" else grad + weight_decay * param
        if bug == "init g2" and "square_avg" not in state:
            r = g * g  # "the average starts at the first squared gradient"
        else:
            r = state.get("square_avg", np.zeros_like(param))
            r = {"no 1-alpha": alpha * r + g * g, "swapped": (1 - alpha) * r + alpha * g * g}.get(
                bug, alpha * r + (1 - alpha) * g * g)
        denom = {"eps inside": np.sqrt(r + eps), "no sqrt": r + eps}.get(bug, np.sqrt(r) + eps)
        new_state = {**state, "square_avg": r}
        if momentum > 0:
            b = state.get("momentum_buffer", np.zeros_like(param))
            if bug == "momentum on g":
                b = momentum * b + g
                new_state["momentum_buffer"] = b
                return param - lr * b / denom, new_state
            b = momentum * b + g / denom
            new_state["momentum_buffer"] = b
            return param - lr * b, new_state
        return param - lr * g / denom, new_state
    return rmsprop_step


def rmsprop_alternative(param, grad, state, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                        momentum=0.0, centered=False):
    """Alternative: the in-place-style recursion r + (1 − α)(g² − r) on fresh arrays, an extra 'step'."""
    g = grad + weight_decay * param
    r = state.get("square_avg", np.zeros_like(param))
    r = r + (1 - alpha) * (g * g - r)
    s = g / (np.sqrt(r) + eps)
    new_state = {"step": state.get("step", 0) + 1, "square_avg": r}
    if momentum:
        s = s + momentum * state.get("momentum_buffer", 0 * s)
        new_state["momentum_buffer"] = s
    return param - lr * s, new_state


@pytest.mark.parametrize("alternative", [rmsprop_alternative, rmsprop_student()])
def test_rmsprop_alternatives_pass(alternative):
    checks.check_rmsprop_step(alternative)


@pytest.mark.parametrize("bug, needles", [
    ("no 1-alpha", ["not weighted by (1 − α)"]),
    ("swapped", ["α and 1 − α are swapped"]),
    ("eps inside", ["eps is inside the square root", "notes' √(δ + r)"]),
    ("no sqrt", ["instead of √r"]),
    ("init g2", ["starts at g²"]),
    ("momentum on g", ["accumulates the raw gradient"]),
    ("wd ignored", ["weight_decay is ignored"]),
])
def test_rmsprop_mistakes_fail(bug, needles):
    fails(checks.check_rmsprop_step, rmsprop_student(bug), *needles)


# -- Adam ------------------------------------------------------------------------------------------

def adam_student(bug=""):
    def adam_step(param, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                  amsgrad=False):
        b1, b2 = betas[::-1] if bug == "betas swapped" else betas
        t = state.get("step", 0) + 1
        if bug == "adamw":
            param = param * (1 - lr * weight_decay)
            g = grad
        else:
            g = grad + weight_decay * param
        m = state.get("exp_avg", np.zeros_like(param))
        v = state.get("exp_avg_sq", np.zeros_like(param))
        if bug == "in place" and "exp_avg" in state:
            m *= b1
            m += (1 - b1) * g
        else:
            m = b1 * m + (1 - b1) * (lr * g if bug in ("lr in m", "notes") else g)
        v = b2 * v + (1 - b2) * g * g
        te = t - 1 if bug == "t from 0" else t
        m_hat = m if bug == "no correction" else m / (1 - b1 ** te)
        v_hat = v if bug == "no correction" else v / (1 - b2 ** te)
        new_state = {**state, "step": t, "exp_avg": m, "exp_avg_sq": v}
        if bug == "notes":  # the notes' formula: corrected recursion, eta in v, g in the update
            new_state.update(exp_avg=m_hat, exp_avg_sq=v_hat)
            return param - lr * g / (np.sqrt(v_hat) + eps), new_state
        if bug == "eps hat":
            step = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            return param - step * m / (np.sqrt(v) + eps), new_state
        num = g if bug == "g not m" else m_hat
        denom = {"eps inside": np.sqrt(v_hat + eps), "no sqrt": v_hat + eps}.get(bug, np.sqrt(v_hat) + eps)
        return param - lr * num / denom, new_state
    return adam_step


def adam_pytorch_arrangement(param, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                             weight_decay=0.0, amsgrad=False):
    """Alternative: torch.optim.Adam's arrangement (step size lr/bc1, denominator √v/√bc2 + eps)."""
    beta1, beta2 = betas
    t = state.get("step", 0) + 1
    g = grad + weight_decay * param if weight_decay else grad
    m = state["exp_avg"] + (1 - beta1) * (g - state["exp_avg"]) if "exp_avg" in state else (1 - beta1) * g
    v = beta2 * state["exp_avg_sq"] + (1 - beta2) * np.square(g) if "exp_avg_sq" in state else (1 - beta2) * g * g
    denom = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps
    return param - (lr / (1 - beta1 ** t)) * (m / denom), {"step": t, "exp_avg": m, "exp_avg_sq": v}


def adam_loops(param, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
    """Alternative: plain Python floats, one coordinate at a time."""
    t = state.get("step", 0) + 1
    new, m, v = np.empty_like(param), np.zeros_like(param), np.zeros_like(param)
    for i in np.ndindex(param.shape):
        g = float(grad[i]) + weight_decay * float(param[i])
        m[i] = betas[0] * (state["exp_avg"][i] if "exp_avg" in state else 0.0) + (1 - betas[0]) * g
        v[i] = betas[1] * (state["exp_avg_sq"][i] if "exp_avg_sq" in state else 0.0) + (1 - betas[1]) * g * g
        m_hat, v_hat = float(m[i]) / (1 - betas[0] ** t), float(v[i]) / (1 - betas[1] ** t)
        new[i] = float(param[i]) - lr * m_hat / (math.sqrt(v_hat) + eps)
    return new, {"step": t, "exp_avg": m, "exp_avg_sq": v}


@pytest.mark.parametrize("alternative", [adam_pytorch_arrangement, adam_loops, adam_student()])
def test_adam_alternatives_pass(alternative):
    checks.check_adam_step(alternative)


@pytest.mark.parametrize("bug, needles", [
    ("no correction", ["not bias-corrected"]),
    ("t from 0", ["t − 1", "starting at 0"]),
    ("eps inside", ["eps is inside the square root"]),
    ("g not m", ["gradient g instead of the first moment"]),
    ("notes", ["notes' Adam formula"]),
    ("lr in m", ["learning rate is put inside the first moment"]),
    ("eps hat", ["ε̂"]),
    ("no sqrt", ["instead of √v̂"]),
    ("betas swapped", ["β1 and β2 are swapped"]),
    ("adamw", ["decoupled"]),
    ("in place", ["changed state['exp_avg'] in place"]),
])
def test_adam_mistakes_fail(bug, needles):
    fails(checks.check_adam_step, adam_student(bug), *needles)


def test_adam_with_a_global_step_counter_fails():
    counter = {"t": 0}

    def adam_step(param, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                  amsgrad=False):
        counter["t"] += 1  # the step number kept outside the state
        t = counter["t"]
        g = grad + weight_decay * param
        m = betas[0] * state.get("exp_avg", 0 * g) + (1 - betas[0]) * g
        v = betas[1] * state.get("exp_avg_sq", 0 * g) + (1 - betas[1]) * g * g
        new = param - lr * (m / (1 - betas[0] ** t)) / (np.sqrt(v / (1 - betas[1] ** t)) + eps)
        return new, {"step": t, "exp_avg": m, "exp_avg_sq": v}
    fails(checks.check_adam_step, adam_step, "called again with the same arguments")


# -- Newton ----------------------------------------------------------------------------------------

def newton_student(bug=""):
    def newton_step(param, grad, hessian, state, *, lr=1.0, damping=0.0):
        n = len(param)
        h = {"damping ignored": hessian, "damping everywhere": hessian + damping}.get(
            bug, hessian + damping * np.eye(n, dtype=hessian.dtype))
        if bug == "times H":
            d = h @ grad
        elif bug == "diagonal":
            d = grad / np.diag(h)
        else:
            d = np.linalg.solve(h, grad)
        rate = 1.0 if bug == "lr ignored" else lr
        return (param + rate * d if bug == "uphill" else param - rate * d), dict(state)
    return newton_step


def newton_inverse(param, grad, hessian, state, *, lr=1.0, damping=0.0):
    """Alternative: the explicit inverse (worse numerically, same numbers here), no step count."""
    inverse = np.linalg.inv(hessian + damping * np.eye(param.shape[0], dtype=param.dtype))
    return param - lr * (inverse @ grad), {}


@pytest.mark.parametrize("alternative", [newton_inverse, newton_student()])
def test_newton_alternatives_pass(alternative):
    checks.check_newton_step(alternative)


@pytest.mark.parametrize("bug, needles", [
    ("times H", ["multiplied by H"]),
    ("diagonal", ["only the diagonal"]),
    ("uphill", ["wrong sign"]),
    ("damping ignored", ["damping is ignored"]),
    ("damping everywhere", ["every entry"]),
    ("lr ignored", ["lr is ignored"]),
])
def test_newton_mistakes_fail(bug, needles):
    fails(checks.check_newton_step, newton_student(bug), *needles)


# -- the schedule ----------------------------------------------------------------------------------

def linear_student(bug=""):
    def linear_decay(lr0, tau, lr_tau=None):
        if lr_tau is None:
            lr_tau = 0.0 if bug == "default 0" else lr0 / 100
        def schedule(t):
            a = {"int div": t // tau, "from 1": (t - 1) / tau}.get(bug, t / tau)
            if bug != "no clamp":
                a = min(a, 1)
            return a * lr0 + (1 - a) * lr_tau if bug == "swapped" else (1 - a) * lr0 + a * lr_tau
        return schedule
    return linear_decay


def linear_with_branch(lr0, tau, lr_tau=None):
    """Alternative: an if-branch after tau, returned as a course Schedule object."""
    end = lr0 / 100 if lr_tau is None else lr_tau
    return schedules.Schedule(lambda t: end if t >= tau else lr0 + (end - lr0) * t / tau, 0, "mine")


@pytest.mark.parametrize("alternative", [linear_with_branch, linear_student()])
def test_linear_decay_alternatives_pass(alternative):
    checks.check_linear_decay(alternative)


@pytest.mark.parametrize("bug, needles", [
    ("no clamp", ["keeps falling after t = τ"]),
    ("swapped", ["swapped"]),
    ("int div", ["integer division"]),
    ("from 1", ["starts at 1"]),
    ("default 0", ["default ε_τ is 0"]),
])
def test_linear_decay_mistakes_fail(bug, needles):
    fails(checks.check_linear_decay, linear_student(bug), *needles)


def test_linear_decay_must_return_a_function():
    fails(checks.check_linear_decay, lambda lr0, tau, lr_tau=None: lr0, "function of the step t")


# -- numeric answers -------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [3 + 2 * math.sqrt(2), 5.83, np.float64(5.8284)])
def test_condition_number_accepts(answer):
    checks.check_condition_number(answer)


@pytest.mark.parametrize("answer, needle", [
    (1 / (3 + 2 * math.sqrt(2)), "upside down"),
    (3.0, "diagonal"),
    ((4 + math.sqrt(5)) / (4 - math.sqrt(5)), "off-diagonal"),
    (4 * math.sqrt(2), "λmax − λmin"),
    ("5.83", "should be a number"),
])
def test_condition_number_rejects(answer, needle):
    fails(checks.check_condition_number, answer, needle)


@pytest.mark.parametrize("answer", [
    [-0.01, 0.01, -0.01 / 11],
    np.array([-0.0099999667, 0.0099999999975, -0.000909090909]),
    (-0.01, 0.01, -0.000909),
])
def test_adam_first_step_accepts(answer):
    checks.check_adam_first_step(answer)


G = np.array([0.003, -40.0, 1e-9])


@pytest.mark.parametrize("answer, needle", [
    ([0.01, -0.01, 0.01 / 11], "the sign"),
    (-0.01 * 0.1 * G / (np.sqrt(0.001 * G * G) + 1e-8), "no bias correction"),
    ([-0.0099944, 0.01, -1e-7], "eps inside"),
    ([-0.01, 0.01, -0.01], "eps left out"),
    ([-0.01, 0.01], "shape"),
])
def test_adam_first_step_rejects(answer, needle):
    fails(checks.check_adam_first_step, answer, needle)


def _adam_without_bias_correction(param, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=0.0, amsgrad=False):
    m, v = (1 - betas[0]) * grad, (1 - betas[1]) * grad * grad
    return param - lr * m / (np.sqrt(v) + eps), {"step": 1, "exp_avg": m, "exp_avg_sq": v}


def test_adam_first_step_is_not_charged_for_adam_step():
    """An answer computed with the student's own (wrong) adam_step is accepted with it; the same
    number without that adam_step, or a number neither gives, is not."""
    own = -0.01 * 0.1 * G / (np.sqrt(0.001 * G * G) + 1e-8)
    checks.check_adam_first_step(own, _adam_without_bias_correction)
    fails(checks.check_adam_first_step, own, "no bias correction")
    with pytest.raises(CheckFailed, match="the sign"):
        checks.check_adam_first_step([0.01, -0.01, 0.01 / 11], _adam_without_bias_correction)
    checks.check_adam_first_step([-0.01, 0.01, -0.01 / 11], SOL["adam_step"])
    checks.check_adam_first_step([-0.01, 0.01, -0.01 / 11], lambda *a, **k: 1 / 0)  # a broken adam_step
