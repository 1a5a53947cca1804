"""Closed forms from the theory of SGD, each checked against an experiment in 06.

* the standard error of a minibatch gradient, ``σ/√n``: quadrupling the batch only halves the noise;
* momentum's terminal velocity ``ε‖g‖/(1 − α)`` under a constant gradient;
* the second-order change of the loss along a gradient step, ``½ε²gᵀHg − εgᵀg``, and the step
  ``ε* = gᵀg / gᵀHg`` that minimizes it (ill-conditioning: the step grows the loss once ``ε > 2ε*``).

Functions of NumPy arrays (host-side analysis, not training code).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["standard_error", "terminal_velocity", "gradient_step_change", "best_step"]


def standard_error(per_example: Any, batch_size: int) -> np.ndarray:
    """Standard deviation of the mean of ``batch_size`` per-example gradients drawn at random.

    ``per_example`` (m, ...) holds the gradient of each of the m training examples; a minibatch
    samples from exactly these, so their spread (``ddof=0``) is the true σ of one draw, and the
    mean of n independent draws has standard deviation σ/√n, entry by entry.
    """
    g = np.asarray(per_example)
    if not (int(batch_size) == batch_size and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return g.std(axis=0) / np.sqrt(batch_size).astype(g.dtype)


def terminal_velocity(lr: float, grad: Any, momentum: float) -> float:
    """Speed ``ε‖g‖/(1 − α)`` that heavy-ball momentum reaches under a constant gradient g.

    The velocity obeys v ← αv − εg, so it tends to −εg/(1 − α): the geometric series
    1 + α + α² + … = 1/(1 − α). Needs 0 <= α < 1.
    """
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1) for the velocity to settle, got {momentum}")
    return float(lr * np.linalg.norm(np.ravel(grad)) / (1 - momentum))


def _g_and_h(grad: Any, hessian: Any) -> tuple[np.ndarray, np.ndarray]:
    g, h = np.asarray(grad), np.asarray(hessian)
    if g.ndim != 1 or h.shape != (g.size, g.size):
        raise ValueError(f"expected a gradient of shape (n,) and a Hessian of shape (n, n), got "
                         f"{g.shape} and {h.shape}; flatten the parameters into one vector first")
    return g, h


def gradient_step_change(grad: Any, hessian: Any, lr: float) -> float:
    """Second-order Taylor change of the loss for the step −lr·g: ``½ lr² gᵀHg − lr gᵀg``."""
    g, h = _g_and_h(grad, hessian)
    return float(0.5 * lr * lr * (g @ h @ g) - lr * (g @ g))


def best_step(grad: Any, hessian: Any) -> float:
    """The learning rate ``gᵀg / gᵀHg`` that minimizes :func:`gradient_step_change` (needs gᵀHg > 0)."""
    g, h = _g_and_h(grad, hessian)
    curvature = float(g @ h @ g)
    if not curvature > 0:
        raise ValueError(f"gᵀHg = {curvature:.3g} <= 0: the quadratic model has no minimum along −g "
                         "(negative curvature); any step lowers it, and a line search must decide")
    return float(g @ g) / curvature
