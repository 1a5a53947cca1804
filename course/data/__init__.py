"""Data for the course: small synthetic problems, 2-D optimization landscapes, one real dataset.

Everything here lives on the host as NumPy arrays; training code moves each minibatch to the
current backend's device (see :func:`course.train.batches`). Every generator takes ``rng``
(a seed or a ``numpy.random.Generator``) and gives the same data for the same seed.

Real data: :func:`load_digits`, the 8x8 handwritten digits (1,797 images, 10 classes) of
E. Alpaydin and C. Kaynak (UCI, 1998, CC BY 4.0), shipped in ``digits.npz`` next to this file;
see ``LICENSE-digits.txt`` for the attribution and how the file was made.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from .. import backend as B

__all__ = [
    "spirals", "moons", "blobs", "Landscape", "quadratic", "rosenbrock", "saddle",
    "Standardizer", "split", "load_digits",
]

Seed = int | np.random.Generator | None


def _check_n(n: int, minimum: int, what: str) -> None:
    if not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {n!r}")


def _shuffled(X: np.ndarray, y: np.ndarray, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = gen.permutation(len(y))
    return X[order], y[order]


def _class_sizes(n: int, classes: int) -> list[int]:
    """``n`` samples over ``classes`` as evenly as possible (the first ``n % classes`` get one more)."""
    return [n // classes + (k < n % classes) for k in range(classes)]


# -- synthetic classification sets ------------------------------------------------------------

def spirals(n: int = 300, classes: int = 3, noise: float = 0.2, rng: Seed = None, *,
            dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms in 2-D, one arm per class: not linearly separable.

    Point i of arm k: radius r in [0, 1] (evenly spaced), angle θ = 2πk/classes + 4r + noise·ε,
    ε ~ N(0, 1); x = r (cos θ, sin θ). ``n`` is the total number of points, split evenly over
    the classes. Returns ``(X, y)``: X (n, 2) of ``dtype``, y (n,) int64 labels, shuffled.
    """
    _check_n(n, 1, "n")
    _check_n(classes, 2, "classes")
    gen = B.rng(rng)
    xs, ys = [], []
    for k, m in enumerate(_class_sizes(n, classes)):
        r = np.linspace(0.0, 1.0, m)
        theta = 2 * math.pi * k / classes + 4.0 * r + noise * gen.standard_normal(m)
        xs.append(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1))
        ys.append(np.full(m, k, dtype=np.int64))
    return _shuffled(np.concatenate(xs).astype(dtype), np.concatenate(ys), gen)


