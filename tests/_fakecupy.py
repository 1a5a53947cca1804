"""A fake CuPy for machines without a GPU: NumPy arrays behind CuPy's surface, strict about the host.

Installed by the ``fake_cupy`` fixture (``tests/test_fakecupy.py``) as the modules ``cupy``,
``cupyx`` and ``array_api_compat.cupy``, so ``course.use("cupy")`` selects it and the library
runs its CuPy code paths on the CPU. What a real GPU would punish silently, it raises:

* implicit device-to-host transfers: ``np.asarray(x)``, ``__array__``, ``float(x)``,
  ``int(x)``, ``bool(x)``, ``x.item()``, ``x.tolist()`` (each waits for the GPU on CuPy);
* implicit host-to-device transfers: a host ``numpy.ndarray`` mixed into a device operation
  or used as an index (CuPy raises ``TypeError`` for the first and copies for the second).

Explicit transfers work and are counted in :data:`transfers`: ``cupy.asarray(host)``
(host to device), ``x.get()`` and ``cupy.asnumpy(x)`` (device to host). Python and NumPy
scalars are allowed as operands, as in CuPy. The arrays' ``flags`` have ``owndata`` and the
contiguity flags but no ``writeable``, and reductions return 0-d arrays, not scalars: both as in
CuPy. Not provided: ``ElementwiseKernel`` (the CUDA kernels of ``course.fast.cupy``; run the
optimizers under ``course.backend.standard_only()``), and anything the library does not use.
"""
from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

transfers = {"to_device": 0, "to_host": 0}


class HostTransferError(TypeError):
    """An implicit host transfer: the library must call ``.get()``/``asarray`` explicitly."""


def _refuse(what: str) -> HostTransferError:
    return HostTransferError(f"implicit host transfer ({what}) of a fake CuPy array: on a GPU this "
                             "copies to or from the device and waits for it; make it explicit")


class Device:
    """CuPy's ``cupy.cuda.Device(0)``, as the array API's ``device`` of every array."""

    id = 0

    def __repr__(self) -> str:
        return "<CUDA Device 0 (fake)>"


DEVICE = Device()


class _Flags:
    __slots__ = ("owndata", "c_contiguous", "f_contiguous")

    def __init__(self, host: np.ndarray) -> None:
        self.owndata = host.flags.owndata
        self.c_contiguous, self.f_contiguous = host.flags.c_contiguous, host.flags.f_contiguous


def _unwrap(x: Any) -> Any:
    """Host values for NumPy: device arrays unwrapped, containers walked, host arrays refused."""
    if isinstance(x, ndarray):
        return x._host
    if isinstance(x, np.ndarray):
        raise TypeError("Unsupported type <class 'numpy.ndarray'>: a host array mixed into a device "
                        "operation; move it with cupy.asarray first (fake CuPy)")
    if isinstance(x, (tuple, list)):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, Device):
        return None
    return x


def _wrap(x: Any) -> Any:
    if isinstance(x, (np.ndarray, np.generic)):
        return ndarray(np.asarray(x) if isinstance(x, np.generic) else x)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    kwargs = {k: _unwrap(v) for k, v in kwargs.items() if not (k == "device" and isinstance(v, Device))}
    return _wrap(fn(*_unwrap(args), **kwargs))


def _binary(name: str) -> Callable[..., Any]:
    op = getattr(np.ndarray, name)

    def method(self: ndarray, other: Any) -> Any:
        other = _unwrap(other)
        return _wrap(op(self._host, other))

    method.__name__ = name
    return method


