"""Assertions for the notebooks' visible tests, with messages that say what to fix.

    from course.testing import assert_close, assert_shape
    assert_close(square(np.array([1.0, 2.0])), np.array([1.0, 4.0]), what="square([1, 2])")

Both accept NumPy arrays, Python numbers, :class:`course.Tensor` and other backend arrays
(they are copied to the host first) and raise ``AssertionError``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["assert_close", "assert_shape"]


def _host(x: Any) -> np.ndarray:
    """``x`` as a NumPy array: Tensors via ``.numpy()``, device arrays via DLPack."""
    if callable(getattr(x, "numpy", None)):
        x = x.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError):
        return np.from_dlpack(x)


def assert_shape(actual: Any, shape: Sequence[int | None], *, what: str = "result") -> None:
    """Fail unless ``actual`` has ``shape``; ``None`` in ``shape`` matches any size."""
    __tracebackhide__ = True
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
