"""Claims of the lecture notes, reproduced with course end to end (fixed seeds, wide margins).

Each test trains real networks with course.nn / course.optim / course.train; together they
take a few seconds.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from course import data as D
from course import init, losses, nn, optim
from course import train as T


@functools.cache
def _digits(seed: int = 0):
    """Stratified 70/15/15 split of the digits, standardized with the training statistics."""
    X, y = D.load_digits()
    (Xtr, ytr), (Xva, yva), (Xte, yte) = D.split(X, y, val=0.15, test=0.15, rng=seed, stratify=True)
    s = D.Standardizer().fit(Xtr)
    return (s.transform(Xtr), ytr), (s.transform(Xva), yva), (s.transform(Xte), yte)


def test_mlp_reaches_95_percent_test_accuracy_on_the_digits():
    train, _, (Xte, yte) = _digits()
    model = nn.MLP([64, 128, 10], rng=0)
    T.fit(model, losses.cross_entropy, optim.Adam(model.parameters(), lr=2e-3), train,
          epochs=10, batch_size=32, rng=0, progress=False)
    acc = T.evaluate(model, Xte, yte)["accuracy"]
    assert acc >= 0.95, f"test accuracy {acc:.3f} < 0.95"


def _unit_spread(weight: np.ndarray, axis: int) -> float:
    """Largest difference between the rows (axis 0) or columns (axis 1) of a weight matrix."""
    first = weight[:1] if axis == 0 else weight[:, :1]
    return float(np.abs(weight - first).max())


def test_constant_initialization_keeps_hidden_units_identical():
    train, _, _ = _digits()

    def trained(init_fn):
        model = nn.MLP([64, 32, 32, 10], init=init_fn, rng=0)
        before = model.state_dict()
        T.fit(model, losses.cross_entropy, optim.SGD(model.parameters(), lr=0.1, momentum=0.9), train,
              epochs=3, batch_size=32, rng=0, progress=False)
        after = model.state_dict()
        return before, after

    before, after = trained(functools.partial(init.constant, value=0.05))
    for key in ("0.weight", "2.weight", "4.weight"):
        assert np.abs(after[key] - before[key]).max() > 1e-2, f"{key} did not train"
    scale = max(np.abs(after[k]).max() for k in ("0.weight", "2.weight"))
    # hidden unit j = row j of the weights into it and column j of the weights out of it
    assert _unit_spread(after["0.weight"], axis=0) < 1e-5 * scale
    assert _unit_spread(after["2.weight"], axis=0) < 1e-5 * scale
    assert _unit_spread(after["2.weight"], axis=1) < 1e-5 * scale
    assert _unit_spread(after["4.weight"], axis=1) < 1e-5 * scale
    assert np.ptp(after["0.bias"]) < 1e-5 * scale and np.ptp(after["2.bias"]) < 1e-5 * scale
    # the output units are not symmetric (each class has its own target), so they do differ
    assert _unit_spread(after["4.weight"], axis=0) > 1e-2
    # control: random (He) initialization gives distinct units
    _, random_after = trained(None)
    assert _unit_spread(random_after["0.weight"], axis=0) > 0.1
    assert _unit_spread(random_after["2.weight"], axis=0) > 0.1


def test_batch_norm_trains_a_deep_mlp_where_the_plain_one_diverges():
    train, val, _ = _digits()
    sizes = [64] + [64] * 8 + [10]  # 9 layers deep
    results = {}
    for bn in (False, True):
        model = nn.MLP(sizes, batch_norm=bn, init="kaiming_uniform", rng=0)  # He: the notebook's set-up
        start = T.evaluate(model, *train, losses.cross_entropy)["loss"]
        with np.errstate(all="ignore"):  # the plain network overflows: that is the point
            h = T.fit(model, losses.cross_entropy, optim.SGD(model.parameters(), lr=1.0), train, val,
                      epochs=3, batch_size=64, rng=0, progress=False)
        results[bn] = start, h
    start, plain = results[False]
    final = plain.train_loss[-1]
    assert not np.isfinite(final) or final > start, f"plain net at lr=1: loss {start:.3f} -> {final:.3f}"
    start, with_bn = results[True]
    assert with_bn.train_loss[-1] < 0.25 * start
    assert with_bn.val_accuracy[-1] > 0.85


@pytest.mark.parametrize("seed", [0, 3])  # seeds 0-4 all pass; two keep the file fast
def test_dropout_and_weight_decay_shrink_the_generalization_gap(seed):
    # 40 noisy two-moons points and a wide net: the plain net fits the noise
    train = D.moons(40, noise=0.3, rng=seed)
    val = D.moons(400, noise=0.3, rng=seed + 100)

    def gap(dropout=0.0, weight_decay=0.0):
        model = nn.MLP([2, 64, 64, 2], dropout=dropout, rng=seed)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=weight_decay)
        h = T.fit(model, losses.cross_entropy, opt, train, val, epochs=100, batch_size=20, rng=seed,
                  progress=False)
        return h.val_loss[-1] - h.train_loss[-1], h

    plain, h_plain = gap()
    assert h_plain.train_accuracy[-1] - h_plain.val_accuracy[-1] > 0.05  # it does overfit
    dropped, h_drop = gap(dropout=0.5)
    decayed, h_decay = gap(weight_decay=1e-2)
    assert dropped < 0.7 * plain, f"dropout gap {dropped:.3f} vs plain {plain:.3f}"
    assert decayed < 0.5 * plain, f"weight decay gap {decayed:.3f} vs plain {plain:.3f}"
    # and not merely by fitting the training set worse: validation loss improves too
    assert h_drop.val_loss[-1] < h_plain.val_loss[-1] and h_decay.val_loss[-1] < h_plain.val_loss[-1]
