"""Loss functions: Tensor in, Tensor out, with PyTorch's names, arguments and conventions.

``reduction`` is ``"mean"`` (default: average over all loss terms), ``"sum"`` or ``"none"``
(one loss per sample). Class labels are integers in ``[0, C)``; binary labels are stated per
function. Checks that read values (label ranges, probabilities, ±1 labels) run on host
backends only (``course.backend.on_host``): on a GPU each would wait for the device at every
call, so there the data are the caller's to check, once. Where the plain composition of primitives would be unstable or lose the gradient at
a point (softmax cross-entropy, the two binary cross-entropies) the loss is one fused
primitive whose VJP is written in primitives and array operators, so it can be differentiated
twice and, in an ordinary backward pass, runs on the raw arrays (``on_arrays=True``).
"""
from __future__ import annotations

from typing import Any

from . import backend as B
from . import ops
from .autodiff import Primitive, Tensor, defvjp, is_grad_enabled, primitive

__all__ = [
    "mse_loss", "cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "multi_margin_loss", "perceptron_loss",
]

Array = Any
_REDUCTIONS = ("mean", "sum", "none")


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Mean squared error ``ℓᵢ = (inputᵢ − targetᵢ)²``, reduced over all entries.

    The shapes must match: a silent broadcast of (N, 1) against (N,) would compare every
    prediction with every target.
    """
    _check_reduction(reduction)
    _check_same_shape(input, target, "mse_loss")
    diff = input - target
    return _reduce(diff * diff, reduction)


def cross_entropy(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Softmax cross-entropy from logits ``z`` (N, C) and integer labels ``y`` (N,)::

        ℓᵢ = −log softmax(zᵢ)_{yᵢ} = logsumexp(zᵢ) − z_{i,yᵢ}

    computed from ``log_softmax`` (the maximum is subtracted first), so logits of 1e4 are
    fine. One fused primitive; its VJP is ``ḡ (softmax(z) − onehot(y))``, divided by N for
    ``"mean"``. With :mod:`course.fast` one kernel computes the loss and that gradient in
    one pass; the result is the same up to rounding.
    """
    _check_reduction(reduction)
    fast = B.kernel("cross_entropy") if input.ndim == 2 and input.shape[0] else None
    labels = _labels(input, target, "cross_entropy", check_range=fast is None)
    if fast is None:
        return _cross_entropy(input, labels, reduction)
    return _cross_entropy_fused(input, labels, reduction, kernel=fast, saved={})


@primitive
def _cross_entropy(logits: Array, labels: Array, reduction: str) -> Array:
    xp = B.xp
    log_p = ops.log_softmax.forward(logits, axis=-1)
    nll = xp.sum(xp.where(_one_hot(labels, logits.shape[-1]), -log_p, 0.0), axis=-1)
    return _reduce_array(nll, reduction)


def _cross_entropy_vjp(g: Any, out: Any, logits: Any, labels: Array, reduction: str) -> Any:
    hot = _one_hot(labels, logits.shape[-1])
    diff = ops.softmax(logits, axis=-1) - B.xp.astype(hot, logits.dtype)
    return _spread(g, diff, reduction)


defvjp(_cross_entropy, _cross_entropy_vjp, on_arrays=True)


# The fast path of course.fast: one kernel computes the loss and the gradient (softmax − onehot,
# scaled for the reduction) together and checks the labels' range on the way; the VJP then
# only scales the saved gradient. Under create_graph=True it is the differentiable VJP above.

def _cross_entropy_fused_forward(logits: Array, labels: Array, reduction: str, *, kernel: Any,
                                 saved: dict[str, Array]) -> Array:
    result = kernel(logits, labels, reduction)
    if result is None:
        raise ValueError(_label_range_message("cross_entropy", logits.shape[-1]))
    loss, saved["grad"] = result
    return loss


def _cross_entropy_fused_vjp(g: Any, out: Any, logits: Any, labels: Array, reduction: str, *,
                             kernel: Any, saved: dict[str, Array]) -> Any:
    if is_grad_enabled():  # create_graph=True: the differentiable rule, on Tensors
        return _cross_entropy_vjp(g, out, logits, labels, reduction)
    scale = B.xp.reshape(g, (-1, 1)) if reduction == "none" else g
    return scale * saved["grad"]


