"""Weight initializers: host NumPy arrays drawn from a seeded ``numpy.random.Generator``.

Every initializer has the signature ``f(shape, rng=None, *, <options>, dtype=np.float32)``
and returns a NumPy array of ``shape`` and ``dtype``; ``rng`` is a seed, a Generator or None
(fresh entropy). Values are drawn in float64 on the host and then cast, so one seed gives
the same weights (up to rounding) for every dtype and every backend; move them with
``course.backend.asarray``.

Conventions are PyTorch's (``torch.nn.init``): a ``Linear`` weight has shape
``(out_features, in_features)``, so ``fan_in = shape[1]``; for a convolution-like shape
``(out, in, k1, k2, ...)`` both fans are multiplied by the receptive field ``k1·k2·…``.

Why the scale matters: a layer ``z = W x`` with independent zero-mean weights gives
``Var(z) = fan_in · Var(w) · E[x²]``. Keeping that product at 1 layer after layer is what
each scheme below does, for a different activation (the gain) and pass (fan_in: forward
activations, fan_out: backward gradients, their average: Xavier's compromise).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import backend as B

__all__ = [
    "fans", "calculate_gain", "zeros", "constant", "normal", "uniform", "xavier_normal",
    "xavier_uniform", "kaiming_normal", "kaiming_uniform", "he_normal", "he_uniform",
    "lecun_normal", "lecun_uniform",
]

Shape = Sequence[int]
Seed = int | np.random.Generator | None


def fans(shape: Shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape = (out, in, *kernel)``.

    fan_in = in · ∏kernel, fan_out = out · ∏kernel; for a Linear weight (out_features,
    in_features) that is (in_features, out_features).
    """
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(
            f"fans() needs a weight shape with at least 2 dimensions (out, in, ...), got {shape}: "
            "fan-based initializers do not apply to 1-D tensors such as biases; use zeros, "
            "constant, normal or uniform for those"
        )
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


_GAINS = {"linear": 1.0, "identity": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0,
          "relu": math.sqrt(2.0), "selu": 0.75}


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain g that keeps activations' scale through ``nonlinearity`` (PyTorch's values).

    linear, identity, sigmoid: 1; tanh: 5/3; relu: √2; leaky_relu with negative slope a
    (``param``, default 0.01): √(2 / (1 + a²)); selu: 3/4. conv1d/2d/3d count as linear.
    """
    name = nonlinearity.lower()
    if name.startswith("conv"):
        name = "linear"
    if name == "leaky_relu":
        a = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + a * a))
    if name not in _GAINS:
        raise ValueError(
            f"unknown nonlinearity {nonlinearity!r}: choose one of "
            f"{sorted(_GAINS) + ['leaky_relu', 'conv1d', 'conv2d', 'conv3d']}"
        )
    return _GAINS[name]


def _cast(values: np.ndarray, dtype: Any) -> np.ndarray:
    return values.astype(np.dtype(dtype), copy=False)


def zeros(shape: Shape, rng: Seed = None, *, dtype: Any = np.float32) -> np.ndarray:
    """All zeros (``rng`` is accepted for a uniform signature and unused)."""
    return np.zeros(tuple(shape), dtype=np.dtype(dtype))


def constant(shape: Shape, rng: Seed = None, *, value: float, dtype: Any = np.float32) -> np.ndarray:
    """Every entry equal to ``value``. With such weights, units of a layer stay identical
    during training (same gradients, same updates): randomness is what breaks the symmetry."""
    return np.full(tuple(shape), value, dtype=np.dtype(dtype))


def normal(shape: Shape, rng: Seed = None, *, mean: float = 0.0, std: float = 1.0,
           dtype: Any = np.float32) -> np.ndarray:
    """w ~ N(mean, std²)."""
    return _cast(B.rng(rng).normal(mean, std, size=tuple(shape)), dtype)


def uniform(shape: Shape, rng: Seed = None, *, a: float = 0.0, b: float = 1.0,
            dtype: Any = np.float32) -> np.ndarray:
    """w ~ U[a, b); its variance is (b − a)² / 12."""
    return _cast(B.rng(rng).uniform(a, b, size=tuple(shape)), dtype)


def _symmetric_uniform(shape: Shape, rng: Seed, bound: float, dtype: Any) -> np.ndarray:
    return uniform(shape, rng, a=-bound, b=bound, dtype=dtype)


def xavier_normal(shape: Shape, rng: Seed = None, *, gain: float = 1.0,
                  dtype: Any = np.float32) -> np.ndarray:
    """Glorot/Xavier normal: w ~ N(0, σ²) with σ² = gain² · 2 / (fan_in + fan_out).

    The variance averages the forward condition 1/fan_in and the backward one 1/fan_out.
    (One slide of the notes writes 2/√(fan_in + fan_out); the square root is a slip.)
    """
    fan_in, fan_out = fans(shape)
    return normal(shape, rng, std=gain * math.sqrt(2.0 / (fan_in + fan_out)), dtype=dtype)


def xavier_uniform(shape: Shape, rng: Seed = None, *, gain: float = 1.0,
                   dtype: Any = np.float32) -> np.ndarray:
    """Glorot/Xavier uniform: w ~ U[−b, b] with b = gain · √(6 / (fan_in + fan_out)).

    Same variance as :func:`xavier_normal`, since U[−b, b] has variance b²/3.
    """
    fan_in, fan_out = fans(shape)
    return _symmetric_uniform(shape, rng, gain * math.sqrt(6.0 / (fan_in + fan_out)), dtype)


def _fan(shape: Shape, mode: str) -> int:
    """fan_in (forward pass) or fan_out (backward pass) of ``shape``, as ``mode`` asks."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' (forward pass) or 'fan_out' (backward pass), got {mode!r}")
    fan_in, fan_out = fans(shape)
    return fan_in if mode == "fan_in" else fan_out


