"""The hidden checks of 05_regularization, called directly (no nbgrader).

The solution notebook's functions pass; correct alternatives (other keep rules on u, np.where,
loops, other ways to sum squares, a vectorized early stopping) pass; realistic wrong answers
fail, and where the check knows the mistake its message names it; a function that merely calls
the library's version fails.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from course import functional as F
from course import train
from _checks import fails, solution_cells, solution_namespace
from grader.checks import regularization as checks

SOL = solution_namespace("05_regularization", "regularization")
SOL["_dropout_source"] = solution_cells("05_regularization", "regularization")["dropout_impl"]




# -- the solution passes; the library's own functions are refused --------------------------------

@pytest.mark.parametrize("name, check", [
    ("dropout_mask", checks.check_dropout_mask), ("dropout", checks.check_dropout),
    ("l2_penalty", checks.check_l2_penalty), ("early_stopping_epoch", checks.check_early_stopping_epoch),
])
def test_solution_passes(name, check):
    assert check(SOL[name]) is None


def _dropout_with_library_mask(x, p, u=None, *, training=True, mode="inverted"):
    if not training:
        return x if mode == "inverted" else x * (1 - p)
    return x * F.dropout_mask(u, p, mode=mode)


def _early_stopping_with_library(val_losses, patience):
    stopper = train.EarlyStopping(patience=patience, restore_best=False)
    for epoch, loss in enumerate(val_losses, start=1):
        if stopper.step(loss, None, epoch):
            return stopper.best_epoch, epoch
    return stopper.best_epoch, None


@pytest.mark.parametrize("check, delegate", [
    (checks.check_dropout_mask, lambda u, p, *, mode="inverted": F.dropout_mask(u, p, mode=mode)),
    (checks.check_dropout_mask, lambda u, p, *, mode="inverted": F.dropout(np.ones_like(u), p, u, mode=mode)),
    (checks.check_dropout, lambda x, p, u=None, *, training=True, mode="inverted":
        F.dropout(x, p, u, training=training, mode=mode)),
    (checks.check_dropout, _dropout_with_library_mask),
    (checks.check_early_stopping_epoch, _early_stopping_with_library),
    (checks.check_early_stopping_epoch, lambda losses, patience: train.early_stopping_epoch(losses, patience)),
    (checks.check_l2_penalty, lambda w, lam: F.l2_penalty(w, lam)),
])
def test_delegating_to_the_library_fails(check, delegate):
    fails(check, delegate, "must be your own implementation")


def test_the_library_is_restored_after_a_check():
    fails(checks.check_dropout, _dropout_with_library_mask, "your own implementation")
    u = np.random.default_rng(0).random((4, 5))
    assert F.dropout_mask(u, 0.3).shape == (4, 5)
    assert _early_stopping_with_library([1.0, 2.0], 1) == (1, 2)


# -- dropout_mask ---------------------------------------------------------------------------------

def _mask(keep, u, p, mode):
    keep = keep.astype(u.dtype)
    return keep * (1 / (1 - p)) if mode == "inverted" else keep


@pytest.mark.parametrize("alternative", [
    lambda u, p, *, mode="inverted": _mask(u > p, u, p, mode),
    lambda u, p, *, mode="inverted": _mask(u < 1 - p, u, p, mode),           # keep the low end instead
    lambda u, p, *, mode="inverted": np.where(u >= p, 1 / (1 - p) if mode == "inverted" else 1.0, 0.0).astype(u.dtype),
    lambda u, p, *, mode="inverted": (u >= p) * u.dtype.type(1 / (1 - p) if mode == "inverted" else 1),
])
def test_mask_alternatives_pass(alternative):
    assert checks.check_dropout_mask(alternative) is None


def _mask_loops(u, p, *, mode="inverted"):
    """Entry by entry in Python: slow but correct."""
    scale = 1 / (1 - p) if mode == "inverted" else 1.0
    return np.array([scale if v >= p else 0.0 for v in u.ravel()], dtype=u.dtype).reshape(u.shape)


def test_mask_with_loops_passes():
    assert checks.check_dropout_mask(_mask_loops) is None


@pytest.mark.parametrize("wrong, needles", [
    (lambda u, p, *, mode="inverted": (u >= p).astype(u.dtype),
     ["not rescaled"]),
    (lambda u, p, *, mode="inverted": _mask(u < p, u, p, "scale_at_test") / (u.dtype.type(p) if mode == "inverted" else 1),
     ["keep probability"]),
    (lambda u, p, *, mode="inverted": _mask(u >= p, u, p, "scale_at_test") * (u.dtype.type(p) if mode == "inverted" else 1),
     ["multiplied by p instead of divided by 1 − p"]),
    (lambda u, p, *, mode="inverted": _mask(u >= p, u, p, "inverted"),                 # both modes inverted
     ["scale_at_test", "that is inverted dropout"]),
    (lambda u, p, *, mode="inverted": _mask(u >= p, u, p, "scale_at_test") * u.dtype.type(1 - p),
     ["1 − p", "test-time scaling"]),
    (lambda u, p, *, mode="inverted": (u >= p) / (1 - p) if mode == "inverted" else (u >= p) * 1.0,
     ["dtype float64 for float32"]),
    (lambda u, p, *, mode="inverted": _mask(np.broadcast_to(u[:1] >= p, u.shape), u, p, mode),
     ["same mask", "row"]),
    (lambda u, p, *, mode="inverted": _mask(np.broadcast_to(u[:, :1] >= p, u.shape), u, p, mode),
     ["same mask", "column"]),
    (lambda u, p, *, mode="inverted": _mask(np.random.default_rng().random(u.shape) >= p, u, p, mode),
     ["same u gave different"]),
    (lambda u, p, *, mode="inverted": _mask(np.random.default_rng(0).random(u.shape) >= p, u, p, mode),
     ["new u gave exactly the same mask"]),
])
def test_wrong_masks_fail(wrong, needles):
    fails(checks.check_dropout_mask, wrong, *needles)


def test_mask_that_writes_into_u_fails():
    def in_place(u, p, *, mode="inverted"):
        np.greater_equal(u, p, out=u)  # reuses u as the mask
        return _mask(u.astype(bool), u, p, mode)
    fails(checks.check_dropout_mask, in_place, "changed its argument 1 in place")


def test_mask_that_breaks_p_zero_fails():
    def divides_by_p(u, p, *, mode="inverted"):
        return _mask(u >= p, u, p, mode) if p > 0 else np.zeros_like(u)
    fails(checks.check_dropout_mask, divides_by_p, "p = 0")


# -- dropout --------------------------------------------------------------------------------------

def _dropout_from(mask_fn, eval_fn=None):
    def dropout(x, p, u=None, *, training=True, mode="inverted"):
        if not training:
            return eval_fn(x, p, mode) if eval_fn else (x if mode == "inverted" else x * (1 - p))
        return x * mask_fn(u, p, mode=mode)
    return dropout


def test_dropout_alternatives_pass():
    low_end = _dropout_from(lambda u, p, mode: _mask(u < 1 - p, u, p, mode),
                            lambda x, p, mode: x.copy() if mode == "inverted" else (1 - p) * x)
    assert checks.check_dropout(low_end) is None

    def with_where(x, p, u=None, *, training=True, mode="inverted"):
        keep_scale = 1 / (1 - p) if mode == "inverted" else 1.0
        if training:
            return np.where(u >= p, x * x.dtype.type(keep_scale), x.dtype.type(0))
        return x if mode == "inverted" else x * x.dtype.type(1 - p)
    assert checks.check_dropout(with_where) is None


@pytest.mark.parametrize("wrong, needles", [
    (_dropout_from(lambda u, p, mode: _mask(u >= p, u, p, mode), lambda x, p, mode: (1 - p) * x),
     ["identity"]),                                                  # scaled at test time in inverted mode
    (_dropout_from(lambda u, p, mode: _mask(u >= p, u, p, mode), lambda x, p, mode: x),
     ["not scaled at test time"]),                                   # scale-at-test without the test scaling
    (_dropout_from(lambda u, p, mode: _mask(u >= p, u, p, mode), lambda x, p, mode: x if mode == "inverted" else p * x),
     ["keep probability"]),
    (_dropout_from(lambda u, p, mode: (u >= p).astype(u.dtype)),
     ["not rescaled"]),                                              # inverted dropout without rescaling
    (_dropout_from(lambda u, p, mode: _mask(u < p, u, p, mode)),
     ["keep probability"]),
    (lambda x, p, u=None, *, training=True, mode="inverted": x * (1 - p),   # no mask at all
     ["dropped"]),
])
def test_wrong_dropout_fails(wrong, needles):
    fails(checks.check_dropout, wrong, *needles)


def test_dropout_is_graded_with_the_reference_mask():
    """A wrong dropout_mask costs its own points only: dropout runs with the reference mask."""
    namespace = {"np": np}
    exec("def dropout_mask(u, p, *, mode='inverted'):\n"
         "    return (u >= p).astype(u.dtype)\n", namespace)   # no rescaling
    exec(SOL["_dropout_source"], namespace)
    fails(checks.check_dropout_mask, namespace["dropout_mask"], "not rescaled")
    assert checks.check_dropout(namespace["dropout"]) is None
    assert namespace["dropout_mask"](np.array([0.9]), 0.5)[0] == 1.0   # the student's own is back


def test_dropout_that_needs_u_in_evaluation_fails():
    def needs_u(x, p, u=None, *, training=True, mode="inverted"):
        mask = _mask(u >= p, u, p, mode)  # fails for u=None
        return x * mask if training else (x if mode == "inverted" else x * (1 - p))
    fails(checks.check_dropout, needs_u, "training=False", "raised TypeError")


# -- dropout variance -----------------------------------------------------------------------------

def test_dropout_variance():
    assert checks.check_dropout_variance(0.25) is None
    assert checks.check_dropout_variance(np.float64(0.2500001)) is None
    fails(checks.check_dropout_variance, 0.16, "without the 1/(1 − p) rescaling")
    fails(checks.check_dropout_variance, 1.25, "second moment")
    fails(checks.check_dropout_variance, 4.0, "swapped")
    fails(checks.check_dropout_variance, "0.25", "should be a number")


# -- l2_penalty -----------------------------------------------------------------------------------

@pytest.mark.parametrize("alternative", [
    lambda w, lam: (lam * np.linalg.norm(w) ** 2, 2 * lam * w),
    lambda w, lam: (np.asarray(lam * np.vdot(w, w)), w * (2 * lam)),          # a 0-d array
    lambda w, lam: (lam * np.sum(np.square(w)), lam * w + lam * w),           # a NumPy scalar, float32 for float32
    lambda w, lam: (lam * sum(float(v) ** 2 for v in w.flat), np.array([2 * lam * v for v in w.flat], dtype=w.dtype).reshape(w.shape)),
])
def test_l2_alternatives_pass(alternative):
    assert checks.check_l2_penalty(alternative) is None


@pytest.mark.parametrize("wrong, needles", [
    (lambda w, lam: (lam * np.sum(w * w), lam * w), ["λW", "(λ/2)‖W‖²"]),
    (lambda w, lam: (lam / 2 * np.sum(w * w), lam * w), ["no 1/2"]),
    (lambda w, lam: (lam * np.sum(w * w), 2 * w), ["λ is missing"]),
    (lambda w, lam: (lam * np.linalg.norm(w), 2 * lam * w), ["without the square"]),
    (lambda w, lam: (lam * w * w, 2 * lam * w), ["one number"]),
    (lambda w, lam: (lam * np.abs(w).sum(), 2 * lam * np.sign(w)), ["L1"]),
    (lambda w, lam: (lam * np.sum(w * w), (2 * lam * w).astype(np.float64)), ["dtype"]),
    (lambda w, lam: 2 * lam * w, ["expected a pair"]),
])
def test_wrong_l2_fails(wrong, needles):
    fails(checks.check_l2_penalty, wrong, *needles)


def test_weight_decay_value():
    assert checks.check_weight_decay(1e-3) is None
    fails(checks.check_weight_decay, 5e-4, "λ' must be 2λ")
    fails(checks.check_weight_decay, 2.5e-4, "the other way")


# -- early stopping -------------------------------------------------------------------------------

def _early_vectorized(val_losses, patience):
    """Running minimum with NumPy; the stop is the first epoch `patience` after the last new best."""
    v = np.asarray(val_losses, dtype=np.float64)
    v = np.where(np.isnan(v), np.inf, v)
    previous_best = np.concatenate([[np.inf], np.minimum.accumulate(v)[:-1]])
    improved = v < previous_best
    last_best = np.maximum.accumulate(np.where(improved, np.arange(len(v)), -1))
    waited = np.arange(len(v)) - last_best
    stops = np.flatnonzero((waited >= max(patience, 1)) & ~improved)
    end = stops[0] + 1 if stops.size else len(v)
    best = int(last_best[end - 1]) + 1 if last_best[end - 1] >= 0 else None
    return np.int64(best) if best is not None else None, (int(stops[0]) + 1 if stops.size else None)


def test_early_stopping_alternatives_pass():
    assert checks.check_early_stopping_epoch(_early_vectorized) is None
    assert checks.check_early_stopping_epoch(lambda v, k: list(SOL["early_stopping_epoch"](v, k))) is None


def _loop(mistake):
    def early_stopping_epoch(val_losses, patience):
        best, best_epoch, wait, previous = math.inf, None, 0, math.inf
        for i, loss in enumerate(val_losses):
            epoch = i if mistake == "zero based" else i + 1
            if mistake == "previous":
                improved = loss < previous
            elif mistake == "ties":
                improved = loss <= best
            else:
                improved = loss < best
            if improved:
                wait = 0
            else:
                wait += 1
            if loss < best or (mistake == "ties" and loss <= best):
                best, best_epoch = loss, epoch
            previous = loss
            if not improved and (wait > patience if mistake == "late" else wait >= patience):
                return (epoch if mistake == "last" else best_epoch), epoch
        if mistake == "length":
            return best_epoch, len(val_losses)
        return (len(val_losses) if mistake == "last" else best_epoch), None
    return early_stopping_epoch


@pytest.mark.parametrize("mistake, needles", [
    ("last", ["last epoch"]),
    ("late", ["one epoch late"]),
    ("previous", ["previous epoch"]),
    ("zero based", ["counted from 0"]),
    ("ties", ["equal to the best"]),
    ("length", ["return None"]),
])
def test_wrong_early_stopping_fails(mistake, needles):
    fails(checks.check_early_stopping_epoch, _loop(mistake), *needles)


def test_early_stopping_with_global_argmin_fails():
    def global_argmin(val_losses, patience):
        stop = SOL["early_stopping_epoch"](val_losses, patience)[1]
        v = np.nan_to_num(np.asarray(val_losses, dtype=float), nan=np.inf)
        return int(np.argmin(v)) + 1, stop
    fails(checks.check_early_stopping_epoch, global_argmin, "including those after training stopped")


def test_early_stopping_one_epoch_early_fails():
    def early(val_losses, patience):
        return SOL["early_stopping_epoch"](val_losses, max(patience - 1, 0))
    fails(checks.check_early_stopping_epoch, early, "one epoch early")


def test_early_stopping_type_errors():
    fails(checks.check_early_stopping_epoch, lambda v, k: 3, "expected a pair")
    fails(checks.check_early_stopping_epoch, lambda v, k: (3.0, None), "expected an int")


def test_a_copy_of_the_library_l2_penalty_earns_full_marks():
    """The student edition stubs course.functional.l2_penalty; its code, written by a student,
    is a correct answer (the guard refuses only calls to the library's function itself)."""
    import types

    fn = F.l2_penalty
    checks.check_l2_penalty(types.FunctionType(fn.__code__, fn.__globals__, "l2_penalty"))


def test_dropout_with_p_zero_given_explicitly_must_keep_x():
    """p = 0 is exercised explicitly: an answer that treats it as 'no u, drop nothing, but rescale
    anyway' (or any special case that changes x) fails there."""
    def dropout(x, p, u=None, *, training=True, mode="inverted"):
        if not training:
            return x if mode == "inverted" else x * (1 - p)
        if p == 0:
            return x * 0.5                          # a broken special case
        return x * (u >= p).astype(x.dtype) / ((1 - p) if mode == "inverted" else 1)
    fails(checks.check_dropout, dropout, "p=0.0")