def moons(n: int = 200, noise: float = 0.1, rng: Seed = None, *,
          dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles in 2-D (two classes).

    Class 0: (cos t, sin t); class 1: (1 − cos t, 1/2 − sin t); t evenly spaced in [0, π];
    each point gets Gaussian noise of standard deviation ``noise``. Returns shuffled ``(X, y)``.
    """
    _check_n(n, 2, "n")
    gen = B.rng(rng)
    m0, m1 = _class_sizes(n, 2)
    t0, t1 = np.linspace(0, math.pi, m0), np.linspace(0, math.pi, m1)
    X = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1),
                        np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], 1)])
    X = X + noise * gen.standard_normal(X.shape)
    y = np.concatenate([np.zeros(m0, np.int64), np.ones(m1, np.int64)])
    return _shuffled(X.astype(dtype), y, gen)


def blobs(n: int = 300, centers: int | np.ndarray = 3, std: float = 1.0, rng: Seed = None, *,
          dim: int = 2, box: tuple[float, float] = (-5.0, 5.0),
          dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian clusters: x = c_k + std·ε, ε ~ N(0, I), label k.

    ``centers`` is a number of clusters (their centers drawn uniformly in ``box`` in each of
    ``dim`` coordinates) or a (k, d) array of centers. Returns shuffled ``(X, y)``.
    """
    gen = B.rng(rng)
    if isinstance(centers, (int, np.integer)):
        _check_n(centers, 1, "centers")
        c = gen.uniform(box[0], box[1], size=(int(centers), dim))
    else:
        c = np.asarray(centers, dtype=np.float64)
        if c.ndim != 2:
            raise ValueError(f"centers must be an int or a (k, d) array, got shape {c.shape}")
    _check_n(n, len(c), "n (at least one point per center)")
    sizes = _class_sizes(n, len(c))
    X = np.concatenate([ck + std * gen.standard_normal((m, c.shape[1])) for ck, m in zip(c, sizes)])
    y = np.concatenate([np.full(m, k, dtype=np.int64) for k, m in enumerate(sizes)])
    return _shuffled(X.astype(dtype), y, gen)


# -- 2-D optimization landscapes --------------------------------------------------------------

@dataclass(frozen=True)
class Landscape:
    """A 2-D function to minimize, with where to look at it.

    ``f(p)`` reads the coordinates as ``p[0], p[1]`` and uses only arithmetic, so the same
    callable takes a course Tensor of shape (2,) (differentiable: optimizers can run on it)
    and a NumPy array of shape (2, ...) (a whole grid at once, for contour plots).
    ``critical_point`` is where ∇f = 0 (the minimum; for :func:`saddle`, the saddle point).
    """

    name: str
    f: Callable[[Any], Any]
    critical_point: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    start: tuple[float, float]

    def __call__(self, p: Any) -> Any:
        return self.f(p)

    def grid(self, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(X, Y, Z)`` on an n×n grid over ``xlim`` × ``ylim`` (for ``contour``)."""
        X, Y = np.meshgrid(np.linspace(*self.xlim, n), np.linspace(*self.ylim, n))
        return X, Y, np.asarray(self.f(np.stack([X, Y])))


def quadratic(kappa: float = 100.0, angle: float = 0.0) -> Landscape:
    """Ill-conditioned quadratic f = ½(u² + κ v²), (u, v) = (x, y) rotated by ``angle`` radians.

    u = x cos α + y sin α, v = −x sin α + y cos α. The Hessian's eigenvalues are 1 and κ, so
    its condition number λmax/λmin is κ; plain gradient descent is stable for lr < 2/κ.
    """
    if kappa < 1:
        raise ValueError(f"kappa is the condition number λmax/λmin and must be >= 1, got {kappa}")
    c, s = math.cos(angle), math.sin(angle)

    def f(p: Any) -> Any:
        u = c * p[0] + s * p[1]
        v = -s * p[0] + c * p[1]
        return 0.5 * (u * u + kappa * v * v)

    return Landscape(f"quadratic (κ = {kappa:g})", f, (0.0, 0.0), (-2.0, 2.0), (-2.0, 2.0), (-1.5, 1.0))


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Landscape:
    """Rosenbrock's banana valley f = (a − x)² + b (y − x²)²; minimum 0 at (a, a²)."""

    def f(p: Any) -> Any:
        d = p[1] - p[0] * p[0]
        return (a - p[0]) * (a - p[0]) + b * d * d

    return Landscape("Rosenbrock", f, (a, a * a), (-2.0, 2.0), (-1.0, 3.0), (-1.5, 2.0))


def saddle() -> Landscape:
    """f = x² − y²: a minimum along x, a maximum along y, a saddle point at the origin.

    Gradient descent started near y = 0 creeps towards the origin before it escapes along y.
    """
    return Landscape("saddle", lambda p: p[0] * p[0] - p[1] * p[1], (0.0, 0.0),
                     (-2.0, 2.0), (-2.0, 2.0), (1.5, 1e-3))


# -- preprocessing ----------------------------------------------------------------------------

class Standardizer:
    """Per-feature standardization x' = (x − μ) / σ, with μ, σ fitted on the training set only.

    σ is the population standard deviation (ddof = 0); a feature that is constant in the
    training set gets σ = 1 (it is only centred), so no division by zero happens. Fit on the
    training data, then transform the validation and test data with the same μ and σ: using
    their own statistics would leak information about them into the model.
    """

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def fit(self, X: Any) -> Standardizer:
        """Compute μ and σ over the samples (axis 0)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 0 or len(X) == 0:
            raise ValueError("Standardizer.fit needs at least one sample (an array of shape (n, ...))")
        self.mean = X.mean(axis=0)
        std = X.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        return self

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.std is None:
            raise RuntimeError("this Standardizer is not fitted yet: call fit(X_train) first")
        return self.mean, self.std

    def transform(self, X: Any) -> np.ndarray:
        """(X − μ) / σ, keeping X's floating dtype (float32 stays float32)."""
        mean, std = self._fitted()
        X = np.asarray(X)
        if X.shape[1:] != mean.shape:
            raise ValueError(f"features of shape {X.shape[1:]} but the Standardizer was fitted on {mean.shape}")
        dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float64
        return ((X - mean) / std).astype(dtype)

    def fit_transform(self, X: Any) -> np.ndarray:
        return self.fit(X).transform(X)

    def inverse_transform(self, Z: Any) -> np.ndarray:
        """x = z σ + μ."""
        mean, std = self._fitted()
        Z = np.asarray(Z)
        return (Z * std + mean).astype(Z.dtype)


def split(X: Any, y: Any, val: float = 0.15, test: float = 0.15, *, rng: Seed = None,
          stratify: bool = False) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Random train / validation / test split: ``(X_tr, y_tr), (X_val, y_val), (X_te, y_te)``.

    ``val`` and ``test`` are fractions of the samples (the rest is training data), rounded to
    whole samples. With ``stratify=True`` each class (a value of ``y``) is split in these
    proportions separately, so the three parts keep the class balance. Same seed, same split.
    """
    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} samples but y has {len(y)}: they must match")
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val={val} and test={test} must be fractions in [0, 1) with val + test < 1")
    gen = B.rng(rng)
    perm = gen.permutation(len(y))
    groups = [perm[y[perm] == c] for c in np.unique(y)] if stratify else [perm]
    parts: list[list[np.ndarray]] = [[], [], []]
    for idx in groups:  # each group is already in random order
        n_test, n_val = round(len(idx) * test), round(len(idx) * val)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    rank = np.empty(len(y), dtype=np.int64)
    rank[perm] = np.arange(len(y))
    out = []
    for p in parts:  # merge the classes back into one random order
        idx = np.concatenate(p)
        idx = idx[np.argsort(rank[idx])]
        out.append((X[idx], y[idx]))
    return tuple(out)


# -- the real dataset ---------------------------------------------------------------------------

@functools.cache
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    try:
        with resources.files(__name__).joinpath("digits.npz").open("rb") as fh, np.load(fh) as d:
            images, labels = d["images"], d["labels"]
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            "course/data/digits.npz is missing: reinstall the package (pip install -e .) or "
            "restore the file from the repository"
        ) from exc
    images.flags.writeable = labels.flags.writeable = False  # the cached copy is shared
    return images, labels


def load_digits(flatten: bool = True, scale: bool = True,
                dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits: ``X`` (1797, 64) or (1797, 8, 8) and ``y`` (1797,) int64 in 0..9.

    Pixels are counts in 0..16; ``scale=True`` divides them by 16 into [0, 1]. Offline: read
    from the ``digits.npz`` shipped with the package (UCI data by E. Alpaydin and C. Kaynak,
    CC BY 4.0).
    """
    if scale and not np.issubdtype(np.dtype(dtype), np.floating):
        raise ValueError(f"scale=True gives fractions in [0, 1]: pass a floating dtype, not {dtype}, or scale=False")
    images, labels = _digits_raw()
    X = images.reshape(len(images), 64) if flatten else images
    X = X.astype(dtype)  # a fresh, writable copy
    if scale:
        X /= 16
    return X, labels.astype(np.int64)
