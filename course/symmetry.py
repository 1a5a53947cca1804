"""Weight-space symmetries: different weights, the same network function.

For one hidden layer ``f(x) = W₂ φ(W₁ x + b₁) + b₂`` (weights (out, in), PyTorch's layout):

* permuting the hidden units (rows of W₁ and b₁, columns of W₂ in the same order) changes
  nothing, so a layer of n units has n! equivalent orderings and m such layers (n!)^m;
* ReLU is positively homogeneous, relu(c z) = c relu(z) for c > 0: scale a unit's incoming
  weights and bias by c and its outgoing weights by 1/c;
* tanh is odd, tanh(−z) = −tanh(z): flip the signs of a unit's incoming weights, bias and
  outgoing weights together (c = −1 in the same formula, since 1/c = c).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["equivalent_weights"]


def equivalent_weights(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, perm: Any,
                       scale: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(w1', b1', w2')`` computing the same function: unit j of the result is old unit
    ``perm[j]`` with its incoming weights and bias times ``scale[perm[j]]`` and its outgoing
    weights divided by it (scale > 0 for ReLU, ±1 for tanh; b₂ is unchanged)."""
    perm, c = np.asarray(perm), np.asarray(scale, dtype=w1.dtype)
    n = w1.shape[0]
    if sorted(perm.tolist()) != list(range(n)) or c.shape != (n,):
        raise ValueError(f"perm must be a permutation of range({n}) and scale have shape ({n},), "
                         f"got {perm.tolist()} and shape {c.shape}")
    return (c[:, None] * w1)[perm], (c * b1)[perm], (w2 / c)[:, perm]
