"""The autodiff engine's structure: graph walking, accumulation, broadcasting, the no-grad and
detach rules, grad()/hvp()/hessian(), and the standard-only fallback of the scatter-add hook."""
from __future__ import annotations

import numpy as np
import pytest

import course
from course import backend as B
from course import ops
from course.autodiff import Parameter, Tensor, enable_grad, grad, hessian, hvp, no_grad


def leaf(values, requires_grad: bool = True) -> Tensor:
    return Tensor(B.asarray(np.asarray(values, dtype=np.float64)), requires_grad=requires_grad)


def test_a_chain_of_100_000_nodes_backpropagates_without_recursion():
    x = leaf(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.00001
    y.backward()
    assert x.grad.item() == pytest.approx(1.00001 ** 100_000, rel=1e-9)


def test_a_node_used_twice_accumulates(backend):
    a = leaf([1.0, -2.0, 3.0])
    b = a + a
    c = b * b
    c.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), 8 * np.array([1.0, -2.0, 3.0]))  # d(4a²)/da


def test_a_diamond_graph_sends_both_paths_back(backend):
    x = leaf(2.0)
    u, v = x * 3.0, ops.exp(x)
    (u * v).backward()
    assert x.grad.item() == pytest.approx(3 * np.exp(2.0) + 6 * np.exp(2.0))


def test_broadcasting_sums_the_gradient_back_to_each_shape(backend):
    a, b, c = leaf(np.ones((3, 1))), leaf(np.ones(4)), leaf(2.0)
    (a * b + c).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (4,) and c.grad.shape == ()
    np.testing.assert_array_equal(a.grad.numpy(), np.full((3, 1), 4.0))
    np.testing.assert_array_equal(b.grad.numpy(), np.full(4, 3.0))
    assert c.grad.item() == 12.0


def test_a_non_scalar_root_needs_an_output_gradient(backend):
    y = leaf([1.0, 2.0]) * 2.0
    with pytest.raises(RuntimeError, match=r"non-scalar tensor of shape \(2,\).*y.sum\(\).backward\(\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"output gradient has shape \(3,\)"):
        y.backward(B.asarray(np.ones(3)))


def test_an_explicit_output_gradient_weights_the_vjp(backend):
    x = leaf([1.0, 2.0])
    (x * x).backward(B.asarray(np.array([10.0, 100.0])))
    np.testing.assert_array_equal(x.grad.numpy(), [20.0, 400.0])


def test_backward_on_a_constant_explains_requires_grad(backend):
    with pytest.raises(RuntimeError, match="requires_grad=True"):
        (leaf([1.0], requires_grad=False) * 2.0).sum().backward()


def test_no_grad_records_nothing_and_enable_grad_records_again(backend):
    x = leaf([1.0, 2.0])
    with no_grad():
        y = x * 2.0
        with enable_grad():
            z = x * 3.0
    assert not y.requires_grad and y.op is None and y.parents == ()
    assert z.requires_grad and z.op is not None and z.parents == (x,)


def test_detach_shares_the_value_but_cuts_the_graph(backend):
    x = leaf([1.0, 2.0])
    y = x * 3.0
    d = y.detach()
    assert d.is_leaf and not d.requires_grad
    np.testing.assert_array_equal(d.numpy(), y.numpy())
    (x * d).sum().backward()  # d is a constant: the gradient is d, not d + 3x
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 6.0])


def test_gradients_accumulate_until_zero_grad(backend):
    x = leaf([1.0, 2.0])
    (x * x).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 8.0])
    x.zero_grad()
    assert x.grad is None
    (x * 5.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 5.0])


def test_only_leaves_that_require_grad_get_grad(backend):
    x, c = leaf([1.0]), leaf([2.0], requires_grad=False)
    h = x * c
    (h * h).sum().backward()
    assert c.grad is None and h.grad is None and x.grad is not None


def test_parameter_requires_grad_by_default():
    p = Parameter(np.ones(2))
    assert p.requires_grad and p.is_leaf and repr(p).startswith("Parameter(")


def test_grad_returns_gradients_and_leaves_dot_grad_alone(backend):
    x, y, unused = leaf([1.0, 2.0]), leaf([3.0, 4.0]), leaf([5.0])
    h = x * y
    out = (h * h).sum()
    gx, gh, gu = grad(out, [x, h, unused])
    np.testing.assert_array_equal(gx.numpy(), 2 * np.array([3.0, 8.0]) * np.array([3.0, 4.0]))
    np.testing.assert_array_equal(gh.numpy(), 2 * np.array([3.0, 8.0]))  # an intermediate node
    np.testing.assert_array_equal(gu.numpy(), [0.0])  # not used: zero, as documented
    assert x.grad is None and y.grad is None and unused.grad is None


