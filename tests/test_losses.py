"""Losses: values against independent NumPy formulas (and PyTorch when installed), stability at
extreme inputs, first and second derivatives against finite differences on both backends, and
clear errors for the usual mistakes."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from course import backend as B
from course import losses as L
from course.autodiff import Tensor, grad
from course.gradcheck import gradcheck, gradgradcheck

from _spies import gradient_types

TOL = 1e-7
REDUCTIONS = ["mean", "sum", "none"]


def t(values, requires_grad: bool = False) -> Tensor:
    return Tensor(B.asarray(np.asarray(values, dtype=np.float64)), requires_grad=requires_grad)


def labels(values) -> object:
    return B.asarray(np.asarray(values, dtype=np.int64))


def reduce(per_sample: np.ndarray, reduction: str) -> np.ndarray:
    return {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction](per_sample)


def spaced_scores(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """Rows of scores 0.3 apart (+ jitter < 0.05): no ties, and no score difference within
    0.05 of the margins 0.5 or 1, so no finite-difference step crosses a hinge's kink."""
    order = rng.permuted(np.tile(np.arange(c), (n, 1)), axis=1)
    return 0.3 * order + rng.uniform(0, 0.05, (n, c)) - 0.3 * c / 2


# -- values ------------------------------------------------------------------------------------

def _np_cross_entropy(z, y):
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    return lse - z[np.arange(len(y)), y]


def _np_multi_margin(s, y, p, margin):
    n, c = s.shape
    hinge = np.maximum(0.0, margin - s[np.arange(n), y][:, None] + s) ** p
    hinge[np.arange(n), y] = 0.0
    return hinge.sum(axis=1) / c


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_values_match_the_formulas(backend, reduction):
    rng = np.random.default_rng(0)
    n, c = 5, 4
    z, y = rng.standard_normal((n, c)) * 3, rng.integers(0, c, n)
    p, q, s = rng.uniform(0.05, 0.95, n), rng.uniform(0, 1, n), rng.standard_normal(n) * 3
    sign = rng.choice([-1.0, 1.0], n)
    cases = {
        "mse": (L.mse_loss(t(p), t(q), reduction), (p - q) ** 2),
        "cross_entropy": (L.cross_entropy(t(z), labels(y), reduction), _np_cross_entropy(z, y)),
        "bce": (L.binary_cross_entropy(t(p), t(q), reduction), -(q * np.log(p) + (1 - q) * np.log(1 - p))),
        "bce_logits": (L.binary_cross_entropy_with_logits(t(s), t(q), reduction),
                       -(q * np.log(1 / (1 + np.exp(-s))) + (1 - q) * np.log(1 - 1 / (1 + np.exp(-s))))),
        "hinge_p1": (L.multi_margin_loss(t(z), labels(y), reduction=reduction), _np_multi_margin(z, y, 1, 1.0)),
        "hinge_p2_m05": (L.multi_margin_loss(t(z), labels(y), p=2, margin=0.5, reduction=reduction),
                         _np_multi_margin(z, y, 2, 0.5)),
        "perceptron_binary": (L.perceptron_loss(t(s), t(sign), reduction), np.maximum(0.0, -sign * s)),
        "perceptron_multi": (L.perceptron_loss(t(z), labels(y), reduction), z.max(axis=1) - z[np.arange(n), y]),
    }
    for name, (ours, per_sample) in cases.items():
        want = reduce(per_sample, reduction)
        assert ours.shape == np.shape(want), name
        np.testing.assert_allclose(ours.numpy(), want, rtol=1e-12, atol=1e-14, err_msg=name)


