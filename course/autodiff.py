"""Reverse-mode automatic differentiation.

A :class:`Tensor` is a node of the computation graph. It holds what the lecture notes list:
its value (``data``), the operation that made it (``op``), that operation's arguments
(``args``) and, among them, its ``parents``: the tensors gradients flow back to.

Forward: every primitive (see :mod:`course.ops`) computes on raw arrays and records a node.
Backward: :meth:`Tensor.backward` orders the graph once, children before parents (a reverse
topological order found without recursion), and each node sends to each parent the
vector-Jacobian product ``x̄ += Jᵀ ȳ`` of its operation; a parent used several times sums
what it receives. VJPs are written with tensor operations, so with ``create_graph=True`` the
backward pass is itself recorded and can be differentiated again (Hessian-vector products,
small Hessians for Newton's method).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import backend as B

__all__ = [
    "Tensor", "Parameter", "Primitive", "primitive", "defvjp", "no_grad", "enable_grad",
    "is_grad_enabled", "grad", "hvp", "hessian", "tensor",
]

_grad_enabled = True


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Inside this block operations record no graph (evaluation, optimizer updates)."""
    global _grad_enabled
    old, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = old


@contextlib.contextmanager
def enable_grad() -> Iterator[None]:
    """Record the graph again inside a :func:`no_grad` block."""
    global _grad_enabled
    old, _grad_enabled = _grad_enabled, True
    try:
        yield
    finally:
        _grad_enabled = old


def is_grad_enabled() -> bool:
    return _grad_enabled


