"""Hidden checks of 03_initialization (weight initialization).

Random initializers are judged statistically, never against a random stream, so any correct
way of drawing passes (``rng.normal(0, std)``, ``rng.standard_normal() * std``,
``rng.uniform(-a, a)``, ``(2 * rng.random() - 1) * a``). On a large non-square weight
(N = 300 * 700 = 210,000 entries, fan_in != fan_out) a check requires, with z = 6 standard
errors (a correct answer fails one statistic with probability about 2e-9; the check's seeds are
fixed, so a given answer gets the same verdict on every run):

- the requested shape and dtype, finite values, no copied rows (symmetry must be broken);
- mean within z * sigma / sqrt(N) of 0;
- sample variance within the catalog's relative tolerance of the target: z standard errors,
  z * sqrt(2 / N) for normal and z * sqrt(0.8 / N) for uniform draws (whose fourth moment is
  smaller); a miss is compared with the variances that known mistakes give (fan_out for
  fan_in, variance used as std, ignored gain, ...);
- normal: excess kurtosis near 0 (uniform has -1.2); uniform: every |w| <= a, both ends
  nearly reached (max w > a (1 - 50/N) fails with probability e^-25), and half the mass inside
  [-a/2, a/2];
- the rng argument honoured: equal seeds give equal weights, different seeds different ones,
  and rng=None gives fresh weights on each call.

An initializer is judged alone: while its check runs, the notebook's ``fans`` and
``calculate_gain`` (when the student wrote them) are the references. Cases include a conv-shaped
weight (out, in, k, k) of as many entries (fans = channels × receptive field), integer seeds as
well as Generators, and, for He, an unknown ``mode`` (it must raise ValueError).

The targets are the formulas (Var = gain^2 * 2 / (fan_in + fan_out) for Xavier,
gain^2 / fan for He; uniform bound a = sqrt(3 Var)); the tests of this module confirm that the
library's reference passes them.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from grader.checks import CheckFailed, check
from grader.checks import _core as C

SPEC = C.specs(__name__)

Z = 6.0  # standard errors a correct sample may stray
# Non-square so that fan_in (700) and fan_out (300) give different variances.
SHAPE = (300, 700)
FAN_IN, FAN_OUT = 700, 300
# A conv weight (out, in, k, k) of about as many entries: fans = channels * receptive field.
CONV = (140, 60, 5, 5)
CONV_FANS = (60 * 25, 140 * 25)

GAINS = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0)}


def _leaky_gain(a: float) -> float:
    return math.sqrt(2.0 / (1.0 + a * a))


Case = tuple[tuple[int, ...], dict[str, Any], float, dict[str, float]]
"""(shape, keyword arguments, target variance, {known mistake: the variance it gives})"""

_NO_RNG = object()  # call the initializer without its rng argument


def _fmt_kwargs(kwargs: Mapping[str, Any]) -> str:
    return "".join(f", {k}={v:.4g}" if isinstance(v, float) else f", {k}={v!r}"
                   for k, v in kwargs.items())


def _draw(fn: Callable[..., Any], name: str, shape: tuple[int, ...], gen: Any,
          kwargs: Mapping[str, Any], dtype: Any) -> np.ndarray:
    """Call the student's initializer and check shape, dtype, finiteness."""
    what = f"{name}({shape}, rng{_fmt_kwargs(kwargs)}" + (
        f", dtype=np.{np.dtype(dtype).name})" if dtype is not None else ")")
    args = (shape,) if gen is _NO_RNG else (shape, gen)
    kw = dict(kwargs)
    if dtype is not None:
        kw["dtype"] = dtype
    out = C.call(fn, *args, what=what, **kw)
    arr = C.as_array(out, what=what, shape=shape)
    want = np.dtype(dtype if dtype is not None else np.float32)
    if arr.dtype != want:
        default = "" if dtype is not None else " (the default dtype is float32)"
        raise CheckFailed(f"{what} returned dtype {arr.dtype}, expected {want}{default}: the dtype "
                          "argument is ignored; convert the draws with .astype(dtype).")
    if not np.isfinite(arr).all():
        raise CheckFailed(f"{what} returned non-finite values (inf or nan).")
    return arr


