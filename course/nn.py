"""Layers as modules, in PyTorch's style: ``Module``, ``Linear``, activations, ``Sequential``,
``Dropout``, ``BatchNorm1d`` and an ``MLP`` builder.

A :class:`Module` finds its parameters and sub-modules from its attributes (assign a
:class:`course.Parameter` or a Module and it is registered), switches between training and
evaluation (``train()``/``eval()``: dropout and batch norm behave differently), and saves its
state (parameters and buffers such as batch norm's running statistics) to ``.npz`` files.
The computations are the pure functions of :mod:`course.ops` and :mod:`course.functional`.
"""
from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import backend as B
from . import functional as F
from . import init as weight_init
from . import ops
from .autodiff import Parameter, Tensor, no_grad

__all__ = [
    "Module", "Linear", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Sequential", "Dropout",
    "BatchNorm1d", "MLP", "fuse_linear_bn", "fuse_batchnorm",
]

Initializer = str | Callable[..., np.ndarray]


class Module:
    """Base class: registers Parameters and sub-modules assigned as attributes, in order.

    Subclasses call ``super().__init__()`` first and define ``forward``; ``module(x)`` calls it.
    Buffers (non-trained state saved with the parameters) are added with :meth:`register_buffer`.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__(): call super().__init__() "
                f"first in {type(self).__name__}.__init__"
            )
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            modules.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign a {type(value).__name__} to parameter {name!r}: assign a "
                    "course.Parameter, or change its value with .data"
                )
            del params[name]
        elif name in buffers:
            buffers[name] = value
        elif name in modules:
            del modules[name]
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: Any) -> None:
        """Add state that is saved and moved with the module but not trained (e.g. running stats)."""
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # -- traversal ------------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and all sub-modules, depth first, with dotted names ("" for self)."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) in registration order; a shared parameter appears once."""
        seen: set[int] = set()
        for prefix, m in self.named_modules():
            for name, p in m._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self) -> Iterator[tuple[str, Any]]:
        for prefix, m in self.named_modules():
            for name, b in m._buffers.items():
                yield (f"{prefix}.{name}" if prefix else name), b

    # -- modes and gradients ----------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (``mode=False``: evaluation) on this module and every sub-module."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Evaluation mode: dropout is the identity, batch norm uses its running statistics."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (``grad = None``)."""
        for p in self.parameters():
            p.grad = None

    # -- state ------------------------------------------------------------------------------------
    def _state_entries(self) -> Iterator[tuple[str, Module, str, bool]]:
        """(full name, owner, attribute, is_parameter) for each parameter then buffer, per module."""
        for prefix, m in self.named_modules():
            for group, is_param in ((m._parameters, True), (m._buffers, False)):
                for name in group:
                    yield (f"{prefix}.{name}" if prefix else name), m, name, is_param

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers as host NumPy copies, keyed by dotted names ("0.weight")."""
        state = {}
        for key, m, name, is_param in self._state_entries():
            value = getattr(m, name)
            state[key] = B.to_numpy(value.data if is_param else value).copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> Module:
        """Copy ``state`` (as from :meth:`state_dict`) into this module, on the current backend.

        Keys and shapes must match exactly; values are cast to each entry's current dtype.
        """
        entries = list(self._state_entries())
        names = {key for key, *_ in entries}
        missing, unexpected = sorted(names - set(state)), sorted(set(state) - names)
        if missing or unexpected:
            raise KeyError(
                f"state does not match {type(self).__name__}: missing keys {missing}, unexpected "
                f"keys {unexpected}. Build the model with the same architecture before loading"
            )
        for key, m, name, is_param in entries:
            current = getattr(m, name)
            current = current.data if is_param else current
            value = np.asarray(B.to_numpy(state[key]))
            if tuple(value.shape) != tuple(current.shape):
                raise ValueError(
                    f"{key!r}: the state has shape {tuple(value.shape)} but the model has "
                    f"{tuple(current.shape)}; build the model with the same sizes before loading"
                )
            value = B.xp.astype(B.asarray(value), current.dtype)  # cast on the device: no read back
            if is_param:
                getattr(m, name).data = value
            else:
                setattr(m, name, value)
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to an ``.npz`` file (the suffix is added when missing)."""
        np.savez(_npz(path), **self.state_dict())

    def load(self, path: str | os.PathLike) -> Module:
        """Read an ``.npz`` file written by :meth:`save` into this module."""
        with np.load(_npz(path), allow_pickle=False) as f:
            return self.load_state_dict({k: f[k] for k in f.files})

    def to(self, backend: str | None = None) -> Module:
        """Move parameters and buffers to the current backend, or switch to ``backend`` first.

        The Parameter objects stay the same (optimizers keep working); gradients are dropped.
        """
        if backend is not None and backend != B.name:
            B.use(backend)
        for _, m, name, is_param in list(self._state_entries()):
            current = getattr(m, name)
            if is_param:
                current.data, current.grad = B.asarray(B.to_numpy(current.data)), None
            else:
                setattr(m, name, B.asarray(B.to_numpy(current)))
        return self

    # -- printing ---------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, child in self._modules.items():
            lines.append("  (" + name + "): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines) + "\n)"


