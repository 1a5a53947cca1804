"""Batch normalization: forward statistics, the fused closed-form backward (against the
composition of primitives and finite differences), the NumPy kernel against the standard
code, running statistics, evaluation mode, folding, and batch-size errors."""
from __future__ import annotations

import numpy as np
import pytest

import course
from course import Tensor, nn
from course import backend as B
from course import functional as F
from course.gradcheck import gradcheck, gradgradcheck

from _spies import gradient_types

EPS = 1e-5


def _data(n=8, d=5, seed=0, dtype=np.float64):
    g = np.random.default_rng(seed)
    x = (g.standard_normal((n, d)) * g.uniform(0.5, 3, d) + g.uniform(-2, 2, d)).astype(dtype)
    gamma = g.uniform(0.5, 2.0, d).astype(dtype)
    beta = g.standard_normal(d).astype(dtype)
    dy = g.standard_normal((n, d)).astype(dtype)
    return x, gamma, beta, dy


def _host(*arrays):
    return [B.to_numpy(a) for a in arrays]


def test_forward_normalizes_with_biased_batch_variance(backend):
    x, gamma, beta, _ = _data()
    y, mean, var = _host(*F.batchnorm_forward(*[B.asarray(a) for a in (x, gamma, beta)], EPS))
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(var, ((x - x.mean(0)) ** 2).sum(0) / len(x), rtol=1e-13)  # divide by N
    np.testing.assert_allclose(y, gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + EPS) + beta, rtol=1e-12)
    # with γ = 1, β = 0 each feature has mean 0 and variance σ²/(σ² + ε)
    z = B.to_numpy(F.batchnorm_forward(B.asarray(x), B.asarray(np.ones(5)), B.asarray(np.zeros(5)), EPS)[0])
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-14)
    np.testing.assert_allclose(z.var(0), x.var(0) / (x.var(0) + EPS), rtol=1e-12)


def test_closed_form_backward_equals_autodiff_of_the_composition(backend):
    x, gamma, beta, dy = _data()
    xt, gt, bt = (Tensor(B.asarray(a), requires_grad=True) for a in (x, gamma, beta))
    y, _, _ = F.batch_norm_composite(xt, gt, bt, EPS)
    y.backward(Tensor(B.asarray(dy)))
    _, mean, var = F.batchnorm_forward(*(B.asarray(a) for a in (x, gamma, beta)), EPS)
    closed = _host(*F.batchnorm_backward(B.asarray(dy), B.asarray(x), B.asarray(gamma), mean, var, EPS))
    for got, want, name in zip(closed, _host(xt.grad.data, gt.grad.data, bt.grad.data), ("dx", "dγ", "dβ")):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "composite"])
def test_batch_norm_node_gradchecks(fused):
    x, gamma, beta, _ = _data(6, 4)
    fn = F.batch_norm if fused else F.batch_norm_composite
    report = gradcheck(lambda x, g, b: fn(x, g, b, EPS)[0], [x, gamma, beta])
    assert report, str(report)


def test_fused_node_is_once_differentiable_composite_twice():
    x, gamma, beta, _ = _data(5, 3)
    with pytest.raises(RuntimeError, match="batch_norm_composite"):
        gradgradcheck(lambda x, g: F.batch_norm(x, g, beta, EPS)[0], [x, gamma])
    report = gradgradcheck(lambda x, g: F.batch_norm_composite(x, g, beta, EPS)[0], [x, gamma], rng=0)
    assert report, str(report)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_numpy_kernel_equals_standard_code(dtype, rtol):
    assert B.kernel("batchnorm_forward") is not None and B.kernel("batchnorm_backward") is not None
    x, gamma, beta, dy = _data(64, 33, seed=3, dtype=dtype)
    fast = F.batchnorm_forward(x, gamma, beta, EPS)
    fast_back = F.batchnorm_backward(dy, x, gamma, fast[1], fast[2], EPS)
    with B.standard_only():
        assert B.kernel("batchnorm_forward") is None
        ref = F.batchnorm_forward(x, gamma, beta, EPS)
        ref_back = F.batchnorm_backward(dy, x, gamma, ref[1], ref[2], EPS)
    for got, want in zip(fast + fast_back, ref + ref_back):
        assert got.dtype == dtype  # no silent upcast
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)
    # the kernel's scratch buffers are private: a second call leaves the first outputs intact
    again = F.batchnorm_forward(x * 2, gamma, beta, EPS)
    np.testing.assert_array_equal(fast[0], F.batchnorm_forward(x, gamma, beta, EPS)[0])
    assert not np.shares_memory(again[0], fast[0])


def test_float32_stays_float32_through_the_module():
    bn = nn.BatchNorm1d(4)
    x = Tensor(_data(6, 4, dtype=np.float32)[0], requires_grad=True)
    y = bn(x)
    y.backward(Tensor(np.ones((6, 4), np.float32)))
    assert y.dtype == x.grad.dtype == bn.weight.grad.dtype == bn.running_var.dtype == np.float32


