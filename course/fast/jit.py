"""Compiled fused kernels (Numba): batch norm forward and backward, softmax cross-entropy with
its gradient in one pass, and the SGD and Adam/AdamW steps in one read and write of each array.

Why Numba: NumPy runs one ufunc per operation, so a formula with k operations moves its
arrays through memory k times and allocates temporaries; a loop compiled to machine code reads
each input once per pass and keeps the intermediates in registers. Numba is a registry package
with wheels for every Python we support (3.11-3.13+) and for the pinned NumPy, so nothing has to
be compiled on the student's or CI's machine (a C extension would need a compiler there, or
wheels built and published per Python and platform by us).

Optional twice over: without Numba installed (``available`` is False) the NumPy kernels of
:mod:`course.fast.numpy` run instead, and they call in here only through :func:`use` for arrays
of at least ``MIN_SIZE`` elements (small work is faster in NumPy than Numba's import and
dispatch; a short process with small arrays never imports Numba). ``COURSE_JIT=0`` in the
environment turns the compiled path off. Each kernel is compiled on its first call, not at
import, and the machine code is cached on disk (``cache=True``), so later processes load it in
milliseconds instead of compiling. Loops are single-threaded (no ``prange``): the course pins
one thread per process.

The kernels compute in the arrays' own dtype (float32 or float64), except sums over the batch,
which are accumulated in float64; results agree with the readable code up to rounding.
"""
from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

Array = np.ndarray

available = importlib.util.find_spec("numba") is not None and os.environ.get("COURSE_JIT", "1") != "0"
MIN_SIZE = 1 << 12  # elements: below this NumPy's few ufunc calls cost no more than a kernel call

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_compiled: dict[str, Callable[..., Any]] = {}


def use(*arrays: Array, min_size: int | None = None) -> bool:
    """Whether the compiled kernels take these arrays: Numba present, at least ``min_size``
    elements (default ``MIN_SIZE``), one float dtype (float32/float64), C-contiguous (one
    machine-code version per dtype and rank)."""
    if not available or arrays[0].size < (MIN_SIZE if min_size is None else min_size):
        return False
    dtype = arrays[0].dtype
    return dtype in _FLOATS and all(a.dtype == dtype and a.flags.c_contiguous for a in arrays)


def _compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Numba's compiled dispatcher of ``fn``, cached on disk where a directory is writable."""
    import numba

    # error_model="numpy": a division by zero gives inf/nan as in NumPy instead of a Python
    # exception; without it the check in every iteration stops vectorization. fastmath
    # "contract" only lets a*b + c become one fused multiply-add (one rounding instead of two;
    # no reordering, NaN and inf keep their meaning): Adam's step on 3M floats takes 30% less.
    options = dict(nogil=True, error_model="numpy", fastmath={"contract"})
    # The disk cache is keyed by file and qualified name, and a cached kernel re-imports its
    # module by name: the package name in the key keeps a copy of the library loaded under
    # another name (the student-edition tests do this) from writing entries this one can't load.
    fn.__qualname__ = f"{__name__}.{fn.__name__}"
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # no writable cache directory anywhere: compile for this process only
        return numba.njit(**options)(fn)


