"""Batch normalization and dropout as pure functions: one signature per concept.

The array functions here take arrays of the current backend (``course.backend.xp``) and
return new arrays; :mod:`course.nn` wraps them in modules, and a student's version with the
same signature can be plugged into those modules (``BatchNorm1d(forward_fn=..., backward_fn=...)``).

Conventions (PyTorch's, where the lecture notes differ):

* batch norm normalizes a batch with its mean and *biased* variance (divide by N); the running
  variance is updated with the *unbiased* one (N/(N−1) times larger), and ``momentum`` is the
  weight of the NEW statistic (default 0.1), so ``running = (1 − m)·running + m·batch``;
* dropout's ``p`` is the probability of DROPPING a unit (the notes' p is the keep probability).

Speed: with the optional package :mod:`course.fast`, :func:`batchnorm_forward` and
:func:`batchnorm_backward` run a fused kernel (compiled with Numba when it is installed, else
NumPy with reused scratch buffers); the code below is the reference and the path everywhere
else (``course.backend.standard_only()`` forces it).
"""
from __future__ import annotations

from typing import Any

from . import backend as B
from .autodiff import Primitive, Tensor, defvjp, is_grad_enabled

__all__ = [
    "batchnorm_forward", "batchnorm_backward", "update_running_stats", "batchnorm_inference",
    "fold_batchnorm", "batch_norm", "batch_norm_composite", "dropout_mask", "dropout",
    "DROPOUT_MODES", "l2_penalty",
]

Array = Any


# -- batch normalization: the concept functions ---------------------------------------------

def _check_batch(n: int) -> None:
    if n < 2:
        raise ValueError(
            f"batch normalization in training mode needs at least 2 samples per batch, got {n}: "
            "the variance of one sample is 0 and the unbiased running variance divides by "
            "n − 1 = 0. Use a larger batch (or drop_last=True), or call model.eval() to "
            "normalize with the running statistics"
        )


def batchnorm_forward(x: Array, gamma: Array, beta: Array, eps: float = 1e-5) -> tuple[Array, Array, Array]:
    """Training-mode batch norm of ``x`` (N, D) over the batch axis: returns ``(y, mean, var)``.

    μ = (1/N) Σᵢ xᵢ,  σ² = (1/N) Σᵢ (xᵢ − μ)²  (biased),  x̂ = (x − μ) / √(σ² + ε),
    y = γ · x̂ + β.  ``mean`` and ``var`` (shape (D,)) are returned for the backward pass and
    the running statistics. Raises ValueError for N < 2.
    """
    _check_batch(x.shape[0])
    fast = B.kernel("batchnorm_forward")
    if fast is not None:
        return fast(x, gamma, beta, eps)
    xp = B.xp
    mean = xp.mean(x, axis=0)
    xc = x - mean
    var = xp.mean(xc * xc, axis=0)
    return gamma * (xc / xp.sqrt(var + eps)) + beta, mean, var


