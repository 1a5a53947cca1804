"""The CuPy code paths, run on the CPU through a fake CuPy (``tests/_fakecupy.py``) that raises on
every implicit host transfer: backward, the training loop, optimizers, batch norm, dropout,
clipping and the losses must run on "the device" with only the explicit, documented transfers.

The same programs are compared with the NumPy backend (same seeds, same weights), so the CuPy
paths compute the right numbers too. The fused CUDA kernels of ``course.fast.cupy`` need a real
GPU (tests/test_gpu.py); here the optimizers run their standard-only code.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator

import array_api_compat
import numpy as np
import pytest

import _fakecupy as fake
import course
from course import backend as B
from course import losses, nn, ops, optim
from course import train as T
from course.autodiff import Tensor


@pytest.fixture
def fake_cupy(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``course.use("cupy")`` on the fake CuPy; NumPy again afterwards."""
    for name, module in fake.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(array_api_compat, "cupy", sys.modules["array_api_compat.cupy"], raising=False)
    course.use("cupy")
    fake.transfers.update(to_device=0, to_host=0)
    try:
        with B.standard_only():  # the CUDA kernels of course.fast.cupy need a real GPU
            yield fake
    finally:
        course.use("numpy")


# -- the shim itself -----------------------------------------------------------------------------

def test_the_shim_refuses_implicit_transfers_and_counts_explicit_ones(fake_cupy):
    x = B.asarray(np.arange(3.0))
    assert isinstance(x, fake.ndarray) and fake.transfers["to_device"] == 1
    total = B.xp.sum(x)
    assert isinstance(total, fake.ndarray) and total.shape == ()  # reductions stay 0-d arrays
    for implicit in (np.asarray, float, int, bool, lambda a: a.item(), lambda a: a.tolist()):
        with pytest.raises(fake.HostTransferError):
            implicit(total)
    with pytest.raises(TypeError, match="host array"):
        x + np.ones(3)
    with pytest.raises(TypeError, match="host array"):
        np.ones(3) + x
    assert not hasattr(x.flags, "writeable") and x.flags.owndata
    np.testing.assert_array_equal(B.to_numpy(x * 2.0), [0.0, 2.0, 4.0])
    assert fake.transfers["to_host"] == 1
    assert sys.modules["cupy"].get_array_module(x) is sys.modules["cupy"]
    assert sys.modules["cupy"].get_array_module(np.ones(1)) is np


# -- the library on the device --------------------------------------------------------------------

def _leaf(host: np.ndarray) -> Tensor:
    return Tensor(B.asarray(host), requires_grad=True)


def test_backward_runs_on_device_arrays_and_leaves_own_their_gradients(fake_cupy):
    """CuPy arrays' flags have no ``writeable``: the check that a gradient may be kept must not
    read it (it used to, and the first backward on CuPy crashed)."""
    x, y = _leaf(np.array([1.0, 2.0, 3.0])), _leaf(np.array([0.5, -1.0, 2.0]))
    ((x * y).sum() + (x + y).sum()).backward()
    assert isinstance(x.grad.data, fake.ndarray) and x.grad.data is not y.grad.data
    np.testing.assert_allclose(x.grad.numpy(), [1.5, 0.0, 3.0])
    np.testing.assert_allclose(y.grad.numpy(), [2.0, 3.0, 4.0])


CASES = {
    "matmul_relu_sum": (lambda a, b: ops.relu(a @ b).sum(axis=0), [(3, 4), (4, 2)]),
    "linear_logsumexp": (lambda x, w, b: ops.logsumexp(ops.linear(x, w, b), axis=1), [(4, 3), (2, 3), (2,)]),
    "softmax_max_mean": (lambda a: ops.softmax(a, axis=-1).max(axis=1) + a.mean(axis=0, keepdims=True),
                         [(3, 3)]),
    "getitem_take_concat": (lambda a: ops.concat([a[B.asarray(np.array([0, 2, 2]))],
                                                  ops.take(a, B.asarray(np.array([1, 1])), axis=0)]), [(3, 2)]),
    "cross_entropy": (lambda z: losses.cross_entropy(z, B.asarray(np.array([1, 0, 2]))), [(3, 4)]),
}


def _gradients(case: str) -> list[np.ndarray]:
    fn, shapes = CASES[case]
    rng = np.random.default_rng(0)
    xs = [_leaf(rng.standard_normal(s)) for s in shapes]
    out = fn(*xs)
    (out * Tensor(B.asarray(rng.standard_normal(out.shape)))).sum().backward()
    return [x.grad.numpy() for x in xs]