def _jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled by Numba on its first call (Numba is imported then, not before)."""
    def call(*args: Any) -> Any:
        compiled = _compiled.get(fn.__name__)
        if compiled is None:
            compiled = _compiled[fn.__name__] = _compile(fn)
        return compiled(*args)

    call.__name__ = call.__qualname__ = fn.__name__
    call.__doc__ = fn.__doc__
    return call


# -- ReLU ---------------------------------------------------------------------------------

@_jit
def _relu(a, out, zero):  # pragma: no cover - compiled
    """out = max(a, 0), NaN kept (as NumPy's maximum); ``zero`` is 0 in a's dtype."""
    for i in range(a.size):
        x = a[i]
        out[i] = x if x > 0 or x != x else zero


@_jit
def _relu_vjp(g, a, out, zero):  # pragma: no cover - compiled
    """out = g·[a > 0], as the product: a NaN or inf in g gives NaN where the mask is 0."""
    for i in range(a.size):
        out[i] = g[i] if a[i] > 0 else g[i] * zero


def relu(a: Array) -> Array:
    """max(a, 0) of a C-contiguous float array, as a new array."""
    out = np.empty_like(a)
    _relu(a.reshape(-1), out.reshape(-1), a.dtype.type(0))
    return out


def relu_vjp(g: Array, a: Array) -> Array:
    """g·[a > 0] of two C-contiguous float arrays of one shape and dtype, as a new array."""
    out = np.empty_like(g)
    _relu_vjp(g.reshape(-1), a.reshape(-1), out.reshape(-1), g.dtype.type(0))
    return out


# -- batch norm -----------------------------------------------------------------------------

@_jit
def _bn_forward(x, gamma, beta, eps, y, mean, var):  # pragma: no cover - compiled
    """μ = Σx/N, σ² = Σ(x − μ)²/N (float64 sums), y = (x − μ)·γ/√(σ² + ε) + β into y, mean, var."""
    n, d = x.shape
    mu = np.zeros(d)
    for i in range(n):
        for j in range(d):
            mu[j] += x[i, j]
    mu /= n
    ss = np.zeros(d)
    for i in range(n):
        for j in range(d):
            t = x[i, j] - mu[j]
            ss[j] += t * t
    ss /= n
    scale = np.empty(d, x.dtype)
    mu_x = np.empty(d, x.dtype)
    for j in range(d):
        mean[j] = mu[j]
        var[j] = ss[j]
        mu_x[j] = mu[j]
        scale[j] = gamma[j] / math.sqrt(ss[j] + eps)
    for i in range(n):
        for j in range(d):
            y[i, j] = (x[i, j] - mu_x[j]) * scale[j] + beta[j]


@_jit
def _bn_backward(dy, x, gamma, mean, var, eps, dx, dgamma, dbeta):  # pragma: no cover - compiled
    """dβ = Σ dy, dγ = Σ dy·x̂, dx = (γ/σ)·(dy − dβ/N − x̂·dγ/N), x̂ = (x − μ)/σ recomputed."""
    n, d = x.shape
    sb = np.zeros(d)
    sg = np.zeros(d)
    for i in range(n):
        for j in range(d):
            g = dy[i, j]
            sb[j] += g
            sg[j] += g * (x[i, j] - mean[j])
    k = np.empty(d, x.dtype)  # γ/σ
    b = np.empty(d, x.dtype)  # dβ/N
    c = np.empty(d, x.dtype)  # dγ/(N σ), multiplies x − μ
    for j in range(d):
        inv = 1.0 / math.sqrt(var[j] + eps)
        dbeta[j] = sb[j]
        dgamma[j] = sg[j] * inv
        k[j] = gamma[j] * inv
        b[j] = sb[j] / n
        c[j] = sg[j] * inv * inv / n
    for i in range(n):
        for j in range(d):
            dx[i, j] = k[j] * (dy[i, j] - b[j] - (x[i, j] - mean[j]) * c[j])


def batchnorm_forward(x: Array, gamma: Array, beta: Array, eps: float) -> tuple[Array, Array, Array]:
    """Training-mode batch norm of a C-contiguous (N, D) array: ``(y, mean, var)``."""
    d = x.shape[1]
    y, mean, var = np.empty_like(x), np.empty(d, x.dtype), np.empty(d, x.dtype)
    _bn_forward(x, gamma, beta, x.dtype.type(eps), y, mean, var)
    return y, mean, var


def batchnorm_backward(dy: Array, x: Array, gamma: Array, mean: Array, var: Array,
                       eps: float) -> tuple[Array, Array, Array]:
    """The closed-form VJP of :func:`batchnorm_forward`: ``(dx, dgamma, dbeta)``."""
    d = x.shape[1]
    dx, dgamma, dbeta = np.empty_like(x), np.empty(d, x.dtype), np.empty(d, x.dtype)
    _bn_backward(dy, x, gamma, mean, var, x.dtype.type(eps), dx, dgamma, dbeta)
    return dx, dgamma, dbeta


# -- softmax cross-entropy ------------------------------------------------------------------

@_jit
def _cross_entropy(z, labels, scale, nll, dz):  # pragma: no cover - compiled
    """Per row: m = max z, s = Σ e^{z−m}, ℓ = log s + m − z_y, dz = scale·(e^{z−m}/s − onehot(y)).
    Returns Σℓ (float64), or −1 at the first label outside [0, C) (the outputs are then unset)."""
    n, c = z.shape
    total = 0.0
    for i in range(n):
        y = labels[i]
        if y < 0 or y >= c:
            return -1.0
        m = z[i, 0]
        for k in range(1, c):
            if z[i, k] > m:
                m = z[i, k]
        s = 0.0
        for k in range(c):
            e = math.exp(z[i, k] - m)
            dz[i, k] = e
            s += e
        r = scale / s
        for k in range(c):
            dz[i, k] *= r
        dz[i, y] -= scale
        nll[i] = math.log(s) + m - z[i, y]
        total += nll[i]
    return total


def cross_entropy(logits: Array, labels: Array, scale: float) -> tuple[Array, float, Array] | None:
    """``(per-sample losses (float64), their sum, scale·(softmax − onehot))`` of (N, C) logits,
    or None when a label lies outside [0, C)."""
    nll, dz = np.empty(logits.shape[0]), np.empty_like(logits)
    total = _cross_entropy(logits, np.ascontiguousarray(labels, np.int64), logits.dtype.type(scale), nll, dz)
    return None if total < 0 else (nll, total, dz)


# -- optimizer steps (flat 1-D arrays) ------------------------------------------------------
# A flat parameter buffer's gradients arrive as separate arrays, one per parameter, in order.
# The kernels take them as a tuple of _TUPLE arrays (padded with empty ones), so one call updates
# up to _TUPLE parameters without concatenating their gradients, and each kernel is compiled for
# one tuple type per dtype, whatever the number of parameters.

_TUPLE = 8


@_jit
def _sgd(p, gs, b, lr, wd, mu, keep, first, nesterov):  # pragma: no cover - compiled
    """d = g + λp; b ← d (first) or μb + (1−τ)d; d ← d + μb (Nesterov) or b; p ← p − lr·d.
    ``gs`` covers ``p`` in order; without momentum ``b`` is a 0-length array and d = g + λp."""
    momentum = b.size > 0
    start = 0
    for g in gs:  # per segment, views of p and b: the inner loop stays a vectorizable one
        n = g.size
        ps = p[start:start + n]
        bs = b[start:start + n] if momentum else b
        for i in range(n):
            d = g[i] + wd * ps[i]
            if momentum:
                bi = d if first else mu * bs[i] + keep * d
                bs[i] = bi
                d = d + mu * bi if nesterov else bi
            ps[i] -= lr * d
        start += n


@_jit
def _adam(p, gs, m, v, vmax, l2, decay, a1, a2, step, eps_c):  # pragma: no cover - compiled
    """g ← g + l2·p; p ← decay·p; m += a1·(g − m); v += a2·(g² − v) (a = 1 − β);
    p −= step·m/(√v' + eps_c), v' = max(vmax, v) when ``vmax`` is not empty (AMSGrad).
    ``gs`` covers ``p`` in order."""
    ams = vmax.size > 0
    start = 0
    for g in gs:
        n = g.size
        ps, ms, vs = p[start:start + n], m[start:start + n], v[start:start + n]
        xs = vmax[start:start + n] if ams else vmax
        for i in range(n):
            gi = g[i] + l2 * ps[i]
            pi = ps[i] * decay
            mi = ms[i] + a1 * (gi - ms[i])
            vi = vs[i] + a2 * (gi * gi - vs[i])
            ms[i] = mi
            vs[i] = vi
            if ams:
                if vi < xs[i]:
                    vi = xs[i]
                xs[i] = vi
            ps[i] = pi - step * mi / (math.sqrt(vi) + eps_c)
        start += n


def _chunks(p: Array, grads: list[Array], *state: Array) -> Any:
    """``(p piece, tuple of _TUPLE gradients, state pieces)`` covering ``p`` in order; an empty
    state array (no momentum, no AMSGrad) is passed on as it is."""
    start, pad = 0, p[:0]
    for k in range(0, len(grads), _TUPLE):
        chunk = grads[k:k + _TUPLE]
        stop = start + sum(g.size for g in chunk)
        pieces = tuple(a[start:stop] if a.size else a for a in state)
        yield p[start:stop], tuple(chunk) + (pad,) * (_TUPLE - len(chunk)), pieces
        start = stop


def sgd(p: Array, grads: list[Array], b: Array, *, lr: float, weight_decay: float, momentum: float,
        dampening: float, first: bool, nesterov: bool) -> None:
    """One SGD step in place on the 1-D ``p``, whose consecutive segments the 1-D C-contiguous
    ``grads`` of ``p``'s dtype are (``b`` the momentum buffer, or empty)."""
    s = p.dtype.type
    args = (s(lr), s(weight_decay), s(momentum), s(1 - dampening), first, nesterov)
    for piece, gs, (bp,) in _chunks(p, grads, b):
        _sgd(piece, gs, bp, *args)


def adam(p: Array, grads: list[Array], m: Array, v: Array, vmax: Array, *, l2: float, decay: float,
         betas: tuple[float, float], step: float, eps_c: float) -> None:
    """One Adam/AdamW step in place on the 1-D ``p`` (``grads`` as in :func:`sgd`; ``vmax``
    empty without AMSGrad)."""
    s = p.dtype.type
    args = (s(l2), s(decay), s(1 - betas[0]), s(1 - betas[1]), s(step), s(eps_c))
    for piece, gs, (mp, vp, xp) in _chunks(p, grads, m, v, vmax):
        _adam(piece, gs, mp, vp, xp, *args)
