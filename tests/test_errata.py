"""The numbers behind the errata the notebooks raise about the notes (issue 9, F).

Each test recomputes what a notebook's text claims, with fixed seeds, so a change of the
library or of the claim shows up here.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from course import Tensor, data, init, losses, nn, optim, train


def _central(f, w: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        old = w[i]
        w[i] = old + eps
        up = f()
        w[i] = old - eps
        down = f()
        w[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def test_linear_network_gradient_has_the_corrected_form():
    """03 more_slips: dL/dW_r = (W_L...W_{r+1})^T (f - y) (W_{r-1}...W_1 x)^T, not minus it."""
    rng = np.random.default_rng(0)
    dims = [3, 4, 5, 2]
    Ws = [rng.standard_normal((dims[i + 1], dims[i])) for i in range(3)]
    x, y = rng.standard_normal((3, 1)), rng.standard_normal((2, 1))

    def forward(mats):
        out = x
        for W in mats:
            out = W @ out
        return out

    def loss():
        return 0.5 * float(np.sum((forward(Ws) - y) ** 2))

    for r in range(3):
        above = functools.reduce(lambda acc, W: W @ acc, Ws[r + 1:], np.eye(dims[r + 1]))
        below = forward(Ws[:r])
        formula = above.T @ (forward(Ws) - y) @ below.T
        numeric = _central(loss, Ws[r])
        np.testing.assert_allclose(formula, numeric, rtol=1e-6, atol=1e-7)
        assert np.abs(-formula - numeric).max() > 1.0  # the notes' sign is off by the whole gradient


def _digits_mlp():
    return nn.MLP([64, 32, 10], activation="relu", init=functools.partial(init.constant, value=0.05), rng=0)


def test_equal_weights_are_not_a_critical_point():
    """03 more_slips: at the constant 0.05 the output layer's gradient is about 0.09, not 0."""
    X, y = data.load_digits()
    model = _digits_mlp()
    losses.cross_entropy(model(Tensor(X[:256])), y[:256]).backward()
    norms = [float(np.linalg.norm(p.grad.numpy())) for p in model.parameters()]
    assert 0.05 < norms[2] < 0.15, norms


def test_equal_incoming_weights_alone_do_not_keep_units_equal():
    """03 part1: constant first layer, random second layer: all 32 units distinct, ~95%."""
    X, y = data.load_digits()
    model = _digits_mlp()
    W2 = model[-1].weight.data
    model[-1].weight.data = (np.random.default_rng(1).standard_normal(W2.shape)
                             * math.sqrt(2 / 32)).astype(W2.dtype)
    opt = optim.Optimizer(model.parameters(), lambda p, g, s, *, lr: (p - lr * g, s), lr=0.1)
    history = train.fit(model, losses.cross_entropy, opt, (X, y), epochs=10, batch_size=64,
                        rng=0, progress=False)
    W1 = model[0].weight.numpy()
    scale = 1e-4 * np.abs(W1).max()
    distinct = [row for i, row in enumerate(W1)
                if not any(np.abs(row - W1[j]).max() <= scale for j in range(i))]
    assert len(distinct) == 32
    assert history["train_accuracy"][-1] > 0.9


def test_weight_decay_for_a_sum_is_2_lambda_over_n_with_n_times_the_rate():
    """05 l2_text: GD on sum(l) + lam |w|^2 at rate eta equals GD on the mean with
    weight_decay = 2 lam / n at rate n eta; weight_decay = 2 lam does not."""
    rng = np.random.default_rng(0)
    n, d, lam, eta = 50, 4, 0.3, 0.002
    A, b = rng.standard_normal((n, d)), rng.standard_normal(n)
    w_sum = w_mean = w_wrong = np.zeros(d)
    for _ in range(100):
        w_sum = w_sum - eta * (A.T @ (A @ w_sum - b) + 2 * lam * w_sum)
        w_mean = w_mean - n * eta * (A.T @ (A @ w_mean - b) / n + (2 * lam / n) * w_mean)
        w_wrong = w_wrong - n * eta * (A.T @ (A @ w_wrong - b) / n + 2 * lam * w_wrong)
    np.testing.assert_allclose(w_mean, w_sum, rtol=1e-12, atol=1e-14)
    assert np.abs(w_wrong - w_sum).max() > 0.05


def test_batchnorm_jacobian_is_exact_for_any_eps():
    """04 bn_derivation: d xhat / dx = (I - 11^T/N - xhat xhat^T/N) / sigma_hat with eps > 0."""
    rng = np.random.default_rng(0)
    N, eps = 6, 0.5
    x = rng.standard_normal(N)

    def xhat(v):
        return (v - v.mean()) / np.sqrt(v.var() + eps)

    numeric = np.array([(xhat(x + 1e-6 * e) - xhat(x - 1e-6 * e)) / 2e-6 for e in np.eye(N)]).T
    xh = xhat(x)
    formula = (np.eye(N) - np.ones((N, N)) / N - np.outer(xh, xh) / N) / np.sqrt(x.var() + eps)
    np.testing.assert_allclose(formula, numeric, atol=1e-8)


def test_damping_must_exceed_the_size_of_the_most_negative_eigenvalue():
    """02 newton_saddle: H = diag(2, -2), g = (1, 1): damping 1 still steps uphill, 3 does not."""
    H, g = np.diag([2.0, -2.0]), np.array([1.0, 1.0])
    uphill = g @ -np.linalg.solve(H + 1.0 * np.eye(2), g)
    downhill = g @ -np.linalg.solve(H + 3.0 * np.eye(2), g)
    assert uphill > 0 > downhill


def test_a_rate_that_grows_while_the_sign_stays_converges_faster():
    """02 adaptive_task: on w^2/2 from 10 at rate 0.01, 50 fixed steps leave |w| = 6.05;
    adding 0.01 while the sign stays (halving on a flip) leaves about 1.5e-6."""
    w_fixed = 10.0 * (1 - 0.01) ** 50
    w, lr, prev = 10.0, 0.01, None
    for _ in range(50):
        if prev is not None:
            lr = lr + 0.01 if np.sign(w) == np.sign(prev) else lr * 0.5
        prev = w
        w -= lr * w
    assert abs(w_fixed - 6.05) < 0.01
    assert 1e-6 < abs(w) < 2e-6
