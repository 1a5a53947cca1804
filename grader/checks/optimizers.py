"""Hidden checks of 02_optimizers: the update rules, a schedule, Newton's step, two numbers.

An update rule is checked step by step along the reference's trajectory: at every step the
student's function gets the reference's parameter, a fresh gradient and the reference's state
(PyTorch's state names), and must return the same new parameter and state entries. So each
step is judged on its own inputs, and a wrong entry is compared with known mistakes (below,
one function per mistake) evaluated on those same inputs, to name what went wrong. Each rule
is also called twice on the same inputs (a hidden counter outside ``state`` shows up), and
must leave its arguments, the state dict included, unchanged.

One mistake is charged once: the Nesterov check judges the step ``p − lr·(g + μ·b)`` with the
student's own updated buffer ``b`` and own gradient ``g`` (weight decay included, read off their
momentum-0 step), and ``answer_adam_first_step`` is also right when it is what the student's
own ``adam_step`` gives for the question.

Conventions are those of ``course.optim`` (PyTorch's): eps is added after the square root in
AdaGrad, RMSProp and Adam (the notes' ``√(δ + r)`` fails where the two differ, with a
message saying so), the momentum buffer is ``b ← μ·b + g`` and Adam's state keeps the
moments uncorrected.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from grader.checks import CheckFailed, check
from grader.checks import _core as C

SPEC = C.specs(__name__)

Rule = Callable[..., tuple[np.ndarray, dict]]


# -- running a rule along the reference trajectory ---------------------------------------------

@dataclasses.dataclass
class _Step:
    """One step of the reference: its inputs and what it returned."""

    t: int
    args: tuple[np.ndarray, ...]  # (param, grad) or (param, grad, hessian)
    state: dict[str, Any]
    new_param: np.ndarray
    new_state: dict[str, Any]


def _copy_state(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in state.items()}


def _trajectory(reference: Rule, inputs: Sequence[tuple[np.ndarray, ...]],
                hyper: Mapping[str, Any]) -> list[_Step]:
    """Reference steps; ``inputs[t]`` are the arrays after the parameter (grad[, hessian])."""
    steps, param, state = [], inputs[0][0], {}
    for t, (_, *rest) in enumerate(inputs, start=1):
        args = (param, *rest)
        new_param, new_state = reference(*args, _copy_state(state), **hyper)
        steps.append(_Step(t, args, _copy_state(state), np.asarray(new_param), _copy_state(new_state)))
        param, state = np.asarray(new_param), new_state
    return steps


@contextmanager
def _quiet() -> Iterator[None]:
    """No floating-point warnings: a known mistake may divide by zero, and graded cells must
    write nothing to stderr."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _pair(out: Any, what: str) -> tuple[Any, Mapping[str, Any]]:
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise CheckFailed(f"{what} returned {C.type_name(out)}; expected a pair "
                          "(new_param, new_state).")
    new_param, new_state = out
    if not isinstance(new_state, Mapping):
        raise CheckFailed(f"{what} returned {C.type_name(new_state)} as the new state; expected "
                          "a dict such as {'step': 1, 'exp_avg': m}.")
    return new_param, new_state


def _state_unchanged(before: Mapping[str, Any], after: Mapping[str, Any], what: str) -> None:
    if set(before) != set(after):
        raise CheckFailed(f"{what} added or removed keys of the state dict it was given "
                          f"({sorted(set(before) ^ set(after))}); build a new dict instead: "
                          "new_state = dict(state), then set its entries.")
    for key, old in before.items():
        new = after[key]
        same = (np.array_equal(old, new, equal_nan=True) if isinstance(old, np.ndarray)
                else old == new)
        if not same:
            raise CheckFailed(f"{what} changed state[{key!r}] in place; compute new arrays "
                              f"(m = beta * m + ..., not m *= beta) and return them in a new dict.")


def _candidates(mistakes: Mapping[str, Rule], step: _Step, hyper: Mapping[str, Any]
                ) -> dict[str, tuple[np.ndarray, Mapping[str, Any]]]:
    """What each known mistake returns on this step's inputs (mistakes that crash are skipped)."""
    out = {}
    with _quiet():
        for name, wrong in mistakes.items():
            try:
                out[name] = wrong(*(a.copy() for a in step.args), _copy_state(step.state), **hyper)
            except Exception:  # noqa: BLE001 - a mistake that does not apply to these inputs
                continue
    return out


def _same(a: Any, b: Any, tol: tuple[float, float]) -> bool:
    try:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=tol[0], atol=tol[1], equal_nan=True))


def _explains(candidate: tuple[Any, Any], new_param: Any, new_state: Mapping[str, Any],
              keys: Sequence[str], tol: tuple[float, float]) -> bool:
    """Whether a known mistake's output equals everything the student returned."""
    p, s = candidate
    return _same(new_param, p, tol) and isinstance(s, Mapping) and all(
        k in s and k in new_state and _same(new_state[k], s[k], tol) for k in keys)


