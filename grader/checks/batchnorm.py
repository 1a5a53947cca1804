"""Hidden checks of 04_batchnorm: forward, the backward pass twice, running statistics, folding.

Every function is compared with ``course.functional`` on fresh inputs, in float64 and then
float32, on (N, D) batches from N = 2 (where biased and unbiased variance differ by a factor 2)
to N = 64, with N = D in some cases (a statistic over the wrong axis then has the right shape).
Each feature has its own batch standard deviation σ, from 0.01 (where ε = 1e-5 changes x̂ by
about 5%, so eps outside the square root shows) to about 20, and its own mean: up to 100 σ
from 0 in float64, at most 3 σ in float32, so the one-pass variance E[x²] − E[x]² is accepted
wherever float32 can hold it. Some cases leave ``eps`` out (the default must be 1e-5).

Tolerances are relative (catalog ``[rtol, atol]``), with ``atol`` scaled by the size of the
terms an entry is computed from (for dx: the largest |γ·dy/σ| of its feature), so an answer
computed in another order (the staged graph, loops, float64 work cast back) passes, while every
known mistake misses by far more. A miss is compared with known mistakes evaluated on the same
inputs to name what went wrong. Arguments must come back unchanged.

While a check runs, the library's own versions refuse to run: the function the catalog entry
``replaces``, the NumPy kernels and other paths to the same numbers (batch_norm,
batch_norm_composite, batchnorm_inference) and, for the backward passes, course's autodiff.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np

from grader.checks import CheckFailed, check
from grader.checks import _core as C

SPEC = C.specs(__name__)

_FORWARD_ALSO = ("course.fast.numpy._batchnorm_forward_numpy", "course.functional.batch_norm",
                 "course.functional.batch_norm_composite", "course.functional.batchnorm_inference")
_BACKWARD_ALSO = ("course.fast.numpy._batchnorm_backward_numpy", "course.functional.batch_norm",
                  "course.functional.batch_norm_composite", "course.autodiff._backprop")
_FOLD_ALSO = ("course.functional.batchnorm_inference",)

#: (N, D): N = 2 is the smallest legal batch; N = D hides an axis mix-up from shape checks.
_SHAPES = ((2, 3), (3, 1), (4, 4), (7, 5), (16, 3), (6, 6), (64, 10))
#: eps per case, cycled; None: the argument is left out (the default 1e-5 must apply).
_EPS = (1e-5, 0.1, None, 1e-5, 1e-3, 1e-5, 0.1)
_DEFAULT_EPS = 1e-5


# -- plumbing ------------------------------------------------------------------------------------

@contextmanager
def _guarded(spec: Any, replaces: str, also: Sequence[str]) -> Iterator[Callable[..., Any]]:
    """Refuse ``replaces`` and ``also`` while the block runs; yield the reference of ``replaces``.

    The reference runs without the NumPy kernels (they are refused too).
    """
    from course import backend as B

    with ExitStack() as stack:
        reference = stack.enter_context(C.guard(dataclasses.replace(spec, replaces=replaces)))
        stack.enter_context(C.refusing(spec, also))
        stack.enter_context(B.standard_only())
        yield reference


@contextmanager
def _quiet() -> Iterator[None]:
    """No floating-point warnings (graded cells must write nothing to stderr)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _parts(out: Any, count: int, names: str, what: str) -> tuple[Any, ...]:
    if not (isinstance(out, (tuple, list)) and len(out) == count):
        raise CheckFailed(f"{what} returned {C.type_name(out)}"
                          f"{f' of length {len(out)}' if isinstance(out, (tuple, list)) else ''}; "
                          f"expected a tuple {names}.")
    return tuple(out)


