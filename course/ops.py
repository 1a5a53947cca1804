"""Primitive operations: a forward on raw arrays and its vector-Jacobian products, in one place.

Each primitive is defined by ``@primitive`` (the forward, written against the array-API
namespace ``B.xp``) and ``defvjp`` (for each argument, ``Jᵀ g`` as a function of the
output gradient ``g``, the output ``out`` and the arguments). VJPs use these same
primitives and the array operators, so they run on Tensors (``create_graph=True``: the
backward pass is recorded and can be differentiated again) and on plain arrays (the ordinary
backward pass: a primitive given no Tensor is just its forward), hence ``on_arrays=True``.
Where a VJP needs a mask from an argument's value it reads it with ``_raw``, which serves both.

Broadcasting: a binary operation's VJP sums the gradient back to each argument's shape
(:func:`unbroadcast`).
"""
from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

from . import backend as B
from .autodiff import Primitive, Tensor, defvjp, primitive

Axis = int | tuple[int, ...] | None


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axes)


def _kept_shape(shape: Sequence[int], axis: Axis) -> tuple[int, ...]:
    """``shape`` with the reduced axes kept as 1 (the shape of a keepdims reduction)."""
    red = _axes(axis, len(shape))
    return tuple(1 if i in red else n for i, n in enumerate(shape))


def unbroadcast(g: Any, shape: Sequence[int]) -> Any:
    """Sum ``g`` over the axes broadcasting added or stretched, so it has ``shape``."""
    if g.shape == shape:  # the usual case first: nothing was broadcast
        return g
    shape = tuple(shape)
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    return reshape(sum(g, axis=axes), shape) if axes else reshape(g, shape)


# -- arithmetic -------------------------------------------------------------------------------

@primitive
def add(a, b):
    return a + b


@primitive
def sub(a, b):
    return a - b


@primitive
def mul(a, b):
    return a * b


@primitive
def div(a, b):
    return a / b


@primitive
def neg(a):
    return -a


@primitive
def power(a, b):
    return a ** b


def _log_of(x: Any) -> Any:
    """log of a power's base: a tensor or array, or a constant (nan for a base <= 0, as for arrays)."""
    return log(x) if isinstance(x, Tensor) or B.is_array(x) else (math.log(x) if x > 0 else math.nan)


# add's shape test is unbroadcast's own, inlined: the most common node passes g on unchanged
defvjp(add, lambda g, out, a, b: g if g.shape == a.shape else unbroadcast(g, a.shape),
       lambda g, out, a, b: g if g.shape == b.shape else unbroadcast(g, b.shape), on_arrays=True)
defvjp(sub, lambda g, out, a, b: unbroadcast(g, a.shape), lambda g, out, a, b: unbroadcast(-g, b.shape),
       on_arrays=True)
defvjp(mul, lambda g, out, a, b: unbroadcast(g * b, a.shape), lambda g, out, a, b: unbroadcast(g * a, b.shape),
       on_arrays=True)
defvjp(div, lambda g, out, a, b: unbroadcast(g / b, a.shape),
       lambda g, out, a, b: unbroadcast(-g * out / b, b.shape), on_arrays=True)
defvjp(neg, lambda g, out, a: -g, on_arrays=True)
defvjp(power, lambda g, out, a, b: unbroadcast(g * b * a ** (b - 1), a.shape),
       lambda g, out, a, b: unbroadcast(g * out * _log_of(a), b.shape), on_arrays=True)


def _mT(x: Any) -> Any:
    return swapaxes(x, -1, -2)


@primitive
def matmul(a, b):
    return a @ b


def _matmul_vjp(argnum: int, g: Any, out: Any, a: Any, b: Any) -> Any:
    """Promote 1-D operands as matmul does (a: (1, n), b: (n, 1)), then ``ā = ḡ bᵀ``, ``b̄ = aᵀ ḡ``."""
    a2 = a if a.ndim > 1 else reshape(a, (1, a.shape[0]))
    b2 = b if b.ndim > 1 else reshape(b, (b.shape[0], 1))
    gshape = list(g.shape)
    if a.ndim == 1:
        gshape.insert(len(gshape) - (b.ndim > 1), 1)
    if b.ndim == 1:
        gshape.append(1)
    g2 = reshape(g, tuple(gshape))
    if argnum == 0:
        return reshape(unbroadcast(g2 @ _mT(b2), a2.shape), a.shape)
    return reshape(unbroadcast(_mT(a2) @ g2, b2.shape), b.shape)


