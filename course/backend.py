"""The array backend: which array namespace ``xp`` the library computes with.

Library code is written once against the array-API standard namespace held in ``xp``:
NumPy by default, CuPy on request (``COURSE_BACKEND=cupy`` or ``course.use("cupy")``), and
``array_api_strict`` on its fake ``device1`` in the tests, which proves that the core calls
nothing outside the standard and makes no hidden host transfer.

The few needs the standard lacks (scatter-add, in-place fused updates) go through
:func:`kernel`: the optional package :mod:`course.fast` registers fast versions per backend;
every caller keeps a standard-only fallback, and :func:`standard_only` switches the fast
versions off so tests exercise both.

Randomness: initial weights come from a host ``numpy.random.Generator`` (:func:`rng`), so a
seed gives the same weights on every backend; per-step randomness (dropout masks) may be
drawn on the device with :func:`random`.

Host transfers and synchronisation: on a GPU, reading a value on the host (``float(x)``,
``bool(x)``, ``.item()``, ``np.asarray(x)``) copies it off the device and waits for every queued
kernel. The library never does it implicitly; each transfer is a call of :func:`to_numpy` or
:func:`asarray`, at the places its docstrings name: ``Tensor.numpy()``/``.item()``/``float()``,
``train`` (the data go to the device once per call of ``fit``/``evaluate``, not per batch; one
read of each metric per ``evaluate``), ``optim.clip_grad_norm_`` (one read of the returned norm),
``state_dict``/``save``. Checks that must read values (label ranges, probabilities in [0, 1])
run only where that costs no synchronisation: :func:`on_host`.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = [
    "BackendUnavailable", "use", "xp", "name", "device", "rng", "random", "asarray",
    "to_numpy", "is_array", "column_major", "copy_array", "kernel", "register_kernel", "standard_only", "on_host",
]

Array = Any  # an array of the current namespace


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says what is missing and the fix."""


class _Namespace(types.SimpleNamespace):
    """NumPy's loaded names; lazily imported submodules (``fft``, ...) are fetched on first use."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


def _tune_malloc() -> None:
    """Keep freed megabyte-sized blocks in the process instead of returning them to the OS.

    glibc hands large freed blocks back and faults their pages in again on the next
    allocation: a training step of fresh NumPy temporaries then spends more time in page
    faults than in arithmetic (measured 3x here). Linux/glibc only; the process keeps up to
    64 MiB of freed memory. Set ``COURSE_MALLOC_TUNE=0`` to leave malloc alone.
    """
    if os.environ.get("COURSE_MALLOC_TUNE", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks up to 32 MiB come from the heap
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD: keep up to 64 MiB of free heap
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        pass


def _numpy_namespace() -> types.SimpleNamespace:
    """NumPy's own namespace, with a few standard functions swapped for faster equivalents.

    ``np.sum`` and friends go through Python-level wrappers costing microseconds on tiny
    arrays; the ufunc reductions and array methods compute the same result faster
    (``ones_like`` seeds every backward pass: ``empty_like`` and ``fill`` cost half of it, and
    a 0-d ``asarray`` a tenth).
    """
    ns = _Namespace(**{k: v for k, v in vars(np).items() if not k.startswith("_")})

    def sum(x, /, *, axis=None, dtype=None, keepdims=False):  # noqa: A001 - standard name
        return np.add.reduce(x, axis, dtype, None, keepdims)  # positional: parsed faster

    def max(x, /, *, axis=None, keepdims=False):  # noqa: A001
        return np.maximum.reduce(x, axis, None, None, keepdims)

    def ones_like(x, /, *, dtype=None, device=None):
        if x.ndim == 0:  # a scalar loss: one call instead of np.ones_like's three
            return np.asarray(1, dtype=dtype or x.dtype)
        out = np.empty_like(x, dtype=dtype)
        out.fill(1)
        return out

    kinds = {"bool": "b", "signed integer": "i", "unsigned integer": "u", "integral": "iu",
             "real floating": "f", "complex floating": "c", "numeric": "iufc"}

    def isdtype(dtype, kind):  # np.isdtype normalises its arguments first: 3 µs a call
        letters = kinds.get(kind) if isinstance(kind, str) else None
        return dtype.kind in letters if letters is not None else np.isdtype(dtype, kind)

    ns.sum, ns.max, ns.ones_like, ns.isdtype = sum, max, ones_like, isdtype
    ns.reshape = lambda x, /, shape, *, copy=None: x.reshape(shape)
    ns.permute_dims = lambda x, /, axes: x.transpose(axes)
    ns.astype = lambda x, dtype, /, *, copy=True, device=None: x.astype(dtype, copy=copy)
    ns.__name__ = "numpy"
    return ns


name: str = "numpy"
xp: Any = _numpy_namespace()
device: Any = None  # where new arrays are placed; None means the namespace's default

_kernels: dict[tuple[str, str], Callable[..., Any]] = {}
_kernels_on = True
_fast_loaded = False


def use(backend: str) -> Any:
    """Select the array backend: ``"numpy"``, ``"cupy"`` or ``"array_api_strict"``.

    Returns the namespace. Tensors made before the switch keep their old arrays; move them
    explicitly (``Tensor.to()``, ``Module.to()``).
    """
    global name, xp, device
    if not isinstance(backend, str):  # an array or Tensor compared with "numpy" would pass as one
        raise TypeError(f"use() takes the backend's name as a string, got {type(backend).__name__}: "
                        "call course.use('numpy'), course.use('cupy') or course.use('array_api_strict').")
    if backend == "numpy":
        ns, dev = _numpy_namespace(), None
    elif backend == "cupy":
        ns, dev = _load_cupy(), None
    elif backend == "array_api_strict":
        import array_api_strict as ns

        dev = ns.Device("device1")  # a fake device: mixing it with host arrays raises
    else:
        raise ValueError(
            f"unknown backend {backend!r}: choose 'numpy' (default), 'cupy' (NVIDIA GPU) "
            "or 'array_api_strict' (tests)"
        )
    name, xp, device = backend, ns, dev
    return xp


def _load_cupy() -> Any:
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailable(
            "CuPy is not installed. Install the GPU extra: pip install -e '.[gpu]' "
            "(CuPy for CUDA 12), or keep the default NumPy backend."
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # CUDARuntimeError when there is no driver at all
        count = 0
    if count == 0:
        raise BackendUnavailable(
            "CuPy is installed but no CUDA device is visible (no NVIDIA GPU or driver). "
            "Run on a machine with a GPU, check CUDA_VISIBLE_DEVICES, or use course.use('numpy')."
        )
    import array_api_compat.cupy as cxp

    return cxp


def is_array(x: Any) -> bool:
    """Whether ``x`` is an array of some namespace (it has a shape and a dtype)."""
    return hasattr(x, "shape") and hasattr(x, "dtype")


def column_major(x: Any) -> bool:
    """Whether the array ``x`` is stored column-major (Fortran order) and not also row-major;
    False for arrays without layout flags (the array API standard has none)."""
    flags = getattr(x, "flags", None)
    return flags is not None and bool(flags.f_contiguous) and not flags.c_contiguous


def copy_array(x: Any) -> Any:
    """A fresh copy of an array on its own device (other values unchanged)."""
    return xp.astype(x, x.dtype, copy=True) if is_array(x) else x


def rng(seed: int | np.random.Generator | None = None) -> np.random.Generator:
    """Host random generator: the same seed draws the same weights on every backend."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def asarray(x: Any, dtype: Any = None) -> Array:
    """Put ``x`` (host data or an array) on the current backend's device. An explicit transfer."""
    if name == "numpy":
        return np.asarray(x, dtype=dtype)
    if name == "cupy":
        return xp.asarray(x, dtype=dtype)
    if isinstance(x, np.ndarray) and dtype is None:
        dtype = getattr(xp, x.dtype.name)
    return xp.asarray(x, dtype=dtype, device=device)