def _npz(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def _check_input(layer: Module, x: Any, features: int, dtype: Any) -> None:
    """Clear errors for the two common mistakes: wrong feature count and wrong dtype."""
    if x.ndim < 1 or x.shape[-1] != features:
        raise ValueError(
            f"{type(layer).__name__} expects inputs whose last dimension is {features}, got shape "
            f"{tuple(x.shape)}; check the layer sizes (or transpose the data to (batch, features))"
        )
    if x.dtype != dtype:
        raise TypeError(
            f"{type(layer).__name__} holds {dtype} parameters but got a {x.dtype} input: convert the "
            f"data (e.g. X.astype(np.float32)) or build the model with dtype={dtype}"
        )


_INIT_NAMES = ("zeros", "normal", "uniform", "xavier_normal", "xavier_uniform", "kaiming_normal",
               "kaiming_uniform", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform")


def default_init(shape: tuple[int, int], rng: Any = None, *, dtype: Any = np.float32) -> np.ndarray:
    """Linear's default weights, PyTorch's: U[−k, k] with k = 1/√in_features (= shape[1]).

    A fixed rule, not one of the fan-based schemes of :mod:`course.init` (the notebooks build
    those); for deep ReLU stacks pass ``init="kaiming_uniform"`` or your own initializer.
    """
    bound = 1.0 / math.sqrt(shape[1])
    return weight_init.uniform(shape, rng, a=-bound, b=bound, dtype=dtype)


def _initializer(init: Initializer) -> Callable[..., np.ndarray]:
    if callable(init):
        return init
    if init not in _INIT_NAMES:
        raise ValueError(
            f"unknown initializer {init!r}: pass a name such as 'kaiming_uniform', 'xavier_normal', "
            "'lecun_normal', 'zeros', or a callable f(shape, rng, dtype=...) -> array "
            "(e.g. functools.partial(course.init.constant, value=0.5))"
        )
    return getattr(weight_init, init)


class Linear(Module):
    """Affine layer z = x Wᵀ + b, W of shape (out_features, in_features) as in PyTorch.

    ``init`` (a course.init name or a callable ``f(shape, rng, dtype=...)``) draws W; b starts
    at zero. Default (:func:`default_init`): PyTorch's U[±1/√in_features]. It keeps the
    variance of activations only for shallow networks; ``init="kaiming_uniform"`` suits ReLU
    stacks and ``"xavier_uniform"`` tanh/sigmoid layers. With :mod:`course.fast` W is stored
    column-major (Wᵀ contiguous, same shape and values): x Wᵀ is then an untransposed GEMM.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 init: Initializer | None = None, rng: Any = None,
                 dtype: Any = np.float32) -> None:
        super().__init__()
        if min(in_features, out_features) < 1:
            raise ValueError(f"Linear needs positive sizes, got in_features={in_features}, out_features={out_features}")
        self.in_features, self.out_features = in_features, out_features
        draw = default_init if init is None else _initializer(init)
        weight = B.asarray(draw((out_features, in_features), B.rng(rng), dtype=dtype))
        layout = B.kernel("linear_weight", layout=True)  # course.fast: a GEMM-friendly memory order
        self.weight = Parameter(weight if layout is None else layout(weight))
        self.bias = Parameter(B.asarray(weight_init.zeros((out_features,), dtype=dtype))) if bias else None

    def forward(self, x: Any) -> Tensor:
        _check_input(self, x, self.in_features, self.weight.dtype)
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x: Any) -> Tensor:
        return ops.relu(x)


class LeakyReLU(Module):
    """x for x > 0, negative_slope·x otherwise."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Any) -> Tensor:
        return ops.leaky_relu(x, negative_slope=self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Tanh(Module):
    """tanh(x)."""

    def forward(self, x: Any) -> Tensor:
        return ops.tanh(x)


class Sigmoid(Module):
    """1 / (1 + e^(−x))."""

    def forward(self, x: Any) -> Tensor:
        return ops.sigmoid(x)


class Sequential(Module):
    """Modules applied in order; indexable (``seq[0]``, slices give a Sequential) and iterable."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> Sequential:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential holds Modules, got a {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, index: int | slice) -> Any:
        items = list(self._modules.values())
        return Sequential(*items[index]) if isinstance(index, slice) else items[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))


class Dropout(Module):
    """Drops each unit with probability ``p`` in training (PyTorch's p = DROP probability).

    ``mode="inverted"`` (default, PyTorch): kept units are scaled by 1/(1 − p) during
    training, evaluation is the identity. ``mode="scale_at_test"`` (the notes' form): a plain
    0/1 mask in training, outputs multiplied by the keep probability 1 − p in evaluation.
    Both keep E[training output] = evaluation output. Masks are drawn on the device from
    ``rng`` (seed or numpy Generator); ``dropout_fn`` (default :func:`course.functional.dropout`,
    same signature) computes the output from them.
    """

    def __init__(self, p: float = 0.5, mode: str = "inverted", *, rng: Any = None,
                 dropout_fn: Callable[..., Any] | None = None) -> None:
        super().__init__()
        F._check_dropout(p, mode)
        self.p, self.mode, self.generator = p, mode, B.rng(rng)
        self.dropout_fn = dropout_fn or F.dropout

    def forward(self, x: Any) -> Any:
        u = B.random(tuple(x.shape), x.dtype, self.generator) if self.training and self.p > 0 else None
        return self.dropout_fn(x, self.p, u, training=self.training, mode=self.mode)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}"


class BatchNorm1d(Module):
    """Batch normalization of (batch, num_features) inputs, feature by feature.

    Training: y = γ·(x − μ_B)/√(σ²_B + ε) + β with the batch mean and biased variance, one
    fused graph node whose VJP is the closed form (:func:`course.functional.batch_norm`);
    the running statistics are updated with momentum = weight of the new batch (0.1, as
    PyTorch) and the unbiased batch variance; ``momentum=None`` averages all batches equally.
    Evaluation: the running statistics replace the batch's (y = a·x + b, see :meth:`fold`).
    Parameters are named as in PyTorch: ``weight`` = γ (ones), ``bias`` = β (zeros).
    ``forward_fn``/``backward_fn`` replace the training computations, ``running_stats_fn`` the
    running-statistics update and ``fold_fn`` the evaluation-mode affine map (same signatures as
    :func:`course.functional.batchnorm_forward`, ``batchnorm_backward``,
    ``update_running_stats`` and ``fold_batchnorm``).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, dtype: Any = np.float32,
                 forward_fn: Callable[..., Any] | None = None,
                 backward_fn: Callable[..., Any] | None = None,
                 running_stats_fn: Callable[..., Any] | None = None,
                 fold_fn: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.forward_fn, self.backward_fn = forward_fn, backward_fn
        self.running_stats_fn = running_stats_fn or F.update_running_stats
        self.fold_fn = fold_fn or F.fold_batchnorm
        shape = (num_features,)
        self.weight = Parameter(B.asarray(weight_init.constant(shape, value=1.0, dtype=dtype))) if affine else None
        self.bias = Parameter(B.asarray(weight_init.zeros(shape, dtype=dtype))) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", B.asarray(weight_init.zeros(shape, dtype=dtype)))
            self.register_buffer("running_var", B.asarray(weight_init.constant(shape, value=1.0, dtype=dtype)))
            self.register_buffer("num_batches_tracked", B.asarray(np.zeros((), dtype=np.int64)))
            self._host_count = (self.num_batches_tracked, 0)  # (the buffer counted, its count)

    def _affine(self, like: Any) -> tuple[Any, Any]:
        """(γ, β): the parameters, or constant ones/zeros when ``affine=False``."""
        if self.affine:
            return self.weight, self.bias
        xp = B.xp
        return (xp.ones((self.num_features,), dtype=like.dtype, device=like.device),
                xp.zeros((self.num_features,), dtype=like.dtype, device=like.device))

    def forward(self, x: Any) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim != 2:
            raise ValueError(f"BatchNorm1d expects (batch, num_features) inputs, got shape {x.shape}")
        own = self.weight.data if self.affine else self.running_mean if self.track_running_stats else x.data
        _check_input(self, x, self.num_features, own.dtype)
        gamma, beta = self._affine(x.data)
        if self.training or not self.track_running_stats:
            y, mean, var = F.batch_norm(x, gamma, beta, self.eps, forward_fn=self.forward_fn,
                                        backward_fn=self.backward_fn)
            if self.training and self.track_running_stats:
                self._update_stats(mean, var, x.shape[0])
            return y
        a, b = self.fold_fn(gamma, beta, self.running_mean, self.running_var, self.eps)
        return x * a + b

    def _update_stats(self, mean: Any, var: Any, n: int) -> None:
        """One more batch in the running statistics. ``num_batches_tracked`` (the buffer, on the
        device) has a host copy of its count, so ``momentum=None`` (weight 1/k for the k-th batch)
        reads nothing back from the device per step: only once after the buffer was replaced
        (``load_state_dict``, ``to``)."""
        counted, count = self._host_count
        if counted is not self.num_batches_tracked:
            count = int(B.to_numpy(self.num_batches_tracked))  # an explicit transfer, once
        self.num_batches_tracked = self.num_batches_tracked + 1
        self._host_count = (self.num_batches_tracked, count + 1)
        momentum = self.momentum
        if momentum is None:  # cumulative average: the k-th batch gets weight 1/k
            momentum = 1.0 / (count + 1)
        self.running_mean, self.running_var = self.running_stats_fn(
            self.running_mean, self.running_var, mean, var, n, momentum)

    def fold(self) -> tuple[Any, Any]:
        """The evaluation-mode layer as y = a·x + b: returns arrays ``(a, b)`` of shape (num_features,).

        a = γ/√(running_var + ε), b = β − a·running_mean (see :func:`course.functional.fold_batchnorm`).
        """
        if not self.track_running_stats:
            raise ValueError("fold() needs running statistics: this BatchNorm1d was built with "
                             "track_running_stats=False")
        with no_grad():
            gamma, beta = self._affine(self.running_mean)
            a, b = self.fold_fn(gamma, beta, self.running_mean, self.running_var, self.eps)
        return (a.data if isinstance(a, Tensor) else a), (b.data if isinstance(b, Tensor) else b)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


_ACTIVATIONS: dict[str, Callable[[], Module]] = {
    "relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh, "sigmoid": Sigmoid,
}


class MLP(Sequential):
    """A multilayer perceptron: Linear → [BatchNorm1d] → activation → [Dropout], repeated, then Linear.

    ``sizes = [in, hidden..., out]``. ``activation`` is "relu", "leaky_relu", "tanh" or
    "sigmoid". ``init=None`` keeps Linear's default (PyTorch's U[±1/√in_features]); pass
    ``init="xavier_uniform"`` (or a callable with a tanh gain) for tanh/sigmoid nets. One generator
    (``rng``: seed or Generator) draws all weights in order, then the dropout masks.
    With batch norm each Linear keeps its bias, although the mean subtraction cancels it in
    training; :func:`fuse_batchnorm` absorbs it.
    """

    def __init__(self, sizes: list[int] | tuple[int, ...], activation: str = "relu",
                 batch_norm: bool = False, dropout: float = 0.0, init: Initializer | None = None,
                 rng: Any = None, dtype: Any = np.float32, dropout_mode: str = "inverted") -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least [in_features, out_features], got sizes={list(sizes)}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: choose one of {sorted(_ACTIVATIONS)}")
        F._check_dropout(dropout, dropout_mode)
        make_act = _ACTIVATIONS[activation]
        gen = B.rng(rng)
        last = len(sizes) - 2
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.append(Linear(fan_in, fan_out, init=init, rng=gen, dtype=dtype))
            if i == last:
                break
            if batch_norm:
                self.append(BatchNorm1d(fan_out, dtype=dtype))
            self.append(make_act())
            if dropout > 0:
                self.append(Dropout(dropout, dropout_mode, rng=gen))


def fuse_linear_bn(linear: Linear, bn: BatchNorm1d) -> Linear:
    """A new Linear equal to ``bn(linear(x))`` in evaluation mode.

    With bn = a·z + b (:meth:`BatchNorm1d.fold`): W' = diag(a)·W, b' = a·b_lin + b.
    """
    a, b = bn.fold()
    fused = copy.deepcopy(linear)
    fused.weight.data, fused.weight.grad = linear.weight.data * B.xp.reshape(a, (-1, 1)), None
    fused.bias = Parameter(b if linear.bias is None else linear.bias.data * a + b)
    return fused


def fuse_batchnorm(model: Sequential) -> Sequential:
    """An evaluation-mode copy of ``model`` where each Linear followed by BatchNorm1d is one Linear.

    The other layers are copied, so ``model`` is left as it was. The outputs agree with
    ``model.eval()`` up to rounding; inference then costs no batch norm at all.
    """
    layers = list(model)
    fused = Sequential()
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Linear) and i + 1 < len(layers) and isinstance(layers[i + 1], BatchNorm1d):
            fused.append(fuse_linear_bn(layer, layers[i + 1]))
            i += 2
        else:
            fused.append(copy.deepcopy(layer))
            i += 1
    return fused.eval()