def test_create_graph_gives_higher_derivatives(backend):
    x = leaf(1.5)
    (d1,) = grad(x * x * x, x, create_graph=True)
    (d2,) = grad(d1, x, create_graph=True)
    (d3,) = grad(d2, x)
    assert (d1.item(), d2.item(), d3.item()) == pytest.approx((3 * 1.5**2, 6 * 1.5, 6.0))


def test_hessian_of_a_quadratic_is_its_matrix(backend):
    rng = np.random.default_rng(0)
    m = rng.standard_normal((4, 4))
    a = m + m.T
    b = rng.standard_normal(4)
    A, bb = Tensor(B.asarray(a)), Tensor(B.asarray(b))

    def f(x):
        return 0.5 * (x * (A @ x)).sum() + (bb * x).sum()

    h = hessian(f, leaf(rng.standard_normal(4)))
    np.testing.assert_allclose(h.numpy(), a, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="1-D parameter vector"):
        hessian(f, leaf(np.ones((2, 2))))


def test_hvp_matches_the_hessian_and_finite_differences_of_the_gradient(backend):
    rng = np.random.default_rng(1)
    w = Tensor(B.asarray(rng.standard_normal((5, 3))))

    def f(x):
        return ops.logsumexp(ops.tanh(x @ w)) + (x * x * x).sum()

    x, v = rng.standard_normal(5), rng.standard_normal(5)
    hv = hvp(f, leaf(x), leaf(v, requires_grad=False)).numpy()
    np.testing.assert_allclose(hv, hessian(f, leaf(x)).numpy() @ v, rtol=1e-12, atol=1e-12)
    h = 1e-4  # fourth-order central difference of the exact gradient along v

    def gradient_at(point):
        p = leaf(point)
        return grad(f(p), p)[0].numpy()

    fd = (8 * (gradient_at(x + h * v) - gradient_at(x - h * v))
          - (gradient_at(x + 2 * h * v) - gradient_at(x - 2 * h * v))) / (12 * h)
    np.testing.assert_allclose(hv, fd, rtol=1e-8, atol=1e-8)


def test_hvp_works_inside_no_grad_and_returns_a_constant(backend):
    x, v = leaf([1.0, 2.0]), leaf([1.0, 0.0], requires_grad=False)
    with no_grad():
        hv = hvp(lambda t: (t * t * t).sum(), x, v)
    np.testing.assert_allclose(hv.numpy(), [6.0, 0.0])
    assert not hv.requires_grad


# -- the scatter-add hook: NumPy kernel vs the standard-only fallback -------------------------

def _weights(values: np.ndarray, key: tuple) -> np.ndarray:
    """Distinct output weights 1, 2, 3, ... so every scattered entry shows where it went."""
    picked = values[key]
    return np.arange(1.0, 1.0 + picked.size).reshape(picked.shape)


def _index_grads(values: np.ndarray, key: tuple) -> np.ndarray:
    x = leaf(values)
    device_key = tuple(B.asarray(k) if isinstance(k, np.ndarray) else k for k in key)
    (x[device_key] * Tensor(B.asarray(_weights(values, key)))).sum().backward()
    return x.grad.numpy()


@pytest.mark.parametrize("key", [
    (np.array([0, 2, 2, 0, 2]), np.array([1, 1, 1, 0, 1])),
    (np.array([[3, 3], [-1, 0]]), 1),
    (np.array([1, 1, 1]), np.array([2, 2, 2])),
])
def test_scatter_add_fallback_matches_the_numpy_kernel_on_repeated_indices(key):
    values = np.random.default_rng(0).standard_normal((4, 3))
    assert B.kernel("scatter_add") is not None  # NumPy's np.add.at fast path
    fast = _index_grads(values, key)
    with B.standard_only():
        assert B.kernel("scatter_add") is None
        slow = _index_grads(values, key)
    np.testing.assert_array_equal(slow, fast)
    expected = np.zeros_like(values)
    np.add.at(expected, key, _weights(values, key))
    np.testing.assert_array_equal(fast, expected)