defvjp(matmul, argnum=_matmul_vjp, on_arrays=True)


# -- elementwise functions ------------------------------------------------------------------

@primitive
def exp(a):
    return B.xp.exp(a)


@primitive
def log(a):
    return B.xp.log(a)


@primitive
def sqrt(a):
    return B.xp.sqrt(a)


@primitive
def tanh(a):
    return B.xp.tanh(a)


@primitive
def sigmoid(a):
    """σ(a) = 1 / (1 + e^{-a}), computed from e^{-|a|} so it never overflows."""
    xp = B.xp
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1 / (1 + e), e / (1 + e))


@primitive
def relu(a):
    fast = B.kernel("relu")  # course.fast: one compiled pass instead of NumPy's NaN-aware maximum
    return B.xp.maximum(a, 0.0) if fast is None else fast(a)


def _relu_vjp(g: Any, out: Any, a: Any) -> Any:
    """g·[a > 0]: a 0/1 mask multiplies (much faster than ``where``; a NaN or inf in g stays
    NaN where the mask is 0, as in the product)."""
    fast = None if isinstance(g, Tensor) else B.kernel("relu_vjp")
    if fast is not None:
        return fast(g, a)
    return g * B.xp.astype(_raw(a) > 0, g.dtype)


@primitive
def leaky_relu(a, negative_slope=0.01):
    return B.xp.where(a > 0, a, a * negative_slope)


@primitive
def abs(a):  # noqa: A001 - the standard's name
    return B.xp.abs(a)


@primitive
def clip(a, min=None, max=None):  # noqa: A002
    return B.xp.clip(a, min=min, max=max)


@primitive
def where(condition, x, y):
    """``x`` where ``condition`` holds, else ``y`` (``condition`` is a constant)."""
    return B.xp.where(condition, x, y)


def _inside(a: Any, lo: Any, hi: Any) -> Any:
    inside = a == a
    if lo is not None:
        inside = inside & (a >= lo)
    if hi is not None:
        inside = inside & (a <= hi)
    return inside


defvjp(exp, lambda g, out, a: g * out, on_arrays=True)
defvjp(log, lambda g, out, a: g / a, on_arrays=True)
defvjp(sqrt, lambda g, out, a: g / out * 0.5, on_arrays=True)
defvjp(tanh, lambda g, out, a: g * (1 - out * out), on_arrays=True)
defvjp(sigmoid, lambda g, out, a: g * out * (1 - out), on_arrays=True)
defvjp(relu, _relu_vjp, on_arrays=True)
defvjp(leaky_relu, lambda g, out, a, negative_slope=0.01: where(_raw(a) > 0, g, g * negative_slope),
       on_arrays=True)
defvjp(abs, lambda g, out, a: g * B.xp.sign(_raw(a)), on_arrays=True)
defvjp(clip, lambda g, out, a, min=None, max=None: where(_inside(_raw(a), min, max), g, 0.0), on_arrays=True)
defvjp(where, None,
       lambda g, out, c, x, y: unbroadcast(where(_raw(c), g, 0.0), x.shape),
       lambda g, out, c, x, y: unbroadcast(where(_raw(c), 0.0, g), y.shape), on_arrays=True)


@primitive
def astype(a, dtype):
    return B.xp.astype(a, dtype)


defvjp(astype, lambda g, out, a, dtype: astype(g, a.dtype), on_arrays=True)


# -- shapes ---------------------------------------------------------------------------------

@primitive
def reshape(a, shape):
    return B.xp.reshape(a, tuple(shape))


@primitive
def permute_dims(a, axes):
    return B.xp.permute_dims(a, tuple(axes))


@primitive
def broadcast_to(a, shape):
    return B.xp.broadcast_to(a, tuple(shape))


def swapaxes(a: Tensor, i: int, j: int) -> Tensor:
    axes = list(range(a.ndim))
    axes[i], axes[j] = axes[j], axes[i]
    return permute_dims(a, axes)


def _inverse(axes: Sequence[int]) -> tuple[int, ...]:
    inv = [0] * len(axes)
    for i, a in enumerate(axes):
        inv[a] = i
    return tuple(inv)


defvjp(reshape, lambda g, out, a, shape: reshape(g, a.shape), on_arrays=True)
defvjp(permute_dims, lambda g, out, a, axes: permute_dims(g, _inverse(axes)), on_arrays=True)
defvjp(broadcast_to, lambda g, out, a, shape: unbroadcast(g, a.shape), on_arrays=True)