def test_perceptron_loss_is_zero_exactly_when_the_prediction_is_right():
    scores = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    np.testing.assert_array_equal(L.perceptron_loss(t(scores), labels([0, 1]), "none").numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(L.perceptron_loss(t(scores), labels([2, 0]), "none").numpy(), [2.0, 3.0])
    np.testing.assert_array_equal(L.perceptron_loss(t([1.5, -0.5]), t([1.0, 1.0]), "none").numpy(), [0.0, 0.5])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_agrees_with_pytorch_values_and_gradients(reduction):
    torch = pytest.importorskip("torch", reason="PyTorch not installed: the cross-check against it is skipped")
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    z, y = rng.standard_normal((6, 5)) * 2, rng.integers(0, 5, 6)
    p, q = rng.uniform(0.05, 0.95, 6), rng.uniform(0, 1, 6)
    pairs = [
        (lambda a: L.cross_entropy(a, labels(y), reduction), lambda a: F.cross_entropy(a, torch.tensor(y), reduction=reduction), z),
        (lambda a: L.multi_margin_loss(a, labels(y), p=1, reduction=reduction),
         lambda a: F.multi_margin_loss(a, torch.tensor(y), p=1, reduction=reduction), z),
        (lambda a: L.multi_margin_loss(a, labels(y), p=2, margin=0.7, reduction=reduction),
         lambda a: F.multi_margin_loss(a, torch.tensor(y), p=2, margin=0.7, reduction=reduction), z),
        (lambda a: L.binary_cross_entropy(a, t(q), reduction),
         lambda a: F.binary_cross_entropy(a, torch.tensor(q), reduction=reduction), p),
        (lambda a: L.binary_cross_entropy_with_logits(a, t(q), reduction),
         lambda a: F.binary_cross_entropy_with_logits(a, torch.tensor(q), reduction=reduction), z[:, 0] * 3),
        (lambda a: L.mse_loss(a, t(q), reduction), lambda a: F.mse_loss(a, torch.tensor(q), reduction=reduction), p),
    ]
    for ours, theirs, x in pairs:
        a, b = t(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        la, lb = ours(a), theirs(b)
        np.testing.assert_allclose(la.numpy(), lb.detach().numpy(), rtol=1e-12, atol=1e-14)
        w = rng.standard_normal(la.shape)
        (la * t(w)).sum().backward()
        (lb * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-12, atol=1e-14)


# -- stability ---------------------------------------------------------------------------------

def test_cross_entropy_is_stable_for_logits_of_1e4(backend):
    z = t([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4], [1e4, 1e4, 1e4]], requires_grad=True)
    loss = L.cross_entropy(z, labels([0, 2, 1]), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [0.0, 2e4, np.log(3)], rtol=1e-15)
    loss.sum().backward()
    np.testing.assert_allclose(z.grad.numpy(), [[0, 0, 0], [1, 0, -1], [1 / 3, -2 / 3, 1 / 3]], atol=1e-15)


def test_cross_entropy_mean_gradient_is_softmax_minus_onehot_over_n(backend):
    rng = np.random.default_rng(2)
    z, y = rng.standard_normal((4, 3)), np.array([2, 0, 0, 1])
    x = t(z, requires_grad=True)
    L.cross_entropy(x, labels(y)).backward()
    softmax = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(x.grad.numpy(), (softmax - np.eye(3)[y]) / 4, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("name", ["cross_entropy", "cross_entropy_fused", "binary_cross_entropy",
                                  "binary_cross_entropy_with_logits"])
def test_the_fused_losses_backward_runs_on_plain_arrays_and_matches_the_recorded_one(backend, name, monkeypatch):
    rng = np.random.default_rng(4)
    z = rng.standard_normal((5, 3))
    if name.startswith("cross_entropy"):
        target, prim = labels([0, 2, 1, 1, 0]), L._cross_entropy_fused if name.endswith("fused") else L._cross_entropy
        loss = L.cross_entropy
    elif name == "binary_cross_entropy":
        z, target, prim, loss = 1 / (1 + np.exp(-z)), t(rng.uniform(0, 1, z.shape)), L._binary_cross_entropy, L.binary_cross_entropy
    else:
        target, prim, loss = t(rng.uniform(0, 1, z.shape)), L._bce_with_logits, L.binary_cross_entropy_with_logits
    if name == "cross_entropy_fused" and B.kernel("cross_entropy") is None:
        pytest.skip(f"no fused cross-entropy kernel on the {B.name} backend (course.fast); the standard rule is the other case")
    seen = gradient_types(monkeypatch, prim)
    x = t(z, requires_grad=True)
    with B.standard_only() if name == "cross_entropy" else contextlib.nullcontext():
        loss(x, target).backward()
        assert seen == [type(x.data)]  # an array, not a Tensor: no wrapping
        (recorded,) = grad(loss(x, target), x, create_graph=True)  # the same rule on Tensors
    assert seen[-1] is Tensor and recorded.requires_grad
    np.testing.assert_allclose(x.grad.numpy(), recorded.numpy(), rtol=1e-12, atol=1e-15)


def test_binary_cross_entropy_clamps_its_logs_like_pytorch(backend):
    p = t([0.0, 1.0, 0.0, 1.0], requires_grad=True)
    loss = L.binary_cross_entropy(p, t([1.0, 0.0, 0.0, 1.0]), reduction="none")
    np.testing.assert_array_equal(loss.numpy(), [100.0, 100.0, 0.0, 0.0])
    loss.sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), [-1e12, 1e12, 0.0, 0.0])  # (p − y) / max(p(1 − p), 1e-12)