def _moments_check(w: np.ndarray, what: str, var: float, dist: str,
                   mistakes: Mapping[str, float], var_rtol: float) -> None:
    """Mean, variance (within ``var_rtol``, relative) and shape of the distribution of ``w``."""
    x = w.astype(np.float64).ravel()
    n = x.size
    std = math.sqrt(var)
    if len(np.unique(w)) < 0.9 * n:
        raise CheckFailed(f"{what}: many entries are exact copies of each other; every weight "
                          "must be an independent draw (copied rows or columns keep units "
                          "symmetric).")
    if dist == "uniform" and x.min() >= 0:
        raise CheckFailed(f"{what}: every value is >= 0, so the draws come from [0, a]; a "
                          "symmetric uniform initializer draws from [-a, a].")
    mean = x.mean()
    if abs(mean) > Z * std / math.sqrt(n):
        raise CheckFailed(f"{what}: the mean of the weights is {mean:.3g}, {abs(mean) / std:.2g} "
                          "standard deviations away from 0; the weights must have mean 0.")
    d2 = np.square(x - mean)  # squared deviations, reused for the kurtosis (x ** 4 would call pow)
    sample_var = float(np.mean(d2))
    ratio = sample_var / var
    if abs(ratio - 1.0) > var_rtol:
        direction = "too large" if ratio > 1 else "too small"
        message = (f"{what}: the variance of the weights is {direction} by a factor "
                   f"{max(ratio, 1 / ratio):.3g}.")
        for name, wrong_var in mistakes.items():
            if wrong_var > 0 and abs(sample_var / wrong_var - 1.0) <= var_rtol:
                message += f" It matches a known mistake: {name}."
                break
        raise CheckFailed(message)
    if dist == "normal":
        kurt = float(np.mean(np.square(d2)) / sample_var ** 2 - 3.0)
        if abs(kurt) > Z * math.sqrt(24.0 / n) + 0.02:
            hint = " (it looks uniform: use a normal draw)" if abs(kurt + 1.2) < 0.1 else ""
            raise CheckFailed(f"{what}: the weights do not look normally distributed: "
                              f"excess kurtosis {kurt:.2f} instead of 0{hint}.")
        return
    bound = math.sqrt(3.0 * var)
    top, bottom = float(x.max()), float(x.min())
    if max(top, -bottom) > bound * (1.0 + 1e-6):
        raise CheckFailed(f"{what}: some weights lie outside [-a, a] although the variance is "
                          "right; a uniform draw never leaves its interval (a normal draw does).")
    slack = 50.0 / n
    if top < bound * (1.0 - slack) or bottom > -bound * (1.0 - slack):
        raise CheckFailed(f"{what}: the weights do not reach the ends of [-a, a]; uniform draws on "
                          f"{n} entries come close to both ends.")
    inner = float(np.mean(np.abs(x) < bound / 2))
    if abs(inner - 0.5) > Z * 0.5 / math.sqrt(n):
        raise CheckFailed(f"{what}: {inner:.1%} of the weights lie in [-a/2, a/2] instead of "
                          "half: the draws are not uniform on [-a, a].")


def _rng_check(fn: Callable[..., Any], name: str, kwargs: Mapping[str, Any]) -> None:
    """Equal seeds (generators or integers) give equal weights, different seeds and rng=None
    give different ones."""
    shape = (20, 30)
    for seed, kind in ((np.random.default_rng, "generators seeded alike"), (int, "the same integer seed")):
        first = _draw(fn, name, shape, seed(123), kwargs, None)
        again = _draw(fn, name, shape, seed(123), kwargs, None)
        if not np.array_equal(first, again):
            raise CheckFailed(f"{name}: two calls with {kind} returned different weights; draw "
                              "from the rng argument through np.random.default_rng(rng) (a seed or a "
                              "Generator), not from "
                              "np.random or a generator of your own.")
        other = _draw(fn, name, shape, seed(321), kwargs, None)
        if np.array_equal(first, other):
            raise CheckFailed(f"{name}: different seeds ({kind.split()[-1]}s) returned the same "
                              "weights; draw from the rng argument instead of a fixed seed.")
    fresh = [_draw(fn, name, shape, _NO_RNG, kwargs, None) for _ in range(2)]
    if np.array_equal(*fresh):
        raise CheckFailed(f"{name}(shape) without an rng returned the same weights twice; with "
                          "rng=None use a fresh generator (np.random.default_rng(rng) does both).")


