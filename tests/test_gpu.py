"""Real CuPy runs: forward and backward on the GPU agree with NumPy, gradients stay on the
device, and the GPU scatter-add kernel agrees with the standard-only fallback.

These run when CuPy and a CUDA device are present and are skipped with the reason otherwise;
the same code paths run on CPU in the array_api_strict tests (test_ops, test_losses, ...).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import course
from course import backend as B
from course import losses, ops
from course.autodiff import Tensor
from course.gradcheck import gradcheck

pytestmark = pytest.mark.gpu


def _gpu_unavailable() -> str | None:
    """Why the GPU tests cannot run here, or None when they can."""
    try:
        course.use("cupy")
    except B.BackendUnavailable as exc:
        return str(exc)
    finally:
        course.use("numpy")
    return None


@pytest.fixture
def gpu() -> Iterator[None]:
    reason = _gpu_unavailable()
    if reason is not None:
        pytest.skip(f"GPU tests skipped: {reason}")
    course.use("cupy")
    try:
        yield
    finally:
        course.use("numpy")


def _run(fn, host_inputs, host_weights):
    """Forward value and gradients of ``Σ w ⊙ fn(inputs)``, as host arrays."""
    xs = [Tensor(B.asarray(h), requires_grad=True) for h in host_inputs]
    out = fn(*xs)
    (out * Tensor(B.asarray(host_weights))).sum().backward()
    for x in xs:
        assert type(x.grad.data).__module__.startswith(type(x.data).__module__.split(".")[0])
    return out.numpy(), [x.grad.numpy() for x in xs]


rng = np.random.default_rng(0)
IDX = np.array([0, 3, 3, 1, 3])
LABELS = np.array([1, 0, 2, 2])
CASES = {
    "matmul_batched": (lambda a, b: a @ b, [rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))]),
    "linear_relu": (lambda x, w, b: ops.relu(ops.linear(x, w, b)),
                    [rng.standard_normal((4, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)]),
    "logsumexp": (lambda a: ops.logsumexp(a, axis=1), [rng.standard_normal((3, 4))]),
    "log_softmax_tanh": (lambda a: ops.log_softmax(ops.tanh(a)), [rng.standard_normal((3, 4))]),
    "getitem_repeats": (lambda a: a[B.asarray(IDX)], [rng.standard_normal((4, 3))]),
    "take_repeats": (lambda a: ops.take(a, B.asarray(IDX), axis=1), [rng.standard_normal((2, 4))]),
    "cross_entropy": (lambda z: losses.cross_entropy(z, B.asarray(LABELS), reduction="none"),
                      [rng.standard_normal((4, 3))]),
}


@pytest.mark.parametrize("name", CASES)
def test_gpu_forward_and_backward_match_numpy(gpu, name):
    fn, host = CASES[name]
    course.use("numpy")
    shape = fn(*[Tensor(h) for h in host]).shape
    weights = np.random.default_rng(1).standard_normal(shape)
    want_out, want_grads = _run(fn, host, weights)
    course.use("cupy")
    got_out, got_grads = _run(fn, host, weights)
    np.testing.assert_allclose(got_out, want_out, rtol=1e-12, atol=1e-12)
    for got, want in zip(got_grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_gpu_scatter_add_kernel_matches_the_standard_fallback(gpu):
    assert B.kernel("scatter_add") is not None
    host = np.random.default_rng(2).standard_normal((4, 3))
    fast = _run(lambda a: a[B.asarray(IDX)], [host], np.ones((5, 3)))[1][0]
    with B.standard_only():
        slow = _run(lambda a: a[B.asarray(IDX)], [host], np.ones((5, 3)))[1][0]
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast[3], [3.0, 3.0, 3.0])


def test_gradcheck_runs_on_the_gpu(gpu):
    x = Tensor(B.asarray(np.random.default_rng(3).standard_normal((3, 4))))
    report = gradcheck(lambda a: ops.log_softmax(ops.tanh(a)), [x])
    assert report.passed and report.max_error < 1e-7, report


def test_gpu_random_is_reproducible_per_generator(gpu):
    # one temporary generator after another: CPython may give them the same id
    a = B.random((100,), B.xp.float32, np.random.default_rng(5))
    b = B.random((100,), B.xp.float32, np.random.default_rng(5))
    np.testing.assert_array_equal(B.to_numpy(a), B.to_numpy(b))
    gen = np.random.default_rng(5)
    first, second = B.random((100,), B.xp.float32, gen), B.random((100,), B.xp.float32, gen)
    assert not np.array_equal(B.to_numpy(first), B.to_numpy(second))  # the stream moves on
