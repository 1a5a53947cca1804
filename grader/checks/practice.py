"""Hidden checks of 06_training_in_practice: losses, schedules, RMSProp-Nesterov, clipping,
the second-order step, backprop by hand, minibatch noise, momentum, symmetries, three numbers.

The losses are checked through the notebook's own ``Tensor`` class: the check builds input
Tensors in the student's kernel, calls the loss, reads the value and, after ``backward()``,
the gradient autodiff gives (so a loss computed on ``.data`` with NumPy, which has no
gradient, fails with a message saying so). Everything else takes and returns arrays and
numbers. Each check compares with the library's reference (``replaces``, refused while the
check runs) and names a known mistake when the answer matches one; expected values are
never shown.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from grader.checks import CheckFailed, check
from grader.checks import _core as C
from grader.checks.optimizers import _cases, _quiet, _run_rule, _spd, _variants

SPEC = C.specs(__name__)


# -- losses, through the notebook's Tensor ------------------------------------------------------

def _scores(gen: np.random.Generator, n: int, c: int, dtype: str) -> np.ndarray:
    """Scores with distinct entries per row, away from every hinge kink (so gradients are defined)."""
    base = np.stack([gen.permutation(c) for _ in range(n)]) * 0.37 - 0.37 * c / 2
    return (base + gen.uniform(0.05, 0.12, (n, c))).astype(dtype)


def _loss_value_and_grad(loss: Callable[..., Any], Tensor: Any, scores: np.ndarray,
                         target: np.ndarray, what: str, **kwargs: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(value, gradient w.r.t. the scores) of the student's loss; the gradient only for a
    scalar result (``reduction`` other than 'none')."""
    x = C.construct(Tensor, scores, requires_grad=True)
    with _quiet():
        out = C.call(loss, x, target, what=what, **kwargs)
    if C.type_name(out) != "Tensor":
        raise CheckFailed(f"{what} returned {C.type_name(out)}; return a Tensor built from "
                          "Tensor operations on input (ops.relu, .max, .sum, indexing), so that "
                          "backward() can compute the gradient.")
    value = C.as_array(out.data, what=f"{what}.data")
    if kwargs.get("reduction") == "none":
        return value, None
    if not out.requires_grad:
        raise CheckFailed(f"{what} gives a Tensor that no gradient can flow through: the loss was "
                          "computed outside autodiff (NumPy on .data?); use Tensor operations.")
    try:
        out.backward()
    except Exception as exc:  # noqa: BLE001 - the student's graph
        raise CheckFailed(f"{what}.backward() raised {type(exc).__name__}: {exc}") from None
    grad = x.grad
    if grad is None:
        raise CheckFailed(f"after {what}.backward() the input has no gradient: the loss was "
                          "computed outside autodiff (NumPy on .data?); use Tensor operations.")
    return value, C.as_array(grad.data, what=f"the gradient of {what}")


def _reference_value_and_grad(reference: Callable[..., Any], scores: np.ndarray, target: np.ndarray,
                              **kwargs: Any) -> tuple[np.ndarray, np.ndarray | None]:
    from course import Tensor

    x = Tensor(scores, requires_grad=True)
    out = reference(x, target, **kwargs)
    if kwargs.get("reduction") == "none":
        return out.data, None
    out.backward()
    return out.data, x.grad.data


def _check_loss(loss: Callable[..., Any], Tensor: Any, spec: Any, reference: Callable[..., Any],
                cases: Sequence[tuple[np.ndarray, np.ndarray, dict[str, Any]]],
                mistakes_for: Callable[..., dict[str, np.ndarray]]) -> None:
    """Value (and gradient) of the student's loss against the reference on every case;
    ``mistakes_for(scores, target, **kwargs)`` gives the per-example values of known mistakes."""
    if not C.is_class(Tensor):
        raise CheckFailed(f"the second argument of the check must be the Tensor class, got {C.type_name(Tensor)}.")
    for scores, target, kwargs in cases:
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        what = (f"{spec.function}(input of shape {scores.shape} ({scores.dtype}), target of shape "
                f"{target.shape}{', ' + shown if shown else ''})")
        tol = spec.tol(scores.dtype)
        value, grad = _loss_value_and_grad(loss, Tensor, scores, target, what, **kwargs)
        expected, expected_grad = _reference_value_and_grad(reference, scores, target, **kwargs)
        reduction = kwargs.get("reduction", "mean")
        per_example = mistakes_for(scores, target, **{k: v for k, v in kwargs.items() if k != "reduction"})
        reduce = {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction]
        wrong = {name: reduce(v) for name, v in per_example.items()}
        if reduction != "none":
            n = scores.shape[0]
            right = expected * (n if reduction == "mean" else 1 / n)
            wrong["the reduction: 'mean' averages over the examples, 'sum' adds them up"] = right
        C.compare(value, np.asarray(expected), what=what, tol=tol, check_dtype=False, mistakes=wrong)
        if grad is not None:
            C.compare(grad, expected_grad, what=f"the gradient of {what} (from backward)", tol=tol,
                      check_dtype=False)