def test_scatter_add_fallback_for_a_boolean_mask():
    values = np.random.default_rng(1).standard_normal((3, 4))
    mask = values > 0
    x = leaf(values)
    with B.standard_only():
        (x[B.asarray(mask)] * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.where(mask, 2.0, 0.0))


def test_strict_backend_runs_the_fallback_and_agrees_with_numpy():
    key = (np.array([0, 2, 2, 0, 2]), np.array([1, 1, 1, 0, 1]))
    values = np.random.default_rng(2).standard_normal((4, 3))
    fast = _index_grads(values, key)
    course.use("array_api_strict")
    try:
        assert B.kernel("scatter_add") is None
        strict = _index_grads(values, key)
    finally:
        course.use("numpy")
    np.testing.assert_array_equal(strict, fast)


def test_leaf_gradients_never_alias():
    """add hands the same upstream gradient to both arguments and sum's VJP is a read-only
    broadcast view: leaves must still get gradients they can update in place."""
    x = course.Tensor(np.ones(3), requires_grad=True)
    y = course.Tensor(np.ones(3), requires_grad=True)
    (x + y).sum().backward()
    assert x.grad.data is not y.grad.data
    x.grad.data *= 5.0  # must be writable and must not change y's gradient
    np.testing.assert_array_equal(y.grad.numpy(), np.ones(3))


def test_power_with_constant_nonpositive_base_gives_nan_gradient():
    x = course.Tensor(np.array([0.5, 2.0]), requires_grad=True)
    with np.errstate(invalid="ignore"):  # the forward (-2)**0.5 is nan too
        ((-2.0) ** x).sum().backward()
    assert np.isnan(x.grad.numpy()).all()


# -- the backward pass on plain arrays -----------------------------------------------------------

def _spy_on_exp(monkeypatch) -> list[type]:
    """Record the type of the output gradient exp's VJP receives."""
    seen: list[type] = []
    (rule,) = ops.exp.vjps

    def spy(g, out, a):
        seen.append(type(g))
        return rule(g, out, a)

    monkeypatch.setattr(ops.exp, "vjps", (spy,))
    return seen


def test_library_vjps_run_on_plain_arrays_unless_the_graph_is_recorded(backend, monkeypatch):
    seen = _spy_on_exp(monkeypatch)
    x = leaf([0.5, -1.0])
    (x.exp() * 3.0).sum().backward()
    assert seen == [type(x.data)] and not isinstance(x.grad.data, Tensor)
    (g,) = grad((x.exp() * 3.0).sum(), x, create_graph=True)
    assert seen[-1] is Tensor and g.requires_grad  # the backward pass itself was recorded
    np.testing.assert_allclose(g.numpy(), 3.0 * np.exp([0.5, -1.0]))
    np.testing.assert_allclose(x.grad.numpy(), g.numpy())


def test_a_rule_registered_without_on_arrays_gets_tensors_and_no_graph():
    """A user's VJP may call Tensor methods; without create_graph they record nothing."""
    seen = []

    @course.autodiff.primitive
    def cube(a):
        return a * a * a

    def cube_vjp(g, out, a):
        seen.append((type(g), type(a), course.autodiff.is_grad_enabled()))
        return g * 3.0 * a * a

    course.autodiff.defvjp(cube, cube_vjp)
    x = leaf([2.0, -1.0])
    (cube(x) * 2.0).sum().backward()
    assert seen == [(Tensor, Tensor, False)]
    np.testing.assert_allclose(x.grad.numpy(), [24.0, 6.0])
    (g,) = grad(cube(x).sum(), x, create_graph=True)
    (h,) = grad(g.sum(), x)  # double backward through the user's rule
    np.testing.assert_allclose(h.numpy(), [12.0, -6.0])


def test_a_primitive_given_plain_arrays_is_its_forward():
    a = np.array([1.0, 4.0])
    out = ops.sqrt(a)
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, [1.0, 2.0])


def test_a_replayed_graph_reuses_its_order_and_the_root_does_not_keep_itself_alive(monkeypatch):
    import gc
    import weakref

    calls = []
    original = course.autodiff._reverse_topological
    monkeypatch.setattr(course.autodiff, "_reverse_topological", lambda roots: calls.append(1) or original(roots))
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    y.backward()  # the same graph again: accumulates, without sorting it again
    assert calls == [1]
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])
    alive = weakref.ref(y)
    gc.disable()
    try:
        del y  # the cached order lists the nodes below the root only: no cycle through the root
        assert alive() is None
    finally:
        gc.enable()