@contextlib.contextmanager
def _reference_helpers(fn: Callable[..., Any]) -> Iterator[None]:
    """While the block runs, the notebook's ``fans`` and ``calculate_gain`` (if the student wrote
    them) are the references: a mistake there costs those exercises' points, not this one's."""
    init = C.resolve("course.init")
    with contextlib.ExitStack() as stack:
        for helper in ("fans", "calculate_gain"):
            stack.enter_context(C.patched_global(fn, helper, getattr(init, helper)))
        yield


def _mode_check(fn: Callable[..., Any], name: str) -> None:
    """An unknown mode must raise ValueError (a typo must not silently pick a fan)."""
    what = f"{name}((20, 30), rng, mode='fan_avg')"
    try:
        fn((20, 30), np.random.default_rng(0), mode="fan_avg")
    except ValueError:
        return
    except Exception as exc:  # noqa: BLE001 - any other error type is the student's mistake
        raise CheckFailed(f"{what} raised {type(exc).__name__}{C.where_said(exc)}; raise ValueError "
                          "for a mode other than 'fan_in' or 'fan_out'.") from None
    raise CheckFailed(f"{what} returned weights; raise ValueError for a mode other than 'fan_in' "
                      "or 'fan_out', so that a typo does not silently pick a fan.")


def _check_initializer(fn: Callable[..., Any], name: str, cases: list[Case], dist: str) -> None:
    """Run the statistical checks on every (shape, kwargs, target variance, mistakes) case."""
    spec = SPEC[name]
    with C.guard(spec), _reference_helpers(fn):
        for i, (shape, kwargs, var, mistakes) in enumerate(cases):
            dtypes = spec.dtypes if i == 0 else (spec.dtypes[0],)
            for dtype in dtypes:
                gen = C.rng(name, i, dtype)
                w = _draw(fn, name, shape, gen, kwargs, np.dtype(dtype).type)
                what = f"{name}({shape}{_fmt_kwargs(kwargs)})"
                _moments_check(w, what, var, dist, mistakes, spec.tol(dtype)[0])
        _rng_check(fn, name, cases[0][1])
        if name.startswith("kaiming"):
            _mode_check(fn, name)
        # The default dtype is float32.
        _draw(fn, name, (4, 6), np.random.default_rng(0), cases[0][1], None)


def _xavier_cases(uniform: bool) -> list[Case]:
    """Xavier cases for gains 1, 5/3, sqrt(2); uniform-only mistakes come first, as the first
    matching mistake is the one named."""
    s = FAN_IN + FAN_OUT
    cases = []
    for gain in (1.0, GAINS["tanh"], GAINS["relu"]):
        var = gain**2 * 2.0 / s
        mistakes = {}
        if uniform:
            a = gain * math.sqrt(6.0 / s)
            mistakes.update({
                "a normal distribution with std equal to the bound a": a**2,
                "the bound sqrt(3/(fan_in + fan_out)): Var(U[-a, a]) = a^2/3 needs a = "
                "gain * sqrt(6/(fan_in + fan_out))": gain**2 / s,
                "the bound 6/(fan_in + fan_out) without the square root": (gain * 6.0 / s) ** 2 / 3,
                "the normal's std used as the uniform bound (a = sqrt(3) * std)": var / 3,
            })
            if gain != 1.0:
                mistakes["the gain inside the square root, sqrt(6 * gain / (fan_in + fan_out)); the "
                         "bound is gain * sqrt(6/(fan_in + fan_out))"] = gain * 2.0 / s
        mistakes.update({
            "the variance 2/sqrt(fan_in + fan_out) (the lecture notes' slip; it is "
            "2/(fan_in + fan_out))": gain**2 * 2.0 / math.sqrt(s),
            "the variance used as the standard deviation (a missing square root)": var**2,
            "1/(fan_in + fan_out): the factor 2 of the average is missing": gain**2 / s,
            "1/fan_in (LeCun's variance, not Xavier's)": gain**2 / FAN_IN,
            "1/fan_out": gain**2 / FAN_OUT,
        })
        if gain != 1.0:
            mistakes["the gain is ignored"] = 2.0 / s
            mistakes["the gain is not squared in the variance (multiply the std by gain)"] = gain * 2.0 / s
        kwargs = {} if gain == 1.0 else {"gain": gain}
        cases.append((SHAPE, kwargs, var, mistakes))
    conv_in, conv_out = CONV_FANS
    cases.append((CONV, {}, 2.0 / (conv_in + conv_out), {
        "the receptive field is left out of the fans (a conv weight (out, in, k, k) has fan_in = "
        "in * k * k and fan_out = out * k * k)": 2.0 / (CONV[0] + CONV[1]),
        **({"the bound sqrt(3/(fan_in + fan_out)): Var(U[-a, a]) = a^2/3 needs a = "
            "gain * sqrt(6/(fan_in + fan_out))": 1.0 / (conv_in + conv_out)} if uniform else {}),
    }))
    return cases