def _close(actual: Any, expected: Any, *, what: str, tol: tuple[float, float], scale: Any,
           mistakes: Mapping[str, Any] | None = None) -> None:
    """C.compare entry by entry with ``|a − e| <= atol·scale + rtol·|e|``.

    ``scale`` (broadcast to ``expected``'s shape) is the size of the terms each entry is
    computed from, so rounding in another order of operations passes while a mistake does not.
    """
    expected = np.asarray(expected)
    arr = C.as_array(actual, what=what, shape=expected.shape, dtype=expected.dtype)
    s = np.maximum(np.broadcast_to(np.asarray(scale, dtype=np.float64), expected.shape), 1e-300)
    wrong = {name: np.asarray(v, dtype=np.float64) / s for name, v in (mistakes or {}).items()
             if np.shape(v) == expected.shape}
    with _quiet():
        C.compare(arr.astype(np.float64) / s, expected.astype(np.float64) / s, what=what, tol=tol,
                  mistakes=wrong, check_dtype=False)


def _fmt_eps(eps: float | None) -> str:
    return "" if eps is None else f", eps={eps:g}"


def _eps_args(eps: float | None) -> tuple[float, ...]:
    return () if eps is None else (eps,)


# -- inputs ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Batch:
    x: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    eps: float | None  # None: left out of the call
    dy: np.ndarray

    @property
    def e(self) -> float:
        return _DEFAULT_EPS if self.eps is None else self.eps


def _batches(key: str, dtype: str) -> Iterator[_Batch]:
    """One batch per shape; each feature's batch std is σ, its mean up to 100 σ (float64) or 3 σ
    (float32) away from 0 (see module doc)."""
    gen = C.rng(key, dtype)
    offset = 100.0 if dtype == "float64" else 3.0
    for (n, d), eps in zip(_SHAPES, _EPS):
        sigma = 10.0 ** gen.uniform(-2.0, 1.3, d)
        sigma[0] = 0.01  # ε matters here
        mu = sigma * gen.uniform(-offset, offset, d)
        z = gen.standard_normal((n, d))
        z = (z - z.mean(0)) / z.std(0)  # batch std exactly σ: the offset bound holds in the batch
        x = mu + sigma * z
        gamma = gen.normal(1.0, 0.7, d)
        beta = gen.normal(0.0, 1.0, d)
        dy = gen.standard_normal((n, d)) + gen.normal(0.0, 0.5, d)  # Σ dy far from 0
        yield _Batch(*(a.astype(dtype) for a in (x, gamma, beta)), eps, dy.astype(dtype))


# -- forward --------------------------------------------------------------------------------------