def _key(key: Any) -> Any:
    """Raw index arrays; a basic key gets a trailing ``...`` (the standard wants every axis covered)."""
    key = tuple(_raw(k) for k in key) if isinstance(key, tuple) else _raw(key)
    if _is_basic(key):
        parts = key if isinstance(key, tuple) else (key,)
        return parts if Ellipsis in parts else parts + (Ellipsis,)
    return key


def _is_basic(key: Any) -> bool:
    parts = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (int, slice)) for k in parts)


@primitive
def getitem(a, key):
    return a[_key(key)]


@primitive
def index_add(g, key, shape):
    """Zeros of ``shape`` with ``g`` added at ``key`` (repeated indices add up): getitem's VJP."""
    xp = B.xp
    key = _key(key)
    target = xp.zeros(tuple(shape), dtype=g.dtype, device=g.device)
    if _is_basic(key):  # basic indices never repeat: assignment is enough
        parts = key if isinstance(key, tuple) else (key,)
        plain = tuple(k for k in parts if k is not None)
        target[plain] = xp.reshape(g, tuple(target[plain].shape))
        return target
    fast = B.kernel("scatter_add")
    if fast is not None:
        return fast(target, key, g)
    return _one_hot_scatter(target, key, g)


def _one_hot_scatter(target: Any, key: Any, g: Any) -> Any:
    """Standard-only scatter-add for integer-array keys on the leading axes: a one-hot matmul."""
    xp = B.xp
    parts = key if isinstance(key, tuple) else (key,)
    if len(parts) == 1 and parts[0].dtype == xp.bool:  # a mask: its True positions
        parts = xp.nonzero(parts[0])
    lead = target.shape[: len(parts)]
    flat = 0
    for idx, n in zip(parts, lead):  # row-major linear index over the indexed axes
        flat = flat * n + (idx if isinstance(idx, int) else xp.astype(idx, xp.int64)) % n
    size = math.prod(lead)
    rows = math.prod(flat.shape)
    hot = xp.astype(xp.reshape(flat, (rows, 1)) == xp.arange(size, device=g.device), g.dtype)
    trailing = math.prod(target.shape[len(parts):])  # explicit: -1 is ambiguous when rows == 0
    summed = xp.permute_dims(hot, (1, 0)) @ xp.reshape(g, (rows, trailing))
    return target + xp.reshape(summed, tuple(target.shape))


defvjp(getitem, lambda g, out, a, key: index_add(g, key, a.shape), on_arrays=True)
defvjp(index_add, lambda g, out, g0, key, shape: getitem(g, key), on_arrays=True)


@primitive
def take(a, indices, axis=0):
    """``a`` gathered at integer ``indices`` along ``axis`` (the standard's ``take``)."""
    return B.xp.take(a, _raw(indices), axis=axis)


@primitive
def take_add(g, indices, axis, shape):
    """Zeros of ``shape`` with ``g`` added at ``indices`` along ``axis`` (repeats add up): take's VJP.

    Its own VJP is ``take``, which the standard has; getitem with ``indices`` alone on a
    multi-axis array is not standard, so index_add cannot serve here.
    """
    swap = list(range(len(shape)))
    swap[0], swap[axis % len(shape)] = swap[axis % len(shape)], 0  # its own inverse
    moved = index_add.forward(B.xp.permute_dims(g, tuple(swap)), indices, tuple(shape[i] for i in swap))
    return B.xp.permute_dims(moved, tuple(swap))


defvjp(take, lambda g, out, a, indices, axis=0: take_add(g, _raw(indices), axis, a.shape), on_arrays=True)
defvjp(take_add, lambda g, out, g0, indices, axis, shape: take(g, indices, axis=axis), on_arrays=True)


def _concat_forward(*arrays, axis=0):
    return B.xp.concat(list(arrays), axis=axis)


def _stack_forward(*arrays, axis=0):
    return B.xp.stack(list(arrays), axis=axis)


