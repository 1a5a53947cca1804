"""Backpropagation for a plain MLP in matrix form: the δ recursion, written out by hand.

Layers ``l = 1..L`` with weights ``W⁽ˡ⁾`` of shape (out, in) and biases ``b⁽ˡ⁾`` (PyTorch's
``Linear`` layout), a batch ``x`` of shape (N, d) as rows, hidden nonlinearity φ and a linear
output layer::

    z⁽ˡ⁾ = v⁽ˡ⁻¹⁾ W⁽ˡ⁾ᵀ + b⁽ˡ⁾,   v⁽⁰⁾ = x,   v⁽ˡ⁾ = φ(z⁽ˡ⁾) for l < L,   f = z⁽ᴸ⁾

Backward, from the output error δ⁽ᴸ⁾ = ∂ℓ/∂f (one row per example, the loss summed over them)::

    ∇W⁽ˡ⁾ = δ⁽ˡ⁾ᵀ v⁽ˡ⁻¹⁾,   ∇b⁽ˡ⁾ = Σ_rows δ⁽ˡ⁾,   δ⁽ˡ⁻¹⁾ = φ'(z⁽ˡ⁻¹⁾) ⊙ (δ⁽ˡ⁾ W⁽ˡ⁾)

(the notes write one example as a column: ∇W⁽ˡ⁾ = δ⁽ˡ⁾ v⁽ˡ⁻¹⁾ᵀ, δ⁽ˡ⁾ = φ'(z⁽ˡ⁾) ⊙ W⁽ˡ⁺¹⁾ᵀ δ⁽ˡ⁺¹⁾).
NumPy arrays in and out; ``course.grad`` on the same network gives the same numbers.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["ACTIVATIONS", "mlp_forward", "mlp_backward"]

#: φ and φ' by name; relu'(0) = 0, as in PyTorch.
ACTIVATIONS = {
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype)),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
}


def _phi(activation: str) -> tuple[Any, Any]:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation]


def mlp_forward(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], x: np.ndarray,
                activation: str = "relu") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(zs, vs)``: the pre-activations z⁽¹⁾..z⁽ᴸ⁾ (the last is the output f) and the layer
    inputs v⁽⁰⁾ = x .. v⁽ᴸ⁻¹⁾, which :func:`mlp_backward` needs."""
    phi, _ = _phi(activation)
    if len(weights) != len(biases) or not weights:
        raise ValueError(f"need one bias per weight matrix (and at least one layer), got "
                         f"{len(weights)} weights and {len(biases)} biases")
    zs, vs = [], [np.asarray(x)]
    for i, (w, b) in enumerate(zip(weights, biases)):
        zs.append(vs[-1] @ w.T + b)
        if i < len(weights) - 1:
            vs.append(phi(zs[-1]))
    return zs, vs


def mlp_backward(weights: Sequence[np.ndarray], zs: Sequence[np.ndarray], vs: Sequence[np.ndarray],
                 delta: np.ndarray, activation: str = "relu") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(grad_weights, grad_biases)``, one per layer, from the output error ``delta`` (N, p)."""
    _, dphi = _phi(activation)
    grad_w: list[np.ndarray] = [None] * len(weights)  # type: ignore[list-item]
    grad_b: list[np.ndarray] = [None] * len(weights)  # type: ignore[list-item]
    for layer in range(len(weights) - 1, -1, -1):
        grad_w[layer] = delta.T @ vs[layer]
        grad_b[layer] = delta.sum(axis=0)
        if layer:
            delta = dphi(zs[layer - 1]) * (delta @ weights[layer])
    return grad_w, grad_b
