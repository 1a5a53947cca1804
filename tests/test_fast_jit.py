"""The fused kernels of course.fast (compiled with Numba, or their NumPy versions) against the
readable code: batch norm, softmax cross-entropy and the SGD/Adam steps, on random shapes and
both float dtypes. Every test runs on both paths: ``numpy`` (Numba switched off) and ``jit``
(the compiled kernels for every size, not only large arrays)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from course import backend as B
from course import functional as F
from course import losses, nn, optim
from course.autodiff import Parameter, Tensor, grad
from course.fast import jit
from course.fast import numpy as fast_numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_NUMBA = jit.available


@pytest.fixture(params=["numpy", "jit"])
def path(request, monkeypatch):
    if request.param == "jit":
        if not HAVE_NUMBA:
            pytest.skip("numba is not installed (pip install -e '.[fast]'); the NumPy path is tested")
        monkeypatch.setattr(jit, "MIN_SIZE", 0)
    else:
        monkeypatch.setattr(jit, "available", False)
    return request.param


def _shapes(seed: int, count: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    drawn = [(int(rng.integers(2, 300)), int(rng.integers(1, 80))) for _ in range(count)]
    return [(2, 1), (3, 1), (7, 5), (256, 1024)] + drawn


def _close(got, want, dtype, what):
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, reference {want.dtype}"
    tol = 1e-11 if dtype == np.float64 else 3e-5
    scale = max(float(np.abs(want).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


# -- batch norm ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_kernels_equal_the_standard_code(path, dtype):
    for n, d in _shapes(1, 5):
        rng = np.random.default_rng(n * 1000 + d)
        x = (rng.standard_normal((n, d)) * 3 + 2).astype(dtype)
        gamma, beta = rng.standard_normal(d).astype(dtype), rng.standard_normal(d).astype(dtype)
        dy = rng.standard_normal((n, d)).astype(dtype)
        got = F.batchnorm_forward(x, gamma, beta, 1e-5)
        got += F.batchnorm_backward(dy, x, gamma, got[1], got[2], 1e-5)
        with B.standard_only():
            want = F.batchnorm_forward(x, gamma, beta, 1e-5)
            want += F.batchnorm_backward(dy, x, gamma, want[1], want[2], 1e-5)
        for name, a, b in zip(("y", "mean", "var", "dx", "dgamma", "dbeta"), got, want):
            _close(a, b, dtype, f"{path} {name} at N={n}, D={d}")


def test_batchnorm_kernels_are_exact_where_the_mean_dwarfs_the_spread(path):
    """Two passes (x − μ before squaring): the variance of 1e4 + N(0, 1) keeps its digits."""
    rng = np.random.default_rng(2)
    x = 1e4 + rng.standard_normal((300, 7))
    _, _, var = F.batchnorm_forward(x, np.ones(7), np.zeros(7), 1e-5)
    np.testing.assert_allclose(var, x.var(axis=0), rtol=1e-9)


def test_batchnorm_module_trains_the_same_on_both_paths(path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 100)).astype(np.float32)
    results = []
    for standard in (False, True):
        bn = nn.BatchNorm1d(100)
        xt = Tensor(x, requires_grad=True)
        if standard:
            with B.standard_only():
                (bn(xt) ** 2).sum().backward()
        else:
            (bn(xt) ** 2).sum().backward()
        results.append([xt.grad.data, bn.weight.grad.data, bn.bias.grad.data, bn.running_mean, bn.running_var])
    for a, b in zip(*results):
        _close(a, b, np.float32, path)


# -- cross-entropy ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_loss_and_gradient_equal_the_standard_code(path, dtype, reduction):
    for n, c in [(1, 1), (1, 4), (128, 10)] + _shapes(4, 3):
        rng = np.random.default_rng(n + 7 * c)
        z = (rng.standard_normal((n, c)) * 4).astype(dtype)
        z[0, 0] = 60  # large logits: the maximum is subtracted first
        y = rng.integers(0, c, n).astype(np.int32 if n % 2 else np.int64)
        outs = []
        for standard in (False, True):
            zt = Tensor(z, requires_grad=True)
            if standard:
                with B.standard_only():
                    loss = losses.cross_entropy(zt, y, reduction)
                    loss.backward(Tensor(np.full(loss.shape, 0.5, dtype)))
            else:
                loss = losses.cross_entropy(zt, y, reduction)
                loss.backward(Tensor(np.full(loss.shape, 0.5, dtype)))
            outs.append((loss.data, zt.grad.data))
        (l1, g1), (l2, g2) = outs
        assert l1.shape == l2.shape
        _close(l1, l2, dtype, f"{path} loss N={n} C={c}")
        _close(g1, g2, dtype, f"{path} gradient N={n} C={c}")


def test_cross_entropy_fast_path_rejects_bad_labels_like_the_standard_code(path):
    z = Tensor(np.zeros((5, 3), np.float32), requires_grad=True)
    for bad in ([0, 1, 3, 0, 1], [0, -1, 2, 0, 1]):
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
            losses.cross_entropy(z, np.array(bad))
    with pytest.raises(TypeError, match="integer class indices"):
        losses.cross_entropy(z, np.zeros(5, np.float32))


def test_cross_entropy_fast_path_is_still_twice_differentiable(path):
    rng = np.random.default_rng(6)
    z0, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    results = []
    for standard in (False, True):
        z = Tensor(z0, requires_grad=True)
        if standard:
            with B.standard_only():
                (g,) = grad(losses.cross_entropy(z, y), [z], create_graph=True)
                (g * g).sum().backward()
        else:
            (g,) = grad(losses.cross_entropy(z, y), [z], create_graph=True)
            (g * g).sum().backward()
        results.append((g.data, z.grad.data))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    assert np.abs(results[0][1]).max() > 1e-3  # a real second derivative was compared


# -- optimizer steps ----------------------------------------------------------------------------

OPTIMIZERS = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.9)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (optim.Adam, dict(lr=0.01)),
    (optim.Adam, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    (optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    (optim.AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
]
# large tensors, runs of small ones, odd sizes, a 0-d and a 1-element one; more than one call's
# worth of parameters (jit._TUPLE); "F": stored column-major, with a gradient in either order
SHAPES = [(257, 129), (3,), (), (1,), (300, 70, "F"), (5, 7), (40_000,), (13,), (64, 33, "F"),
          (9, 4, "F"), (2, 2)]


def _train(cls, kwargs, dtype, *, flat, standard, steps=4):
    rng = np.random.default_rng(11)
    params = []
    for *shape, order in [(*s, "C") if "F" not in s else s for s in SHAPES]:
        params.append(Parameter(np.asarray(rng.standard_normal(shape), dtype, order=order)))
    opt = cls(params, **kwargs) if flat else cls(params, **kwargs, flat=False)
    for step in range(steps):
        for j, p in enumerate(params):
            order = "F" if (j + step) % 2 else "C"
            p.grad = Tensor(np.asarray(rng.standard_normal(p.shape), dtype, order=order))
        if standard:
            with B.standard_only():
                opt.step()
        else:
            opt.step()
    return [p.numpy() for p in params], opt.state_dict()["state"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, kwargs", OPTIMIZERS)
def test_optimizer_kernels_equal_the_reference_rule(path, cls, kwargs, dtype):
    want, want_state = _train(cls, kwargs, dtype, flat=False, standard=True)
    for flat in (True, False):
        got, state = _train(cls, kwargs, dtype, flat=flat, standard=False)
        for j, (a, b) in enumerate(zip(got, want)):
            _close(a, b, dtype, f"{path} flat={flat} parameter {j}")
        for j in want_state:
            for key, value in want_state[j].items():
                if key == "step":
                    assert state[j][key] == value
                else:
                    _close(np.asarray(state[j][key]), np.asarray(value), dtype, f"{path} state {j} {key}")


def test_flat_buffers_keep_each_parameters_memory_order():
    """A column-major parameter stays column-major, as a view of the flat buffer, and so do its
    optimizer states as the optimizer publishes them."""
    a = Parameter(np.asfortranarray(np.arange(12.0).reshape(3, 4)))
    b = Parameter(np.arange(5.0))
    opt = optim.SGD([a, b], lr=0.5, momentum=0.9)
    assert a.data.flags.f_contiguous and not a.data.flags.owndata
    np.testing.assert_array_equal(a.data, np.arange(12.0).reshape(3, 4))
    a.grad, b.grad = Tensor(np.ones((3, 4))), Tensor(np.ones(5))
    opt.step()
    np.testing.assert_array_equal(a.data, np.arange(12.0).reshape(3, 4) - 0.5)
    buf = opt.state_dict()["state"][0]["momentum_buffer"]
    np.testing.assert_array_equal(buf, np.ones((3, 4)))
    assert opt._state[0]["momentum_buffer"].flags.f_contiguous


def test_linear_weights_and_their_gradients_are_column_major():
    """course.fast stores Linear's W column-major (x Wᵀ is then an untransposed GEMM); ∂L/∂W comes
    out in the same order and is handed over without a copy; training matches a row-major W."""
    layer = nn.Linear(6, 4, rng=0)
    assert layer.weight.data.flags.f_contiguous
    x = Tensor(np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32))
    (layer(x) ** 2).sum().backward()
    g = layer.weight.grad.data
    assert g.flags.f_contiguous and g.flags.owndata
    models = [nn.MLP([30, 20, 3], rng=0) for _ in range(2)]
    for p in models[1].parameters():
        p.data = np.ascontiguousarray(p.data)
    y = np.arange(8) % 3
    xb = Tensor(np.random.default_rng(2).standard_normal((8, 30)).astype(np.float32))
    for model in models:
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            losses.cross_entropy(model(xb), y).backward()
            opt.step()
    assert models[0][0].weight.data.flags.f_contiguous and models[1][0].weight.data.flags.c_contiguous
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6)


# -- ReLU ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernels_equal_the_ufuncs_bit_for_bit(path, dtype):
    """max(a, 0) and g·[a > 0], NaN, ±inf and −0 included (the signs of zeros too)."""
    rng = np.random.default_rng(5)
    for shape in [(6,), (128, 256), (7, 5, 3)]:
        a = rng.standard_normal(shape).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        flat_a, flat_g = a.reshape(-1), g.reshape(-1)
        flat_a[:3] = [np.nan, -0.0, np.inf]
        flat_g[:3] = [1.0, np.inf, np.nan]
        flat_a[3:6], flat_g[3:6] = -1.0, [np.inf, np.nan, -2.0]
        x = Parameter(a)
        with np.errstate(invalid="ignore"):  # inf·0 in the product
            out = nn.ReLU()(x)
            out.backward(g)
            want_out, want_grad = np.maximum(a, 0.0), g * (a > 0).astype(dtype)
        for got, want in ((out.data, want_out), (x.grad.data, want_grad)):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_sgd_step_reads_large_gradients_in_place(path, monkeypatch):
    """No per-step concatenation of the MLP's gradients: only small ones are ever joined."""
    model = nn.MLP([784, 256, 256, 10], rng=0)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = Tensor(np.ones((8, 784), np.float32)), Tensor(np.arange(8) % 10)
    joined = []

    def spy(real):
        def call(arrays, *args, **kw):
            out = real(arrays, *args, **kw)
            joined.append(out.size)
            return out
        return call

    for name in ("concatenate", "concat"):  # NumPy's and the array API's spelling (course.backend.xp)
        monkeypatch.setattr(np, name, spy(getattr(np, name)))
        monkeypatch.setattr(B.xp, name, spy(getattr(B.xp, name)), raising=False)
    for _ in range(2):
        opt.zero_grad()
        losses.cross_entropy(model(x), y).backward()
        opt.step()
    assert max(joined, default=0) < fast_numpy._SMALL, f"gradients of sizes {joined} were concatenated"