_concat = Primitive(_concat_forward, "concat")
_stack = Primitive(_stack_forward, "stack")


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    return _concat(*tensors, axis=axis)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along a new axis."""
    return _stack(*tensors, axis=axis)


def _concat_vjp(i: int, g: Tensor, out: Tensor, *args: Tensor, axis: int = 0) -> Tensor:
    ax = axis % out.ndim
    start = 0
    for a in args[:i]:
        start += a.shape[ax]
    return getitem(g, (slice(None),) * ax + (slice(start, start + args[i].shape[ax]),))


def _stack_vjp(i: int, g: Tensor, out: Tensor, *args: Tensor, axis: int = 0) -> Tensor:
    return getitem(g, (slice(None),) * (axis % out.ndim) + (i,))


defvjp(_concat, argnum=_concat_vjp, on_arrays=True)
defvjp(_stack, argnum=_stack_vjp, on_arrays=True)


# -- reductions -----------------------------------------------------------------------------

@primitive
def sum(a, axis=None, keepdims=False):  # noqa: A001
    return B.xp.sum(a, axis=axis, keepdims=keepdims)


@primitive
def mean(a, axis=None, keepdims=False):
    return B.xp.mean(a, axis=axis, keepdims=keepdims)


@primitive
def max(a, axis=None, keepdims=False):  # noqa: A001
    return B.xp.max(a, axis=axis, keepdims=keepdims)


def _kept(g: Any, a: Any, axis: Axis, keepdims: bool) -> Any:
    """A reduction's output gradient with the reduced axes back as size 1: it broadcasts against ``a``."""
    return g if keepdims or axis is None else reshape(g, _kept_shape(a.shape, axis))


def _sum_vjp(g: Any, out: Any, a: Any, axis: Axis = None, keepdims: bool = False) -> Any:
    """The output gradient of a sum, copied to every summed position: shaped like ``a``.

    On Tensors a recorded broadcast; on arrays one fresh array filled by broadcasting, which in
    NumPy costs a fifth of a broadcast view and a leaf can keep without copying it.
    """
    if axis is not None and not keepdims:
        g = reshape(g, _kept_shape(a.shape, axis))
    if isinstance(g, Tensor):
        return broadcast_to(g, a.shape)
    spread = B.xp.empty_like(a, dtype=g.dtype)
    spread[...] = g
    return spread


def _count(shape: Sequence[int], axis: Axis) -> int:
    return math.prod(shape[i] for i in _axes(axis, len(shape)))