def _forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, mistake: str = ""
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch norm in float64, or with one named ``mistake``."""
    x, gamma, beta = (np.asarray(a, dtype=np.float64) for a in (x, gamma, beta))
    axis, keep = (1, True) if mistake == "axis" else (0, False)
    n = x.shape[axis]
    mean = x.mean(axis=axis, keepdims=keep)
    xc = x - mean
    var = (xc * xc).sum(axis=axis, keepdims=keep) / (n - 1 if mistake == "unbiased" else n)
    if mistake == "no centring in var":
        var = (x * x).mean(axis=0)
    denom = {"eps outside": np.sqrt(var) + eps, "no sqrt": var + eps}.get(mistake, np.sqrt(var + eps))
    xhat = xc / denom
    y = {"no affine": xhat, "swapped": beta * xhat + gamma}.get(mistake, gamma * xhat + beta)
    shown = {"std": np.sqrt(var), "var + eps": var + eps, "std + eps": np.sqrt(var + eps)}.get(mistake, var)
    return y, mean, shown


_FORWARD_MISTAKES = {
    "unbiased": ("the variance divides by N − 1 (unbiased, np.var(ddof=1)); batch norm normalizes "
                 "with the biased batch variance, Σ(x − μ)²/N"),
    "eps outside": ("ε is added outside the square root: x̂ = (x − μ)/√(σ² + ε), not "
                    "(x − μ)/(√σ² + ε)"),
    "no sqrt": ("no square root: x̂ = (x − μ)/(σ² + ε) divides by the variance (the slip in the "
                "notes' transcript); divide by the standard deviation √(σ² + ε)"),
    "axis": ("the statistics are taken over the features (axis 1) of each sample; batch norm "
             "averages over the batch (axis 0), one mean and variance per feature"),
    "no centring in var": "the variance is the mean of x², without subtracting the mean: Σ(x − μ)²/N",
    "no affine": "γ and β are not applied: y = γ·x̂ + β",
    "swapped": "γ and β are swapped: y = γ·x̂ + β",
}
_VAR_MISTAKES = {
    "std": "the standard deviation √σ² is returned instead of the variance σ²",
    "var + eps": ("σ² + ε is returned; return the batch variance σ² itself (ε belongs to the "
                  "normalization)"),
    "std + eps": "√(σ² + ε) is returned; return the batch variance σ²",
    "unbiased": "the variance returned divides by N − 1; return the biased batch variance (divide by N)",
}


def _known(fn: Callable[..., Any], names: Mapping[str, str], *args: Any, pick: int
           ) -> dict[str, np.ndarray]:
    """{message: output ``pick`` of ``fn`` with that mistake} on the same inputs."""
    out = {}
    with _quiet():
        for key, message in names.items():
            out[message] = np.asarray(fn(*args, mistake=key)[pick])
    return out


@check
def check_batchnorm_forward(batchnorm_forward):
    """y, mean and var of training-mode batch norm on seven batches per dtype (see module doc)."""
    spec = SPEC["batchnorm_forward"]
    with _guarded(spec, spec.replaces, _FORWARD_ALSO) as reference:
        for dtype in spec.dtypes:
            tol = spec.tol(dtype)
            for b in _batches("batchnorm_forward", dtype):
                what = (f"batchnorm_forward(x, gamma, beta{_fmt_eps(b.eps)}) with x of shape "
                        f"{b.x.shape}, {dtype}")
                with _quiet():
                    out = C.call(batchnorm_forward, b.x, b.gamma, b.beta, *_eps_args(b.eps), what=what)
                y, mean, var = _parts(out, 3, "(y, mean, var)", what)
                ey, emean, evar = reference(b.x, b.gamma, b.beta, b.e)
                x64 = b.x.astype(np.float64)
                xhat = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + b.e)
                mistakes = _known(_forward, _FORWARD_MISTAKES, b.x, b.gamma, b.beta, b.e, pick=0)
                if b.eps is None:
                    mistakes.update({f"the default eps is {e:g}; it must be 1e-5":
                                     _forward(b.x, b.gamma, b.beta, e)[0] for e in (0.0, 1e-8, 1e-3)})
                _close(y, ey, what=f"y from {what}", tol=tol,
                       scale=np.abs(b.gamma) * np.max(np.abs(xhat), axis=0) + np.abs(b.beta),
                       mistakes=mistakes)
                _close(mean, emean, what=f"mean from {what}", tol=tol, scale=np.max(np.abs(x64), axis=0),
                       mistakes={"mean over the features (axis 1); batch norm averages over the "
                                 "batch (axis 0)": x64.mean(1)})
                _close(var, evar, what=f"var from {what}", tol=tol,
                       scale=x64.var(0) + x64.mean(0) ** 2,
                       mistakes=_known(_forward, _VAR_MISTAKES, b.x, b.gamma, b.beta, b.e, pick=2))


# -- backward -------------------------------------------------------------------------------------

def _backward(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, mean: np.ndarray, var: np.ndarray,
              eps: float, mistake: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The closed-form VJP in float64, or with one named ``mistake``."""
    dy, x, gamma, mean, var = (np.asarray(a, dtype=np.float64) for a in (dy, x, gamma, mean, var))
    n = dy.shape[0]
    std = {"eps ignored": np.sqrt(var), "eps outside": np.sqrt(var) + eps,
           "no sqrt": var + eps}.get(mistake, np.sqrt(var + eps))
    xhat = (x - mean) / std
    sum_dy = dy.sum(0)
    sum_dy_xhat = (dy * xhat).sum(0)
    g = 1.0 if mistake == "no gamma" else gamma
    if mistake == "axis":
        sum_dy, sum_dy_xhat = dy.sum(1, keepdims=True), (dy * xhat).sum(1, keepdims=True)
        n = dy.shape[1]
    terms = {
        "no mean term": n * dy - xhat * sum_dy_xhat,
        "no xhat term": n * dy - sum_dy,
        "constant stats": n * dy,
        "plus": n * dy + sum_dy + xhat * sum_dy_xhat,
        "unbiased": n * dy - sum_dy - xhat * sum_dy_xhat * n / (n - 1),
    }
    dx = g / (n * std) * terms.get(mistake, n * dy - sum_dy - xhat * sum_dy_xhat)
    dgamma = {"dgamma sum dy": dy.sum(0),
              "dgamma mean": (dy * xhat).mean(0)}.get(mistake, (dy * xhat).sum(0))
    dbeta = dy.mean(0) if mistake == "dbeta mean" else dy.sum(0)
    return dx, dgamma, dbeta