@pytest.mark.parametrize("case", CASES)
def test_forward_and_backward_agree_with_numpy(fake_cupy, case):
    got = _gradients(case)
    course.use("numpy")
    want = _gradients(case)
    course.use("cupy")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_create_graph_and_the_hessian_run_on_the_device(fake_cupy):
    x = Tensor(B.asarray(np.array([1.0, -2.0])))
    h = course.autodiff.hessian(lambda t: (t * t * t).sum(), x)
    np.testing.assert_allclose(h.numpy(), np.diag([6.0, -12.0]))


def _train(dropout: float, epochs: int = 2, batch_size: int = 16,
           stopping: bool = True) -> tuple[T.History, dict[str, np.ndarray]]:
    """An MLP with batch norm trained by Adam with early stopping: fit, evaluate, the lot."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((96, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    model = nn.MLP([5, 8, 3], batch_norm=True, dropout=dropout, rng=0)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    history = T.fit(model, losses.cross_entropy, opt, (X[:64], y[:64]), (X[64:], y[64:]), epochs=epochs,
                    batch_size=batch_size, rng=1, progress=False,
                    early_stopping=T.EarlyStopping(patience=5) if stopping else None)
    return history, model.state_dict()


def test_the_training_loop_transfers_per_epoch_never_per_batch(fake_cupy):
    """Twice the batches, the same transfers: to the device, the data once per fit/evaluate call
    and one permutation per epoch; back, the loss and the accuracy once per evaluate call."""
    counts = []
    for batch_size in (16, 8):
        fake.transfers.update(to_device=0, to_host=0)
        history, _ = _train(dropout=0.0, batch_size=batch_size, stopping=False)
        counts.append(dict(fake.transfers, to_host=fake.transfers["to_host"] - 9))  # state_dict's reads
        assert len(history) == 2 and np.isfinite(history["val_loss"]).all()
    assert counts[0] == counts[1], counts
    evaluations = 2 * 2  # the training and the validation set after each of 2 epochs
    assert counts[0]["to_host"] == 2 * evaluations, counts


def test_the_training_loop_gives_numpys_numbers(fake_cupy):
    on_device, state = _train(dropout=0.0)
    course.use("numpy")
    with B.standard_only():
        on_host, want = _train(dropout=0.0)
    course.use("cupy")
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        np.testing.assert_allclose(on_device[key], on_host[key], rtol=1e-5)
    for key in want:
        np.testing.assert_allclose(state[key], want[key], rtol=1e-4, atol=1e-6)


def test_dropout_draws_its_masks_on_the_device(fake_cupy):
    history, _ = _train(dropout=0.3, epochs=1)
    assert np.isfinite(history["train_loss"]).all()
    layer = nn.Dropout(0.5, rng=0)
    x = Tensor(B.asarray(np.ones((4, 6), np.float32)), requires_grad=True)
    layer(x).sum().backward()
    assert isinstance(x.grad.data, fake.ndarray)
    assert set(np.unique(x.grad.numpy())) <= {0.0, 2.0}


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
                                  lambda ps: optim.Adam(ps, lr=0.1, weight_decay=0.01),
                                  lambda ps: optim.RMSprop(ps, lr=0.01)])
def test_optimizer_steps_stay_on_the_device(fake_cupy, make):
    p = course.Parameter(B.asarray(np.array([1.0, -2.0, 3.0])))
    opt = make([p])
    for _ in range(3):
        opt.zero_grad()
        (p * p).sum().backward()
        opt.step()
    assert isinstance(p.data, fake.ndarray)
    assert fake.transfers["to_host"] == 0


def test_clip_grad_norm_reads_the_host_once(fake_cupy):
    p, q = course.Parameter(B.asarray(np.zeros(2))), course.Parameter(B.asarray(np.zeros(1)))
    p.grad, q.grad = Tensor(B.asarray(np.array([3.0, 0.0]))), Tensor(B.asarray(np.array([4.0])))
    before = fake.transfers["to_host"]
    assert optim.clip_grad_norm_([p, q], max_norm=1.0) == pytest.approx(5.0)
    assert fake.transfers["to_host"] == before + 1
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.0], rtol=1e-6)


def test_losses_skip_value_checks_on_the_device_and_keep_them_on_the_host(fake_cupy):
    z = Tensor(B.asarray(np.zeros((2, 3))), requires_grad=True)
    losses.cross_entropy(z, B.asarray(np.array([0, 2]))).backward()  # no host read per call
    assert fake.transfers["to_host"] == 0
    course.use("numpy")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        losses.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0, 3]))