def _perceptron_mistakes(scores: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    s = scores.astype(np.float64)
    if s.ndim == target.ndim:  # binary, labels ±1
        return {"max(0, 1 − y·s) is the hinge loss; the perceptron loss has no margin: max(0, −y·s)":
                    np.maximum(0, 1 - target * s),
                "the sign: the loss is max(0, −y·s), positive when y·s < 0 (a wrong prediction)":
                    np.maximum(0, target * s),
                "−y·s without max(0, ·): correct predictions must cost 0, not a negative loss": -target * s}
    rows = np.arange(len(target))
    true = s[rows, target]
    others = s.copy()
    others[rows, target] = -np.inf
    return {"the max is taken over the other classes only, so the loss goes negative; take it over "
            "ALL classes (then it is 0 when the true class wins)": others.max(axis=1) - true,
            "a sum over the classes instead of the max": s.sum(axis=1) - true,
            "the sign: the loss is max_j s_j − s_y (≥ 0)": true - s.max(axis=1)}


@check
def check_perceptron_loss(perceptron_loss, Tensor):
    """Binary (±1 labels, shapes (N,) and (N, 1)) and multi-class (N, C) with all reductions."""
    spec = SPEC["perceptron_loss"]
    cases = []
    for dtype in spec.dtypes:
        gen = C.rng("perceptron_loss", dtype)
        for n, c, reduction in ((6, 4, "mean"), (5, 3, "sum"), (7, 10, "none"), (1, 2, "mean")):
            s = _scores(gen, n, c, dtype)
            cases.append((s, gen.integers(0, c, n), {"reduction": reduction}))
        for shape, reduction in (((8,), "mean"), ((5, 1), "sum"), ((6,), "none")):
            s = (gen.uniform(0.1, 2.0, shape) * gen.choice([-1, 1], shape)).astype(dtype)
            cases.append((s, gen.choice([-1.0, 1.0], shape).astype(dtype), {"reduction": reduction}))
    with C.guard(spec) as reference:
        _check_loss(perceptron_loss, Tensor, spec, reference, cases, _perceptron_mistakes)


def _hinge_mistakes(scores: np.ndarray, target: np.ndarray, p: int = 1, margin: float = 1.0) -> dict[str, np.ndarray]:
    s = scores.astype(np.float64)
    c = s.shape[1]
    rows = np.arange(len(target))
    terms = np.maximum(0, margin - s[rows, target][:, None] + s) ** p
    all_terms = terms.sum(axis=1)
    terms[rows, target] = 0
    right = terms.sum(axis=1)
    out = {"the true class is included in the sum (it adds margin^p/C to every example); sum over j ≠ y only":
               all_terms / c,
           "no division by the number of classes C (PyTorch's MultiMarginLoss divides by C)": right,
           "divided by C − 1 (the number of terms); PyTorch divides by C": right / (c - 1),
           "the margin is ignored (max(0, 1 − s_y + s_j) with margin 1)":
               np.where(np.arange(c) == target[:, None], 0, np.maximum(0, 1 - s[rows, target][:, None] + s) ** p).sum(axis=1) / c}
    if p == 2:
        out["p = 2 is ignored: square each term"] = (
            np.where(np.arange(c) == target[:, None], 0, np.maximum(0, margin - s[rows, target][:, None] + s)).sum(axis=1) / c)
    return out


@check
def check_multi_margin_loss(multi_margin_loss, Tensor):
    """p = 1 and 2, margins 1, 0.5 and 2, all reductions, C from 2 to 10."""
    spec = SPEC["multi_margin_loss"]
    settings = [{}, {"reduction": "sum"}, {"p": 2}, {"margin": 0.5, "reduction": "none"},
                {"p": 2, "margin": 2.0, "reduction": "mean"}, {"p": 1, "margin": 1.0, "reduction": "mean"}]
    cases = []
    for dtype in spec.dtypes:
        gen = C.rng("multi_margin_loss", dtype)
        for i, kwargs in enumerate(settings):
            n, c = ((6, 4), (5, 3), (7, 10), (3, 5), (4, 2), (1, 6))[i]
            cases.append((_scores(gen, n, c, dtype), gen.integers(0, c, n), kwargs))
    with C.guard(spec) as reference:
        _check_loss(multi_margin_loss, Tensor, spec, reference, cases, _hinge_mistakes)


# -- schedules ------------------------------------------------------------------------------------

def _check_schedule(make: Callable[..., Any], spec: Any, cases: Sequence[tuple[Any, ...]],
                    steps: Callable[..., Sequence[int]], mistakes: Mapping[str, Callable[..., Callable[[int], float]]]) -> None:
    """``make(*args)`` must return a function of t equal to the reference's at ``steps(*args)``;
    ``mistakes[name](*args)`` builds a known wrong schedule."""
    with C.guard(spec) as reference:
        for args in cases:
            shown = f"{spec.function}(" + ", ".join(map(repr, args)) + ")"
            schedule = C.call(make, *args, what=shown)
            if not callable(schedule):
                raise CheckFailed(f"{shown} returned {C.type_name(schedule)}; it must return a "
                                  "function of the step t giving the learning rate.")
            ts = list(steps(*args))
            got = np.array([float(C.as_array(C.call(schedule, t, what=f"{shown}({t})"), what=f"{shown}({t})",
                                             shape=())) for t in ts])
            expected_fn = reference(*args)
            expected = np.array([expected_fn(t) for t in ts])
            rtol, atol = spec.tol("float64")
            ok = np.isclose(got, expected, rtol=rtol, atol=atol)
            if ok.all():
                continue
            wrong = {}
            with _quiet():
                for name, build in mistakes.items():
                    try:
                        fn = build(*args)
                        wrong[name] = [fn(t) for t in ts]
                    except Exception:  # noqa: BLE001 - a mistake undefined at some t
                        continue
            mistake = C.diagnose(got, wrong, tol=(rtol, atol))
            message = f"{shown} gives a wrong learning rate at t = {ts[int(np.argmin(ok))]}"
            raise CheckFailed(message + (f". It matches a known mistake: {mistake}." if mistake else "."))


def _capped_steps(eta_max: float = 0.1, c: float = 100.0) -> list[int]:
    knee = c / eta_max
    return sorted({1, 2, 3, 10, max(1, int(knee) - 1), int(knee), int(knee) + 1, 2 * int(knee) + 3, 10 ** 6})


@check
def check_capped_inverse(capped_inverse):
    """min(eta_max, c/t) around its knee t = c/eta_max, with the defaults and other values."""
    spec = SPEC["capped_inverse"]
    _check_schedule(capped_inverse, spec, [(), (0.1, 100.0), (0.5, 20.0), (0.05, 3.0), (1.0, 1.0)],
                    _capped_steps, {
                        "min(η_max, c·t): c must be divided by t (a 1/t decay)":
                            lambda e=0.1, c=100.0: lambda t: min(e, c * t),
                        "max instead of min: the cap keeps the rate at or below η_max":
                            lambda e=0.1, c=100.0: lambda t: max(e, c / t),
                        "the cap is missing: c/t alone is far too large at the start":
                            lambda e=0.1, c=100.0: lambda t: c / t,
                        "t counted from 0 (c/(t + 1)); the schedule's t starts at 1":
                            lambda e=0.1, c=100.0: lambda t: min(e, c / (t + 1)),
                        "the defaults are η_max = 0.1 and c = 100 (the notes' example)":
                            lambda e=None, c=None: lambda t: min(0.01 if e is None else e, 100 / t if c is None else c / t),
                    })


def _piecewise_steps(milestones: Sequence[int], values: Sequence[float]) -> list[int]:
    return sorted({0, 1} | {m + d for m in milestones for d in (-1, 0, 1)} | {10 * (max(milestones, default=1) + 1)})


def _piecewise_wrong(shift: int = 0, strict: bool = False, last: bool = False):
    def build(milestones, values):
        def rate(t):
            k = sum((m < t) if strict else (m <= t + shift) for m in milestones)
            return values[-1] if last else values[k]
        return rate
    return build


@check
def check_piecewise_constant(piecewise_constant):
    """Milestones of one, two and three switches (also a first milestone at 1), values up or down."""
    spec = SPEC["piecewise_constant"]
    _check_schedule(piecewise_constant, spec,
                    [([5, 8], [0.1, 0.01, 0.001]), ([3], [1.0, 0.5]), ([1, 2, 10], [0.4, 0.3, 0.2, 0.7]),
                     ([100], [0.05, 0.005])],
                    _piecewise_steps, {
                        "the switch comes one step late: at t = milestone the new value already applies (milestone <= t)":
                            _piecewise_wrong(strict=True),
                        "the switch comes one step early: the new value starts AT the milestone, not before it":
                            _piecewise_wrong(shift=1),
                        "only the last value is used":
                            _piecewise_wrong(last=True),
                    })


@check
def check_inverse_sqrt(inverse_sqrt):
    """lr0/√t for t = 1 .. 10 and far out, several lr0."""
    spec = SPEC["inverse_sqrt"]
    _check_schedule(inverse_sqrt, spec, [(1.0,), (0.6,), (0.01,)],
                    lambda lr0: [1, 2, 3, 4, 5, 9, 10, 100, 12345], {
                        "lr0/t: that is the 1/t decay, not 1/√t": lambda lr0: lambda t: lr0 / t,
                        "lr0·√t grows; the rate must decay as lr0/√t": lambda lr0: lambda t: lr0 * math.sqrt(t),
                        "t counted from 0 (lr0/√(t + 1)); the schedule's t starts at 1":
                            lambda lr0: lambda t: lr0 / math.sqrt(t + 1),
                    })


# -- RMSProp with Nesterov momentum -----------------------------------------------------------------

def _rmsprop_nesterov(p, g, st, *, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.9, mistake=""):
    r = st.get("square_avg")
    r = (1 - alpha) * g * g if r is None else alpha * r + (1 - alpha) * g * g
    s = g / (np.sqrt(r + eps) if mistake == "eps inside" else np.sqrt(r) + eps)
    b_old = st.get("momentum_buffer")
    b = s if b_old is None else momentum * b_old + s
    new = {**st, "step": st.get("step", 0) + 1, "square_avg": r, "momentum_buffer": b}
    if mistake == "no look-ahead":
        return p - lr * b, new
    if mistake == "velocity":
        v = (0 * s if b_old is None else momentum * b_old) - lr * s
        return p + v, {**new, "momentum_buffer": v}
    if mistake == "direction stored":
        return p - lr * (s + momentum * b), {**new, "momentum_buffer": s + momentum * b}
    return p - lr * (s + momentum * b), new


_RMSPROP_NESTEROV_MISTAKES = _variants(_rmsprop_nesterov, {
    "no look-ahead": ("the step uses lr·b = lr·(μ·b_old + s), plain momentum (or the look-ahead with the old "
                      "buffer); Nesterov's look-ahead updates b first, then steps by lr·(s + μ·b)"),
    "velocity": ("the notes' velocity v ← μv − lr·g/√r is stored as 'momentum_buffer'; keep PyTorch's "
                 "buffer b ← μ·b + g/(√r + eps)"),
    "direction stored": "the step direction s + μ·b is stored as 'momentum_buffer'; the buffer itself is b ← μ·b + s",
    "eps inside": "eps inside the square root (√(r + eps), as one version of the notes); it goes after it: √r + eps",
})

_RMSPROP_NESTEROV_SETS = [
    {}, {"lr": 0.01, "alpha": 0.9, "eps": 1e-8, "momentum": 0.9},
    {"lr": 0.05, "alpha": 0.99, "eps": 0.01, "momentum": 0.5},
    {"lr": 0.002, "alpha": 0.5, "eps": 1e-8, "momentum": 0.95},
]


@check
def check_rmsprop_nesterov_step(rmsprop_nesterov_step):
    """Four steps along the reference trajectory, several decay rates, momenta and a large eps."""
    spec = SPEC["rmsprop_nesterov_step"]
    with C.guard(spec) as reference:
        for hyper, inputs in _cases("rmsprop_nesterov_step", spec, _RMSPROP_NESTEROV_SETS,
                                    spread=[False, True, True, False]):
            _run_rule(rmsprop_nesterov_step, name="rmsprop_nesterov_step", spec=spec, reference=reference,
                      inputs=inputs, hyper=hyper, mistakes=_RMSPROP_NESTEROV_MISTAKES,
                      also_blocked=("course.optim.rmsprop_step",),
                      state_keys={"square_avg": "the running average r of g⊙g",
                                  "momentum_buffer": "the momentum buffer b"})


# -- gradient clipping ------------------------------------------------------------------------------

def _clip_mistakes(grads: Sequence[np.ndarray], max_norm: float) -> dict[str, tuple[list[np.ndarray], float]]:
    norms = [float(np.sqrt(np.sum(g.astype(np.float64) ** 2))) for g in grads]
    total = math.sqrt(sum(n * n for n in norms))
    scale = min(1.0, max_norm / (total + 1e-6))
    return {
        "each array is clipped by its own norm; PyTorch clips them together, by ONE norm over all of them":
            ([g * min(1.0, max_norm / (n + 1e-6)) for g, n in zip(grads, norms)], total),
        "the entries are clipped to [−max_norm, max_norm] (clip_grad_value_); clip the norm instead":
            ([np.clip(g, -max_norm, max_norm) for g in grads], total),
        "gradients below the threshold are scaled up; the factor is min(1, max_norm/(N + 1e-6))":
            ([g * (max_norm / (total + 1e-6)) for g in grads], total),
        "the 1e-6 of PyTorch's factor max_norm/(N + 1e-6) is missing":
            ([g * min(1.0, max_norm / total) for g in grads], total),
        "the returned norm is the one after clipping; return N from before": ([g * scale for g in grads], total * scale),
        "the returned norm is N² (the sum of squares); take its square root":
            ([g * scale for g in grads], total * total),
    }


def _grad_lists(gen: np.random.Generator, dtype: str) -> list[tuple[list[np.ndarray], float]]:
    out = []
    for shapes, size, max_norm in ((((3,), (2, 4)), 1.0, 0.5), (((5,),), 3.0, 1.0), (((2, 2), (3,), (1,)), 0.1, 10.0),
                                   (((4, 3), (3,)), 5.0, 2.0), (((6,), (6,)), 1.0, 1.5)):
        grads = [(gen.standard_normal(s) * size).astype(dtype) for s in shapes]
        out.append((grads, max_norm))
    return out


def _as_grad_list(value: Any, like: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    if not isinstance(value, (list, tuple)) or len(value) != len(like):
        raise CheckFailed(f"{what} returned {C.type_name(value)} as the clipped gradients; expected a list "
                          f"of {len(like)} arrays, one per input array, in the same order.")
    return [C.as_array(v, what=f"{what}[{i}]", shape=g.shape, dtype=g.dtype) for i, (v, g) in enumerate(zip(value, like))]


@check
def check_clip_grad_norm(clip_grad_norm):
    """One to three arrays of several shapes, norms above and below max_norm, float64 and float32."""
    spec = SPEC["clip_grad_norm"]
    with C.guard(spec) as reference:
        for dtype in spec.dtypes:
            gen = C.rng("clip_grad_norm", dtype)
            for grads, max_norm in _grad_lists(gen, dtype):
                shapes = ", ".join(str(g.shape) for g in grads)
                what = f"clip_grad_norm(arrays of shapes {shapes} ({dtype}), max_norm={max_norm})"
                given = [g.copy() for g in grads]
                out = C.call(clip_grad_norm, given, max_norm, what=what)
                if any(not np.array_equal(a, b) for a, b in zip(given, grads)):
                    raise CheckFailed(f"{what} changed the input arrays in place; return new arrays.")
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise CheckFailed(f"{what} returned {C.type_name(out)}; expected a pair (clipped, total_norm).")
                clipped = _as_grad_list(out[0], grads, what)
                total = C.as_array(out[1], what=f"the total norm from {what}", shape=())
                ref_clipped, ref_total = reference(grads, max_norm)
                tol = spec.tol(dtype)
                wrong = _clip_mistakes(grads, max_norm)
                mistake = next((name for name, (w, n) in wrong.items()
                                if C.diagnose(np.concatenate([c.ravel() for c in clipped] + [total.reshape(1)]),
                                              {name: np.concatenate([x.ravel() for x in w] + [np.array([n])])}, tol=tol)), None)
                hint = f" It matches a known mistake: {mistake}." if mistake else ""
                if not np.isclose(float(total), ref_total, rtol=tol[0], atol=tol[1]):
                    raise CheckFailed(f"the total norm returned by {what} is wrong.{hint}")
                for i, (c, r) in enumerate(zip(clipped, ref_clipped)):
                    try:
                        C.compare(c, r, what=f"clipped[{i}] from {what}", tol=tol)
                    except CheckFailed as exc:
                        raise CheckFailed(str(exc) + hint) from None


# -- the second-order change along the gradient --------------------------------------------------------

def _quadratic_cases(key: str, dtype: str) -> list[tuple[np.ndarray, np.ndarray, float]]:
    gen = C.rng(key, dtype)
    out = []
    for n, low, high, lr in ((1, 0.5, 2.0, 0.3), (2, 0.1, 5.0, 0.7), (5, 0.5, 40.0, 0.05), (7, 1.0, 3.0, 1.5), (3, 0.2, 10.0, 2.0)):
        out.append((gen.standard_normal(n).astype(dtype), _spd(gen, n, low, high).astype(dtype), lr))
    return out


def _check_scalar(got: Any, expected: float, what: str, tol: tuple[float, float], mistakes: Mapping[str, float]) -> None:
    value = C.as_array(got, what=what, shape=())
    C.compare(np.float64(value), np.float64(expected), what=what, tol=tol, check_dtype=False,
              mistakes={k: np.float64(v) for k, v in mistakes.items()})


def _check_along_gradient(fn: Callable[..., Any], name: str, with_lr: bool,
                          mistakes: Callable[[float, float, float, np.ndarray], dict[str, float]]) -> None:
    """``fn(grad, hessian[, lr])`` against the reference on :func:`_quadratic_cases`;
    ``mistakes(gᵀg, gᵀHg, lr, H)`` gives the known wrong values."""
    spec = SPEC[name]
    with C.guard(spec) as reference:
        for dtype in spec.dtypes:
            for g, h, lr in _quadratic_cases(name, dtype):
                args = (g, h, lr) if with_lr else (g, h)
                what = f"{name}(grad of shape {g.shape} ({dtype}), hessian{f', lr={lr}' if with_lr else ''})"
                got = C.call(fn, *args, what=what)
                g64, h64 = g.astype(np.float64), h.astype(np.float64)
                _check_scalar(got, reference(*args), what, spec.tol(dtype),
                              mistakes(float(g64 @ g64), float(g64 @ h64 @ g64), lr, h64))


@check
def check_gradient_step_change(gradient_step_change):
    """n = 1 .. 7, well and badly conditioned H, steps below and above the best one."""
    _check_along_gradient(gradient_step_change, "gradient_step_change", True, lambda gg, ghg, lr, h: {
        "the sign: a descent step LOWERS the loss by lr·gᵀg, the curvature adds ½lr²gᵀHg": lr * gg - 0.5 * lr * lr * ghg,
        "the ½ of the Taylor expansion is missing": lr * lr * ghg - lr * gg,
        "lr instead of lr² in the curvature term (the step is lr·g, so the quadratic term is ½(lr·g)ᵀH(lr·g))":
            0.5 * lr * ghg - lr * gg,
        "only the first-order term −lr·gᵀg": -lr * gg,
    })


@check
def check_best_step(best_step):
    """The same gradients and Hessians: ε* = gᵀg/gᵀHg."""
    _check_along_gradient(best_step, "best_step", False, lambda gg, ghg, lr, h: {
        "upside down: ε* = gᵀg / gᵀHg (minimize ½ε²gᵀHg − εgᵀg over ε)": ghg / gg,
        "2·gᵀg/gᵀHg is where the change returns to 0 (the largest step that still helps); "
        "the best step is half of it": 2 * gg / ghg,
        "1/λmax is the safe rate for every direction, not the best step along this g": 1 / np.linalg.eigvalsh(h)[-1],
    })


# -- backprop in matrix form ---------------------------------------------------------------------------

def _dphi(z: np.ndarray, activation: str) -> np.ndarray:
    return (z > 0).astype(z.dtype) if activation == "relu" else 1 - np.tanh(z) ** 2


def _backprop_mistakes(weights, zs, vs, delta, activation):
    """{message: (grad_weights, grad_biases)} of known mistakes, float64."""
    phi = np.tanh if activation == "tanh" else (lambda z: np.maximum(z, 0))

    def run(local: Callable[[int], np.ndarray] | None, bias: Callable[[np.ndarray], np.ndarray]):
        d, gw, gb = delta.astype(np.float64), [None] * len(weights), [None] * len(weights)
        for layer in range(len(weights) - 1, -1, -1):
            gw[layer], gb[layer] = d.T @ vs[layer], bias(d)
            if layer:
                d = (d @ weights[layer]) * (1.0 if local is None else local(layer - 1))
        return gw, gb

    return {
        "φ'(z) is missing from the recursion (δ ← δW is the backprop of a LINEAR network)":
            run(None, lambda d: d.sum(axis=0)),
        "φ' is evaluated at the activation v = φ(z) instead of the pre-activation z":
            run(lambda i: _dphi(phi(zs[i]), activation), lambda d: d.sum(axis=0)),
        "the bias gradient averages over the examples; the loss is summed, so ∇b = Σ_rows δ":
            run(lambda i: _dphi(zs[i], activation), lambda d: d.mean(axis=0)),
    }


def _mlp_case(gen: np.random.Generator, sizes: Sequence[int], n: int, activation: str, dtype: str):
    from course.backprop import mlp_forward

    weights = [(gen.standard_normal((o, i)) / math.sqrt(i)).astype(dtype) for i, o in zip(sizes, sizes[1:])]
    biases = [gen.standard_normal(o).astype(dtype) * 0.1 for o in sizes[1:]]
    x = gen.standard_normal((n, sizes[0])).astype(dtype)
    zs, vs = mlp_forward(weights, biases, x, activation)
    delta = gen.standard_normal(zs[-1].shape).astype(dtype)
    return weights, zs, vs, delta


@check
def check_mlp_backward(mlp_backward):
    """Depths 1 to 4, ReLU and tanh, batches of 1 to 6 examples, float64 and float32."""
    spec = SPEC["mlp_backward"]
    with C.guard(spec) as reference:
        for dtype in spec.dtypes:
            gen = C.rng("mlp_backward", dtype)
            for sizes, n, activation in (((3, 2), 4, "relu"), ((4, 5, 3), 6, "relu"), ((3, 4, 4, 2), 1, "tanh"),
                                         ((2, 6, 5, 3, 2), 5, "tanh"), ((5, 3, 4), 3, "relu")):
                weights, zs, vs, delta = _mlp_case(gen, sizes, n, activation, dtype)
                what = (f"mlp_backward for layer sizes {list(sizes)}, a batch of {n} ({dtype}), "
                        f"activation={activation!r}")
                with _quiet():
                    out = C.call(mlp_backward, weights, zs, vs, delta, activation, what=what)
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise CheckFailed(f"{what} returned {C.type_name(out)}; expected a pair (grad_weights, grad_biases).")
                ref_w, ref_b = reference(weights, zs, vs, delta, activation)
                wrong = _backprop_mistakes(weights, zs, vs, delta, activation)
                for k, (got, expected) in enumerate(zip(out, (ref_w, ref_b))):
                    label = ("grad_weights", "grad_biases")[k]
                    if not isinstance(got, (list, tuple)) or len(got) != len(expected):
                        raise CheckFailed(f"{what}: {label} should be a list of {len(expected)} arrays "
                                          f"(one per layer, first layer first), got {C.type_name(got)}.")
                    for layer, (a, e) in enumerate(zip(got, expected)):
                        arr = C.as_array(a, what=f"{label}[{layer}] from {what}")
                        if arr.shape != e.shape:
                            hint = (" (transposed: with examples as rows, ∇W = δᵀ v, of W's shape (out, in))"
                                    if arr.shape == e.shape[::-1] else "")
                            raise CheckFailed(f"{label}[{layer}] from {what} has shape {arr.shape}; "
                                              f"expected {e.shape}{hint}.")
                        C.compare(arr, e, what=f"{label}[{layer}] from {what}", tol=spec.tol(dtype),
                                  mistakes={name: m[k][layer] for name, m in wrong.items()})


# -- minibatch noise, momentum, symmetries ---------------------------------------------------------------

@check
def check_standard_error(standard_error):
    """Per-example gradients of shapes (m,), (m, d) and (m, a, b), batch sizes 1 to 256."""
    spec = SPEC["standard_error"]
    with C.guard(spec) as reference:
        for dtype in spec.dtypes:
            gen = C.rng("standard_error", dtype)
            for shape, batch in (((50, 3), 16), ((20,), 4), ((30, 2, 3), 1), ((200, 5), 256), ((12, 4), 7)):
                g = (gen.standard_normal(shape) * gen.uniform(0.5, 3.0, shape[1:]) + 1.0).astype(dtype)
                what = f"standard_error(per_example of shape {shape} ({dtype}), batch_size={batch})"
                got = C.call(standard_error, g, batch, what=what)
                g64 = g.astype(np.float64)
                sd = g64.std(axis=0)
                C.compare(got, reference(g, batch), what=what, tol=spec.tol(dtype), mistakes={
                    "σ/n: the standard error of a mean of n draws is σ/√n": sd / batch,
                    "σ·√n: the noise of the mean SHRINKS with the batch size, as σ/√n": sd * math.sqrt(batch),
                    "the variance σ² is used where its square root σ belongs": sd ** 2 / math.sqrt(batch),
                    "ddof=1: the minibatches are drawn from these m examples, so their own spread (ddof=0) is the true σ":
                        g64.std(axis=0, ddof=1) / math.sqrt(batch),
                    "σ/√n without the spread: σ is the standard deviation over the examples (axis 0)":
                        np.broadcast_to(1 / math.sqrt(batch), sd.shape),
                })


def _terminal_velocity_mistakes(lr: float, g: np.ndarray, momentum: float) -> dict[str, float]:
    norm = float(np.linalg.norm(g))
    return {
        "1/(1 + α): the geometric series 1 + α + α² + … sums to 1/(1 − α)": lr * norm / (1 + momentum),
        "α/(1 − α): the series starts at 1 (the current gradient counts fully)": lr * norm * momentum / (1 - momentum),
        "1/(1 − α)²: the velocity is one geometric series, not two": lr * norm / (1 - momentum) ** 2,
        "‖g‖ must be the Euclidean norm, not the sum of |g_i|": lr * float(np.abs(g).sum()) / (1 - momentum),
        "‖g‖² instead of ‖g‖": lr * norm ** 2 / (1 - momentum),
        "lr is missing: each step adds lr·g to the velocity": norm / (1 - momentum),
    }


@check
def check_terminal_velocity(terminal_velocity):
    """Gradients of shapes (1,) to (2, 3), in float64 and float32; momenta 0 to 0.99."""
    spec = SPEC["terminal_velocity"]
    cases = ((0.2, (3,), 0.9), (0.01, (1,), 0.0), (0.5, (2, 3), 0.5), (0.001, (4,), 0.99))
    with C.guard(spec) as reference:
        for dtype in spec.dtypes:
            gen = C.rng("terminal_velocity", dtype)
            for lr, shape, momentum in cases:
                g = gen.standard_normal(shape).astype(dtype)
                what = f"terminal_velocity(lr={lr}, grad of shape {shape} ({dtype}), momentum={momentum})"
                got = C.call(terminal_velocity, lr, g, momentum, what=what)
                _check_scalar(got, reference(lr, g, momentum), what, spec.tol(dtype),
                              _terminal_velocity_mistakes(lr, g.astype(np.float64), momentum))


def _net(w1, b1, w2, x, activation):
    phi = np.tanh if activation == "tanh" else (lambda z: np.maximum(z, 0))
    return phi(x @ w1.T + b1) @ w2.T


@check
def check_equivalent_weights(equivalent_weights):
    """Hidden layers of 1 to 6 units, ReLU with positive scales and tanh with signs ±1."""
    spec = SPEC["equivalent_weights"]
    with C.guard(spec) as reference:
        for dtype in spec.dtypes:
            gen = C.rng("equivalent_weights", dtype)
            for n_in, hidden, n_out, activation in ((3, 4, 2, "relu"), (2, 5, 1, "tanh"), (4, 1, 3, "relu"),
                                                    (3, 6, 2, "tanh"), (5, 3, 3, "relu")):
                w1 = gen.standard_normal((hidden, n_in)).astype(dtype)
                b1 = gen.standard_normal(hidden).astype(dtype)
                w2 = gen.standard_normal((n_out, hidden)).astype(dtype)
                perm = gen.permutation(hidden)
                scale = (gen.uniform(0.3, 3.0, hidden) if activation == "relu"
                         else gen.choice([-1.0, 1.0], hidden)).astype(dtype)
                if activation == "tanh" and hidden > 1:
                    scale[0], scale[1] = -1.0, 1.0
                what = (f"equivalent_weights(w1 {w1.shape}, b1, w2 {w2.shape} ({dtype}), perm, scale) "
                        f"for a {activation} layer")
                out = C.call(equivalent_weights, w1, b1, w2, perm, scale, what=what)
                if not (isinstance(out, (tuple, list)) and len(out) == 3):
                    raise CheckFailed(f"{what} returned {C.type_name(out)}; expected (w1, b1, w2).")
                got = [C.as_array(a, what=f"{name} from {what}", shape=e.shape, dtype=e.dtype)
                       for a, e, name in zip(out, (w1, b1, w2), ("w1", "b1", "w2"))]
                x = gen.standard_normal((8, n_in)).astype(dtype)
                tol = spec.tol(dtype)
                with _quiet():
                    moved = not np.allclose(_net(*got, x, activation), _net(w1, b1, w2, x, activation),
                                            rtol=tol[0] * 10, atol=tol[1] * 10)
                if moved:
                    raise CheckFailed(f"{what}: the network's outputs changed, so these weights are not "
                                      "equivalent. Move each unit's incoming weights, bias and outgoing "
                                      "weights together, and undo the scale on the outgoing side "
                                      "(relu(c·z) = c·relu(z) for c > 0; tanh(−z) = −tanh(z)).")
                inverse = reference(w1, b1, w2, np.argsort(perm), scale)
                for k, (name, a, e) in enumerate(zip(("w1", "b1", "w2"), got, reference(w1, b1, w2, perm, scale))):
                    C.compare(a, e, what=f"{name} from {what}", tol=tol, mistakes={
                        "the outputs are unchanged, but the permutation is inverted: unit j of the result "
                        "must be old unit perm[j]": inverse[k]})


# -- numeric answers --------------------------------------------------------------------------------------

@check
def check_symmetry_count(answer_symmetry_count):
    """(n!)^m for m = 3 hidden layers of n = 4 units."""
    C.check_number(answer_symmetry_count, math.factorial(4) ** 3, what="answer_symmetry_count", tol=(0.0, 0.5), mistakes={
        "n!·m: the orderings of the layers multiply, (n!)^m": math.factorial(4) * 3,
        "(n·m)!: units can only be swapped within their own layer": math.factorial(12),
        "n^m: each layer has n! orderings, not n": 4 ** 3,
        "(m!)^n: the exponent is the number of layers m, the factorial of the units per layer n": math.factorial(3) ** 4,
    })


_CONVERGENT = {"b", "e"}


@check
def check_convergent_schedules(answer_convergent_schedules):
    """The set of letters of the schedules with Σε = ∞ and Σε² < ∞."""
    value = answer_convergent_schedules
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    elif C.type_name(value) in ("set", "frozenset", "list", "tuple"):
        value = list(value)  # a set from a grading kernel arrives as a handle: read its items
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CheckFailed("answer_convergent_schedules should be a set of letters such as {'a', 'c'}.")
    chosen = {v.strip().lower() for v in value}
    if chosen == _CONVERGENT:
        return
    hints = []
    if "c" in chosen:
        hints.append("1/√t has Σε² = Σ 1/t = ∞: its steps stay too large for the noise to average out")
    if "d" in chosen:
        hints.append("1/t² has Σε < ∞: it stops moving before it arrives")
    if "a" in chosen or "f" in chosen:
        hints.append("a schedule that ends at a constant rate keeps Σε² = ∞")
    if "g" in chosen:
        hints.append("a geometric decay has Σε < ∞")
    if chosen < _CONVERGENT:
        hints.append("one schedule that meets both conditions is missing")
    raise CheckFailed("answer_convergent_schedules is not the right set." +
                      (" " + "; ".join(hints) + "." if hints else ""))


@check
def check_initial_losses(answer_initial_cross_entropy, answer_initial_hinge):
    """ln 10 for cross-entropy and (C − 1)/C = 0.9 for PyTorch's multi-class hinge, 10 classes."""
    C.check_number(answer_initial_cross_entropy, math.log(10), what="answer_initial_cross_entropy", tol=(1e-3, 0.0),
                   mistakes={"log₁₀(10) = 1: the loss uses the natural log": 1.0,
                             "log₂(10): the loss uses the natural log": math.log2(10),
                             "1/C: the loss is −ln of the probability 1/C": 0.1})
    C.check_number(answer_initial_hinge, 0.9, what="answer_initial_hinge", tol=(1e-3, 0.0),
                   mistakes={"C − 1 = 9: PyTorch's hinge divides the sum by C": 9.0,
                             "1.0: the true class is not in the sum (C − 1 terms of 1, divided by C)": 1.0,
                             "0: with all scores equal every wrong class violates the margin by 1": 0.0})
