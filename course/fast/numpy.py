"""NumPy fast paths: in-place fused optimizer steps, batch norm with reused scratch buffers,
softmax cross-entropy with its gradient from one softmax, and ``np.add.at`` for scatter-add.
Each computes the same numbers as the readable code it stands in for (``course.optim``,
``course.functional``, ``course.losses``, ``course.ops``) up to rounding, which the tests check.

Large arrays go to the compiled kernels of :mod:`course.fast.jit` when Numba is installed
(``jit.use``); the NumPy code below runs otherwise. Fresh NumPy temporaries cost page faults
and cache misses on every call; these kernels write with ``out=`` into existing arrays, block
by block, so their working set stays in the cache.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .. import backend as B
from . import jit

State = dict[str, Any]
Array = Any


@B.register_kernel("scatter_add", "numpy")
def _scatter_add_numpy(target: Array, index: Any, values: Array) -> Array:
    np.add.at(target, index, values)
    return target



@B.register_kernel("linear_weight", "numpy")
def _linear_weight_numpy(w: Array) -> Array:
    """Linear's (out, in) weight stored column-major, i.e. Wᵀ contiguous: the forward x Wᵀ is then
    a plain GEMM, which OpenBLAS runs ~10% faster than one with a transposed operand; the
    input gradient g W becomes the transposed one, and the first layer never computes it."""
    return np.asfortranarray(w) if isinstance(w, np.ndarray) and w.ndim == 2 else w


@B.register_kernel("relu", "numpy")
def _relu_numpy(a: Array) -> Array:
    """max(a, 0): compiled for large float arrays, else :func:`course.ops.relu`'s ufunc."""
    if isinstance(a, np.ndarray) and jit.use(a):
        return jit.relu(a)
    return np.maximum(a, 0.0)


@B.register_kernel("relu_vjp", "numpy")
def _relu_vjp_numpy(g: Array, a: Array) -> Array:
    """g·[a > 0] (ReLU's VJP on arrays): one compiled pass for large float arrays."""
    if isinstance(g, np.ndarray) and isinstance(a, np.ndarray) and g.shape == a.shape and jit.use(g, a):
        return jit.relu_vjp(g, a)
    return g * (a > 0).astype(g.dtype)


_BLOCK_BYTES = 1 << 18  # 256 KiB per array: a block's working set stays in the L2 cache

Grad = Array | list  # one array shaped like the parameter, or the segments of a flat one


def _blocks(written: tuple[Array, ...], grad: Array) -> Iterable[tuple[Array, ...]]:
    """Matching 1-D blocks of ``written`` and ``grad`` (whole arrays when small or not contiguous).

    Several passes over one cache-sized block cost far less than the same passes over arrays
    too large for the cache, which is what makes the NumPy version beat per-operation kernels.
    """
    size = written[0].size
    step = _BLOCK_BYTES // written[0].itemsize
    if size <= step or not all(a.flags.c_contiguous for a in written):
        yield (*written, grad)
        return
    flat = [a.reshape(-1) for a in written] + [grad.reshape(-1)]
    for start in range(0, size, step):
        yield tuple(a[start:start + step] for a in flat)


_SMALL = 1 << 14  # elements: consecutive smaller gradients are joined (one call instead of many)


def _segments(written: tuple[Array, ...], grad: Grad) -> Iterable[tuple[Array, ...]]:
    """``(*written pieces, grad piece)`` covering the arrays once.

    ``grad`` is one array shaped like ``written[0]``, or a list of arrays: the consecutive
    segments of the flattened ``written`` arrays (:class:`course.fast.flat.FlatGroups` passes
    the per-parameter gradients of a flat buffer). A large gradient is used where it lies,
    never copied; runs of small ones are concatenated, so many tiny tensors cost one call.
    """
    if not isinstance(grad, list):
        yield (*written, grad)
        return
    flat = [a.reshape(-1) for a in written]
    start, run = 0, []
    for i, g in enumerate(grad):
        run.append(g.reshape(-1))
        if g.size < _SMALL and i + 1 < len(grad) and grad[i + 1].size < _SMALL:
            continue
        piece = run[0] if len(run) == 1 else np.concatenate(run)
        stop = start + piece.size
        yield (*(a[start:stop] for a in flat), piece)
        start, run = stop, []


def _compiled_step(written: tuple[Array, ...], grad: Grad) -> tuple[tuple[Array, ...], list[Array]] | None:
    """``written`` flattened and the gradient as 1-D contiguous segments of their dtype, for a
    compiled kernel (one call takes them all, no concatenation), or None: use NumPy."""
    if not jit.use(*written):
        return None
    dtype = written[0].dtype
    grads = grad if isinstance(grad, list) else [grad]
    return tuple(a.reshape(-1) for a in written), [np.ascontiguousarray(g.reshape(-1), dtype) for g in grads]