class ndarray:  # noqa: N801 - CuPy's name
    """A device array: a NumPy array that only leaves through ``.get()``."""

    __array_ufunc__ = None  # NumPy hands ``host_array + device_array`` to our reflected methods

    def __init__(self, host: np.ndarray) -> None:
        self._host = host

    shape = property(lambda self: self._host.shape)
    dtype = property(lambda self: self._host.dtype)
    ndim = property(lambda self: self._host.ndim)
    size = property(lambda self: self._host.size)
    strides = property(lambda self: self._host.strides)
    device = property(lambda self: DEVICE)
    flags = property(lambda self: _Flags(self._host))
    T = property(lambda self: ndarray(self._host.T))
    mT = property(lambda self: ndarray(np.swapaxes(self._host, -1, -2)))

    def __array_namespace__(self, api_version: Any = None) -> types.ModuleType:
        return sys.modules["cupy"]

    def get(self) -> np.ndarray:
        """The explicit device-to-host copy."""
        transfers["to_host"] += 1
        return self._host.copy()

    def __len__(self) -> int:
        return len(self._host)

    def __repr__(self) -> str:
        return f"fake_cupy.ndarray(shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, key: Any) -> ndarray:
        return ndarray(self._host[_unwrap(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._host[_unwrap(key)] = _unwrap(value)

    def astype(self, dtype: Any, copy: bool = True) -> ndarray:
        return ndarray(self._host.astype(dtype, copy=copy))

    def reshape(self, *shape: Any) -> ndarray:
        return ndarray(self._host.reshape(*shape))

    def transpose(self, *axes: Any) -> ndarray:
        return ndarray(self._host.transpose(*axes))

    def copy(self) -> ndarray:
        return ndarray(self._host.copy())

    def __neg__(self) -> ndarray:
        return ndarray(-self._host)

    def __pos__(self) -> ndarray:
        return self

    def __abs__(self) -> ndarray:
        return ndarray(abs(self._host))

    def __invert__(self) -> ndarray:
        return ndarray(~self._host)

    __hash__ = None  # type: ignore[assignment]


def _refusing(what: str) -> Callable[..., Any]:
    def method(self: ndarray, *args: Any, **kwargs: Any) -> Any:
        raise _refuse(what)

    return method


for _name, _what in {"__array__": "np.asarray / __array__", "__float__": "float()", "__int__": "int()",
                     "__index__": "__index__", "__bool__": "bool(): an if or while on a device value",
                     "item": ".item()", "tolist": ".tolist()"}.items():
    setattr(ndarray, _name, _refusing(_what))

for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
              "lt", "le", "gt", "ge", "eq", "ne"):
    for _dunder in (f"__{_name}__", f"__r{_name}__", f"__i{_name}__"):
        if hasattr(np.ndarray, _dunder):
            setattr(ndarray, _dunder, _binary(_dunder))


def _module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__getattr__ = lambda attr: _numpy_function(attr)  # type: ignore[method-assign]
    return module


def _numpy_function(attr: str) -> Callable[..., Any]:
    fn = getattr(np, attr)
    if not callable(fn) or isinstance(fn, type):
        return fn
    return lambda *args, **kwargs: _call(fn, *args, **kwargs)


def asarray(x: Any, dtype: Any = None, device: Any = None, copy: Any = None) -> ndarray:
    """Host data to the device (the explicit host-to-device copy); device arrays pass through."""
    if isinstance(x, ndarray):
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)
    transfers["to_device"] += 1
    return ndarray(np.array(x, dtype=dtype))


def asnumpy(x: Any) -> np.ndarray:
    return x.get() if isinstance(x, ndarray) else np.asarray(x)


def get_array_module(*args: Any) -> types.ModuleType:
    """``cupy`` when any argument is a device array, else ``numpy`` (CuPy's dispatch helper)."""
    return sys.modules["cupy"] if any(isinstance(a, ndarray) for a in args) else np


class _Generator:
    """``cupy.random.default_rng(seed)``: draws on the device."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def random(self, shape: Any, dtype: Any = np.float64) -> ndarray:
        return ndarray(self._rng.random(shape, dtype=dtype))


def _scatter_add(target: ndarray, index: Any, values: Any) -> None:
    np.add.at(target._host, _unwrap(index), _unwrap(values))


def modules() -> dict[str, types.ModuleType]:
    """Fresh ``cupy``, ``cupyx`` and ``array_api_compat.cupy`` modules (the last is ``cupy`` itself:
    the fake already speaks the array API's names, NumPy 2's)."""
    cupy = _module("cupy")
    cupy.ndarray, cupy.asarray, cupy.asnumpy, cupy.get_array_module = ndarray, asarray, asnumpy, get_array_module
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
                                      Device=lambda i=0: DEVICE)
    cupy.random = types.SimpleNamespace(default_rng=_Generator)
    cupy.__name__ = "cupy"
    cupyx = types.ModuleType("cupyx")
    cupyx.scatter_add = _scatter_add
    return {"cupy": cupy, "cupyx": cupyx, "array_api_compat.cupy": cupy}