def _call_rule(fn: Rule, step: _Step, hyper: Mapping[str, Any], what: str
               ) -> tuple[Any, Mapping[str, Any]]:
    given = _copy_state(step.state)
    with _quiet():
        out = C.call(fn, *step.args, given, what=what, **hyper)
    _state_unchanged(step.state, given, what)
    return _pair(out, what)


def _describe(name: str, hyper: Mapping[str, Any], args: tuple[np.ndarray, ...], t: int) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in hyper.items())
    p = args[0]
    return (f"{name}(param, grad, {'hessian, ' if len(args) == 3 else ''}state"
            f"{', ' + shown if shown else ''}) at step {t} (param of shape {p.shape}, {p.dtype})")


def _first_difference(new_param: Any, new_state: Mapping[str, Any], step: _Step,
                      keys: Sequence[str], tol: tuple[float, float], what: str,
                      wrong: Mapping[str, tuple[Any, Any]]) -> tuple[str, str | None] | None:
    """(message, the mistake this step alone points to) for the first wrong entry, else None.

    A missing key, a wrong type, shape or dtype raises at once: no diagnosis is needed there.
    """
    fields = [(f"new_state[{k!r}]", k) for k in keys] + [("new_param", None)]
    for label, key in fields:
        got = new_param if key is None else new_state[key]
        expected = step.new_param if key is None else step.new_state[key]
        if key == "step":
            got = C.as_array(got, what=f"{label} from {what}", shape=())
            expected = np.float64(expected)
        else:
            C.as_array(got, what=f"{label} from {what}", shape=expected.shape, dtype=expected.dtype)
        try:
            C.compare(got, expected, what=f"{label} from {what}", tol=tol, check_dtype=False)
        except CheckFailed as exc:
            options = {n: (p if key is None else s[key]) for n, (p, s) in wrong.items()
                       if key is None or (isinstance(s, Mapping) and key in s)}
            return str(exc), C.diagnose(np.asarray(got), options, tol=tol)
    return None


def _run_rule(fn: Rule, *, name: str, spec: Any, reference: Rule,
              inputs: Sequence[tuple[np.ndarray, ...]], hyper: Mapping[str, Any],
              state_keys: Mapping[str, str], mistakes: Mapping[str, Rule],
              also_blocked: Sequence[str] = ()) -> None:
    """Compare ``fn`` with ``reference`` at every step of the reference trajectory.

    After the first wrong step the remaining steps still run (on the reference's inputs), so
    the diagnosis can name the known mistake that explains *every* step; a single step is often
    ambiguous (at the first step several mistakes give the same numbers).
    """
    steps = _trajectory(reference, inputs, hyper)
    tol = spec.tol(inputs[0][0].dtype)
    keys = list(state_keys)
    failure: tuple[str, str | None] | None = None
    consistent = list(mistakes)  # known mistakes that explain every step so far
    with C.refusing(spec, also_blocked):  # library functions computing the same thing
        for step in steps:
            what = _describe(name, hyper, step.args, step.t)
            new_param, new_state = _call_rule(fn, step, hyper, what)
            for key, meaning in state_keys.items():
                if key not in new_state:
                    raise CheckFailed(f"{what}: the new state has no entry {key!r} ({meaning}); "
                                      "store it under that name (PyTorch's).")
            wrong = _candidates(mistakes, step, hyper)
            consistent = [n for n in consistent
                          if n in wrong and _explains(wrong[n], new_param, new_state, keys, tol)]
            if failure is None:
                failure = _first_difference(new_param, new_state, step, keys, tol, what, wrong)
            elif not consistent:
                break
        if failure is not None:
            message, this_step = failure
            mistake = consistent[0] if consistent else this_step
            raise CheckFailed(message + (f" It matches a known mistake: {mistake}." if mistake else ""))
        again, _ = _call_rule(fn, step, hyper, what)
        if not _same(again, new_param, tol):
            raise CheckFailed(f"{what} gave a different result when called again with the same "
                              "arguments: it must depend on its arguments only (keep counters such "
                              "as the step number in the state dict, not in a global variable).")


def _grads(gen: np.random.Generator, shape: tuple[int, ...], dtype: str, steps: int,
           spread: bool) -> list[np.ndarray]:
    """Gradients for ``steps`` steps; ``spread``: entries of magnitudes from 1e-4 to 10."""
    out = []
    for _ in range(steps):
        g = gen.standard_normal(shape)
        if spread:
            g = g * 10.0 ** gen.uniform(-4, 1, shape)
        out.append(g.astype(dtype))
    return out