_DX_MISTAKES = {
    "no mean term": ("the term −Σdy (the gradient through the batch mean μ) is missing: "
                     "dx = γ/(Nσ̂)·(N·dy − Σdy − x̂·Σ(dy·x̂))"),
    "no xhat term": ("the term −x̂·Σ(dy·x̂) (the gradient through the batch variance σ²) is missing: "
                     "dx = γ/(Nσ̂)·(N·dy − Σdy − x̂·Σ(dy·x̂))"),
    "constant stats": ("dx = γ·dy/σ̂ treats μ and σ² as constants; they depend on every x_i, which adds "
                       "the terms −Σdy and −x̂·Σ(dy·x̂)"),
    "plus": "the two batch-statistics terms have the wrong sign (they are subtracted)",
    "no gamma": "the factor γ is missing from dx (dx̂ = γ·dy)",
    "eps ignored": "ε is left out of σ̂ = √(σ² + ε)",
    "eps outside": "ε is added outside the square root: σ̂ = √(σ² + ε)",
    "no sqrt": "σ² + ε is used where its square root σ̂ = √(σ² + ε) belongs",
    "axis": "the sums run over the features (axis 1); they run over the batch (axis 0)",
    "unbiased": "an N − 1 crept into the variance term; the batch variance divides by N",
}
_DGAMMA_MISTAKES = {
    "dgamma sum dy": "dγ = Σ dy forgets x̂: y = γ·x̂ + β gives dγ = Σ dy·x̂",
    "dgamma mean": "dγ averages over the batch; it is the sum Σ dy·x̂",
    "eps ignored": "ε is left out of σ̂ = √(σ² + ε) in x̂",
    "no sqrt": "x̂ divides by σ² + ε instead of √(σ² + ε)",
}
_DBETA_MISTAKES = {
    "dbeta mean": "dβ is the mean of dy over the batch; it is the sum Σ dy (β is added to every row)",
}


def _check_backward(fn: Callable[..., Any], name: str, spec: Any) -> None:
    with _guarded(spec, "course.functional.batchnorm_backward", _BACKWARD_ALSO) as reference:
        for dtype in spec.dtypes:
            tol = spec.tol(dtype)
            for b in _batches(name, dtype):
                x64 = b.x.astype(np.float64)
                mean, var = x64.mean(0).astype(dtype), x64.var(0).astype(dtype)
                what = (f"{name}(dy, x, gamma, mean, var{_fmt_eps(b.eps)}) with x of shape "
                        f"{b.x.shape}, {dtype}")
                with _quiet():
                    out = C.call(fn, b.dy, b.x, b.gamma, mean, var, *_eps_args(b.eps), what=what)
                dx, dgamma, dbeta = _parts(out, 3, "(dx, dgamma, dbeta)", what)
                edx, edgamma, edbeta = reference(b.dy, b.x, b.gamma, mean, var, b.e)
                args = (b.dy, b.x, b.gamma, mean, var, b.e)
                dy64 = b.dy.astype(np.float64)
                xhat = (x64 - mean.astype(np.float64)) / np.sqrt(var.astype(np.float64) + b.e)
                mistakes = _known(_backward, _DX_MISTAKES, *args, pick=0)
                if b.eps is None:
                    mistakes.update({f"the default eps is {e:g}; it must be 1e-5": _backward(*args[:-1], e)[0]
                                     for e in (0.0, 1e-8, 1e-3)})
                _close(dx, edx, what=f"dx from {what}", tol=tol,
                       scale=np.max(np.abs(b.gamma * dy64 / np.sqrt(var.astype(np.float64) + b.e)), axis=0),
                       mistakes=mistakes)
                _close(dgamma, edgamma, what=f"dgamma from {what}", tol=tol,
                       scale=np.abs(dy64 * xhat).sum(0),
                       mistakes=_known(_backward, _DGAMMA_MISTAKES, *args, pick=1))
                _close(dbeta, edbeta, what=f"dbeta from {what}", tol=tol,
                       scale=np.abs(dy64).sum(0),
                       mistakes=_known(_backward, _DBETA_MISTAKES, *args, pick=2))