def test_running_stats_momentum_and_unbiased_variance():
    bn = nn.BatchNorm1d(5, dtype=np.float64)
    x1, x2 = _data(8, seed=1)[0], _data(8, seed=2)[0]
    n = len(x1)
    bn(Tensor(x1))
    # momentum 0.1 is the weight of the new batch, from (0, 1), unbiased variance n/(n−1)·σ²
    mean1 = 0.1 * x1.mean(0)
    var1 = 0.9 * 1.0 + 0.1 * x1.var(0) * n / (n - 1)
    np.testing.assert_allclose(bn.running_mean, mean1, rtol=1e-13)
    np.testing.assert_allclose(bn.running_var, var1, rtol=1e-13)
    bn(Tensor(x2))
    np.testing.assert_allclose(bn.running_mean, 0.9 * mean1 + 0.1 * x2.mean(0), rtol=1e-13)
    np.testing.assert_allclose(bn.running_var, 0.9 * var1 + 0.1 * x2.var(0, ddof=1), rtol=1e-13)
    assert int(bn.num_batches_tracked) == 2
    # the pure function, the same formula
    new_mean, new_var = F.update_running_stats(np.zeros(5), np.ones(5), x1.mean(0), x1.var(0), n, momentum=0.3)
    np.testing.assert_allclose(new_mean, 0.3 * x1.mean(0), rtol=1e-14)
    np.testing.assert_allclose(new_var, 0.7 + 0.3 * x1.var(0, ddof=1), rtol=1e-14)


def test_momentum_none_is_the_plain_average_of_batches():
    bn = nn.BatchNorm1d(5, momentum=None, dtype=np.float64)
    batches = [_data(8, seed=s)[0] for s in range(4)]
    for x in batches:
        bn(Tensor(x))
    # the notes' inference statistics: E[x] = mean of μ_B, Var[x] = n/(n−1)·mean of σ²_B
    np.testing.assert_allclose(bn.running_mean, np.mean([x.mean(0) for x in batches], 0), rtol=1e-13)
    np.testing.assert_allclose(bn.running_var, 8 / 7 * np.mean([x.var(0) for x in batches], 0), rtol=1e-13)


def test_momentum_none_reads_the_batch_count_back_only_after_the_buffer_is_replaced(monkeypatch):
    """On a GPU a read of num_batches_tracked waits for the device: it happens once after a load, never per step."""
    batches = [_data(8, seed=s)[0] for s in range(4)]
    bn = nn.BatchNorm1d(5, momentum=None, dtype=np.float64)
    reads = []
    to_numpy = B.to_numpy
    monkeypatch.setattr(B, "to_numpy", lambda x: reads.append(x.shape) or to_numpy(x))
    for x in batches[:3]:
        bn(Tensor(x))
    assert reads == []
    state = bn.state_dict()
    resumed = nn.BatchNorm1d(5, momentum=None, dtype=np.float64).load_state_dict(state)
    reads.clear()
    resumed(Tensor(batches[3]))  # the 4th batch: weight 1/4, from the loaded count of 3
    resumed(Tensor(batches[3]))
    assert reads == [()]  # the count, read once
    assert int(resumed.num_batches_tracked) == 5
    means = [x.mean(0) for x in batches + [batches[3]]]
    np.testing.assert_allclose(resumed.running_mean, np.mean(means, 0), rtol=1e-13)


def test_eval_uses_running_statistics(backend):
    bn = nn.BatchNorm1d(5, dtype=np.float64)
    bn.weight.data = B.asarray(np.linspace(0.5, 2, 5))
    bn.bias.data = B.asarray(np.linspace(-1, 1, 5))
    for s in range(3):
        bn(course.tensor(_data(8, seed=s)[0]))
    bn.eval()
    x = _data(6, seed=9)[0]
    rm, rv, g, b = _host(bn.running_mean, bn.running_var, bn.weight.data, bn.bias.data)
    out = bn(course.tensor(x)).numpy()
    np.testing.assert_allclose(out, (x - rm) / np.sqrt(rv + EPS) * g + b, rtol=1e-12)
    # each sample's output depends on that sample only, and a batch of one works
    np.testing.assert_allclose(bn(course.tensor(x[:1])).numpy(), out[:1], rtol=1e-14)
    before = _host(bn.running_mean)[0]
    bn(course.tensor(x))
    np.testing.assert_array_equal(_host(bn.running_mean)[0], before)  # eval does not update
    bn.train()
    assert not np.allclose(bn(course.tensor(x)).numpy(), out)


def test_batch_of_one_in_training_raises():
    bn = nn.BatchNorm1d(3)
    one = Tensor(np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match="at least 2 samples per batch, got 1.*model.eval\\(\\)"):
        bn(one)
    with pytest.raises(ValueError, match="at least 2 samples"):
        F.update_running_stats(np.zeros(3), np.ones(3), np.zeros(3), np.zeros(3), 1)
    bn.eval()
    assert bn(one).shape == (1, 3)