def _cases(key: str, spec: Any, hyper_sets: Sequence[Mapping[str, Any]], *, steps: int = 4,
           spread: Sequence[bool] | None = None) -> Iterator[tuple[dict[str, Any], list[tuple]]]:
    """(hyperparameters, per-step (param, grad) inputs) over dtypes, hyperparameter sets and shapes.

    All float64 cases come first, so a formula mistake is reported before a dtype problem.
    """
    for dtype in spec.dtypes:
        gen = C.rng(key, dtype)
        for i, hyper in enumerate(hyper_sets):
            for shape in (C.SHAPES[i % len(C.SHAPES)], C.SHAPES[(i + 2) % len(C.SHAPES)]):
                p0 = gen.standard_normal(shape).astype(dtype)
                grads = _grads(gen, shape, dtype, steps, bool(spread and spread[i]))
                yield dict(hyper), [(p0, g) for g in grads]


# -- SGD -------------------------------------------------------------------------------------------

def _sgd(p, g, st, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, mistake=""):
    """SGD as course.optim.sgd_step, or with one named ``mistake``."""
    decay = {"wd ignored": 0.0, "wd doubled": 2 * weight_decay, "wd after": 0.0}.get(mistake, weight_decay)
    g = g + decay * p
    new = dict(st)
    d = g
    if momentum:
        b = st.get("momentum_buffer")
        keep = 1.0 if mistake == "no dampening" else 1 - dampening
        scale = lr if mistake == "lr in buffer" else 1.0
        if mistake == "velocity":  # the notes' v ← μv − εg kept under PyTorch's name for b
            b_new = (0 * g if b is None else momentum * b) - lr * g
        elif b is None:
            b_new = (keep if mistake == "damped first" else 1.0) * scale * g
        else:
            b_new = momentum * b + keep * scale * g
        new["momentum_buffer"] = b_new
        if mistake == "velocity":
            return p + b_new, new
        d = g + momentum * b_new if nesterov else b_new
    if mistake == "wd after":
        d = d + weight_decay * p
    if mistake == "uphill":
        return p + lr * d, new
    return p - lr * d, new


def _variants(base: Callable[..., Any], names: Mapping[str, str]) -> dict[str, Rule]:
    """{message: rule with that mistake} from {mistake key: message}."""
    return {message: (lambda *a, _m=key, **k: base(*a, mistake=_m, **k)) for key, message in names.items()}


_SGD_MISTAKES = _variants(_sgd, {
    "uphill": "the step goes uphill (p + lr·d instead of p − lr·d)",
    "lr in buffer": "the learning rate is applied twice (once inside the buffer b, once in the step)",
    "velocity": ("the notes' velocity v ← μv − lr·g is stored as 'momentum_buffer'; PyTorch's buffer "
                 "is b ← μ·b + g and the step p − lr·b"),
    "wd after": ("weight decay is added to the step after the momentum (p − lr·(b + λp)) instead of "
                 "to the gradient before it"),
    "wd ignored": "weight_decay is ignored (add λ·p to the gradient)",
    "wd doubled": "weight decay adds 2λ·p (the gradient of λ‖p‖²); PyTorch's weight_decay=λ adds λ·p",
    "damped first": ("dampening is applied at the first step; the buffer starts as the gradient "
                     "itself (b = g), dampening only scales later gradients"),
    "no dampening": "dampening is ignored (b ← μ·b + (1 − τ)·g)",
})