@check
def check_batchnorm_backward_graph(batchnorm_backward_graph):
    """The staged backward pass: the same numbers as the closed form, on the same batches."""
    _check_backward(batchnorm_backward_graph, "batchnorm_backward_graph", SPEC["batchnorm_backward_graph"])


@check
def check_batchnorm_backward(batchnorm_backward):
    """The closed-form backward pass (dx, dgamma, dbeta)."""
    _check_backward(batchnorm_backward, "batchnorm_backward", SPEC["batchnorm_backward"])


# -- running statistics -----------------------------------------------------------------------------

def _running(rm: np.ndarray, rv: np.ndarray, mean: np.ndarray, var: np.ndarray, n: int,
             momentum: float = 0.1, mistake: str = "") -> tuple[np.ndarray, np.ndarray]:
    rm, rv, mean, var = (np.asarray(a, dtype=np.float64) for a in (rm, rv, mean, var))
    m = 1 - momentum if mistake.startswith("keras") else momentum
    factor = {"biased": 1.0, "keras biased": 1.0, "inverted": (n - 1) / n}.get(mistake, n / (n - 1))
    new_mean = (1 - m) * rm + m * mean
    if mistake == "all corrected":
        return new_mean, ((1 - m) * rv + m * var) * n / (n - 1)
    return new_mean, (1 - m) * rv + m * factor * var


_RUNNING_MISTAKES = {
    "keras": ("momentum is used as the weight of the OLD statistic (Keras' convention, "
              "running = m·running + (1 − m)·batch); here, as in PyTorch, it is the weight of the "
              "new batch: running = (1 − m)·running + m·batch"),
    "keras biased": ("momentum weighs the old statistic (Keras' convention) and the batch variance "
                     "is not made unbiased"),
    "biased": ("the running variance averages the biased batch variance; use the unbiased one, "
               "σ²·n/(n − 1) (the notes' V[x] = m/(m − 1)·E[σ²_B])"),
    "inverted": "the correction is upside down: the unbiased variance is σ²·n/(n − 1), not σ²·(n − 1)/n",
    "all corrected": ("n/(n − 1) multiplies the whole running variance; it belongs to the new "
                      "batch's variance only"),
}

#: (momentum or None for the default, batch sizes of the steps). The default comes last: an
#: answer that reaches it passed the explicit momentum=0.1, so a miss there is the default's.
_RUNNING_CASES = ((0.1, (8, 2, 100, 7)), (0.3, (4, 16, 2, 9)), (1.0, (3, 50)),
                  (0.05, (2, 2, 10, 64)), (0.0, (6, 2)), (None, (2, 5, 32, 3)))