def _max_vjp(g: Tensor, out: Tensor, a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Ties share the gradient equally (the gradient of ``amax``)."""
    xp = B.xp
    top = _kept(_raw(out), a, axis, keepdims)
    hit = xp.astype(_raw(a) == top, a.dtype)
    return _kept(g, a, axis, keepdims) * (hit / xp.sum(hit, axis=_axes(axis, a.ndim), keepdims=True))


defvjp(sum, _sum_vjp, on_arrays=True)
defvjp(mean, lambda g, out, a, axis=None, keepdims=False: _sum_vjp(g / _count(a.shape, axis), out, a, axis, keepdims),
       on_arrays=True)
defvjp(max, _max_vjp, on_arrays=True)


@primitive
def logsumexp(a, axis=None, keepdims=False):
    """log Σ exp(a), stable: the maximum m is taken out first, m + log Σ exp(a − m)."""
    xp = B.xp
    m = xp.max(a, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0.0)
    out = xp.log(xp.sum(xp.exp(a - m), axis=axis, keepdims=True)) + m
    return out if keepdims else xp.reshape(out, tuple(n for i, n in enumerate(out.shape) if i not in _axes(axis, a.ndim)))


@primitive
def log_softmax(a, axis=-1):
    """a − logsumexp(a): log-probabilities, stable for large logits."""
    xp = B.xp
    m = xp.max(a, axis=axis, keepdims=True)
    shifted = a - xp.where(xp.isfinite(m), m, 0.0)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


@primitive
def softmax(a, axis=-1):
    """exp(a − logsumexp(a)): probabilities along ``axis``."""
    xp = B.xp
    m = xp.max(a, axis=axis, keepdims=True)
    e = xp.exp(a - xp.where(xp.isfinite(m), m, 0.0))
    return e / xp.sum(e, axis=axis, keepdims=True)


def _lse_vjp(g: Any, out: Any, a: Any, axis: Axis = None, keepdims: bool = False) -> Any:
    """ḡ · softmax(a) = ḡ · exp(a − logsumexp(a)), broadcast over the reduced axes."""
    return _kept(g, a, axis, keepdims) * exp(a - _kept(out, a, axis, keepdims))


defvjp(logsumexp, _lse_vjp, on_arrays=True)
defvjp(log_softmax, lambda g, out, a, axis=-1: g - exp(out) * sum(g, axis=axis, keepdims=True), on_arrays=True)
defvjp(softmax, lambda g, out, a, axis=-1: out * (g - sum(g * out, axis=axis, keepdims=True)), on_arrays=True)


# -- fused layers ---------------------------------------------------------------------------

@primitive
def linear(x, weight, bias=None):
    """y = x Wᵀ + b with W of shape (out_features, in_features), as in PyTorch."""
    y = x @ weight.mT
    if bias is not None:
        y += bias
    return y


def _flat2(t: Tensor) -> Tensor:
    return t if t.ndim == 2 else reshape(t, (-1, t.shape[-1]))


def _linear_weight_vjp(g, out, x, w, b=None):
    """∂L/∂W = gᵀx. For a W stored column-major (course.fast stores Linear weights so) it is
    written column-major too, as a new array: an optimizer then reads W and its gradient side
    by side, and the backward pass can hand it over without a copy."""
    g2, x2 = _flat2(g), _flat2(x)
    if isinstance(g2, Tensor):  # create_graph=True: recorded
        return _mT(g2) @ x2
    if B.name == "numpy" and B.column_major(w):
        return B.xp.matmul(g2.mT, x2, order="F")
    return g2.mT @ x2


def _linear_bias_vjp(g, out, x, w, b=None):
    """∂L/∂b = Σ g over every axis but the last (on arrays: one reduction, no recorded op)."""
    axes = tuple(range(g.ndim - 1))
    return sum(g, axis=axes) if isinstance(g, Tensor) else B.xp.sum(g, axis=axes)


defvjp(linear, lambda g, out, x, w, b=None: g @ w, _linear_weight_vjp, _linear_bias_vjp, on_arrays=True)


# -- Tensor operators and methods are these primitives --------------------------------------

def _bind(prim: Primitive) -> Any:
    def method(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return prim.apply((self, *args), kwargs)

    method.__name__ = method.__qualname__ = prim.name
    method.__doc__ = prim.forward.__doc__
    return method


def _operator(prim: Primitive, reflected: bool = False) -> Any:
    """``self ⊕ other`` (or ``other ⊕ self``) as a two-argument method: nothing to pack per call."""
    if reflected:
        def method(self: Tensor, other: Any) -> Tensor:
            return prim.apply((other, self))
    else:
        def method(self: Tensor, other: Any) -> Tensor:
            return prim.apply((self, other))

    return method


def _compare(op: Any) -> Any:
    def method(self: Tensor, other: Any) -> Tensor:
        return Tensor(op(self.data, _raw(other)))

    return method


def _reshape_method(self: Tensor, *shape: Any) -> Tensor:
    return reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)


def _transpose_method(self: Tensor, *axes: Any) -> Tensor:
    if not axes:
        axes = tuple(reversed(range(self.ndim)))
    elif len(axes) == 1 and not isinstance(axes[0], int):
        axes = tuple(axes[0])
    return permute_dims(self, axes)


for _name, _prim in {"__add__": add, "__sub__": sub, "__mul__": mul, "__truediv__": div, "__pow__": power,
                     "__matmul__": matmul}.items():
    setattr(Tensor, _name, _operator(_prim))
for _name, _prim in {
    "__neg__": neg, "__getitem__": getitem, "sum": sum, "mean": mean,
    "max": max, "exp": exp, "log": log, "sqrt": sqrt, "tanh": tanh, "sigmoid": sigmoid,
    "relu": relu, "abs": abs, "clip": clip, "astype": astype, "logsumexp": logsumexp,
    "log_softmax": log_softmax, "softmax": softmax, "broadcast_to": broadcast_to,
}.items():
    setattr(Tensor, _name, _bind(_prim))
for _name, _prim in {"__radd__": add, "__rsub__": sub, "__rmul__": mul, "__rtruediv__": div,
                     "__rpow__": power, "__rmatmul__": matmul}.items():
    setattr(Tensor, _name, _operator(_prim, reflected=True))
for _name, _op in {"__lt__": operator.lt, "__le__": operator.le, "__gt__": operator.gt,
                   "__ge__": operator.ge, "__eq__": operator.eq, "__ne__": operator.ne}.items():
    setattr(Tensor, _name, _compare(_op))
Tensor.__abs__ = _bind(abs)
Tensor.reshape = _reshape_method
Tensor.transpose = _transpose_method
Tensor.T = property(lambda self: permute_dims(self, tuple(reversed(range(self.ndim)))))
Tensor.mT = property(_mT)