_cross_entropy_fused = Primitive(_cross_entropy_fused_forward, "cross_entropy")
defvjp(_cross_entropy_fused, _cross_entropy_fused_vjp, on_arrays=True)


def binary_cross_entropy(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Binary cross-entropy of probabilities ``p`` in [0, 1] against targets ``y`` in [0, 1]::

        ℓᵢ = −[yᵢ log pᵢ + (1 − yᵢ) log(1 − pᵢ)]

    As in PyTorch each log is clamped at −100, so ``p = 0`` or ``1`` gives a finite loss, and
    the gradient is ``(p − y) / max(p (1 − p), 1e-12)``. Prefer
    :func:`binary_cross_entropy_with_logits` on raw scores: it is exact where ``p`` rounds to 0 or 1.
    """
    _check_reduction(reduction)
    _check_same_shape(input, target, "binary_cross_entropy")
    xp = B.xp
    if B.on_host() and bool(xp.any((input.data < 0) | (input.data > 1))):  # no GPU sync per call
        raise ValueError(
            "binary_cross_entropy: input must hold probabilities in [0, 1]; apply sigmoid first, "
            "or pass raw scores to binary_cross_entropy_with_logits"
        )
    return _reduce(_binary_cross_entropy(input, target), reduction)


def _clamped_log(x: Array) -> Array:
    """max(log x, −100), PyTorch's clamp; log is never evaluated at 0 (no warning, no −inf)."""
    xp = B.xp
    positive = x > 0
    return xp.where(positive, xp.maximum(xp.log(xp.where(positive, x, 1.0)), -100.0), -100.0)


@primitive
def _binary_cross_entropy(p: Array, y: Any) -> Array:
    return -y * _clamped_log(p) - (1 - y) * _clamped_log(1 - p)


defvjp(_binary_cross_entropy,
       lambda g, out, p, y: g * (p - y) / ops.clip(p * (1 - p), min=1e-12),
       lambda g, out, p, y: g * (ops.clip(ops.log(1 - p), min=-100.0) - ops.clip(ops.log(p), min=-100.0)),
       on_arrays=True)


def binary_cross_entropy_with_logits(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Binary cross-entropy of ``σ(x)`` for raw scores ``x`` and targets ``y`` in [0, 1]::

        ℓᵢ = −[yᵢ log σ(xᵢ) + (1 − yᵢ) log(1 − σ(xᵢ))] = max(xᵢ, 0) − xᵢ yᵢ + log(1 + e^{−|xᵢ|})

    The right-hand form never overflows; the fused VJP is ``ḡ (σ(x) − y)`` (and ``−ḡ x`` for y).
    """
    _check_reduction(reduction)
    _check_same_shape(input, target, "binary_cross_entropy_with_logits")
    return _reduce(_bce_with_logits(input, target), reduction)


@primitive
def _bce_with_logits(x: Array, y: Any) -> Array:
    xp = B.xp
    return xp.maximum(x, 0.0) - x * y + xp.log1p(xp.exp(-xp.abs(x)))


defvjp(_bce_with_logits,
       lambda g, out, x, y: g * (ops.sigmoid(x) - y),
       lambda g, out, x, y: -g * x, on_arrays=True)


def multi_margin_loss(input: Tensor, target: Any, p: int = 1, margin: float = 1.0,
                      reduction: str = "mean") -> Tensor:  # noqa: A002
    """Multi-class hinge loss for scores ``s`` (N, C) and integer labels ``y`` (N,)::

        ℓᵢ = (1/C) Σ_{j ≠ yᵢ} max(0, margin − s_{i,yᵢ} + s_{i,j})^p

    PyTorch's convention: the sum is divided by the number of classes C; ``p`` is 1 or 2.
    """
    _check_reduction(reduction)
    if p not in (1, 2):
        raise ValueError(f"multi_margin_loss: p must be 1 or 2, got {p!r}")
    labels = _labels(input, target, "multi_margin_loss")
    n_classes = input.shape[-1]
    hot = _one_hot(labels, n_classes)
    true_score = ops.where(hot, input, 0.0).sum(axis=-1, keepdims=True)
    hinge = ops.where(hot, 0.0, ops.relu(margin - true_score + input))
    if p == 2:
        hinge = hinge * hinge
    return _reduce(hinge.sum(axis=-1) / n_classes, reduction)


def perceptron_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    """The perceptron loss: zero when the example is classified right, else how wrong the score is.

    Binary (``input`` and ``target`` of the same shape, labels ±1)::

        ℓᵢ = max(0, −yᵢ sᵢ)

    Multi-class (``input`` (N, C) scores, ``target`` (N,) integer labels)::

        ℓᵢ = maxⱼ s_{i,j} − s_{i,yᵢ}      (≥ 0, and 0 exactly when the true class scores highest)
    """
    _check_reduction(reduction)
    t = _raw(target)
    if input.ndim == t.ndim + 1:
        labels = _labels(input, target, "perceptron_loss")
        true_score = ops.where(_one_hot(labels, input.shape[-1]), input, 0.0).sum(axis=-1)
        return _reduce(input.max(axis=-1) - true_score, reduction)
    _check_same_shape(input, target, "perceptron_loss")
    if B.on_host() and not bool(B.xp.all((t == 1) | (t == -1))):  # no GPU sync per call
        raise ValueError(
            "perceptron_loss: binary labels must be -1 or +1; map 0/1 labels with 2 * y - 1 "
            "(for C classes pass scores of shape (N, C) and integer labels of shape (N,))"
        )
    return _reduce(ops.relu(-(input * target)), reduction)


# -- helpers ----------------------------------------------------------------------------------

def _raw(x: Any) -> Array:
    if isinstance(x, Tensor):
        return x.data
    return x if hasattr(x, "__array_namespace__") and hasattr(x, "shape") else B.asarray(x)


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_same_shape(input: Tensor, target: Any, name: str) -> None:  # noqa: A002
    shape = tuple(_raw(target).shape)
    if shape != input.shape:
        raise ValueError(f"{name}: input has shape {input.shape} but target has shape {shape}; "
                         "they must match: reshape one of them, e.g. y.reshape(-1)")


def _label_range_message(name: str, n_classes: int) -> str:
    return f"{name}: labels must lie in [0, {n_classes}) for {n_classes} classes"


def _labels(input: Tensor, target: Any, name: str, check_range: bool = True) -> Array:  # noqa: A002
    """The integer labels as a raw array, checked against the (N, C) scores (their range
    too unless ``check_range`` is False: a kernel that checks it on the way)."""
    xp = B.xp
    labels = _raw(target)
    if input.ndim != 2 or tuple(labels.shape) != input.shape[:1]:
        raise ValueError(
            f"{name}: expected scores of shape (N, C) and integer labels of shape (N,), got "
            f"{input.shape} and {tuple(labels.shape)}"
        )
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(
            f"{name}: labels must be integer class indices, got dtype {labels.dtype}; convert "
            "with y.astype(int64) (one-hot targets: take their argmax)"
        )
    n_classes = input.shape[-1]
    if check_range and B.on_host() and bool(xp.any((labels < 0) | (labels >= n_classes))):  # no GPU sync
        raise ValueError(_label_range_message(name, n_classes))
    return labels


def _one_hot(labels: Array, n_classes: int) -> Array:
    """Boolean (N, C): True at each row's label. Standard ops only, on the labels' device."""
    return labels[:, None] == B.xp.arange(n_classes, dtype=labels.dtype, device=labels.device)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def _reduce_array(loss: Array, reduction: str) -> Array:
    if reduction == "mean":
        return B.xp.mean(loss)
    return B.xp.sum(loss) if reduction == "sum" else loss


def _spread(g: Any, per_sample: Any, reduction: str) -> Any:
    """Send the output gradient of a (N,)-loss reduced by ``reduction`` to its (N, C) terms."""
    if reduction == "none":
        return ops.reshape(g, (g.shape[0], 1)) * per_sample
    scale = g / per_sample.shape[0] if reduction == "mean" else g
    return scale * per_sample