@check
def check_update_running_stats(update_running_stats):
    """Several consecutive updates per case, each judged on the reference's running statistics."""
    spec = SPEC["update_running_stats"]
    with _guarded(spec, spec.replaces, ()) as reference:
        for dtype in spec.dtypes:
            tol = spec.tol(dtype)
            gen = C.rng("update_running_stats", dtype)
            for k, (momentum, sizes) in enumerate(_RUNNING_CASES):
                d = (1, 4, 7, 3, 5, 12)[k]
                rm, rv = np.zeros(d, dtype), np.ones(d, dtype)
                hyper = {} if momentum is None else {"momentum": momentum}
                shown = "" if momentum is None else f", momentum={momentum}"
                for step, n in enumerate(sizes, start=1):
                    mean = gen.normal(0.0, 2.0, d).astype(dtype)
                    var = gen.uniform(0.1, 5.0, d).astype(dtype)
                    what = (f"update_running_stats(running_mean, running_var, mean, var, n={n}{shown}) "
                            f"at step {step} ({d} feature{'s' * (d > 1)}, {dtype})")
                    with _quiet():
                        out = C.call(update_running_stats, rm, rv, mean, var, n, what=what, **hyper)
                    new_mean, new_var = _parts(out, 2, "(new_mean, new_var)", what)
                    emean, evar = reference(rm, rv, mean, var, n, **hyper)
                    args = (rm, rv, mean, var, n, 0.1 if momentum is None else momentum)
                    wrong = {}
                    if momentum is None:
                        wrong.update({f"the default momentum is {m:g}; it must be 0.1 (the weight of the "
                                      "new batch)": _running(*args[:5], m) for m in (0.9, 0.99, 0.01)})
                    wrong.update({message: _running(*args, mistake=key) for key, message in _RUNNING_MISTAKES.items()})
                    scale = np.maximum(np.abs(rm), np.abs(mean)).astype(np.float64)
                    _close(new_mean, emean, what=f"new_mean from {what}", tol=tol, scale=scale,
                           mistakes={k: v[0] for k, v in wrong.items()})
                    _close(new_var, evar, what=f"new_var from {what}", tol=tol,
                           scale=np.maximum(rv, var * (n / (n - 1))).astype(np.float64),
                           mistakes={k: v[1] for k, v in wrong.items()})
                    rm, rv = np.asarray(emean), np.asarray(evar)


# -- folding ------------------------------------------------------------------------------------------

def _fold(gamma: np.ndarray, beta: np.ndarray, rm: np.ndarray, rv: np.ndarray, eps: float,
          mistake: str = "") -> tuple[np.ndarray, np.ndarray]:
    gamma, beta, rm, rv = (np.asarray(a, dtype=np.float64) for a in (gamma, beta, rm, rv))
    std = np.sqrt(rv + eps)
    a = {"var": gamma / (rv + eps), "eps outside": gamma / (np.sqrt(rv) + eps),
         "eps ignored": gamma / np.sqrt(rv), "inverted": gamma * std, "no gamma": 1 / std}.get(mistake, gamma / std)
    b = {"plus": beta + a * rm, "gamma mean": beta - gamma * rm, "no gamma b": beta - rm / std,
         "no mean": beta, "no beta": -a * rm}.get(mistake, beta - a * rm)
    if mistake == "swapped":
        return b, a
    return a, b


_A_MISTAKES = {
    "var": "a divides γ by the variance V + ε; divide by the standard deviation √(V + ε)",
    "eps outside": "ε is added outside the square root: a = γ/√(V + ε)",
    "eps ignored": "ε is left out: a = γ/√(V + ε)",
    "inverted": "a multiplies γ by √(V + ε); it divides: a = γ/√(V + ε)",
    "no gamma": "γ is missing: a = γ/√(V + ε)",
    "swapped": "a and b are swapped: return (a, b) with y = a·x + b",
}
_B_MISTAKES = {
    "plus": "b adds a·E; the mean is subtracted: b = β − a·E",
    "gamma mean": "b = β − γ·E forgets to divide by √(V + ε): b = β − a·E",
    "no gamma b": "b = β − E/√(V + ε) forgets γ: b = β − a·E",
    "no mean": "b = β ignores the running mean: b = β − a·E",
    "no beta": "β is missing from b = β − a·E",
    "var": "b uses a = γ/(V + ε); a divides by the standard deviation √(V + ε)",
    "swapped": "a and b are swapped: return (a, b) with y = a·x + b",
}
_FOLD_EPS = (1e-5, 0.1, None, 1e-3)