def test_input_shape_errors():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="\\(batch, num_features\\)"):
        bn(Tensor(np.ones((2, 3, 4), np.float32)))
    with pytest.raises(ValueError, match="last dimension is 3"):
        bn(Tensor(np.ones((4, 2), np.float32)))


def test_affine_false_and_no_running_stats():
    x = _data(8)[0]
    plain = nn.BatchNorm1d(5, affine=False, dtype=np.float64)
    assert list(plain.parameters()) == []
    np.testing.assert_allclose(plain(Tensor(x)).numpy(), (x - x.mean(0)) / np.sqrt(x.var(0) + EPS), rtol=1e-12)
    batch_only = nn.BatchNorm1d(5, track_running_stats=False, dtype=np.float64).eval()
    assert set(batch_only.state_dict()) == {"weight", "bias"}
    np.testing.assert_allclose(batch_only(Tensor(x)).numpy(), plain(Tensor(x)).numpy(), rtol=1e-14)


def test_student_functions_plug_into_the_module():
    calls = []

    def my_forward(x, gamma, beta, eps=1e-5):
        calls.append("forward")
        return F.batchnorm_forward(x, gamma, beta, eps)

    def my_backward(dy, x, gamma, mean, var, eps=1e-5):
        calls.append("backward")
        dx, dgamma, dbeta = F.batchnorm_backward(dy, x, gamma, mean, var, eps)
        return dx, 2 * dgamma, dbeta

    bn = nn.BatchNorm1d(5, dtype=np.float64, forward_fn=my_forward, backward_fn=my_backward)
    x = Tensor(_data()[0], requires_grad=True)
    bn(x).sum().backward()
    assert calls == ["forward", "backward"]  # one backward call serves x, γ and β
    ref = nn.BatchNorm1d(5, dtype=np.float64)
    ref(Tensor(x.data)).sum().backward()
    np.testing.assert_allclose(bn.weight.grad.numpy(), 2 * ref.weight.grad.numpy())


def test_fold_is_the_eval_affine_map():
    bn = nn.BatchNorm1d(5, dtype=np.float64)
    bn.weight.data = np.linspace(0.5, 2, 5)
    for s in range(3):
        bn(Tensor(_data(8, seed=s)[0]))
    a, b = bn.fold()
    np.testing.assert_allclose(a, bn.weight.numpy() / np.sqrt(bn.running_var + EPS), rtol=1e-15)
    np.testing.assert_allclose(b, bn.bias.numpy() - a * bn.running_mean, rtol=1e-15, atol=1e-15)
    x = _data(6, seed=7)[0]
    np.testing.assert_allclose(a * x + b, bn.eval()(Tensor(x)).numpy(), rtol=1e-14)


def test_fusing_a_trained_mlp_is_exact_to_rounding():
    mlp = nn.MLP([6, 16, 16, 3], batch_norm=True, dropout=0.2, rng=0, dtype=np.float64)
    g = np.random.default_rng(1)
    for _ in range(5):  # a few SGD steps: BN parameters and statistics away from their start
        x = Tensor(g.standard_normal((32, 6)) * 2 + 1)
        mlp.zero_grad()
        (mlp(x) ** 2).mean().backward()
        with course.no_grad():
            for p in mlp.parameters():
                p.data = p.data - 0.1 * p.grad.data
    fused = nn.fuse_batchnorm(mlp)
    assert [type(m).__name__ for m in fused] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert mlp.training and not fused.training  # the original is untouched
    x = Tensor(g.standard_normal((64, 6)) * 2 + 1)
    want = mlp.eval()(x).numpy()
    got = fused(x).numpy()
    assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))


def test_the_fused_node_runs_its_backward_on_plain_arrays_once_for_all_arguments(backend, monkeypatch):
    seen = gradient_types(monkeypatch, F._batch_norm)
    calls = []
    x, gamma, beta, dy = _data()
    bn = nn.BatchNorm1d(5, dtype=np.float64, backward_fn=lambda *a: calls.append(1) or F.batchnorm_backward(*a))
    xt = course.tensor(x, requires_grad=True)
    bn(xt).backward(B.asarray(dy))
    assert seen == [type(xt.data)] * 3 and calls == [1]  # x, γ, β: arrays, one closed-form call
    dx, dgamma, dbeta = _host(*F.batchnorm_backward(B.asarray(dy), xt.data, bn.weight.data, B.asarray(x.mean(0)),
                                                    B.asarray(x.var(0))))
    np.testing.assert_allclose(xt.grad.numpy(), dx, rtol=1e-12)
    np.testing.assert_allclose(bn.weight.grad.numpy(), dgamma, rtol=1e-12)
    np.testing.assert_allclose(bn.bias.grad.numpy(), dbeta, rtol=1e-12)
