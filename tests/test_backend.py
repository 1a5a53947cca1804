"""The backend layer: choosing a namespace, the two CuPy failure messages, explicit transfers,
host randomness that is identical on every backend, and the kernel hooks."""
from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import course
from course import backend as B
from course.autodiff import Tensor

ROOT = Path(__file__).resolve().parents[1]


def _fake_cupy(device_count) -> types.ModuleType:
    """A stand-in for an installed CuPy; ``device_count`` is a number or an exception to raise."""

    def get_device_count() -> int:
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
    return cupy


def test_cupy_not_installed_says_so_and_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(B.BackendUnavailable, match=r"CuPy is not installed.*pip install -e '\.\[gpu\]'"):
        course.use("cupy")
    assert B.name == "numpy"  # a failed switch leaves the backend as it was


@pytest.mark.parametrize("device_count", [0, RuntimeError("cudaErrorNoDevice: no CUDA-capable device")])
def test_cupy_without_a_device_says_no_cuda_device(monkeypatch, device_count):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(device_count))
    with pytest.raises(B.BackendUnavailable, match="installed but no CUDA device is visible") as info:
        course.use("cupy")
    assert "not installed" not in str(info.value)
    assert B.name == "numpy"


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ValueError, match="choose 'numpy'.*'cupy'.*'array_api_strict'"):
        course.use("jax")


def test_a_backend_that_is_not_a_name_is_refused_and_the_backend_kept():
    with pytest.raises(TypeError, match="as a string, got Tensor.*course.use\\('numpy'\\)"):
        course.use(Tensor(np.ones(3)))
    assert B.name == "numpy"


def test_using_the_library_on_cpu_backends_never_imports_cupy():
    code = (
        "import sys, numpy as np, course\n"
        "from course import losses, gradcheck, ops\n"
        "for name in ('numpy', 'array_api_strict'):\n"
        "    course.use(name)\n"
        "    x = course.Tensor(course.backend.asarray(np.ones((2, 3))), requires_grad=True)\n"
        "    losses.cross_entropy(x, course.backend.asarray(np.array([0, 2]))).backward()\n"
        "print('cupy' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "COURSE_BACKEND"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_course_backend_environment_variable_selects_the_backend():
    env = dict(os.environ, COURSE_BACKEND="array_api_strict", PYTHONPATH=str(ROOT))
    code = "import course; print(course.backend.name, course.backend.device)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "array_api_strict" and "device1" in result.stdout


def test_transfers_are_explicit_and_keep_dtypes(backend):
    for host in (np.arange(6.0).reshape(2, 3), np.arange(4, dtype=np.float32), np.array([1, -2], dtype=np.int64)):
        moved = B.asarray(host)
        assert moved.dtype == getattr(backend.xp, host.dtype.name)
        if backend.name == "array_api_strict":
            assert moved.device == B.device
        back = B.to_numpy(moved)
        assert isinstance(back, np.ndarray) and back.dtype == host.dtype
        np.testing.assert_array_equal(back, host)


def test_strict_backend_rejects_a_hidden_host_array():
    """What makes the strict runs meaningful: NumPy data mixed into device arrays is an error."""
    course.use("array_api_strict")
    try:
        x = Tensor(B.asarray(np.ones(3)))
        with pytest.raises((TypeError, ValueError)):
            (x + np.ones(3)).numpy()
    finally:
        course.use("numpy")


def test_the_same_seed_draws_the_same_weights_on_every_backend():
    draws = {}
    for name in ("numpy", "array_api_strict"):
        course.use(name)
        try:
            draws[name] = B.to_numpy(B.asarray(B.rng(42).standard_normal((3, 4))))
        finally:
            course.use("numpy")
    np.testing.assert_array_equal(draws["numpy"], draws["array_api_strict"])
    gen = np.random.default_rng(0)
    assert B.rng(gen) is gen


def test_device_random_is_uniform_reproducible_and_on_the_device(backend):
    xp = backend.xp
    a = B.random((1000,), xp.float32, np.random.default_rng(7))
    b = B.random((1000,), xp.float32, np.random.default_rng(7))
    assert a.dtype == xp.float32 and tuple(a.shape) == (1000,)
    np.testing.assert_array_equal(B.to_numpy(a), B.to_numpy(b))
    host = B.to_numpy(a)
    assert host.min() >= 0.0 and host.max() < 1.0 and 0.45 < host.mean() < 0.55


def test_tensor_to_moves_between_backends():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    try:
        y = x.to("array_api_strict")
        assert B.name == "array_api_strict" and y.requires_grad
        assert type(y.data).__module__.startswith("array_api_strict")
        np.testing.assert_array_equal(y.numpy(), [1.0, 2.0])
    finally:
        course.use("numpy")


def test_kernels_are_per_backend_and_standard_only_switches_them_off(backend):
    has_fast_path = backend.name == "numpy"
    assert (B.kernel("scatter_add") is not None) == has_fast_path
    with pytest.raises(RuntimeError, match="inside"):
        with B.standard_only():
            assert B.kernel("scatter_add") is None
            raise RuntimeError("inside")
    assert (B.kernel("scatter_add") is not None) == has_fast_path  # restored after an error