class Primitive:
    """An operation: ``forward`` on raw arrays and one VJP per differentiable argument.

    Calling a primitive on tensors computes the forward value and, when some argument needs a
    gradient, records the node. Non-tensor arguments (Python numbers, axes) are constants.
    """

    __slots__ = ("name", "forward", "vjps", "vjp_argnum")

    def __init__(self, forward: Callable[..., Any], name: str | None = None) -> None:
        self.name = name or forward.__name__
        self.forward = forward
        self.vjps: tuple[Callable[..., Any] | None, ...] = ()
        self.vjp_argnum: Callable[..., Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        out = Tensor.__new__(Tensor)
        out.data = self.forward(*[a.data if isinstance(a, Tensor) else a for a in args], **kwargs)
        out.grad = None
        if _grad_enabled:
            parents = tuple(a for a in args if isinstance(a, Tensor) and a.requires_grad)
            if parents:
                out.requires_grad, out.op, out.args, out.kwargs = True, self, args, kwargs
                out.parents = parents
                return out
        out.requires_grad, out.op, out.args, out.kwargs, out.parents = False, None, (), {}, ()
        return out

    def vjp(self, argnum: int, g: Tensor, out: Tensor) -> Tensor:
        """The VJP of this operation for argument ``argnum``: ``Jᵀ g`` shaped like that argument."""
        if self.vjp_argnum is not None:
            return self.vjp_argnum(argnum, g, out, *out.args, **out.kwargs)
        fn = self.vjps[argnum] if argnum < len(self.vjps) else None
        if fn is None:
            raise TypeError(f"{self.name} is not differentiable with respect to argument {argnum}")
        return fn(g, out, *out.args, **out.kwargs)

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


def primitive(forward: Callable[..., Any]) -> Primitive:
    """Decorator: make a forward function on raw arrays into a graph-recording primitive."""
    return Primitive(forward)


def defvjp(prim: Primitive, *vjps: Callable[..., Any] | None, argnum: Callable[..., Any] | None = None) -> None:
    """Register the VJPs of ``prim``: ``vjp_i(g, out, *args, **kwargs) -> Jᵢᵀ g``.

    For operations with a variable number of tensor arguments (concat, stack) pass
    ``argnum=f`` with ``f(i, g, out, *args, **kwargs)`` instead.
    """
    prim.vjps, prim.vjp_argnum = vjps, argnum


class Tensor:
    """A node of the computation graph: value, operation, arguments, parents, gradient.

    ``data`` is the backend array (NumPy, CuPy, ...). Leaves (``op is None``) made with
    ``requires_grad=True`` accumulate their gradient into ``grad`` (a Tensor) on backward.
    """

    __slots__ = ("data", "grad", "requires_grad", "op", "args", "kwargs", "parents", "__weakref__")
    __array_priority__ = 1000.0  # so ``ndarray * Tensor`` defers to Tensor.__rmul__

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        if isinstance(data, Tensor):
            data = data.data
        if dtype is not None or not _is_array(data) or (B.name != "numpy" and isinstance(data, np.ndarray)):
            data = B.asarray(data, dtype)  # host data goes to the current backend's device
        self.data = data
        self.grad: Tensor | None = None
        self.requires_grad = requires_grad
        self.op: Primitive | None = None
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}
        self.parents: tuple[Tensor, ...] = ()

    # -- inspection -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return _size(self.data.shape)

    @property
    def device(self) -> Any:
        return self.data.device

    @property
    def is_leaf(self) -> bool:
        return self.op is None

    def __len__(self) -> int:
        return self.data.shape[0]

    def __repr__(self) -> str:
        grad = f", op={self.op.name}" if self.op else (", requires_grad=True" if self.requires_grad else "")
        return f"Tensor({B.to_numpy(self.data)!r}{grad})"

    def numpy(self) -> Any:
        """A host NumPy copy of the value (an explicit device-to-host transfer)."""
        return B.to_numpy(self.data)

    def item(self) -> float:
        """The value of a one-element tensor as a Python number (a host transfer)."""
        return B.to_numpy(self.data).item()

    def __float__(self) -> float:
        return float(self.item())

    __hash__ = object.__hash__

    # -- graph helpers ----------------------------------------------------------------------
    def detach(self) -> Tensor:
        """A leaf sharing this value, cut off from the graph."""
        return Tensor(self.data)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (``grad = None``, as PyTorch's default)."""
        self.grad = None

    def requires_grad_(self, flag: bool = True) -> Tensor:
        self.requires_grad = flag
        return self

    def to(self, backend_name: str | None = None) -> Tensor:
        """This tensor's value moved to the current (or named) backend: an explicit transfer."""
        if backend_name is not None and backend_name != B.name:
            B.use(backend_name)
        t = Tensor(B.asarray(B.to_numpy(self.data)), requires_grad=self.requires_grad)
        return t

    def backward(self, grad: Tensor | Any = None, create_graph: bool = False) -> None:
        """Accumulate ``d self / d leaf`` into every leaf's ``grad`` that requires it.

        ``grad`` is the output gradient ``ȳ``; it may be omitted only for a one-element tensor
        (then ``ȳ = 1``). With ``create_graph=True`` the gradients are themselves graph nodes.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: create the inputs with "
                "requires_grad=True (and not under no_grad())"
            )
        _backprop([self], [_seed(self, grad)], create_graph, capture=None)


class Parameter(Tensor):
    """A trainable leaf tensor: ``requires_grad`` is True by default (as ``torch.nn.Parameter``)."""

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True, dtype: Any = None) -> None:
        super().__init__(data, requires_grad=requires_grad, dtype=dtype)

    def __repr__(self) -> str:
        return "Parameter" + super().__repr__()[len("Tensor"):]


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """Make a tensor on the current backend from host data (lists, NumPy arrays, numbers)."""
    return Tensor(B.asarray(data if not isinstance(data, Tensor) else data.data, dtype), requires_grad)


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__array_namespace__")


def _size(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _seed(root: Tensor, grad: Any) -> Tensor:
    if grad is None:
        if _size(root.data.shape) != 1:
            raise RuntimeError(
                f"backward() needs an output gradient for a non-scalar tensor of shape "
                f"{root.shape}: pass one of that shape, y.backward(g), or reduce first, "
                "e.g. y.sum().backward()"
            )
        return Tensor(B.xp.ones_like(root.data))
    g = grad if isinstance(grad, Tensor) else Tensor(B.asarray(grad, root.dtype))
    if g.shape != root.shape:
        raise ValueError(f"output gradient has shape {g.shape} but the tensor has shape {root.shape}")
    return g


def _reverse_topological(roots: Sequence[Tensor]) -> list[Tensor]:
    """Nodes reachable from ``roots``, each before all of its parents (iterative DFS)."""
    order: list[Tensor] = []
    seen: set[int] = set()
    for root in roots:
        if id(root) in seen:
            continue
        seen.add(id(root))
        stack = [(root, iter(root.parents))]
        while stack:
            node, parents = stack[-1]
            for p in parents:
                if id(p) not in seen:
                    seen.add(id(p))
                    stack.append((p, iter(p.parents)))
                    break
            else:  # all parents done: post-order position
                stack.pop()
                order.append(node)
    order.reverse()
    return order


def _backprop(roots: Sequence[Tensor], seeds: Sequence[Tensor], create_graph: bool,
              capture: dict[int, Tensor | None] | None) -> None:
    """Send gradients from ``roots`` to every reachable node.

    Leaves accumulate into ``.grad``; with ``capture`` given, the gradients of the nodes whose
    ids it holds are stored there instead and no ``.grad`` is touched.
    """
    grads: dict[int, Tensor] = {}
    for r, s in zip(roots, seeds):
        grads[id(r)] = grads[id(r)] + s if id(r) in grads else s
    handed: set[int] = set()  # gradients already given to a leaf: the next leaf gets a copy
    ctx = enable_grad() if create_graph else no_grad()
    with ctx:
        for node in _reverse_topological(roots):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if capture is not None and id(node) in capture:
                capture[id(node)] = g
                if node.op is None:
                    continue
            if node.op is None:
                if capture is None and node.requires_grad:
                    if node.grad is not None:
                        node.grad = node.grad + g
                    else:
                        node.grad = g if create_graph or _owned(g, handed) else Tensor(B.xp.asarray(g.data, copy=True))
                        handed.add(id(node.grad))
                continue
            for i, arg in enumerate(node.args):
                if isinstance(arg, Tensor) and arg.requires_grad:
                    ga = node.op.vjp(i, g, node)
                    key = id(arg)
                    grads[key] = grads[key] + ga if key in grads else ga


def _owned(g: Tensor, handed: set[int]) -> bool:
    """Whether ``g`` may become a leaf's ``.grad`` as is: no other leaf holds it and its array
    is not a view (of another gradient, or a read-only broadcast), so in-place updates of one
    leaf's gradient never show up in another's. Non-NumPy arrays are always copied."""
    flags = getattr(g.data, "flags", None)
    return id(g) not in handed and flags is not None and flags.owndata and flags.writeable


def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor],
         grad_outputs: Any = None, create_graph: bool = False) -> list[Tensor]:
    """Gradients of ``outputs`` with respect to ``inputs``, returned (no ``.grad`` is touched).

    An input the outputs do not depend on gets a zero gradient.
    """
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        seeds = [_seed(o, None) for o in outs]
    else:
        gos = [grad_outputs] if isinstance(grad_outputs, Tensor) or not isinstance(grad_outputs, (list, tuple)) else grad_outputs
        seeds = [_seed(o, go) for o, go in zip(outs, gos)]
    capture: dict[int, Tensor | None] = {id(x): None for x in ins}
    _backprop(outs, seeds, create_graph, capture)
    return [capture[id(x)] if capture[id(x)] is not None else Tensor(B.xp.zeros_like(x.data)) for x in ins]


def hvp(f: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> Tensor:
    """Exact Hessian-vector product ``∇²f(x) v`` by differentiating the gradient (double backward)."""
    x = Tensor(x.data, requires_grad=True)
    with enable_grad():  # works inside no_grad() too, e.g. in an optimizer step
        (g,) = grad(f(x), x, create_graph=True)
        (hv,) = grad((g * v).sum(), x)
    return hv.detach()


def hessian(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """The exact Hessian of a scalar ``f`` at a 1-D ``x`` (n backward passes through ``∇f``)."""
    if x.ndim != 1:
        raise ValueError(f"hessian() expects a 1-D parameter vector, got shape {x.shape}: reshape it first")
    x = Tensor(x.data, requires_grad=True)
    with enable_grad():
        (g,) = grad(f(x), x, create_graph=True)
        rows = [grad(g[i], x)[0] for i in range(x.shape[0])]
    with no_grad():
        return _ops.stack(rows, axis=0)


from . import ops as _ops  # noqa: E402,F401  (attaches the operators to Tensor)
