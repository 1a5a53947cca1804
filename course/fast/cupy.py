"""CuPy fast paths: the optimizer steps as single fused CUDA kernels (one read and write of
each array), and ``cupyx.scatter_add``. CuPy is imported only when a kernel first runs, on the
GPU backend; the shared state set-up comes from :mod:`course.fast.numpy`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import backend as B
from .flat import joined
from .numpy import State, _init_adam_state


@B.register_kernel("scatter_add", "cupy")
def _scatter_add_cupy(target: Any, index: Any, values: Any) -> Any:
    import cupyx

    cupyx.scatter_add(target, index, values)
    return target




_cupy_kernels: dict[str, Any] = {}

_CUPY_ADAM = """
T g = grad + l2 * p;
p *= decay;
m += (1 - beta1) * (g - m);
v += (1 - beta2) * (g * g - v);
{amsgrad}
p -= step * m / (sqrt(vv) + eps_c);
"""


def _cupy_kernel(name: str, in_params: str, out_params: str, body: str) -> Any:
    """Compile an elementwise CUDA kernel once (CuPy is imported only here, on the GPU backend)."""
    if name not in _cupy_kernels:
        import cupy

        _cupy_kernels[name] = cupy.ElementwiseKernel(in_params, out_params, body, name)
    return _cupy_kernels[name]


@B.register_kernel("adam", "cupy")
def _adam_cupy(param: Any, grad: Any, state: State, *, lr: float, betas: tuple[float, float],
               eps: float, weight_decay: float, amsgrad: bool, decoupled: bool) -> None:
    """The Adam/AdamW step as one fused CUDA kernel: one read and write of each array."""
    import cupy

    beta1, beta2 = betas
    grad = joined(grad)
    t = _init_adam_state(state, param, amsgrad, cupy.zeros_like)
    c = math.sqrt(1 - beta2 ** t)
    scal = param.dtype.type
    args = [grad] + [scal(x) for x in (
        0.0 if decoupled else weight_decay, 1 - lr * weight_decay if decoupled else 1.0,
        beta1, beta2, lr * c / (1 - beta1 ** t), eps * c)]
    ins = "T grad, T l2, T decay, T beta1, T beta2, T step, T eps_c"
    if amsgrad:
        body = _CUPY_ADAM.format(amsgrad="vmax = vmax > v ? vmax : v; T vv = vmax;")
        kern = _cupy_kernel("course_amsgrad", ins, "T p, T m, T v, T vmax", body)
        kern(*args, param, state["exp_avg"], state["exp_avg_sq"], state["max_exp_avg_sq"])
    else:
        kern = _cupy_kernel("course_adam", ins, "T p, T m, T v", _CUPY_ADAM.format(amsgrad="T vv = v;"))
        kern(*args, param, state["exp_avg"], state["exp_avg_sq"])


@B.register_kernel("sgd", "cupy")
def _sgd_cupy(param: Any, grad: Any, state: State, *, lr: float, momentum: float, dampening: float,
              nesterov: bool, weight_decay: float) -> None:
    """:func:`sgd_step` as one fused CUDA kernel (momentum buffer updated in place)."""
    import cupy

    scal = param.dtype.type
    grad = joined(grad)
    if not momentum:
        kern = _cupy_kernel("course_sgd", "T grad, T lr, T wd", "T p", "p -= lr * (grad + wd * p);")
        kern(grad, scal(lr), scal(weight_decay), param)
        return
    if nesterov and dampening != 0:
        raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0 (as in PyTorch)")
    first = "momentum_buffer" not in state
    if first:
        state["momentum_buffer"] = cupy.empty_like(param)
    kern = _cupy_kernel(
        "course_sgd_momentum", "T grad, T lr, T wd, T mu, T keep, int32 first, int32 nesterov", "T p, T b",
        "T g = grad + wd * p; b = first ? g : mu * b + keep * g; p -= lr * (nesterov ? g + mu * b : b);")
    kern(grad, scal(lr), scal(weight_decay), scal(momentum), scal(1 - dampening),
         np.int32(first), np.int32(nesterov), param, state["momentum_buffer"])