def _numpy_pieces(written: tuple[Array, ...], grad: Grad) -> Iterable[tuple[Array, ...]]:
    """The cache-sized blocks of every segment, for the ``out=`` ufunc versions."""
    for *w, g in _segments(written, grad):
        yield from _blocks(tuple(w), g)


def _init_adam_state(state: State, param: Array, amsgrad: bool, zeros_like: Callable) -> int:
    """Fill an empty Adam state with zero moments; advance and return the step count."""
    if "exp_avg" not in state:
        state["exp_avg"], state["exp_avg_sq"] = zeros_like(param), zeros_like(param)
    if amsgrad and "max_exp_avg_sq" not in state:
        state["max_exp_avg_sq"] = zeros_like(param)
    state["step"] = state.get("step", 0) + 1
    return state["step"]


@B.register_kernel("adam", "numpy")
def _adam_numpy(param: np.ndarray, grad: Grad, state: State, *, lr: float, betas: tuple[float, float],
                eps: float, weight_decay: float, amsgrad: bool, decoupled: bool) -> None:
    """:func:`adam_step` / :func:`adamw_step` in place: one compiled pass (:mod:`course.fast.jit`)
    or ``out=`` ufuncs block by block.

    Same formula, rearranged to need one scratch array: m += (1−β1)(g − m),
    v += (1−β2)(g² − v), p −= s·m/(√v + eps·c) with c = √(1−β2ᵗ), s = lr·c/(1−β1ᵗ).
    """
    beta1, beta2 = betas
    t = _init_adam_state(state, param, amsgrad, np.zeros_like)
    c = math.sqrt(1 - beta2 ** t)
    step, eps_c = lr * c / (1 - beta1 ** t), eps * c
    l2 = 0.0 if decoupled else weight_decay
    written = (param, state["exp_avg"], state["exp_avg_sq"]) + ((state["max_exp_avg_sq"],) if amsgrad else ())
    compiled = _compiled_step(written, grad)
    if compiled is not None:
        (p, m, v, *vmax), grads = compiled
        decay = 1 - lr * weight_decay if decoupled else 1.0
        jit.adam(p, grads, m, v, vmax[0] if amsgrad else p[:0], l2=l2, decay=decay, betas=betas,
                 step=step, eps_c=eps_c)
        return
    for p, m, v, *rest in _numpy_pieces(written, grad):
        g = rest[-1]
        tmp = np.empty_like(p)
        if l2:
            g = p * l2 + g
        elif decoupled and weight_decay:
            p *= 1 - lr * weight_decay
        np.subtract(g, m, out=tmp)
        tmp *= 1 - beta1
        m += tmp
        np.multiply(g, g, out=tmp)
        tmp -= v
        tmp *= 1 - beta2
        v += tmp
        if amsgrad:
            np.maximum(rest[0], v, out=rest[0])
        np.sqrt(rest[0] if amsgrad else v, out=tmp)
        tmp += eps_c
        np.divide(m, tmp, out=tmp)
        tmp *= step
        p -= tmp


@B.register_kernel("sgd", "numpy")
def _sgd_numpy(param: np.ndarray, grad: Grad, state: State, *, lr: float, momentum: float,
               dampening: float, nesterov: bool, weight_decay: float) -> None:
    """:func:`sgd_step` in place: one compiled pass, or ``out=`` ufuncs block by block."""
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0 (as in PyTorch)")
    first = bool(momentum) and "momentum_buffer" not in state
    if first:
        state["momentum_buffer"] = np.empty_like(param)
    written = (param, state["momentum_buffer"]) if momentum else (param,)
    compiled = _compiled_step(written, grad)
    if compiled is not None:
        (p, *b), grads = compiled
        jit.sgd(p, grads, b[0] if momentum else p[:0], lr=lr, weight_decay=weight_decay,
                momentum=momentum, dampening=dampening, first=first, nesterov=nesterov)
        return
    for p, *rest in _numpy_pieces(written, grad):
        g = rest[-1]
        if not (weight_decay or momentum):  # plain SGD: p −= lr·g, no copy of g
            p -= g * lr
            continue
        d = np.copy(g)  # an array even for 0-d parameters (ufuncs would return scalars)
        if weight_decay:
            d += weight_decay * p
        if momentum:
            b = rest[0]
            if first:
                b[...] = d
            else:
                b *= momentum
                b += (1 - dampening) * d if dampening else d
            if nesterov:
                d += momentum * b
            else:
                d[...] = b
        d *= lr
        p -= d