@check
def check_fold_batchnorm(fold_batchnorm):
    """(a, b) with y = a·x + b for several layers, running variances from 1e-5 to 10."""
    spec = SPEC["fold_batchnorm"]
    with _guarded(spec, spec.replaces, _FOLD_ALSO) as reference:
        for dtype in spec.dtypes:
            tol = spec.tol(dtype)
            gen = C.rng("fold_batchnorm", dtype)
            for d, eps in zip((1, 5, 12, 6), _FOLD_EPS):
                gamma = gen.normal(1.0, 0.7, d).astype(dtype)
                beta = gen.normal(0.0, 1.0, d).astype(dtype)
                rm = gen.normal(0.0, 2.0, d).astype(dtype)
                rv = (10.0 ** gen.uniform(-5, 1, d)).astype(dtype)
                rv[0] = 1e-5  # ε matters here
                what = (f"fold_batchnorm(gamma, beta, running_mean, running_var{_fmt_eps(eps)}) "
                        f"with {d} feature{'s' * (d > 1)}, {dtype}")
                with _quiet():
                    out = C.call(fold_batchnorm, gamma, beta, rm, rv, *_eps_args(eps), what=what)
                a, b = _parts(out, 2, "(a, b)", what)
                e = _DEFAULT_EPS if eps is None else eps
                ea, eb = reference(gamma, beta, rm, rv, e)
                args = (gamma, beta, rm, rv, e)
                a_wrong = {message: _fold(*args, mistake=key)[0] for key, message in _A_MISTAKES.items()}
                if eps is None:
                    a_wrong.update({f"the default eps is {v:g}; it must be 1e-5": _fold(*args[:4], v)[0]
                                    for v in (0.0, 1e-8, 1e-3)})
                ea64 = np.asarray(ea, dtype=np.float64)
                _close(a, ea, what=f"a from {what}", tol=tol, scale=np.abs(ea64), mistakes=a_wrong)
                _close(b, eb, what=f"b from {what}", tol=tol,
                       scale=np.abs(beta) + np.abs(ea64 * rm),
                       mistakes={message: _fold(*args, mistake=key)[1] for key, message in _B_MISTAKES.items()})


# -- numeric answers ---------------------------------------------------------------------------------

@check
def check_slip_std(answer_slip_std):
    """Std of x̂ = (x − μ)/(σ² + ε) for x = (1, 3, 5, 7), ε = 0: √5/5 = 1/√5."""
    x = np.array([1.0, 3.0, 5.0, 7.0])
    xc = x - x.mean()
    var = np.mean(xc * xc)
    slip = xc / var
    C.check_number(answer_slip_std, float(np.std(slip)), what="answer_slip_std", tol=(1e-3, 0.0), mistakes={
        "that is the standard deviation with the square root in place (always 1); use the "
        "transcript's formula without it": 1.0,
        "that is the variance of x̂ (1/σ²); the question asks for its standard deviation": float(np.var(slip)),
        "that is the unbiased standard deviation (divide by m − 1); batch norm divides by m":
            float(np.std(slip, ddof=1)),
        "that is σ² itself": float(var),
    })


@check
def check_running_var(answer_running_var):
    """One update of running_var = 1 with a batch of m = 8, biased variance 3.5, momentum 0.1: 1.3."""
    rv, var, m, momentum = 1.0, 3.5, 8, 0.1
    C.check_number(answer_running_var, (1 - momentum) * rv + momentum * var * m / (m - 1),
                   what="answer_running_var", tol=(1e-4, 0.0), mistakes={
                       "the biased batch variance was used; the running variance takes the "
                       "unbiased one, 3.5·8/7": (1 - momentum) * rv + momentum * var,
                       "momentum was used as the weight of the old value (Keras' convention); "
                       "here it weighs the new batch": momentum * rv + (1 - momentum) * var * m / (m - 1),
                       "momentum weighs the old value and the variance is biased":
                           momentum * rv + (1 - momentum) * var,
                       "n/(n − 1) multiplies the whole running variance, not only the batch's":
                           ((1 - momentum) * rv + momentum * var) * m / (m - 1),
                   })