def batchnorm_backward(dy: Array, x: Array, gamma: Array, mean: Array, var: Array,
                       eps: float = 1e-5) -> tuple[Array, Array, Array]:
    """The closed-form VJP of :func:`batchnorm_forward`: returns ``(dx, dgamma, dbeta)``.

    With σ = √(σ² + ε) and x̂ = (x − μ)/σ, summing over the batch axis:
    dβ = Σ dy,  dγ = Σ dy·x̂,  dx = (γ / (N σ)) · (N·dy − Σ dy − x̂ · Σ dy·x̂).
    One pass instead of backpropagating through μ and σ² separately: the two sums carry
    the gradient that flows through the batch statistics.
    """
    fast = B.kernel("batchnorm_backward")
    if fast is not None:
        return fast(dy, x, gamma, mean, var, eps)
    xp = B.xp
    n = dy.shape[0]
    inv_std = 1 / xp.sqrt(var + eps)
    xhat = (x - mean) * inv_std
    dbeta = xp.sum(dy, axis=0)
    dgamma = xp.sum(dy * xhat, axis=0)
    dx = (gamma * inv_std / n) * (n * dy - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


def update_running_stats(running_mean: Array, running_var: Array, mean: Array, var: Array,
                         n: int, momentum: float = 0.1) -> tuple[Array, Array]:
    """Exponential moving averages of the batch statistics: returns ``(new_mean, new_var)``.

    running_mean ← (1 − m)·running_mean + m·μ,
    running_var  ← (1 − m)·running_var  + m·σ²·n/(n − 1)   (unbiased batch variance),
    with m = ``momentum`` the weight of the new batch (PyTorch's convention, default 0.1;
    some texts write the decay 1 − m instead). ``m = 1/k`` at the k-th batch gives the plain
    average over batches, the notes' E_B[μ_B] and n/(n − 1)·E_B[σ²_B].
    """
    _check_batch(n)
    return ((1 - momentum) * running_mean + momentum * mean,
            (1 - momentum) * running_var + momentum * (n / (n - 1)) * var)


def fold_batchnorm(gamma: Any, beta: Any, running_mean: Array, running_var: Array,
                   eps: float = 1e-5) -> tuple[Any, Any]:
    """Eval-mode batch norm as one affine map y = a·x + b: returns ``(a, b)``.

    a = γ / √(V + ε),  b = β − a·E  with E, V the running mean and variance (the inference
    form of the notes). ``gamma``/``beta`` may be arrays or Tensors (then a, b are Tensors
    and carry gradients to γ, β); the running statistics are arrays.
    """
    a = gamma * (1 / B.xp.sqrt(running_var + eps))
    return a, beta - a * running_mean


def batchnorm_inference(x: Any, gamma: Any, beta: Any, running_mean: Array, running_var: Array,
                        eps: float = 1e-5) -> Any:
    """Eval-mode batch norm: y = γ·(x − E)/√(V + ε) + β = a·x + b (see :func:`fold_batchnorm`).

    The running statistics replace the batch's, so each sample's output depends on that
    sample only. Works on arrays, and on Tensors for x, γ, β.
    """
    a, b = fold_batchnorm(gamma, beta, running_mean, running_var, eps)
    return x * a + b


# -- batch normalization as a graph node ------------------------------------------------------

def _batch_norm_forward(x, gamma, beta, *, eps, forward, backward, saved):
    y, saved["mean"], saved["var"] = forward(x, gamma, beta, eps)
    return y


def _batch_norm_vjp(argnum: int, g: Any, out: Any, x: Any, gamma: Any, beta: Any, *,
                    eps: float, forward: Any, backward: Any, saved: dict[str, Any]) -> Any:
    """One call of ``backward`` serves the VJPs of the same output gradient for every argument
    that needs one (``saved["needs"]``, noted by :func:`batch_norm`). Runs on raw arrays."""
    if is_grad_enabled():
        raise RuntimeError(
            "batch_norm's fused backward works on raw arrays and cannot be differentiated again "
            "(create_graph=True, hvp, hessian): use functional.batch_norm_composite, built from "
            "differentiable primitives, for higher derivatives"
        )
    pending = saved.get("pending")
    if pending is None or pending[0] is not g or argnum not in pending[1]:
        grads = backward(g, x, gamma, saved["mean"], saved["var"], eps)
        pending = saved["pending"] = (g, {i: grads[i] for i in {*saved["needs"], argnum}})
    result = pending[1].pop(argnum)
    if not pending[1]:  # all served: release the gradients and the output gradient
        del saved["pending"]
    return result


_batch_norm = Primitive(_batch_norm_forward, "batch_norm")
defvjp(_batch_norm, argnum=_batch_norm_vjp, on_arrays=True)


def batch_norm(x: Tensor, gamma: Any, beta: Any, eps: float = 1e-5, *, forward_fn: Any = None,
               backward_fn: Any = None) -> tuple[Tensor, Array, Array]:
    """Training-mode batch norm as ONE graph node (fused): returns ``(y, mean, var)``.

    The forward is :func:`batchnorm_forward` and the node's VJP is the closed form of
    :func:`batchnorm_backward` (or the ``forward_fn``/``backward_fn`` given, same signatures).
    ``mean`` and ``var`` are arrays (not graph nodes). The VJP runs on raw arrays, so this
    node is differentiable once but not twice; :func:`batch_norm_composite` is.
    """
    saved: dict[str, Any] = {"needs": [i for i, a in enumerate((x, gamma, beta))
                                       if isinstance(a, Tensor) and a.requires_grad]}
    y = _batch_norm(x, gamma, beta, eps=eps, forward=forward_fn or batchnorm_forward,
                    backward=backward_fn or batchnorm_backward, saved=saved)
    return y, saved["mean"], saved["var"]


def batch_norm_composite(x: Tensor, gamma: Any, beta: Any, eps: float = 1e-5) -> tuple[Tensor, Array, Array]:
    """The same batch norm written with differentiable primitives (mean, sub, mul, sqrt, ...).

    Autodiff then backpropagates through μ and σ² node by node: slower and more memory than
    :func:`batch_norm`, but twice differentiable, and the check of the closed form.
    Returns ``(y, mean, var)`` with ``mean``/``var`` as arrays.
    """
    x = x if isinstance(x, Tensor) else Tensor(x)
    _check_batch(x.shape[0])
    mean = x.mean(axis=0)
    xc = x - mean
    var = (xc * xc).mean(axis=0)
    y = xc / (var + eps).sqrt() * gamma + beta
    return y, mean.data, var.data


# -- dropout ----------------------------------------------------------------------------------

DROPOUT_MODES = ("inverted", "scale_at_test")


def _check_dropout(p: float, mode: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1] (the probability of DROPPING a unit), got {p}")
    if mode not in DROPOUT_MODES:
        raise ValueError(f"dropout mode must be one of {DROPOUT_MODES}, got {mode!r}")


def dropout_mask(u: Array, p: float, *, mode: str = "inverted") -> Array:
    """The multiplicative training mask from uniform samples ``u`` ~ U[0, 1) (same shape and dtype).

    A unit is kept when u ≥ p, i.e. with probability 1 − p (``p`` = DROP probability).
    ``"inverted"`` (PyTorch): kept units are scaled by 1/(1 − p) now, so E[mask] = 1 and the
    test-time network is unchanged. ``"scale_at_test"`` (the notes' original form): the mask
    is 0/1 and the test-time output is multiplied by the keep probability 1 − p instead.
    p = 1 drops everything (a zero mask).
    """
    _check_dropout(p, mode)
    keep = B.xp.astype(u >= p, u.dtype)
    return keep * (1 / (1 - p)) if mode == "inverted" and p < 1 else keep


def dropout(x: Any, p: float, u: Array | None = None, *, training: bool = True,
            mode: str = "inverted") -> Any:
    """Dropout of ``x`` (array or Tensor); ``u`` holds uniform samples shaped like x (training only).

    Training: y = x · dropout_mask(u, p, mode). Evaluation: y = x (inverted) or
    y = (1 − p)·x (scale_at_test). Both modes give E[y_train] = y_eval.
    """
    _check_dropout(p, mode)
    if not training:
        return x if mode == "inverted" else x * (1 - p)
    if p == 0:
        return x
    if u is None:
        raise ValueError("dropout in training mode needs u, uniform samples shaped like x "
                         "(e.g. course.backend.random(x.shape, x.dtype, generator))")
    return x * dropout_mask(u, p, mode=mode)


def l2_penalty(w: Array, lam: float) -> tuple[Array, Array]:
    """The notes' L2 penalty and its gradient: (λ‖W‖², 2λW), ‖·‖ the Frobenius norm.

    Convention: SGD's ``weight_decay`` λ' adds λ'·W to the gradient, the gradient of
    (λ'/2)‖W‖²; so the notes' λ corresponds to ``weight_decay = 2λ``.
    """
    return lam * B.xp.sum(w * w), (2 * lam) * w