_scratch_arrays: dict[tuple[str, tuple[int, ...], Any], np.ndarray] = {}


def _scratch(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A private work array, reused by every call with this name, shape and dtype.

    Fresh N×D temporaries cost page faults on each call (the allocator returns freed
    megabytes to the OS); these never leave the kernels, so reusing them is safe (within
    one thread: the buffers are shared by all calls).
    """
    key = (name, shape, dtype)
    buf = _scratch_arrays.get(key)
    if buf is None:
        if len(_scratch_arrays) >= 32:  # many shapes seen: forget the old ones
            _scratch_arrays.clear()
        buf = _scratch_arrays[key] = np.empty(shape, dtype)
    return buf


@B.register_kernel("batchnorm_forward", "numpy")
def _batchnorm_forward_numpy(x, gamma, beta, eps):
    if x.ndim == 2 and jit.use(x, gamma, beta):
        return jit.batchnorm_forward(x, gamma, beta, eps)
    # x − μ is written into the output itself, then scaled and shifted in place.
    n = x.shape[0]
    mean = np.add.reduce(x, axis=0)
    mean /= n
    y = np.subtract(x, mean)
    var = np.einsum("ij,ij->j", y, y)  # Σ (x − μ)² without a squared temporary
    var /= n
    y *= gamma / np.sqrt(var + eps)
    y += beta
    return y, mean, var


@B.register_kernel("batchnorm_backward", "numpy")
def _batchnorm_backward_numpy(dy, x, gamma, mean, var, eps):
    if x.ndim == 2 and jit.use(x, dy, gamma, mean, var):
        return jit.batchnorm_backward(dy, x, gamma, mean, var, eps)
    # Six passes over the N×D arrays and no x − μ array: Σ dy·(x − μ) = Σ dy·x − μ·Σ dy and
    # dx = k·dy − x·(k c) + k·(μ c − dβ/N), with k = γ/σ and c = dγ/(N σ). When |μ| ≫ σ the
    # subtraction doubles the rounding error of the standard code, which float32 storage of
    # such an x already makes of the same order.
    n = dy.shape[0]
    inv_std = 1 / np.sqrt(var + eps)
    dbeta = np.add.reduce(dy, axis=0)
    dgamma = np.einsum("ij,ij->j", dy, x)
    dgamma -= mean * dbeta
    dgamma *= inv_std
    k = gamma * inv_std
    c = inv_std * dgamma / n
    dx = np.multiply(dy, k)
    dx -= np.multiply(x, k * c, out=_scratch("x_kc", x.shape, x.dtype))
    dx += k * (mean * c - dbeta / n)
    return dx, dgamma, dbeta


# The NumPy version is a dozen calls: the compiled kernel wins on far smaller logits than MIN_SIZE.
_CE_MIN_SIZE = 1 << 8


@B.register_kernel("cross_entropy", "numpy")
def _cross_entropy_numpy(logits: Array, labels: Array, reduction: str) -> tuple[Array, Array] | None:
    """Softmax cross-entropy of (N, C) logits and its gradient from one softmax:
    ``(loss, d loss/d logits)`` for ``reduction``, or None when a label is outside [0, C).

    ℓᵢ = log Σₖ e^{zᵢₖ − mᵢ} + mᵢ − z_{i,yᵢ} with mᵢ = maxₖ zᵢₖ; the gradient is
    s·(softmax(z) − onehot(y)), s = 1/N for "mean", else 1 (per sample for "none").
    """
    n, c = logits.shape  # n >= 1
    scale = 1 / n if reduction == "mean" else 1.0
    if jit.use(logits, min_size=min(jit.MIN_SIZE, _CE_MIN_SIZE)):
        result = jit.cross_entropy(logits, labels, scale)
        if result is None:
            return None
        nll, total, dz = result
    else:
        if int(labels.min()) < 0 or int(labels.max()) >= c:
            return None
        rows = np.arange(n)
        dz = np.subtract(logits, np.max(logits, axis=1, keepdims=True))
        zy = dz[rows, labels]
        np.exp(dz, out=dz)
        s = np.add.reduce(dz, axis=1, keepdims=True)
        dz *= scale / s
        dz[rows, labels] -= scale
        nll = np.log(s[:, 0]) - zy
        total = np.add.reduce(nll)
    loss = nll if reduction == "none" else total * (scale if reduction == "mean" else 1)
    return np.asarray(loss, logits.dtype), dz
