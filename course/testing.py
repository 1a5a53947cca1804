"""Helpers of the notebooks' visible tests, with messages that say what to fix.

    from course.testing import assert_close, assert_shape
    assert_close(square(np.array([1.0, 2.0])), np.array([1.0, 4.0]), what="square([1, 2])")

``assert_close`` and ``assert_shape`` accept NumPy arrays, Python numbers, :class:`course.Tensor`
and other backend arrays (they are copied to the host first) and raise ``AssertionError``.
``assert_pure`` runs a function and fails if it wrote into its arguments; ``stand_in`` lets a
test judge one exercise alone, with fixed answers of earlier exercises in place of the
student's; ``best_time`` and ``gd_step`` are the small tools the notebooks share.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any

import numpy as np

__all__ = ["assert_close", "assert_shape", "assert_pure", "assert_uniform_bound", "stand_in", "answering",
           "best_time", "gd_step"]


def _host(x: Any) -> np.ndarray:
    """``x`` as a NumPy array: Tensors via ``.numpy()``, device arrays via DLPack."""
    if callable(getattr(x, "numpy", None)):
        x = x.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError):
        return np.from_dlpack(x)


def _not_none(actual: Any, what: str) -> None:
    if actual is None:
        raise AssertionError(f"{what}: got None, expected numbers (a function without `return`, "
                             "or a value that was never set?).")


def assert_shape(actual: Any, shape: Sequence[int | None], *, what: str = "result") -> None:
    """Fail unless ``actual`` has ``shape``; ``None`` in ``shape`` matches any size."""
    __tracebackhide__ = True
    _not_none(actual, what)
    got = _host(actual).shape
    if len(got) != len(shape) or any(s is not None and g != s for g, s in zip(got, shape)):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise AssertionError(f"{what}: shape {got}, expected {want}.")


def assert_close(actual: Any, expected: Any, *, what: str = "result", rtol: float = 1e-6,
                 atol: float = 1e-8, check_dtype: bool = False) -> None:
    """Fail unless ``actual`` matches ``expected`` entrywise.

    Entry i passes when ``|a_i - e_i| <= atol + rtol * |e_i|`` (NaN matches NaN). The message
    names the first shape, dtype or value difference: index, both values and the allowed error.
    """
    __tracebackhide__ = True
    _not_none(actual, what)
    a, e = _host(actual), _host(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape}, expected {e.shape}.")
    if check_dtype and a.dtype != e.dtype:
        raise AssertionError(f"{what}: dtype {a.dtype}, expected {e.dtype}.")
    if a.dtype.kind not in "biufc":
        raise AssertionError(f"{what}: got an array of dtype {a.dtype}, expected numbers.")
    ok = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if ok.all():
        return
    bad = np.argwhere(~ok)
    idx = tuple(int(i) for i in bad[0])
    got, want = a[idx].item(), e[idx].item()
    where = f" at index {idx}" if idx else ""
    raise AssertionError(
        f"{what}: {len(bad)} of {ok.size} values differ; first{where}: got {got!r}, expected "
        f"{want!r} (difference {abs(got - want):.3g}, allowed {atol + rtol * abs(want):.3g})."
    )


def _snapshot(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    return value


def assert_pure(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Return ``fn(*args, **kwargs)``, failing if the call wrote into an array argument or a
    dict argument (a state: its keys and arrays). Run it first: a function that updates its
    input in place (``p -= lr * g``) then gets that said, not a wrong number later."""
    __tracebackhide__ = True
    before = [_snapshot(a) for a in args]
    out = fn(*args, **kwargs)
    name = getattr(fn, "__name__", "the function")
    for i, (now, then) in enumerate(zip(args, before), start=1):
        if isinstance(now, np.ndarray) and not np.array_equal(now, then, equal_nan=True):
            raise AssertionError(f"{name} changed its argument {i} in place (`x -= ...` or "
                                 "`x[...] = ...` on an input): compute a new array instead.")
        if isinstance(now, dict):
            if now.keys() != then.keys():
                raise AssertionError(f"{name} added or removed keys of the state dict it was "
                                     "given: build a new one, new_state = dict(state).")
            for k in now:
                if not np.array_equal(now[k], then[k]):
                    raise AssertionError(f"{name} changed state[{k!r}] in place (m *= beta?): "
                                         "compute new arrays and return them in a new dict.")
    return out


@contextlib.contextmanager
def stand_in(namespace: MutableMapping[str, Any], **functions: Callable[..., Any]) -> Iterator[None]:
    """While the block runs, each name of ``functions`` in ``namespace`` (a notebook's
    ``globals()``) is the given stand-in; restored afterwards. A test of one exercise puts
    fixed answers of the exercises it builds on in place of the student's, so that a mistake
    there is not charged twice."""
    saved = {name: namespace[name] for name in functions if name in namespace}
    namespace.update(functions)
    try:
        yield
    finally:
        for name in functions:
            if name in saved:
                namespace[name] = saved[name]
            else:
                namespace.pop(name, None)


def answering(name: str, table: dict[Any, Any], key: Callable[..., Any]) -> Callable[..., Any]:
    """A stand-in for the student's ``name`` that knows the right answers in ``table`` only, looked
    up by ``key(*args, **kwargs)``; a call it does not know fails saying so."""
    def stand_in_answer(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        k = key(*args, **kwargs)
        if k not in table:
            raise AssertionError(f"this test's stand-in for {name} knows the answers for "
                                 f"{sorted(table, key=repr)} only, not for {k!r}: call {name} as the "
                                 "exercise says (or tell your instructor).")
        return table[k]
    stand_in_answer.__name__ = name
    return stand_in_answer


def assert_uniform_bound(w: Any, bound: float, *, what: str) -> None:
    """Fail unless the draws ``w`` fill [-bound, bound] (a large sample comes within 1% of both
    ends); the message tells a one-sided draw, a draw outside and a wrong bound apart."""
    __tracebackhide__ = True
    w = _host(w)
    top = float(np.abs(w).max())
    if w.min() >= 0:
        raise AssertionError(f"{what}: every weight is >= 0: draw from -b to b, not from 0 to b.")
    if top > bound * (1 + 1e-6):
        raise AssertionError(f"{what}: some weights lie outside [-b, b] (largest |w| = {top:.4g}, "
                             f"b = {bound:.4g}): the bound is too large, or the draw is not uniform.")
    if w.min() > -0.99 * bound or w.max() < 0.99 * bound:
        ratio = top / bound
        hint = (" (about b / sqrt(2): a bound with 3 where 6 belongs? Var(U[-b, b]) = b^2 / 3)"
                if abs(ratio - 2 ** -0.5) < 0.02 else "")
        raise AssertionError(f"{what}: the weights stay within [-{top:.4g}, {top:.4g}], {ratio:.3f} "
                             f"of the bound b = {bound:.4g}: the bound is too small{hint}.")


def best_time(fn: Callable[[], Any], repeat: int = 5) -> tuple[float, Any]:
    """(shortest wall time of ``repeat`` calls of ``fn()`` in seconds, the last result): the
    least disturbed run is the best estimate of the cost."""
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def gd_step(param: np.ndarray, grad: np.ndarray, state: dict, *, lr: float) -> tuple[np.ndarray, dict]:
    """Plain gradient descent as an update rule of ``course.optim``: p <- p - lr * g."""
    return param - lr * grad, dict(state)