# -- optional and lazy --------------------------------------------------------------------------

def _python(code: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, **env}, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


TRAIN_SMALL_THEN_LARGE = """
    import sys
    import numpy as np
    from course import functional as F, losses, nn, optim
    from course.autodiff import Tensor
    from course.fast import jit
    model = nn.MLP([4, 8, 3], rng=0)
    opt = optim.Adam(model.parameters())
    losses.cross_entropy(model(Tensor(np.ones((5, 4), np.float32))), np.arange(5) % 3).backward()
    opt.step()
    print(jit.available, sys.modules.get("numba") is not None)
    x = np.random.default_rng(0).standard_normal((64, 128))
    y, mean, var = F.batchnorm_forward(x, np.ones(128), np.zeros(128))
    assert np.allclose(mean, x.mean(0)) and np.allclose(var, x.var(0))
    print(sys.modules.get("numba") is not None)
    if jit.available:
        print(type(jit._compiled["_bn_forward"]._cache).__name__)
"""


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed (pip install -e '.[fast]')")
def test_numba_is_imported_on_the_first_large_kernel_call_and_caches_to_disk():
    lines = _python(TRAIN_SMALL_THEN_LARGE).splitlines()
    assert lines[0] == "True False", "small work imported numba"
    assert lines[1] == "True", "a large batch norm did not use the compiled kernel"
    assert lines[2] != "NullCache", "the kernel is compiled without cache=True"