_SGD_SETS = [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
    {"lr": 0.05, "momentum": 0.9, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
    {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "nesterov": False, "weight_decay": 0.0},
    {"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "nesterov": False, "weight_decay": 0.05},
    {"lr": 0.2, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.3},
]
_NESTEROV_SETS = [
    {"lr": 0.05, "momentum": 0.9, "dampening": 0.0, "nesterov": True, "weight_decay": 0.0},
    {"lr": 0.1, "momentum": 0.7, "dampening": 0.0, "nesterov": True, "weight_decay": 0.1},
]


#: The fused kernel behind optim.SGD (the class would step without calling the guarded rule).
_SGD_ALSO_BLOCKED = ("course.fast.numpy._sgd_numpy",)


@check
def check_sgd_step(sgd_step):
    """sgd_step: plain steps, momentum, dampening, weight decay (not Nesterov), 4 steps each."""
    spec = SPEC["sgd_step"]
    with C.guard(spec) as reference:
        for hyper, inputs in _cases("sgd_step", spec, _SGD_SETS):
            _run_rule(sgd_step, name="sgd_step", spec=spec, reference=reference, inputs=inputs,
                      hyper=hyper, mistakes=_SGD_MISTAKES, also_blocked=_SGD_ALSO_BLOCKED,
                      state_keys={"momentum_buffer": "the momentum buffer b"} if hyper.get("momentum") else {})


def _nesterov_expected(p: np.ndarray, b: np.ndarray, g: np.ndarray, lr: float, mu: float
                       ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The Nesterov step from the student's own gradient ``g`` (weight decay included) and
    updated buffer ``b``, and what known mistakes give instead."""
    return p - lr * (g + mu * b), {
        "the step is p − lr·b, plain momentum (so is g + μ·b with the buffer from before this "
        "step's update); the direction is g + μ·b with the updated b": p - lr * b,
        "the look-ahead term is not scaled by the momentum (g + b instead of g + μ·b)": p - lr * (g + b),
        "the step goes uphill (p + lr·d instead of p − lr·d)": p + lr * (g + mu * b),
    }


def _nesterov_step(sgd_step: Rule, step: _Step, hyper: Mapping[str, Any], tol: tuple[float, float]) -> None:
    """One Nesterov step judged against the student's own buffer update and gradient: their
    plain step (momentum 0) gives the gradient they use, their nesterov=False call the buffer,
    so a mistake there costs sgd_step's points only."""
    p, g = step.args
    what = _describe("sgd_step", hyper, step.args, step.t)
    new_param, new_state = _call_rule(sgd_step, step, hyper, what)
    if "momentum_buffer" not in new_state:
        raise CheckFailed(f"{what}: the new state has no entry 'momentum_buffer' (the momentum "
                          "buffer b); store it under that name with nesterov=True too.")
    b = C.as_array(new_state["momentum_buffer"], what=f"new_state['momentum_buffer'] from {what}",
                   shape=p.shape)
    plain_hyper = {**hyper, "nesterov": False}
    _, plain_state = _call_rule(sgd_step, step, plain_hyper, _describe("sgd_step", plain_hyper, step.args, step.t))
    if "momentum_buffer" in plain_state:
        C.compare(b, C.as_array(plain_state["momentum_buffer"], what="new_state['momentum_buffer']"),
                  what=f"new_state['momentum_buffer'] from {what} (against your own buffer with "
                       "nesterov=False: the buffer is updated the same way)", tol=tol, check_dtype=False)
    lr = hyper["lr"]
    no_momentum = {"lr": lr, "weight_decay": hyper.get("weight_decay", 0.0)}
    zero = dataclasses.replace(step, state={})
    gd_param, _ = _call_rule(sgd_step, zero, no_momentum, _describe("sgd_step", no_momentum, step.args, step.t))
    g_used = (p.astype(np.float64) - C.as_array(gd_param, what="new_param", shape=p.shape)) / lr
    expected, mistakes = _nesterov_expected(p.astype(np.float64), b.astype(np.float64), g_used, lr,
                                            hyper["momentum"])
    C.compare(new_param, expected.astype(p.dtype), what=f"new_param from {what}", tol=tol, mistakes=mistakes)


@check
def check_sgd_nesterov(sgd_step):
    """sgd_step with nesterov=True (with and without weight decay), each step judged against the
    student's own buffer and gradient."""
    spec = SPEC["sgd_step"]  # the same function: guarded through the sgd_step entry
    with C.guard(spec) as reference, C.refusing(spec, _SGD_ALSO_BLOCKED):
        for hyper, inputs in _cases("sgd_nesterov", SPEC["sgd_nesterov"], _NESTEROV_SETS):
            tol = SPEC["sgd_nesterov"].tol(inputs[0][0].dtype)
            for step in _trajectory(reference, inputs, hyper)[1:]:  # a buffer to look ahead with
                _nesterov_step(sgd_step, step, hyper, tol)


# -- AdaGrad ----------------------------------------------------------------------------------------

def _adagrad(p, g, st, *, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
             eps=1e-10, mistake=""):
    t = st.get("step", 0) + 1
    if mistake != "wd ignored" and mistake != "wd after":
        g = g + weight_decay * p
    r = st.get("sum")
    if r is None:
        r = np.full_like(p, 0.0 if mistake == "init ignored" else initial_accumulator_value)
    if mistake == "sum of g":
        r = r + g
        denom = np.sqrt(np.abs(r) ** 2)  # |Σg|: the sum squared, then rooted
    elif mistake == "only current":
        r = g * g
        denom = np.sqrt(r)
    else:
        r = r + g * g
        denom = {"no sqrt": r, "eps inside": np.sqrt(r + eps)}.get(mistake, np.sqrt(r))
    if mistake != "eps inside":
        denom = denom + eps
    decay_t = {"decay ignored": 0, "decay t": t}.get(mistake, t - 1)
    clr = lr / (1 + decay_t * (0.0 if mistake == "decay ignored" else lr_decay))
    step = g / denom
    if mistake == "wd after":
        step = step + weight_decay * p
    return p - clr * step, {**st, "step": t, "sum": r}


_ADAGRAD_MISTAKES = _variants(_adagrad, {
    "sum of g": ("the running sum of the gradients is squared ((Σg)²) instead of summing the "
                 "squared gradients (Σg²)"),
    "only current": "only the current gradient is squared (r = g²): the history is not accumulated",
    "no sqrt": "the step divides by r instead of √r",
    "eps inside": ("eps is inside the square root (√(r + eps)); this course, like PyTorch, adds it "
                   "after the root: √r + eps"),
    "decay ignored": "lr_decay is ignored (lr_t = lr / (1 + (t − 1)·lr_decay))",
    "decay t": "lr_decay uses t instead of t − 1 (the first step must use the full lr)",
    "init ignored": "initial_accumulator_value is ignored (the sum starts there, not at 0)",
    "wd ignored": "weight_decay is ignored (add λ·p to the gradient)",
    "wd after": "weight decay is added after the scaling instead of to the gradient",
})

_ADAGRAD_SETS = [
    {},
    {"lr": 0.1, "lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
    {"lr": 0.5, "lr_decay": 0.2, "weight_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
    {"lr": 0.1, "lr_decay": 0.0, "weight_decay": 0.1, "initial_accumulator_value": 0.5, "eps": 1e-10},
    {"lr": 0.1, "lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 0.05},
]


@check
def check_adagrad_step(adagrad_step):
    """adagrad_step: defaults, lr_decay, weight decay + initial accumulator, a large eps."""
    spec = SPEC["adagrad_step"]
    with C.guard(spec) as reference:
        for hyper, inputs in _cases("adagrad_step", spec, _ADAGRAD_SETS,
                                    spread=[True, False, False, False, True]):
            _run_rule(adagrad_step, name="adagrad_step", spec=spec, reference=reference,
                      inputs=inputs, hyper=hyper, mistakes=_ADAGRAD_MISTAKES,
                      state_keys={"step": "the step count t", "sum": "the sum of squared gradients r"})


# -- RMSProp ----------------------------------------------------------------------------------------

def _rmsprop(p, g, st, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
             centered=False, mistake=""):
    if mistake not in ("wd ignored", "wd after"):
        g = g + weight_decay * p
    r = st.get("square_avg")
    if r is None and mistake == "init g2":
        r = g * g
    else:
        r = np.zeros_like(p) if r is None else r
        r = {"no 1-alpha": alpha * r + g * g, "swapped": (1 - alpha) * r + alpha * g * g,
             "adagrad": r + g * g}.get(mistake, alpha * r + (1 - alpha) * g * g)
    denom = {"no sqrt": r + eps, "eps inside": np.sqrt(r + eps)}.get(mistake, np.sqrt(r) + eps)
    s = g / denom
    if mistake == "wd after":
        s = s + weight_decay * p
    new = {**st, "step": st.get("step", 0) + 1, "square_avg": r}
    if momentum > 0:
        b = st.get("momentum_buffer")
        if mistake == "momentum on g":
            b = g if b is None else momentum * b + g
            new["momentum_buffer"] = b
            return p - lr * b / denom, new
        b = s if b is None else momentum * b + s
        new["momentum_buffer"] = b
        s = b
    return p - lr * s, new


_RMSPROP_MISTAKES = _variants(_rmsprop, {
    "no 1-alpha": "the new squared gradient is not weighted by (1 − α): r ← α·r + (1 − α)·g²",
    "swapped": "α and 1 − α are swapped: the old average must get the weight α",
    "adagrad": "the squared gradients are summed (AdaGrad) instead of averaged with decay α",
    "eps inside": ("eps is inside the square root (the notes' √(δ + r)); this course, like "
                   "PyTorch, adds it after the root: √r + eps"),
    "no sqrt": "the step divides by r instead of √r",
    "init g2": "the average starts at g² at the first step; it starts at 0 (r = (1 − α)·g²)",
    "momentum on g": ("the momentum buffer accumulates the raw gradient; it must accumulate the "
                      "scaled step g/(√r + eps)"),
    "wd ignored": "weight_decay is ignored (add λ·p to the gradient)",
    "wd after": "weight decay is added after the scaling instead of to the gradient",
})

_RMSPROP_SETS = [
    {},
    {"lr": 0.01, "alpha": 0.9, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0, "centered": False},
    {"lr": 0.05, "alpha": 0.8, "eps": 0.01, "weight_decay": 0.0, "momentum": 0.0, "centered": False},
    {"lr": 0.01, "alpha": 0.95, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.9, "centered": False},
    {"lr": 0.02, "alpha": 0.9, "eps": 1e-8, "weight_decay": 0.2, "momentum": 0.5, "centered": False},
]


@check
def check_rmsprop_step(rmsprop_step):
    """rmsprop_step: defaults, decay rates, a large eps, momentum, weight decay (not centered)."""
    spec = SPEC["rmsprop_step"]
    with C.guard(spec) as reference:
        for hyper, inputs in _cases("rmsprop_step", spec, _RMSPROP_SETS,
                                    spread=[True, False, True, False, False]):
            keys = {"square_avg": "the decaying average of squared gradients r"}
            if hyper.get("momentum"):
                keys["momentum_buffer"] = "the momentum buffer b"
            _run_rule(rmsprop_step, name="rmsprop_step", spec=spec, reference=reference,
                      inputs=inputs, hyper=hyper, mistakes=_RMSPROP_MISTAKES, state_keys=keys)


# -- Adam --------------------------------------------------------------------------------------------

def _adam(p, g, st, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
          mistake=""):
    b1, b2 = betas
    t = st.get("step", 0) + 1
    if mistake == "adamw":
        p = p * (1 - lr * weight_decay)
    elif mistake not in ("wd ignored", "wd after"):
        g = g + weight_decay * p
    m, v = st.get("exp_avg"), st.get("exp_avg_sq")
    m = 0 * g if m is None else m
    v = 0 * g if v is None else v
    if mistake == "betas swapped":
        b1, b2 = b2, b1
    m = b1 * m + (1 - b1) * (lr * g if mistake in ("lr in m", "notes") else g)
    v = b2 * v + (1 - b2) * g * g
    te = t - 1 if mistake == "t from 0" else t
    c1 = 1.0 if mistake in ("no correction", "only v") else 1 - b1 ** te
    c2 = 1.0 if mistake in ("no correction", "only m") else 1 - b2 ** te
    m_hat, v_hat = m / c1, v / c2
    new = {**st, "step": t, "exp_avg": m, "exp_avg_sq": v}
    if mistake in ("stored corrected", "notes"):
        new.update(exp_avg=m_hat, exp_avg_sq=v_hat)
    num = g if mistake in ("g not m", "notes") else m_hat
    if mistake == "eps inside":
        denom = np.sqrt(v_hat + eps)
    elif mistake == "no sqrt":
        denom = v_hat + eps
    elif mistake == "eps hat":  # Kingma & Ba's reordering: eps added to √v before correcting
        return p - lr * math.sqrt(c2) / c1 * m / (np.sqrt(v) + eps), new
    else:
        denom = np.sqrt(v_hat) + eps
    step = num / denom
    if mistake == "wd after":
        step = step + weight_decay * p
    if mistake == "uphill":
        return p + lr * step, new
    return p - lr * step, new


_ADAM_MISTAKES = _variants(_adam, {
    "notes": ("this is the notes' Adam formula: the bias correction is inside the recursion (corrected "
              "moments stored), η sits inside the first moment and the step uses g instead of m̂"),
    "no correction": "the moments are not bias-corrected (divide m by 1 − β1ᵗ and v by 1 − β2ᵗ)",
    "only m": "only the first moment is bias-corrected; v̂ = v / (1 − β2ᵗ) is missing",
    "only v": "only the second moment is bias-corrected; m̂ = m / (1 − β1ᵗ) is missing",
    "t from 0": ("the bias correction uses t − 1 (a step count starting at 0); the first step "
                 "has t = 1, so 1 − β1ᵗ is never 0"),
    "g not m": ("the update uses the gradient g instead of the first moment m̂ (the error in the "
                "notes' Adam formula)"),
    "eps inside": ("eps is inside the square root (√(v̂ + eps)); this course, like PyTorch, adds "
                   "it after the root: √v̂ + eps"),
    "no sqrt": "the step divides by v̂ instead of √v̂",
    "eps hat": ("eps is added to √v before the bias correction (Kingma & Ba's 'efficient' "
                "ordering, ε̂); this course, like PyTorch, uses m̂ / (√v̂ + eps)"),
    "lr in m": "the learning rate is put inside the first moment (the notes' η in v_t) and applied twice",
    "stored corrected": ("the bias-corrected moments are stored in the state; keep m and v "
                         "uncorrected in the state and correct them only to form the step"),
    "betas swapped": "β1 and β2 are swapped (β1 = 0.9 belongs to m, β2 = 0.999 to v)",
    "adamw": "weight decay is decoupled (that is AdamW); Adam adds λ·p to the gradient",
    "wd ignored": "weight_decay is ignored (add λ·p to the gradient)",
    "wd after": "weight decay is added after the scaling instead of to the gradient",
    "uphill": "the step goes uphill (p + lr·m̂/(√v̂ + eps))",
})

_ADAM_SETS = [
    {},
    {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False},
    {"lr": 0.1, "betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.0, "amsgrad": False},
    {"lr": 0.05, "betas": (0.5, 0.9), "eps": 1e-8, "weight_decay": 0.1, "amsgrad": False},
]
_ADAM_ALSO_BLOCKED = ("course.optim.adamw_step", "course.fast.numpy._adam_numpy")


@check
def check_adam_step(adam_step):
    """adam_step: defaults, larger rates, a large eps, weight decay; five steps each (no AMSGrad)."""
    spec = SPEC["adam_step"]
    with C.guard(spec) as reference:
        for hyper, inputs in _cases("adam_step", spec, _ADAM_SETS, steps=5,
                                    spread=[True, False, True, False]):
            _run_rule(adam_step, name="adam_step", spec=spec, reference=reference, inputs=inputs,
                      hyper=hyper, mistakes=_ADAM_MISTAKES, also_blocked=_ADAM_ALSO_BLOCKED,
                      state_keys={"step": "the step count t", "exp_avg": "the first moment m",
                                  "exp_avg_sq": "the second moment v"})


# -- Newton ------------------------------------------------------------------------------------------

def _newton(p, g, h, st, *, lr=1.0, damping=0.0, mistake=""):
    n = p.shape[0]
    eye = np.eye(n, dtype=h.dtype)
    hd = {"damping ignored": h, "damping everywhere": h + damping}.get(mistake, h + damping * eye)
    if mistake == "times H":
        d = hd @ g
    elif mistake == "diagonal":
        d = g / np.diag(hd)
    elif mistake == "gradient step":
        d = g
    else:
        d = np.linalg.solve(hd, g)
    rate = 1.0 if mistake == "lr ignored" else lr
    if mistake == "uphill":
        return p + rate * d, {**st, "step": st.get("step", 0) + 1}
    return p - rate * d, {**st, "step": st.get("step", 0) + 1}


_NEWTON_MISTAKES = _variants(_newton, {
    "times H": "the gradient is multiplied by H instead of solving H·Δ = g (Δ = H⁻¹g)",
    "diagonal": "only the diagonal of H is used (g / diag(H)): that ignores the coupling terms",
    "gradient step": "a plain gradient step p − lr·g: the Hessian is not used",
    "uphill": "the step has the wrong sign (p + lr·H⁻¹g)",
    "damping ignored": "damping is ignored (solve (H + damping·I)·Δ = g)",
    "damping everywhere": "damping is added to every entry of H; add it to the diagonal only (damping·I)",
    "lr ignored": "lr is ignored (p − lr·Δ)",
})


def _spd(gen: np.random.Generator, n: int, low: float, high: float, negative: int = 0) -> np.ndarray:
    """A symmetric n×n matrix with eigenvalues in [low, high] (the first ``negative`` flipped)."""
    q, _ = np.linalg.qr(gen.standard_normal((n, n)))
    lam = gen.uniform(low, high, n)
    lam[:negative] *= -1
    return (q * lam) @ q.T


@check
def check_newton_step(newton_step):
    """newton_step on n = 1, 2, 5 with positive definite and indefinite Hessians, damping, lr."""
    spec = SPEC["newton_step"]
    sets = [({}, 0), ({"lr": 1.0, "damping": 0.0}, 0), ({"lr": 0.5, "damping": 0.3}, 0),
            ({"lr": 1.0, "damping": 0.0}, 1), ({"lr": 0.8, "damping": 2.5}, 1)]
    with C.guard(spec) as reference:
        for dtype in spec.dtypes:
            gen = C.rng("newton_step", dtype)
            for i, (hyper, negative) in enumerate(sets):
                for n in (1, 2, 5)[i % 2:]:
                    neg = min(negative, n - 1)
                    p0 = gen.standard_normal(n).astype(dtype)
                    inputs = [(p0, gen.standard_normal(n).astype(dtype),
                               _spd(gen, n, 0.5, 2.0, neg).astype(dtype)) for _ in range(2)]
                    _run_rule(newton_step, name="newton_step", spec=spec, reference=reference,
                              inputs=inputs, hyper=hyper, mistakes=_NEWTON_MISTAKES, state_keys={})


# -- the linear-decay schedule -------------------------------------------------------------------------

def _linear(lr0, tau, lr_tau=None, *, mistake=""):
    lr_tau = {"default 0": 0.0, "default 10%": lr0 / 10}.get(mistake, lr0 / 100) if lr_tau is None else lr_tau

    def rate(t):
        a = {"int div": t // tau, "from 1": (t - 1) / tau}.get(mistake, t / tau)
        a = a if mistake == "no clamp" else min(a, 1.0)
        if mistake == "swapped":
            return a * lr0 + (1 - a) * lr_tau
        return (1 - a) * lr0 + a * lr_tau

    return rate


_LINEAR_MISTAKES = {
    "the rate keeps falling after t = τ; it must stay at ε_τ (α = min(t/τ, 1))": "no clamp",
    "ε0 and ε_τ are swapped: the rate must start at ε0 and end at ε_τ": "swapped",
    "α = t // τ (integer division) makes a jump instead of a linear decay; use t / τ": "int div",
    "the count starts at 1 (α = (t − 1)/τ); at t = 0 the rate is ε0": "from 1",
    "the default ε_τ is 0; the default is 1% of ε0 (lr0 / 100)": "default 0",
    "the default ε_τ is 10% of ε0; the default is 1% (lr0 / 100)": "default 10%",
}


@check
def check_linear_decay(linear_decay):
    """linear_decay(lr0, tau, lr_tau=None) returns t -> ε_t; checked for t = 0 .. 2τ + 2 and far out."""
    spec = SPEC["linear_decay"]
    cases = [(0.1, 10, 0.001), (0.5, 7, 0.2), (1.0, 1, 0.25), (0.3, 20, None), (0.05, 3, 0.05)]
    with C.guard(spec) as reference:
        for lr0, tau, lr_tau in cases:
            args = (lr0, tau) if lr_tau is None else (lr0, tau, lr_tau)
            shown = "linear_decay(" + ", ".join(map(repr, args)) + ")"
            schedule = C.call(linear_decay, *args, what=shown)
            if not callable(schedule):
                raise CheckFailed(f"{shown} returned {C.type_name(schedule)}; it must return a "
                                  "function of the step t giving the learning rate.")
            expected_fn = reference(*args)
            ts = list(range(2 * tau + 3)) + [10 * tau, 100 * tau + 1]
            got = []
            for t in ts:
                value = C.call(schedule, t, what=f"{shown}({t})")
                got.append(float(C.as_array(value, what=f"{shown}({t})", shape=())))
            got_a = np.array(got)
            expected = np.array([expected_fn(t) for t in ts])
            rtol, atol = spec.tol("float64")
            ok = np.isclose(got_a, expected, rtol=rtol, atol=atol)
            if ok.all():
                continue
            k = int(np.argmin(ok))
            message = f"{shown} gives a wrong learning rate at t = {ts[k]}"
            wrong = {name: [_linear(*args, mistake=key)(t) for t in ts]
                     for name, key in _LINEAR_MISTAKES.items()}
            mistake = C.diagnose(got_a, wrong, tol=(rtol, atol))
            raise CheckFailed(message + (f". It matches a known mistake: {mistake}." if mistake else
                                         " (ε_t = (1 − α)·ε0 + α·ε_τ with α = min(t/τ, 1))."))


# -- numeric answers -------------------------------------------------------------------------------------

@check
def check_condition_number(answer_condition_number):
    """κ of the Hessian of f(x, y) = 3x² + 2xy + y², i.e. of [[6, 2], [2, 2]]: 3 + 2√2."""
    hessian = np.array([[6.0, 2.0], [2.0, 2.0]])
    lam = np.linalg.eigvalsh(hessian)
    halved = np.linalg.eigvalsh(np.array([[6.0, 1.0], [1.0, 2.0]]))
    C.check_number(answer_condition_number, lam[-1] / lam[0], what="answer_condition_number",
                   tol=(1e-3, 0.0), mistakes={
                       "λmin/λmax: the notes' ratio is upside down; κ = λmax/λmin >= 1": lam[0] / lam[-1],
                       "the ratio of the diagonal entries; κ needs the eigenvalues": 3.0,
                       "the Hessian's off-diagonal entry is ∂²f/∂x∂y = 2, not 1": halved[-1] / halved[0],
                       "λmax − λmin; κ is the ratio λmax/λmin": lam[-1] - lam[0],
                   })


def _own_first_step(adam_step: Any, g: np.ndarray, lr: float) -> np.ndarray | None:
    """What the student's adam_step gives for the question (None if it does not run)."""
    if not callable(adam_step):
        return None
    try:
        with _quiet():
            new_param, _ = _pair(C.call(adam_step, np.zeros(3), g, {}, what="adam_step", lr=lr), "adam_step")
        return C.as_array(new_param, what="adam_step", shape=(3,)).astype(np.float64)
    except CheckFailed:
        return None


@check
def check_adam_first_step(answer_adam_first_step, adam_step=None):
    """Δθ of Adam's first step for g = (0.003, −40, 1e−9), lr = 0.01, default betas and eps; an
    answer equal to what the student's own ``adam_step`` gives is accepted too (a mistake there
    costs adam_step's points, not this answer's)."""
    g = np.array([3e-3, -40.0, 1e-9])
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    value = answer_adam_first_step
    if isinstance(value, (list, tuple)):
        value = np.asarray(value, dtype=np.float64) if all(
            isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value) else value
    expected = -lr * g / (np.abs(g) + eps)
    own = _own_first_step(adam_step, g, lr)
    if own is not None and _same(C.as_array(value, what="answer_adam_first_step"), own, (1e-3, 0.0)):
        return
    m, v = (1 - b1) * g, (1 - b2) * g * g
    C.compare(value, expected, what="answer_adam_first_step", tol=(1e-3, 0.0), check_dtype=False,
              mistakes={
                  "the sign: Δθ = θ1 − θ0 points against the gradient": -expected,
                  "no bias correction: at t = 1 the corrected moments are m̂ = g and v̂ = g²":
                      -lr * m / (np.sqrt(v) + eps),
                  "eps inside the square root": -lr * g / np.sqrt(g * g + eps),
                  "eps left out: it decides the step of the tiny third gradient": -lr * np.sign(g),
              })