def kaiming_normal(shape: Shape, rng: Seed = None, *, a: float = 0.0, mode: str = "fan_in",
                   nonlinearity: str = "leaky_relu", dtype: Any = np.float32) -> np.ndarray:
    """He/Kaiming normal: w ~ N(0, σ²) with σ² = gain² / fan_mode.

    For ReLU (the default: leaky_relu with slope a = 0, gain √2) σ² = 2 / fan_in: a ReLU
    zeroes half of a symmetric input, halving E[x²], and the factor 2 restores it.
    ``mode="fan_out"`` preserves the gradients' variance in the backward pass instead.
    """
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(shape, mode))
    return normal(shape, rng, std=std, dtype=dtype)


def kaiming_uniform(shape: Shape, rng: Seed = None, *, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", dtype: Any = np.float32) -> np.ndarray:
    """He/Kaiming uniform: w ~ U[−b, b] with b = gain · √(3 / fan_mode) (variance gain²/fan_mode).

    For ReLU, b = √(6 / fan_in). (A slide of the notes gives ±4/(fan_in + fan_out); that is
    not He's bound.) PyTorch's ``nn.Linear`` default is this with a = √5, i.e. b = 1/√fan_in.
    """
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(shape, mode))
    return _symmetric_uniform(shape, rng, bound, dtype)


he_normal = kaiming_normal
he_uniform = kaiming_uniform


def lecun_normal(shape: Shape, rng: Seed = None, *, dtype: Any = np.float32) -> np.ndarray:
    """LeCun normal: w ~ N(0, 1/fan_in), i.e. fan_in · Var(w) = 1: He normal with gain 1
    (linear, tanh-like, SELU layers)."""
    return kaiming_normal(shape, rng, nonlinearity="linear", dtype=dtype)


def lecun_uniform(shape: Shape, rng: Seed = None, *, dtype: Any = np.float32) -> np.ndarray:
    """LeCun uniform: w ~ U[−b, b] with b = √(3 / fan_in), so Var(w) = 1/fan_in: He uniform with gain 1."""
    return kaiming_uniform(shape, rng, nonlinearity="linear", dtype=dtype)
