"""Hidden checks of 05_regularization: dropout (two variants), the L2 penalty, early stopping.

Conventions are ``course``'s (PyTorch's): ``p`` is the probability of DROPPING a unit (the
notes' p keeps it); a mask is computed from uniform samples ``u`` ~ U[0, 1) of the input's
shape, one independent draw per entry (per element, not one mask shared by the rows of a
batch); the L2 penalty is the notes' λ‖W‖²_F, so its gradient is 2λW (PyTorch's
``weight_decay`` λ' adds λ'W, the gradient of (λ'/2)‖W‖²).

Dropout is judged statistically, never against one keep rule: any rule that keeps an entry
with probability 1 − p as a function of its own u passes (``u >= p``, ``u > p``,
``u < 1 - p``). On N = 100,000 entries a mask must have

- the input's shape and dtype, finite values, no copied rows or columns;
- a single nonzero value: 1/(1 − p) (inverted) or 1 (scale-at-test); a miss is compared with
  what known mistakes give (no rescaling, p for 1/(1 − p), 1/p, 1 − p);
- a dropped fraction within z = 6 standard errors, z·√(p(1 − p)/N), of p (p = 0.3, 0.8, 0.1:
  never 0.5, so a keep probability used as the drop probability shows);
- the same value for the same u, a different mask for a fresh u (the randomness comes from
  u, the caller's seeded samples, so a seeded layer is reproducible).

Early stopping is compared with ``course.train.EarlyStopping`` (strict improvement, NaN never
improves, stop once ``patience`` epochs in a row have not improved). While a check runs, the
library's own versions refuse to run: ``course.functional.dropout_mask`` and ``dropout`` in the
dropout checks, ``course.train.EarlyStopping.step`` in the early-stopping check. The student's
``dropout`` runs with the reference ``dropout_mask`` in place of their own (the name is swapped in
their namespace for the check), so a wrong mask costs the mask exercise only.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from grader.checks import CheckFailed, check
from grader.checks import _core as C

SPEC = C.specs(__name__)

Z = 6.0  # standard errors a correct sample may stray (a correct mask fails with prob. ~2e-9)
SHAPE = (250, 400)  # 100,000 entries, rows != columns
P_VALUES = (0.3, 0.8, 0.1)  # never 0.5: keep and drop probabilities must differ
MODES = ("inverted", "scale_at_test")
DROPOUT_LIBRARY = ("course.functional.dropout_mask", "course.functional.dropout")
EARLY_STOPPING_LIBRARY = ("course.train.early_stopping_epoch", "course.train.EarlyStopping.step")


@contextmanager
def _quiet() -> Iterator[None]:
    """No floating-point warnings on stderr (graded cells must stay silent)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _call(fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
    with _quiet():
        return C.call(fn, *args, what=what, **kwargs)


# -- dropout ------------------------------------------------------------------------------------

def _keep_value(p: float, mode: str) -> float:
    """The value of a kept entry of the training mask."""
    return 1.0 / (1.0 - p) if mode == "inverted" else 1.0


def _scale_mistakes(p: float, mode: str) -> dict[str, float]:
    """Kept values that known mistakes give, by name (the correct one is left out)."""
    inv = "inverted dropout divides the kept units by the keep probability 1 − p"
    named = {
        1.0: f"the kept units are not rescaled ({inv})",
        p: "the kept units are multiplied by p instead of divided by 1 − p",
        1.0 / p: "the kept units are divided by p: p used as the keep probability (the notes' p); "
                 "in course, p is the DROP probability",
        1.0 - p: "the kept units are multiplied by 1 − p: that is the test-time scaling of the "
                 "scale-at-test variant, not part of the training mask",
        1.0 / (1.0 - p): "the kept units are divided by 1 − p: that is inverted dropout; the "
                         "scale-at-test variant uses a plain 0/1 mask in training",
    }
    right = _keep_value(p, mode)
    return {name: v for v, name in named.items() if not math.isclose(v, right, rel_tol=1e-9)}


def _copied(mask: np.ndarray) -> str | None:
    """What repeats when every row (or every column) of a 2-D mask is the same, else None."""
    if mask.ndim != 2 or mask.shape[0] < 2 or mask.shape[1] < 2:
        return None
    if (mask == mask[:1]).all():
        return "row of the batch (one mask shared by all samples)"
    if (mask == mask[:, :1]).all():
        return "column (whole samples dropped or kept)"
    return None


def _judge_mask(draw: Callable[[np.ndarray], np.ndarray], u: np.ndarray, p: float, mode: str,
                what: str, unit: str, fresh: np.ndarray, tol: float) -> None:
    """Judge the mask ``draw(u)`` statistically (see the module docstring).

    ``unit`` names what the mask entries are to the student ("the mask's entries" or "the
    output divided by x"); ``fresh`` is a second uniform sample of the same shape; ``tol`` is
    the relative tolerance on the kept value.
    """
    mask = draw(u)
    if not np.isfinite(mask).all():
        raise CheckFailed(f"{what}: {unit} contain inf or nan.")
    right = _keep_value(p, mode)
    kept = mask[mask != 0]
    n = mask.size
    if p == 0:
        if kept.size != n or not np.allclose(kept, 1.0, rtol=tol, atol=0):
            raise CheckFailed(f"{what}: with p = 0 nothing may be dropped and nothing rescaled: "
                              f"{unit} must all be 1.")
        return
    if kept.size == 0:
        raise CheckFailed(f"{what}: every entry was dropped; a fraction of about p = {p} should be.")
    copied = _copied(mask)
    if copied:
        raise CheckFailed(f"{what}: every {copied} has the same mask. Each entry needs its own "
                          "draw: use u entry by entry (u has x's shape).")
    dropped = 1.0 - kept.size / n
    se = math.sqrt(p * (1.0 - p) / n)
    if abs(dropped - p) > Z * se:
        message = (f"{what}: {dropped:.3f} of the entries are dropped; with drop probability "
                   f"p = {p} the fraction should be close to p.")
        if abs(dropped - (1.0 - p)) <= Z * se:
            message += (" It matches a known mistake: p used as the keep probability (the notes' "
                        "p); in course, p is the probability of DROPPING a unit.")
        raise CheckFailed(message)
    if not np.allclose(kept, right, rtol=tol, atol=0):
        value = float(np.median(kept))
        single = np.allclose(kept, value, rtol=tol, atol=0)
        if mode == "inverted":
            message = f"{what}: {unit} must be 0 (dropped) or 1/(1 − p) (kept)"
        else:
            message = f"{what}: {unit} must be 0 (dropped) or 1 (kept: a plain 0/1 mask)"
        message += "; the kept ones are not." if single else \
            "; the kept ones take more than one value."
        if single:
            for name, wrong in _scale_mistakes(p, mode).items():
                if math.isclose(value, wrong, rel_tol=10 * tol):
                    message += f" It matches a known mistake: {name}."
                    break
        raise CheckFailed(message)
    if not np.array_equal(draw(u), mask):
        raise CheckFailed(f"{what}: two calls with the same u gave different results. Compute the "
                          "mask from u only; do not draw random numbers of your own (u comes from "
                          "the caller's seeded generator).")
    if np.array_equal(draw(fresh), mask):
        raise CheckFailed(f"{what}: a new u gave exactly the same mask: the mask must be computed "
                          "from u, entry by entry.")


def _uniform(key: Sequence[Any], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return C.rng(*key).random(shape, dtype=np.dtype(dtype).type)


def _mask_of(dropout_mask: Callable[..., Any], what: str, p: float, mode: str | None,
             shape: tuple[int, ...], dtype: Any) -> Callable[[np.ndarray], np.ndarray]:
    kwargs = {} if mode is None else {"mode": mode}

    def draw(u: np.ndarray) -> np.ndarray:
        return C.as_array(_call(dropout_mask, u, p, what=what, **kwargs), what=what,
                          shape=shape, dtype=dtype)
    return draw


@check
def check_dropout_mask(dropout_mask):
    spec = SPEC["dropout_mask"]
    with C.refusing(spec, DROPOUT_LIBRARY):
        for dtype in spec.dtypes:
            rtol = spec.tol(dtype)[0]
            for mode in MODES:
                for p in P_VALUES + (0.0,):
                    what = (f"dropout_mask(u, p={p}, mode={mode!r}) with u of shape {SHAPE}, "
                            f"dtype {dtype}")
                    u = _uniform(("mask", dtype, mode, p), SHAPE, dtype)
                    fresh = _uniform(("mask fresh", dtype, mode, p), SHAPE, dtype)
                    draw = _mask_of(dropout_mask, what, p, mode, SHAPE, dtype)
                    _judge_mask(draw, u, p, mode, what, "the mask's entries", fresh, rtol)
            # the default mode is inverted dropout
            what = f"dropout_mask(u, p=0.3) (default mode) with u of dtype {dtype}"
            draw = _mask_of(dropout_mask, what, 0.3, None, SHAPE, dtype)
            _judge_mask(draw, _uniform(("default", dtype), SHAPE, dtype), 0.3, "inverted", what,
                        "the mask's entries (the default mode is 'inverted')",
                        _uniform(("default fresh", dtype), SHAPE, dtype), rtol)
            for shape in C.SHAPES:  # any shape: the mask is shaped like u
                u = _uniform(("shapes", dtype, shape), shape, dtype)
                what = f"dropout_mask(u, p=0.3, mode='inverted') with u of shape {shape}, dtype {dtype}"
                mask = C.as_array(_call(dropout_mask, u, 0.3, what=what, mode="inverted"),
                                  what=what, shape=shape, dtype=dtype)
                if not np.all((mask == 0) | np.isclose(mask, 1 / 0.7, rtol=rtol, atol=0)):
                    raise CheckFailed(f"{what}: the mask's entries must be 0 or 1/(1 − p).")


def _input(key: Sequence[Any], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Inputs with |x| >= 0.25 of both signs, so that output / x recovers the mask exactly."""
    g = C.rng(*key)
    return (np.sign(g.standard_normal(shape)) * (0.25 + np.abs(g.standard_normal(shape)))).astype(dtype)


@check
def check_dropout(dropout):
    spec = SPEC["dropout"]
    with C.refusing(spec, DROPOUT_LIBRARY) as library, \
            C.patched_global(dropout, "dropout_mask", library["course.functional.dropout_mask"]):
        for dtype in spec.dtypes:
            tol = spec.tol(dtype)
            for mode in MODES:
                for p in P_VALUES + (0.0,):  # p = 0 given explicitly: x unchanged
                    x = _input(("dropout x", dtype, mode, p), SHAPE, dtype)
                    what = (f"dropout(x, p={p}, u, training=True, mode={mode!r}) with x and u of "
                            f"shape {SHAPE}, dtype {dtype}")

                    def draw(u: np.ndarray, x=x, p=p, mode=mode, what=what) -> np.ndarray:
                        out = C.as_array(_call(dropout, x, p, u, what=what, training=True, mode=mode),
                                         what=what, shape=x.shape, dtype=x.dtype)
                        return out / x

                    _judge_mask(draw, _uniform(("dropout u", dtype, mode, p), SHAPE, dtype), p, mode,
                                what, "the outputs divided by x",
                                _uniform(("dropout fresh", dtype, mode, p), SHAPE, dtype), tol[0])
                    _check_eval(dropout, x, p, mode, tol)
            x = _input(("dropout default", dtype), SHAPE, dtype)
            what = f"dropout(x, p=0.3, u) (default training=True, mode='inverted'), dtype {dtype}"

            def draw_default(u: np.ndarray, x=x, what=what) -> np.ndarray:
                out = C.as_array(_call(dropout, x, 0.3, u, what=what), what=what, shape=x.shape,
                                 dtype=x.dtype)
                return out / x

            _judge_mask(draw_default, _uniform(("dropout default u", dtype), SHAPE, dtype), 0.3,
                        "inverted", what, "the outputs divided by x (the defaults are training=True, "
                        "mode='inverted')", _uniform(("dropout default fresh", dtype), SHAPE, dtype), tol[0])
            for p in (0.0, 0.3):  # evaluation needs no u, and is the default-mode identity
                x = _input(("dropout eval default", dtype, p), (3, 5), dtype)
                what = f"dropout(x, p={p}, training=False) (default mode 'inverted'), dtype {dtype}"
                out = _call(dropout, x, p, what=what, training=False)
                C.compare(out, x, what=what, tol=tol,
                          mistakes={"scaled by 1 − p at test time (inverted dropout is the identity "
                                    "in evaluation)": (1 - p) * x} if p else None)


def _check_eval(dropout: Callable[..., Any], x: np.ndarray, p: float, mode: str,
                tol: tuple[float, float]) -> None:
    """Evaluation mode: x (inverted) or (1 − p)·x (scale-at-test), with u=None."""
    what = f"dropout(x, p={p}, None, training=False, mode={mode!r}) with x of dtype {x.dtype}"
    out = _call(dropout, x, p, None, what=what, training=False, mode=mode)
    if mode == "inverted":
        expected = x
        mistakes = {"scaled by 1 − p at test time: inverted dropout already rescaled in training, "
                    "so evaluation is the identity": (1 - p) * x,
                    "divided by 1 − p at test time: inverted dropout is the identity in evaluation":
                    x / (1 - p),
                    "scaled by p at test time: inverted dropout is the identity in evaluation": p * x}
    else:
        expected = (1 - p) * x
        mistakes = {"not scaled at test time: scale-at-test dropout multiplies by the keep "
                    "probability 1 − p in evaluation": x,
                    "multiplied by p at test time: p used as the keep probability (the notes' p); "
                    "multiply by the keep probability 1 − p": p * x,
                    "divided by 1 − p at test time": x / (1 - p)}
    C.compare(out, expected.astype(x.dtype), what=what, tol=tol, mistakes=mistakes)


@check
def check_dropout_variance(answer):
    p = 0.2
    C.check_number(answer, p / (1 - p), what="answer_dropout_variance", tol=(1e-3, 0.0),
                   mistakes={"p(1 − p), the variance of the 0/1 mask without the 1/(1 − p) rescaling":
                             p * (1 - p),
                             "p, the drop probability": p,
                             "1/(1 − p), the second moment E[m²], without subtracting E[m]² = 1":
                             1 / (1 - p),
                             "(1 − p)/p: keep and drop probabilities swapped": (1 - p) / p})


# -- the L2 penalty -----------------------------------------------------------------------------

_LAMBDAS = (0.37, 2e-3, 0.0)


@check
def check_l2_penalty(l2_penalty):
    spec = SPEC["l2_penalty"]
    with C.guard(spec):
        _check_l2_penalty(l2_penalty, spec)


def _check_l2_penalty(l2_penalty: Callable[..., Any], spec: Any) -> None:
    for dtype in spec.dtypes:
        rtol, atol = spec.tol(dtype)
        for shape in sorted(C.SHAPES, key=len, reverse=True):  # (1,) last: there |w| = ||w||
            for lam in _LAMBDAS:
                w = C.rng("l2", dtype, shape, lam).standard_normal(shape).astype(dtype)
                what = f"l2_penalty(w, lam={lam}) with w of shape {shape}, dtype {dtype}"
                out = _call(l2_penalty, w, lam, what=what)
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise CheckFailed(f"{what} returned {C.type_name(out)}; expected a pair "
                                      "(value, grad).")
                value, grad = out
                if isinstance(value, np.ndarray) and value.shape != ():
                    raise CheckFailed(f"{what}: the value is an array of shape {value.shape}; it should "
                                      "be one number, the sum over all entries.")
                if isinstance(value, (np.ndarray, np.generic)):
                    value = value.item()
                w64 = w.astype(np.float64)
                sumsq = float(np.sum(w64 * w64))
                C.check_number(value, lam * sumsq, what=f"the value of {what}", tol=(rtol, atol),
                               mistakes={"λ‖W‖ without the square": lam * math.sqrt(sumsq),
                                         "(λ/2)‖W‖²: the notes' penalty has no 1/2": lam / 2 * sumsq,
                                         "λ is missing": sumsq,
                                         "λ Σ|w|: that is the L1 penalty": lam * float(np.abs(w64).sum())}
                               if lam else None)
                C.compare(grad, (2 * lam * w64).astype(dtype), what=f"the gradient from {what}",
                          tol=(rtol, atol),
                          mistakes={"λW: that is the gradient of (λ/2)‖W‖² (PyTorch's weight_decay "
                                    "convention); the gradient of λ‖W‖² is 2λW": lam * w64,
                                    "2W: λ is missing": 2 * w64,
                                    "2λ·sign(W): that is the L1 penalty's gradient": 2 * lam * np.sign(w64)}
                          if lam else None)


@check
def check_weight_decay(answer):
    lam = 5e-4
    C.check_number(answer, 2 * lam, what="answer_weight_decay", tol=(1e-6, 0.0),
                   mistakes={"the same λ: SGD's weight_decay λ' adds λ'·W to the gradient, which is the "
                             "gradient of (λ'/2)‖W‖², so λ' must be 2λ": lam,
                             "λ/2: the factor goes the other way (λ' = 2λ)": lam / 2})


# -- early stopping -----------------------------------------------------------------------------

Result = tuple[int | None, int | None]


def _reference(losses: Sequence[float], patience: int) -> Result:
    """(best_epoch, stop_epoch) from ``course.train.EarlyStopping`` (call it outside the guard)."""
    from course.train import EarlyStopping

    stopper = EarlyStopping(patience=patience, restore_best=False)
    for epoch, value in enumerate(losses, start=1):
        if stopper.step(value, None, epoch):
            return stopper.best_epoch, epoch
    return stopper.best_epoch, None


def _loop(losses: Sequence[float], stop: Callable[[int], bool], *,
          resets: Callable[[float, float, float], bool] = lambda v, best, prev: v < best,
          new_best: Callable[[float, float], bool] = lambda v, best: v < best) -> Result:
    """An early-stopping loop with pluggable rules; the known mistakes vary one rule each.

    ``resets(value, best, previous)`` decides whether the patience counter restarts,
    ``new_best(value, best)`` whether this epoch becomes the best, ``stop(wait)`` whether
    ``wait`` epochs without improvement end training.
    """
    best, best_epoch, wait, previous = math.inf, None, 0, math.inf
    for epoch, value in enumerate(losses, start=1):
        reset = resets(value, best, previous)
        if new_best(value, best):
            best, best_epoch = value, epoch
        wait = 0 if reset else wait + 1
        previous = value
        if wait and stop(wait):
            return best_epoch, epoch
    return best_epoch, None


def _mistakes(losses: Sequence[float], patience: int) -> dict[str, Result]:
    """What each known mistake returns for these losses, by name."""
    best, stop = _loop(losses, lambda w: w >= patience)
    finite = [v if v == v else math.inf for v in losses]  # NaN never wins
    return {
        "it returns the last epoch run as the best epoch; return the epoch with the lowest loss "
        "seen (the weights you would restore)": (stop or len(losses), stop),
        "patience off by one: it stops one epoch late (stop once `patience` epochs in a row have "
        "not improved, not patience + 1)": _loop(losses, lambda w: w > patience),
        "patience off by one: it stops one epoch early (stop once `patience` epochs in a row have "
        "not improved, not patience - 1)": _loop(losses, lambda w: w >= patience - 1),
        "it compares each loss with the previous epoch's instead of the best so far (a loss below "
        "the previous one but above the best is no improvement)":
            _loop(losses, lambda w: w >= patience, resets=lambda v, b, prev: v < prev),
        "the best epoch is the minimum over ALL epochs, including those after training stopped":
            (int(np.argmin(finite)) + 1, stop),
        "epochs counted from 0; number them from 1 (the first loss is epoch 1)":
            (None if best is None else best - 1, None if stop is None else stop - 1),
        "a loss equal to the best counts as an improvement; only a strictly lower loss does":
            _loop(losses, lambda w: w >= patience, resets=lambda v, b, prev: v <= b,
                  new_best=lambda v, b: v <= b),
        "it returns the number of epochs as stop_epoch when patience never ran out; return None "
        "then (training was not stopped early)": (best, stop or len(losses)),
    }


# Hand-made curves: each separates the right answer from several mistakes.
_CASES: tuple[tuple[tuple[float, ...], int], ...] = (
    ((1.0, 0.7, 0.6, 0.65, 0.62, 0.61, 0.58, 0.6, 0.7, 0.8), 2),
    ((1.0, 0.7, 0.6, 0.65, 0.62, 0.61, 0.58, 0.6, 0.7, 0.8), 3),
    ((1.0, 0.7, 0.6, 0.65, 0.62, 0.61, 0.58, 0.6, 0.7, 0.8), 4),
    ((0.9, 0.8, 0.7, 0.6, 0.5), 1),                  # never stops
    ((0.5, 0.6, 0.7, 0.8), 0),                       # patience 0: the first miss stops
    ((0.5, 0.5, 0.5, 0.4), 2),                       # a tie is no improvement
    ((0.5, 0.5, 0.4, 0.3), 2),
    ((1.0, 0.8, 0.7, float("nan"), float("nan"), float("nan")), 2),  # diverged: NaN never improves
    ((0.3,), 1),
    ((2.0, 1.0, 1.5, 0.9, 1.2, 1.3, 1.4), 1),        # a dip below the best after a rise
)


def _random_cases(n: int) -> list[tuple[tuple[float, ...], int]]:
    """Noisy U-shaped validation curves (fall, then rise), rounded to 4 decimals."""
    g = C.rng("early stopping curves")
    cases = []
    for _ in range(n):
        length = int(g.integers(5, 40))
        t = np.arange(length)
        curve = (1.5 * np.exp(-t / g.uniform(1, 6)) + 0.2 + g.uniform(0, 0.03) * t
                 + g.normal(0, g.uniform(0.005, 0.05), length))
        cases.append((tuple(float(v) for v in np.round(curve, 4)), int(g.choice([0, 1, 2, 3, 5, 8]))))
    return cases


def _as_epoch(value: Any, what: str, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        kind = "an int or None" if allow_none else "an int"
        raise CheckFailed(f"{what}: expected {kind}, got {C.type_name(value)} {value!r}.")
    return int(value)


def _describe(losses: Sequence[float], patience: int, as_array: bool) -> str:
    shown = ", ".join(f"{v:g}" for v in losses)
    arg = f"np.array([{shown}], dtype=float32)" if as_array else f"[{shown}]"
    return f"early_stopping_epoch({arg}, patience={patience})"


@check
def check_early_stopping_epoch(early_stopping_epoch):
    spec = SPEC["early_stopping_epoch"]
    cases, answers, expected = list(_CASES) + _random_cases(40), [], []
    with C.refusing(spec, EARLY_STOPPING_LIBRARY):
        for i, (losses, patience) in enumerate(cases):
            as_array = i % 3 == 2  # History gives lists; float32 arrays must work too
            arg: Any = np.asarray(losses, dtype=np.float32) if as_array else list(losses)
            what = _describe(losses, patience, as_array)
            out = _call(early_stopping_epoch, arg, patience, what=what)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise CheckFailed(f"{what} returned {C.type_name(out)}; expected a pair "
                                  "(best_epoch, stop_epoch).")
            answers.append((_as_epoch(out[0], f"best_epoch from {what}", allow_none=False),
                            _as_epoch(out[1], f"stop_epoch from {what}", allow_none=True)))
    # the reference is course's own EarlyStopping, run on the values actually passed
    for i, (losses, patience) in enumerate(cases):
        passed = [float(v) for v in np.asarray(losses, dtype=np.float32)] if i % 3 == 2 else losses
        expected.append(_reference(passed, patience))
    wrong = [i for i, (a, e) in enumerate(zip(answers, expected)) if a != e]
    if not wrong:
        return
    first = wrong[0]
    losses, patience = cases[first]
    message = (f"{_describe(losses, patience, first % 3 == 2)} returned (best_epoch, stop_epoch) = "
               f"{answers[first]}, which is not right.")
    predicted = [_mistakes(*case) for case in cases]
    for indices in (range(len(cases)), wrong):  # a mistake that explains every answer, else every wrong one
        names = [n for n in predicted[first] if all(predicted[i][n] == answers[i] for i in indices)]
        if names:
            message += f" It matches a known mistake: {names[0]}."
            break
    raise CheckFailed(message)
