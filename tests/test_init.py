"""Initializers: fans, gains, each scheme's variance or bounds, reproducibility, and the
lecture's claim about activation variance through 50 ReLU layers."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import course
from course import init, nn


def test_fans_linear_and_conv_shapes():
    assert init.fans((30, 20)) == (20, 30)  # Linear weight (out, in): fan_in = in_features
    assert init.fans((8, 3, 5, 5)) == (3 * 25, 8 * 25)  # conv: times the receptive field
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.fans((7,))


@pytest.mark.parametrize("name, param, expected", [
    ("linear", None, 1.0), ("sigmoid", None, 1.0), ("conv2d", None, 1.0), ("tanh", None, 5 / 3),
    ("relu", None, math.sqrt(2)), ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
    ("leaky_relu", 0.2, math.sqrt(2 / 1.04)), ("selu", None, 0.75),
])
def test_calculate_gain(name, param, expected):
    assert init.calculate_gain(name, param) == pytest.approx(expected, rel=1e-15)


def test_unknown_gain_and_mode_are_clear_errors():
    with pytest.raises(ValueError, match="unknown nonlinearity 'gelu'"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="mode must be 'fan_in'"):
        init.kaiming_normal((4, 4), 0, mode="fan_avg")


SHAPE = (300, 800)  # fan_in 800, fan_out 300; 240,000 samples
FAN_IN, FAN_OUT = 800, 300

# (initializer, kind, expected variance)
CASES = {
    "normal": (functools.partial(init.normal, mean=0.0, std=0.3), "normal", 0.09),
    "uniform": (functools.partial(init.uniform, a=-0.5, b=0.5), "uniform", 1 / 12),
    "xavier_normal": (init.xavier_normal, "normal", 2 / (FAN_IN + FAN_OUT)),
    "xavier_normal_gain": (functools.partial(init.xavier_normal, gain=5 / 3), "normal",
                           (5 / 3) ** 2 * 2 / (FAN_IN + FAN_OUT)),
    "xavier_uniform": (init.xavier_uniform, "uniform", 2 / (FAN_IN + FAN_OUT)),
    "kaiming_normal": (init.kaiming_normal, "normal", 2 / FAN_IN),
    "kaiming_normal_fan_out": (functools.partial(init.kaiming_normal, mode="fan_out"), "normal", 2 / FAN_OUT),
    "kaiming_normal_tanh": (functools.partial(init.kaiming_normal, nonlinearity="tanh"), "normal",
                            (5 / 3) ** 2 / FAN_IN),
    "kaiming_uniform": (init.kaiming_uniform, "uniform", 2 / FAN_IN),
    "kaiming_uniform_leaky": (functools.partial(init.kaiming_uniform, a=0.2), "uniform",
                              2 / (1 + 0.04) / FAN_IN),
    "lecun_normal": (init.lecun_normal, "normal", 1 / FAN_IN),
    "lecun_uniform": (init.lecun_uniform, "uniform", 1 / FAN_IN),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sample_variance_matches_formula(case):
    fn, kind, var = CASES[case]
    w = fn(SHAPE, 123, dtype=np.float64)
    assert w.shape == SHAPE and w.dtype == np.float64
    n = w.size
    # zero mean, and E[w²] = var, each within 5 standard errors (estimated from the sample)
    sq = w**2
    assert abs(w.mean()) < 5 * math.sqrt(var / n)
    assert abs(sq.mean() - var) < 5 * sq.std() / math.sqrt(n), f"{case}: variance {sq.mean()} vs {var}"
    if kind == "uniform":  # U[−b, b] with b = √(3 var): inside, and reaching the bound
        bound = math.sqrt(3 * var)
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > bound * (1 - 1e-3)


def test_named_bounds_are_the_textbook_formulas():
    # He uniform bound = gain·√(3/fan_in), Xavier uniform bound = √(6/(fan_in + fan_out))
    he = init.he_uniform(SHAPE, 0, dtype=np.float64)
    assert np.abs(he).max() <= math.sqrt(2) * math.sqrt(3 / FAN_IN)
    xav = init.xavier_uniform(SHAPE, 0, dtype=np.float64)
    assert np.abs(xav).max() <= math.sqrt(6 / (FAN_IN + FAN_OUT))
    # the notes' slip, ±4/(fan_in + fan_out), would be far narrower than He's bound
    assert np.abs(he).max() > 10 * 4 / (FAN_IN + FAN_OUT)
    assert init.he_normal is init.kaiming_normal and init.he_uniform is init.kaiming_uniform


def test_zeros_constant_and_dtypes():
    assert np.array_equal(init.zeros((2, 3)), np.zeros((2, 3), np.float32))
    c = init.constant((4,), value=0.25, dtype=np.float64)
    assert c.dtype == np.float64 and np.all(c == 0.25)
    for fn in (init.normal, init.xavier_uniform, init.kaiming_normal, init.lecun_uniform):
        assert fn((5, 6), 0).dtype == np.float32
        assert isinstance(fn((5, 6), 0), np.ndarray)


@pytest.mark.parametrize("fn", [init.normal, init.uniform, init.xavier_normal, init.xavier_uniform,
                                init.kaiming_normal, init.kaiming_uniform, init.lecun_normal,
                                init.lecun_uniform])
def test_seeded_and_reproducible(fn):
    a, b = fn((16, 8), 7), fn((16, 8), 7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, fn((16, 8), 8))
    # one seed, the same weights in every dtype (drawn in float64, then rounded)
    assert np.array_equal(fn((16, 8), 7, dtype=np.float64).astype(np.float32), a)
    # a Generator continues its stream: two draws differ, and replay from the same seed
    g = np.random.default_rng(3)
    first, second = fn((16, 8), g), fn((16, 8), g)
    assert not np.array_equal(first, second)
    assert np.array_equal(first, fn((16, 8), 3))


def _variance_ratio(weight_init, seed: int, depth: int = 50, width: int = 512, batch: int = 64) -> float:
    """Var(activations after `depth` Linear+ReLU layers) / Var(input), float64, no graph."""
    gen = np.random.default_rng(seed)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width, init=weight_init, rng=gen, dtype=np.float64), nn.ReLU()]
    net = nn.Sequential(*layers)
    x = course.tensor(gen.standard_normal((batch, width)))
    with course.no_grad():
        h = net(x)
    return float(np.var(h.numpy()) / np.var(x.numpy()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_he_init_keeps_activation_variance_through_50_relu_layers(seed):
    # width 512 is finite: the ratio drifts with the seed (about 0.1 to 1.3 over seeds 0-4)
    ratio = _variance_ratio("kaiming_normal", seed)
    assert 0.1 < ratio < 10, f"He init: variance ratio {ratio:.3g} after 50 layers"


def test_naive_normal_init_explodes_or_vanishes():
    # each layer multiplies the variance by about fan_in·σ²/2: 256 for σ = 1, 0.0256 for σ = 0.01
    big = _variance_ratio(functools.partial(init.normal, std=1.0), 0)
    small = _variance_ratio(functools.partial(init.normal, std=0.01), 0)
    assert big > 1e10, f"N(0, 1): variance ratio {big:.3g}"
    assert small < 1e-10, f"N(0, 0.01²): variance ratio {small:.3g}"
