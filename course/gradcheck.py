"""Gradient checking: compare the gradients autodiff computes with finite differences.

Central differences estimate a partial derivative from values of ``f`` alone::

    order 2:  ∂f/∂xᵢ ≈ [f(x + h eᵢ) − f(x − h eᵢ)] / 2h                         error O(h²)
    order 4:  ∂f/∂xᵢ ≈ [8(f(x + h eᵢ) − f(x − h eᵢ)) − (f(x + 2h eᵢ) − f(x − 2h eᵢ))] / 12h   O(h⁴)

and order 6 likewise (error O(h⁶)). Each entry is compared by its relative error
``|a − n| / max(|a| + |n|, tiny)``. Rounding limits every stencil to an absolute accuracy of
about ``ε_machine·|f| / h``, so the checks measure an entry far smaller than its neighbours, or
than that noise, against a floor instead of its own size (see :func:`gradcheck`).

Every check runs on the current backend: perturbations are one-hot arrays made with ``B.xp``
on the input's device; only the final numbers of a report are copied to the host.
Check in float64: float32 rounding alone gives relative errors around 1e-4.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import backend as B
from .autodiff import Tensor, enable_grad, grad, no_grad

__all__ = [
    "GradcheckReport", "numerical_grad", "relative_error", "gradcheck", "gradgradcheck",
    "directional_check",
]

Array = Any
# (m, c_m) with f'(x) ≈ Σ c_m [f(x + m h) − f(x − m h)] / h
_STENCILS = {
    2: ((1, 1 / 2),),
    4: ((1, 2 / 3), (2, -1 / 12)),
    6: ((1, 3 / 4), (2, -3 / 20), (3, 1 / 60)),
}


@dataclass(frozen=True)
class GradcheckReport:
    """The outcome of a check; ``bool(report)`` is ``passed``, ``str(report)`` explains it.

    ``input`` and ``index`` locate the worst entry (``None`` for a directional check, which
    compares a single number); ``analytic`` and ``numeric`` are the two values there.
    """

    kind: str
    passed: bool
    max_error: float
    tol: float
    analytic: float
    numeric: float
    input: int | None = None
    index: tuple[int, ...] | None = None

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        where = "" if self.input is None else f" at input {self.input}, index {self.index}"
        return (f"{self.kind} check {verdict}: max relative error {self.max_error:.3e} "
                f"(tolerance {self.tol:.0e}); worst entry{where}: analytic {self.analytic:.12g}, "
                f"numeric {self.numeric:.12g}")

    __repr__ = __str__


def relative_error(a: Any, b: Any, tiny: float = 1e-8) -> float:
    """max over entries of ``|a − b| / max(|a| + |b|, tiny)``: 0 is perfect, ~1e-7 or less is good
    in float64, above ~1e-4 means a bug. ``tiny`` keeps entries that are both ~0 from dividing by 0.
    """
    a, b = _array(a), _array(b)
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"relative_error: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    if math.prod(a.shape) == 0:
        return 0.0
    return float(B.to_numpy(B.xp.max(_entry_errors(a, b, tiny))))


def numerical_grad(f: Callable[..., Any], inputs: Any, *, eps: float = 1e-3,
                   order: int = 6) -> Array | list[Array]:
    """Central-difference gradient of a scalar ``f`` at ``inputs``, one entry at a time.

    ``f`` is called as ``f(*inputs)`` with the same kind of values it was given (Tensors or raw
    arrays) and must return one number. ``order`` (2, 4 or 6) picks the stencil: its error is
    ``O(eps**order)``; ``order=2, eps=1e-6`` is the textbook ``[f(x+h) − f(x−h)] / 2h``. The
    default (order 6, h = 1e-3) is accurate to about 1e-12 in float64, but every evaluation
    must stay on one side of any kink (relu at 0): keep inputs more than 3h away from them.
    Returns an array shaped like the input (a list of them when ``inputs`` is a list or tuple).
    """
    single = not isinstance(inputs, (list, tuple))
    xs = [inputs] if single else list(inputs)
    arrays = [_float_array(x, k) for k, x in enumerate(xs)]
    stencil = _stencil(order)

    def value(k: int, xk: Array) -> Array:
        args = [_like(xs[j], xk if j == k else arrays[j]) for j in range(len(xs))]
        with no_grad():
            return _scalar(f(*args))

    grads = []
    for k, x in enumerate(arrays):
        xp, n = B.xp, math.prod(x.shape)
        if n == 0:
            grads.append(xp.zeros_like(x))
            continue
        position = xp.reshape(xp.arange(n, device=x.device), tuple(x.shape))
        entries = []
        for i in range(n):
            e = xp.astype(position == i, x.dtype)  # one-hot, made on the input's device
            d = 0.0
            for m, c in stencil:
                d = d + c * (value(k, x + (m * eps) * e) - value(k, x - (m * eps) * e))
            entries.append(d / eps)
        grads.append(xp.reshape(xp.stack(entries), tuple(x.shape)))
    return grads[0] if single else grads


def gradcheck(f: Callable[..., Any], inputs: Any, *, eps: float = 1e-3, order: int = 6,
              tol: float | None = None, floor: float = 1e-4, seed: int = 0) -> GradcheckReport:
    """Compare autodiff's gradient of ``f`` with :func:`numerical_grad`, entry by entry.

    ``f(*inputs)`` returns a Tensor; a non-scalar output is contracted with fixed random
    weights ``w`` (drawn from ``seed``), i.e. the check is on ``Σ w ⊙ f``, which also exercises
    the VJPs with a non-trivial output gradient. Per input ``k`` and entry ``i``::

        errᵢ = |aᵢ − nᵢ| / max(|aᵢ| + |nᵢ|, floor · Mₖ, δ / tol)

    with ``Mₖ = maxⱼ(|aⱼ| + |nⱼ|)`` over the same input and ``δ = 2 Σ|c_m| ε |f| / h`` the
    rounding noise of the stencil (``ε`` the dtype's machine epsilon). So an entry must agree
    to ``tol`` relative to itself; a tiny one relative to ``floor ×`` its input's largest entry,
    or to within the noise ``δ``. ``tol`` defaults to 1e-7 in float64 and 1e-2 otherwise.
    """
    xs = _tensors(inputs)
    fs = _scalarized(f, xs, seed)
    with enable_grad():
        leaves = [Tensor(x.data, requires_grad=True) for x in xs]
        out = fs(*leaves)
        analytic = [g.data for g in grad(out, leaves)]
    _check_shapes(analytic, xs)
    numeric = numerical_grad(fs, xs, eps=eps, order=order)
    limit = _tol(tol, xs)
    return _compare("gradient", analytic, numeric, limit, floor, _noise([out.data], order, eps) / limit)


def gradgradcheck(f: Callable[..., Any], inputs: Any, v: Any = None, rng: Any = None, *,
                  eps: float = 1e-3, order: int = 6, tol: float | None = None,
                  floor: float = 1e-4, seed: int = 0) -> GradcheckReport:
    """Check second derivatives: the Hessian-vector product ``H v`` from double backward
    (``create_graph=True``) against central differences of the gradient along ``v``::

        H v ≈ Σ_m c_m [∇f(x + m h v) − ∇f(x − m h v)] / h

    ``v`` (one array per input) defaults to a random direction from ``rng``; non-scalar
    outputs are contracted as in :func:`gradcheck`, and the comparison is the same, with the
    noise ``δ`` computed from the size of the gradient instead of ``|f|``.
    """
    xs = _tensors(inputs)
    fs = _scalarized(f, xs, seed)
    vs = _directions(xs, v, rng)

    def gradient(arrays: Sequence[Array], create_graph: bool = False) -> tuple[list[Tensor], list[Tensor]]:
        leaves = [Tensor(a, requires_grad=True) for a in arrays]
        return leaves, grad(fs(*leaves), leaves, create_graph=create_graph)

    with enable_grad():
        leaves, gs = gradient([x.data for x in xs], create_graph=True)
        along = None
        for g, d in zip(gs, vs):
            term = (g * Tensor(d)).sum()
            along = term if along is None else along + term
        analytic = [h.data for h in grad(along, leaves)]
        _check_shapes(analytic, xs)
        numeric = [0.0] * len(xs)
        for m, c in _stencil(order):
            plus = gradient([x.data + (m * eps) * d for x, d in zip(xs, vs)])[1]
            minus = gradient([x.data - (m * eps) * d for x, d in zip(xs, vs)])[1]
            numeric = [n + c * (p.data - q.data) for n, p, q in zip(numeric, plus, minus)]
    numeric = [n / eps for n in numeric]
    limit = _tol(tol, xs)
    noise = _noise([g.data for g in gs], order, eps)
    return _compare("Hessian-vector product", analytic, numeric, limit, floor, noise / limit)


def directional_check(f: Callable[..., Any], x: Any, v: Any = None, rng: Any = None, *,
                      eps: float = 1e-3, order: int = 6, tol: float | None = None,
                      floor: float = 1e-4, seed: int = 0) -> GradcheckReport:
    """Check the gradient along one direction, for inputs too large to check entry by entry.

    Compares ``∇f · v`` (one backward pass) with ``Σ_m c_m [f(x + m h v) − f(x − m h v)] / h``
    (``order`` evaluations). ``x`` is a Tensor or a list of them, ``v`` the same shapes or a
    random unit direction from ``rng``. The error is ``|a − n| / max(|a| + |n|,
    floor · ‖∇f‖ ‖v‖, δ / tol)``: ``‖∇f‖ ‖v‖`` bounds ``|∇f · v|``, so an unlucky ``v`` almost
    orthogonal to the gradient is not mistaken for a wrong gradient (``δ`` as in :func:`gradcheck`).
    """
    xs = _tensors(x)
    fs = _scalarized(f, xs, seed)
    vs = _directions(xs, v, rng)
    xp = B.xp
    with enable_grad():
        leaves = [Tensor(t.data, requires_grad=True) for t in xs]
        out = fs(*leaves)
        gs = [g.data for g in grad(out, leaves)]
    _check_shapes(gs, xs)
    analytic = _total(xp.sum(g * d) for g, d in zip(gs, vs))
    diff = 0.0
    with no_grad():
        for m, c in _stencil(order):
            plus = _scalar(fs(*[Tensor(t.data + (m * eps) * d) for t, d in zip(xs, vs)]))
            minus = _scalar(fs(*[Tensor(t.data - (m * eps) * d) for t, d in zip(xs, vs)]))
            diff = diff + c * (plus - minus)
    numeric = float(B.to_numpy(diff)) / eps
    scale = math.sqrt(_total(xp.sum(g * g) for g in gs) * _total(xp.sum(d * d) for d in vs))
    limit = _tol(tol, xs)
    noise = _noise([out.data], order, eps)
    error = abs(analytic - numeric) / max(abs(analytic) + abs(numeric), floor * scale, noise / limit, 1e-300)
    return GradcheckReport("directional derivative", error <= limit, error, limit, analytic, numeric)


# -- helpers ----------------------------------------------------------------------------------

def _stencil(order: int) -> tuple[tuple[int, float], ...]:
    if order not in _STENCILS:
        raise ValueError(f"order must be 2, 4 or 6 (the central-difference stencil), got {order!r}")
    return _STENCILS[order]


def _array(x: Any) -> Array:
    if isinstance(x, Tensor):
        return x.data
    return x if hasattr(x, "__array_namespace__") and hasattr(x, "shape") else B.asarray(x)


def _float_array(x: Any, k: int) -> Array:
    a = _array(x)
    if not B.xp.isdtype(a.dtype, "real floating"):
        raise TypeError(
            f"input {k} has dtype {a.dtype}: finite differences need floating-point inputs; "
            "convert it, e.g. x.astype(float64) (float64 gives the most accurate check)"
        )
    return a


def _tensors(inputs: Any) -> list[Tensor]:
    xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    return [Tensor(_float_array(x, k)) for k, x in enumerate(xs)]


def _like(original: Any, array: Array) -> Any:
    """Hand ``f`` the kind of value it was given: a Tensor or a raw array."""
    return Tensor(array) if isinstance(original, Tensor) else array


def _scalar(out: Any) -> Array:
    value = _array(out)
    if math.prod(value.shape) != 1:
        raise ValueError(
            f"f must return a single number, got shape {tuple(value.shape)}: reduce it, e.g. "
            "(f(x) * w).sum() with a fixed random w (gradcheck does this for you)"
        )
    return B.xp.reshape(value, ())


def _scalarized(f: Callable[..., Any], xs: Sequence[Tensor], seed: int) -> Callable[..., Tensor]:
    """``f`` itself when it returns one number, else ``Σ w ⊙ f`` with fixed random ``w``."""
    with no_grad():
        out = f(*xs)
    shape = tuple(_array(out).shape)
    if math.prod(shape) == 1:
        return f
    w = Tensor(B.asarray(B.rng(seed).standard_normal(shape), _array(out).dtype))
    return lambda *args: (f(*args) * w).sum()


def _directions(xs: Sequence[Tensor], v: Any, rng: Any) -> list[Array]:
    """``v`` as one array per input, or a random unit direction drawn on the host."""
    if v is not None:
        vs = [_array(d) for d in (v if isinstance(v, (list, tuple)) else [v])]
        for k, (x, d) in enumerate(zip(xs, vs)):
            if tuple(d.shape) != x.shape:
                raise ValueError(f"direction {k} has shape {tuple(d.shape)}, input {k} has {x.shape}")
        return vs
    gen = B.rng(rng)
    host = [gen.standard_normal(x.shape) for x in xs]
    norm = math.sqrt(sum(float(np.sum(d * d)) for d in host)) or 1.0
    return [B.asarray(d / norm, x.dtype) for d, x in zip(host, xs)]


def _total(values: Any) -> float:
    return sum(float(B.to_numpy(v)) for v in values)


def _tol(tol: float | None, xs: Sequence[Tensor]) -> float:
    if tol is not None:
        return tol
    return 1e-7 if all(x.dtype == B.xp.float64 for x in xs) else 1e-2


def _entry_errors(a: Array, b: Array, tiny: Any) -> Array:
    xp = B.xp
    size = xp.abs(a) + xp.abs(b)
    return xp.abs(a - b) / xp.maximum(size, tiny)


def _check_shapes(grads: Sequence[Array], xs: Sequence[Tensor]) -> None:
    for k, (g, x) in enumerate(zip(grads, xs)):
        if tuple(g.shape) != x.shape:
            raise ValueError(
                f"the gradient for input {k} has shape {tuple(g.shape)} but the input has shape "
                f"{x.shape}: a VJP returns the wrong shape (did it sum broadcast axes back?)"
            )


def _noise(values: Sequence[Array], order: int, eps: float) -> float:
    """Rounding noise of the stencil, ``2 Σ|c_m| ε max|F| / h``, for F of the size of ``values``."""
    xp = B.xp
    scale = max(float(B.to_numpy(xp.max(xp.abs(v)))) if math.prod(v.shape) else 0.0 for v in values)
    weight = 2 * sum(abs(c) for _, c in _stencil(order))
    return weight * float(xp.finfo(values[0].dtype).eps) * scale / eps


def _compare(kind: str, analytic: Sequence[Array], numeric: Sequence[Array], tol: float,
             floor: float, least: float) -> GradcheckReport:
    """Entry-wise relative errors per input (see :func:`gradcheck`), denominators at least
    ``floor ×`` the input's largest entry and ``least``; report the worst entry."""
    xp = B.xp
    worst: tuple[float, int, tuple[int, ...], float, float] | None = None
    for k, (a, n) in enumerate(zip(analytic, numeric)):
        if math.prod(a.shape) == 0:
            continue
        size = xp.abs(a) + xp.abs(n)
        tiny = xp.maximum(floor * xp.max(size), max(least, 1e-300))
        errs = xp.reshape(_entry_errors(a, n, tiny), (-1,))
        i = int(B.to_numpy(xp.argmax(errs)))
        err = float(B.to_numpy(errs[i]))
        if worst is None or err > worst[0] or math.isnan(err):
            index = tuple(int(j) for j in np.unravel_index(i, tuple(a.shape)))
            flat_a, flat_n = xp.reshape(a, (-1,)), xp.reshape(n, (-1,))
            worst = (err, k, index, float(B.to_numpy(flat_a[i])), float(B.to_numpy(flat_n[i])))
    if worst is None:
        return GradcheckReport(kind, True, 0.0, tol, 0.0, 0.0)
    err, k, index, a_i, n_i = worst
    return GradcheckReport(kind, bool(err <= tol), err, tol, a_i, n_i, k, index)