def _kaiming_cases(uniform: bool) -> list[Case]:
    """As :func:`_xavier_cases`, for He initialization over modes, shapes and nonlinearities."""
    settings = [
        # (shape, kwargs, fan used, gain)
        (SHAPE, {}, FAN_IN, GAINS["relu"]),
        (SHAPE, {"mode": "fan_out"}, FAN_OUT, GAINS["relu"]),
        ((FAN_IN, FAN_OUT), {"nonlinearity": "relu"}, FAN_OUT, GAINS["relu"]),
        (SHAPE, {"nonlinearity": "tanh"}, FAN_IN, GAINS["tanh"]),
        (SHAPE, {"a": 0.5, "nonlinearity": "leaky_relu"}, FAN_IN, _leaky_gain(0.5)),
        (SHAPE, {"nonlinearity": "linear", "mode": "fan_out"}, FAN_OUT, 1.0),
        (CONV, {}, CONV_FANS[0], GAINS["relu"]),
        (CONV, {"mode": "fan_out", "nonlinearity": "relu"}, CONV_FANS[1], GAINS["relu"]),
    ]
    cases = []
    for shape, kwargs, fan, gain in settings:
        fan_in, fan_out = (shape[1], shape[0]) if len(shape) == 2 else CONV_FANS
        other = fan_out if fan == fan_in else fan_in
        var = gain**2 / fan
        mistakes = {}
        if uniform:
            bound = gain * math.sqrt(3.0 / fan)
            mistakes.update({
                "a normal distribution with std equal to the bound a": bound**2,
                "the normal's std used as the uniform bound (a = sqrt(3) * std)": var / 3,
                "the bound sqrt(6/fan) combined with the gain (sqrt(6/fan) already holds "
                "ReLU's factor 2; the bound is gain * sqrt(3/fan))": 2.0 * var,
                "the slide's bound 4/(fan_in + fan_out), which is wrong (He's bound is gain * sqrt(3/fan_in))":
                    (4.0 / (fan_in + fan_out)) ** 2 / 3,
            })
        mistakes.update({
            f"the fan of the wrong dimension (fan = {other} instead of {fan}); for a weight of "
            "shape (out, in) fan_in = shape[1] and fan_out = shape[0]": gain**2 / other,
            "the variance used as the standard deviation (a missing square root)": var**2,
            "1/(fan_in + fan_out) scaling (Xavier's, not He's)": gain**2 * 2.0 / (fan_in + fan_out),
        })
        if len(shape) > 2:
            mistakes["the receptive field is left out of the fan (a conv weight (out, in, k, k) has "
                     "fan_in = in * k * k)"] = gain**2 / (shape[1] if fan == fan_in else shape[0])
        if kwargs.get("nonlinearity") == "tanh":
            mistakes["the gain sqrt(2) of ReLU used for tanh (its gain is 5/3)"] = 2.0 / fan
        if "a" in kwargs:
            a = kwargs["a"]
            mistakes["the negative slope a is ignored (ReLU's gain sqrt(2) used)"] = 2.0 / fan
            mistakes["the slope not squared: gain^2 = 2/(1 + a) instead of 2/(1 + a^2)"] = 2.0 / ((1 + a) * fan)
        if gain != 1.0:
            mistakes["the gain is ignored (He's factor 2 comes from the gain sqrt(2) of ReLU)"] = 1.0 / fan
            mistakes["the gain inside the square root (the std is gain / sqrt(fan))"] = gain / fan
            mistakes["the gain applied twice"] = gain**4 / fan
        cases.append((shape, kwargs, var, mistakes))
    return cases