def on_host() -> bool:
    """Whether the current backend's arrays are read on the host without a device sync: True for
    NumPy and array_api_strict (its device is a label on host memory), False for CuPy."""
    return name != "cupy"


def to_numpy(x: Any) -> np.ndarray:
    """Copy an array of any backend to a host NumPy array. An explicit transfer (on a GPU it
    waits for the queued kernels)."""
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x)
    cupy = sys.modules.get("cupy")  # loaded by use("cupy"); a CuPy array implies it
    if cupy is not None and isinstance(x, cupy.ndarray):
        return x.get()
    if type(x).__module__.startswith("array_api_strict"):
        import array_api_strict as s

        x = x.to_device(s.Device("CPU_DEVICE"))
    return np.asarray(x)


def random(shape: tuple[int, ...], dtype: Any, generator: np.random.Generator) -> Array:
    """Uniform [0, 1) samples of ``dtype`` on the current device, driven by ``generator``.

    NumPy draws directly; CuPy draws on the GPU from a device generator seeded once from the
    host generator; other namespaces draw on the host and transfer.
    """
    if name == "numpy":
        return generator.random(shape, dtype=dtype)
    if name == "cupy":
        import cupy

        host, dev = _cupy_generators.get(id(generator), (None, None))
        if host is not generator:  # ids of dead generators are reused: check identity
            dev = cupy.random.default_rng(int(generator.integers(2**63)))
            _cupy_generators[id(generator)] = (generator, dev)
        return dev.random(shape, dtype=dtype)
    host = generator.random(shape)
    return xp.astype(asarray(host), dtype)


_cupy_generators: dict[int, tuple[np.random.Generator, Any]] = {}  # host generator kept: its id stays its own


def register_kernel(op: str, backend: str) -> Callable[[Callable], Callable]:
    """Register a backend-specific fast path for ``op`` (callers keep a standard fallback)."""

    def deco(fn: Callable) -> Callable:
        _kernels[(op, backend)] = fn
        return fn

    return deco


def kernel(op: str, *, layout: bool = False) -> Callable[..., Any] | None:
    """The current backend's fast path for ``op``, or None: then use the standard fallback.

    Fast paths live in the optional package ``course.fast``, imported on the first lookup; the
    student edition leaves it out, so there every lookup returns None. ``layout=True`` marks a
    hook that changes memory layout, not arithmetic (flat buffers): :func:`standard_only`
    leaves those on.
    """
    global _fast_loaded
    if not _fast_loaded:
        _fast_loaded = True
        try:
            importlib.import_module(f"{__package__}.fast")  # its modules register their kernels
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.fast":
                raise
    return _kernels.get((op, name)) if _kernels_on or layout else None


@contextlib.contextmanager
def standard_only() -> Iterator[None]:
    """Within this block every :func:`kernel` lookup returns None (standard fallbacks run),
    except ``layout=True`` hooks, which change no arithmetic."""
    global _kernels_on
    old, _kernels_on = _kernels_on, False
    try:
        yield
    finally:
        _kernels_on = old


_tune_malloc()
if os.environ.get("COURSE_BACKEND"):
    use(os.environ["COURSE_BACKEND"])