def test_binary_cross_entropy_with_logits_never_overflows(backend):
    x = t([-1e4, 1e4, 0.0], requires_grad=True)
    loss = L.binary_cross_entropy_with_logits(x, t([1.0, 1.0, 0.0]), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [1e4, 0.0, np.log(2)], rtol=1e-15)
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-1.0, 0.0, 0.5], atol=1e-15)  # σ(x) − y, also at x = 0


# -- derivatives -------------------------------------------------------------------------------

def _check(fn, *host) -> None:
    xs = [t(h) for h in host]
    first = gradcheck(fn, xs)
    assert first.max_error < TOL, first
    second = gradgradcheck(fn, xs, rng=0)
    assert second.max_error < TOL, second


sizes = dict(n=st.integers(1, 4), c=st.integers(2, 4), reduction=st.sampled_from(REDUCTIONS),
             seed=st.integers(0, 2**32 - 1))


@given(**sizes)
def test_cross_entropy_derivatives(backend, n, c, reduction, seed):
    rng = np.random.default_rng(seed)
    y = labels(rng.integers(0, c, n))
    _check(lambda z: L.cross_entropy(z, y, reduction), rng.standard_normal((n, c)) * 3)


@given(**sizes, p=st.sampled_from([1, 2]), margin=st.sampled_from([1.0, 0.5]))
def test_multi_margin_loss_derivatives(backend, n, c, reduction, seed, p, margin):
    rng = np.random.default_rng(seed)
    y = labels(rng.integers(0, c, n))
    _check(lambda s: L.multi_margin_loss(s, y, p=p, margin=margin, reduction=reduction), spaced_scores(rng, n, c))


@given(**sizes)
def test_perceptron_loss_derivatives(backend, n, c, reduction, seed):
    rng = np.random.default_rng(seed)
    y = labels(rng.integers(0, c, n))
    _check(lambda s: L.perceptron_loss(s, y, reduction), spaced_scores(rng, n, c))
    sign = t(rng.choice([-1.0, 1.0], n))
    scores = rng.uniform(0.1, 2.0, n) * rng.choice([-1.0, 1.0], n)
    _check(lambda s: L.perceptron_loss(s, sign, reduction), scores)


@given(**sizes)
def test_binary_losses_derivatives_for_input_and_target(backend, n, c, reduction, seed):
    rng = np.random.default_rng(seed)
    shape = (n, c)
    target = rng.uniform(0, 1, shape)
    _check(lambda p, q: L.binary_cross_entropy(p, q, reduction), rng.uniform(0.1, 0.9, shape), target)
    _check(lambda x, q: L.binary_cross_entropy_with_logits(x, q, reduction), rng.standard_normal(shape) * 3, target)
    _check(lambda a, b: L.mse_loss(a, b, reduction), rng.standard_normal(shape), rng.standard_normal(shape))


def test_cross_entropy_hessian_is_the_softmax_covariance(backend):
    z = np.array([0.3, -1.2, 2.0])
    x = t(z[None, :], requires_grad=True)
    (g,) = grad(L.cross_entropy(x, labels([1])), x, create_graph=True)
    rows = [grad(g[0, i], x)[0].numpy()[0] for i in range(3)]
    s = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(np.array(rows), np.diag(s) - np.outer(s, s), rtol=1e-12, atol=1e-15)


# -- errors ------------------------------------------------------------------------------------

def test_mistakes_get_clear_errors(backend):
    z, y = t(np.zeros((3, 4))), labels([0, 1, 3])
    with pytest.raises(ValueError, match="reduction must be one of"):
        L.cross_entropy(z, y, reduction="average")
    with pytest.raises(TypeError, match="integer class indices"):
        L.cross_entropy(z, t([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        L.cross_entropy(z, labels([0, 4, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        L.multi_margin_loss(z, labels([0, -1, 1]))
    with pytest.raises(ValueError, match=r"shape \(N, C\).*\(3, 4\) and \(2,\)"):
        L.cross_entropy(z, labels([0, 1]))
    with pytest.raises(ValueError, match=r"\(3, 1\) but target has shape \(3,\)"):
        L.mse_loss(t(np.zeros((3, 1))), t(np.zeros(3)))
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]; apply sigmoid"):
        L.binary_cross_entropy(t([0.5, 1.5]), t([0.0, 1.0]))
    with pytest.raises(ValueError, match="-1 or \\+1; map 0/1 labels with 2 \\* y - 1"):
        L.perceptron_loss(t([0.5, -0.5]), t([0.0, 1.0]))
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        L.multi_margin_loss(z, y, p=3)