def test_the_library_runs_without_numba():
    blocked = "import sys; sys.modules['numba'] = None\n"  # find_spec then reports it missing
    assert _python(blocked + textwrap.dedent(TRAIN_SMALL_THEN_LARGE)).splitlines() == ["False False", "False"]
    assert _python(TRAIN_SMALL_THEN_LARGE, COURSE_JIT="0").splitlines() == ["False False", "False"]


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed (pip install -e '.[fast]')")
def test_a_kernel_compiles_without_a_writable_cache(monkeypatch):
    import numba

    real = numba.njit

    def njit(*args, **options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")  # numba's error
        return real(*args, **options)

    monkeypatch.setattr(numba, "njit", njit)
    monkeypatch.setattr(jit, "_compiled", {})
    p, g = np.ones(5), np.full(5, 2.0)
    jit.sgd(p, [g], p[:0], lr=0.5, weight_decay=0.0, momentum=0.0, dampening=0.0, first=False, nesterov=False)
    np.testing.assert_array_equal(p, np.zeros(5))


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed (pip install -e '.[fast]')")
def test_a_copy_loaded_under_another_name_leaves_the_cache_usable(tmp_path):
    """tests/test_student_edition.py loads the library as ``full_course``: its cache entries must
    not be the ones ``course`` then loads (they would re-import ``full_course``)."""
    load_renamed = f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location(
            "renamed_course", {os.path.join(ROOT, "course", "__init__.py")!r},
            submodule_search_locations=[{os.path.join(ROOT, "course")!r}])
        sys.modules["renamed_course"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        import renamed_course.fast.jit as jit
        import numpy as np
        jit.MIN_SIZE = 0
        print(jit.batchnorm_forward(np.ones((3, 2)), np.ones(2), np.zeros(2), 1e-5)[1])
    """
    normal = """
        import numpy as np
        from course.fast import jit
        jit.MIN_SIZE = 0
        print(jit.batchnorm_forward(np.ones((3, 2)), np.ones(2), np.zeros(2), 1e-5)[1])
    """
    for code in (load_renamed, normal, load_renamed):
        assert _python(code, NUMBA_CACHE_DIR=str(tmp_path)) == "[1. 1.]"
    assert any(tmp_path.rglob("*.nbi")), "nothing was cached"