@check
def check_xavier_normal(xavier_normal):
    """Xavier/Glorot normal: N(0, gain^2 * 2 / (fan_in + fan_out))."""
    _check_initializer(xavier_normal, "xavier_normal", _xavier_cases(False), "normal")


@check
def check_xavier_uniform(xavier_uniform):
    """Xavier/Glorot uniform: U[-a, a], a = gain * sqrt(6 / (fan_in + fan_out))."""
    _check_initializer(xavier_uniform, "xavier_uniform", _xavier_cases(True), "uniform")


@check
def check_kaiming_normal(kaiming_normal):
    """He normal: N(0, gain^2 / fan), fan = fan_in or fan_out by mode."""
    _check_initializer(kaiming_normal, "kaiming_normal", _kaiming_cases(False), "normal")


@check
def check_kaiming_uniform(kaiming_uniform):
    """He uniform: U[-a, a], a = gain * sqrt(3 / fan)."""
    _check_initializer(kaiming_uniform, "kaiming_uniform", _kaiming_cases(True), "uniform")


def _whole(value: object) -> bool:
    """An int, or a float with an integral value (np.prod over a float shape, a division)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating))
                                                    and math.isfinite(value) and float(value).is_integer())


@check
def check_fans(fans):
    """fans(shape) = (fan_in, fan_out) = (shape[1] * receptive, shape[0] * receptive)."""
    spec = SPEC["fans"]
    with C.guard(spec) as reference:
        for shape in ((3, 5), (7, 2), (1, 9), (300, 700), (16, 8, 3, 3), (4, 6, 5)):
            what = f"fans({shape})"
            got = C.call(fans, shape, what=what)
            if (not isinstance(got, (tuple, list, np.ndarray)) or len(got) != 2
                    or not all(_whole(v) for v in got)):
                raise CheckFailed(f"{what} returned {C.type_name(got)} {str(got)[:60]}; expected a "
                                  "pair of whole numbers (fan_in, fan_out).")
            want = tuple(reference(shape))
            got = (int(got[0]), int(got[1]))
            if got == want:
                continue
            receptive = math.prod(shape[2:])
            mistakes = [
                ((shape[0] * receptive, shape[1] * receptive),
                 "fan_in and fan_out are swapped: a weight of shape (out, in, ...) has fan_in from shape[1]"),
                ((shape[1], shape[0]), "the receptive field (the product of shape[2:]) is left out"),
                ((shape[0], shape[1]), "fan_in and fan_out are swapped and the receptive field "
                                       "(the product of shape[2:]) is left out"),
                ((shape[1] * receptive, shape[0]), "fan_out must also be multiplied by the receptive field"),
            ]
            hint = next((name for value, name in mistakes if value == got), None)
            raise CheckFailed(f"{what} returned {got}, which is wrong" + (f": {hint}." if hint else "."))
        try:
            fans((5,))
        except ValueError:
            pass
        except Exception as exc:  # noqa: BLE001 - any other error type is the student's mistake
            raise CheckFailed(f"fans((5,)) raised {type(exc).__name__}{C.where_said(exc)}; raise ValueError for a "
                              "shape with fewer than 2 dimensions.") from None
        else:
            raise CheckFailed("fans((5,)) returned a value; a shape with fewer than 2 dimensions "
                              "has no fan_in/fan_out: raise ValueError.")


@check
def check_calculate_gain(calculate_gain):
    """The PyTorch gains: 1, 1, 5/3, sqrt(2), sqrt(2 / (1 + a^2))."""
    spec = SPEC["calculate_gain"]
    tol = spec.tol("float64")
    cases = [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
             ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 0.5)]
    with C.guard(spec) as reference:
        for name, param in cases:
            args = (name,) if param is None else (name, param)
            what = f"calculate_gain({', '.join(map(repr, args))})"
            got = C.call(calculate_gain, *args, what=what)
            a = 0.01 if param is None else param
            mistakes = {}
            if name == "relu":
                mistakes["2 is ReLU's variance factor; the gain is its square root"] = 2.0
            if name == "tanh":
                mistakes["tanh's gain is 5/3, not 1"] = 1.0
            if name == "leaky_relu":
                if param is None:
                    mistakes["the default negative slope is 0.01 when param is None"] = math.sqrt(2.0)
                mistakes.update({
                    "the slope must be squared: sqrt(2 / (1 + a^2))": math.sqrt(2 / (1 + a)),
                    "a missing square root: the gain is sqrt(2 / (1 + a^2))": 2 / (1 + a * a),
                    "the slope is ignored (ReLU's gain)": math.sqrt(2.0),
                })
            C.check_number(got, reference(*args), what=what, tol=tol, mistakes=mistakes)
        try:
            calculate_gain("softplus")
        except ValueError:
            pass
        except Exception as exc:  # noqa: BLE001
            raise CheckFailed(f"calculate_gain('softplus') raised {type(exc).__name__}{C.where_said(exc)}; raise "
                              "ValueError for a nonlinearity you do not know.") from None
        else:
            raise CheckFailed("calculate_gain('softplus') returned a value; raise ValueError for a "
                              "nonlinearity you do not know, so a typo does not pass silently.")


# Numeric answers. The numbers are the ones the notebook states.
LEAKY_SLOPE, LEAKY_SHAPE = 0.25, (100, 400)   # He variance for leaky ReLU
BOUND_SHAPE = (256, 64)                       # He-uniform bound for ReLU
HIDDEN_UNITS = 32                             # width of the symmetric network


@check
def check_answer_distinct_units(answer_distinct_units):
    """A constant start keeps every hidden unit identical: one distinct unit."""
    C.check_number(answer_distinct_units, 1.0, what="answer_distinct_units", tol=(0.0, 1e-9),
                   mistakes={f"{HIDDEN_UNITS} counts every unit; with a constant start they all "
                             "get the same gradient and stay copies of one another": HIDDEN_UNITS})


@check
def check_answer_leaky_he_var(answer_leaky_he_var):
    """Var(w) = 2 / ((1 + a^2) fan_in) for a leaky ReLU of slope a."""
    a, (fan_out, fan_in) = LEAKY_SLOPE, LEAKY_SHAPE
    C.check_number(answer_leaky_he_var, 2 / ((1 + a * a) * fan_in), what="answer_leaky_he_var",
                   tol=(2e-3, 0.0), mistakes={
                       "2/fan_in ignores the negative slope": 2 / fan_in,
                       "the slope must be squared: 2/((1 + a^2) fan_in)": 2 / ((1 + a) * fan_in),
                       f"the fan is fan_in = {fan_in} (shape[1]), not {fan_out}":
                           2 / ((1 + a * a) * fan_out),
                       "1/((1 + a^2) fan_in) misses the factor 2": 1 / ((1 + a * a) * fan_in),
                       "that is the standard deviation; the question asks for the variance":
                           math.sqrt(2 / ((1 + a * a) * fan_in)),
                   })


@check
def check_answer_he_uniform_bound(answer_he_uniform_bound):
    """He uniform bound for ReLU: a = sqrt(6 / fan_in)."""
    fan_out, fan_in = BOUND_SHAPE
    C.check_number(answer_he_uniform_bound, math.sqrt(6 / fan_in), what="answer_he_uniform_bound",
                   tol=(2e-3, 0.0), mistakes={
                       "4/(fan_in + fan_out) is the slide's bound, which is wrong": 4 / (fan_in + fan_out),
                       "sqrt(3/fan_in) gives variance 1/fan_in: ReLU's gain sqrt(2) is missing":
                           math.sqrt(3 / fan_in),
                       "sqrt(6/(fan_in + fan_out)) is Xavier's bound, not He's": math.sqrt(6 / (fan_in + fan_out)),
                       f"the fan is fan_in = {fan_in} (shape[1]), not {fan_out}": math.sqrt(6 / fan_out),
                       "a missing square root": 6 / fan_in,
                       "sqrt(2/fan_in) is the standard deviation; the bound is sqrt(3) times it":
                           math.sqrt(2 / fan_in),
                   })
