"""Reverse-mode automatic differentiation.

A :class:`Tensor` is a node of the computation graph. It holds what the lecture notes list:
its value (``data``), the operation that made it (``op``), that operation's arguments
(``args``) and, among them, its ``parents``: the tensors gradients flow back to.

Forward: every primitive (see :mod:`course.ops`, which also gives Tensor its operators)
computes on raw arrays and records a node. A primitive called on plain arrays only is just its
forward: it returns a plain array and records nothing.
Backward: :meth:`Tensor.backward` orders the graph once, children before parents (nodes are
numbered as they are recorded and a node is always recorded after its parents, so newest first
is a reverse topological order; found without recursion, kept on the root for the next backward),
and each node sends to each parent the vector-Jacobian product ``x̄ += Jᵀ ȳ`` of its
operation; a parent used several times sums what it receives. The library's VJPs are written
with primitives and array operators, so they run two ways:

* ``create_graph=False`` (training): on the raw arrays, with no node recorded: the gradients
  become Tensors only at the leaves;
* ``create_graph=True``: on Tensors, so the backward pass is itself recorded and can be
  differentiated again (Hessian-vector products, small Hessians for Newton's method).

What runs on arrays: every VJP registered with ``defvjp(prim, ..., on_arrays=True)`` (all of
:mod:`course.ops`, the cross-entropy, binary cross-entropy and batch-norm nodes). A VJP
registered without it (a user's rule) always receives Tensors; without ``create_graph`` they
record nothing and its result is unwrapped again.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import backend as B

__all__ = [
    "Tensor", "Parameter", "Primitive", "primitive", "defvjp", "no_grad", "enable_grad",
    "is_grad_enabled", "grad", "hvp", "hessian", "tensor",
]

_grad_enabled = True


class no_grad(contextlib.ContextDecorator):
    """Inside this block operations record no graph (evaluation, optimizer updates).

    A class with ``__enter__``/``__exit__``, not a generator context manager: entering and
    leaving cost a fifth as much, which counts in an optimizer step. Also a decorator.
    """

    _mode = False  # the value of the flag inside the block

    def __enter__(self) -> None:
        global _grad_enabled
        self._old, _grad_enabled = _grad_enabled, self._mode

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self._old

    def _recreate_cm(self) -> no_grad:  # each decorated call gets its own saved flag (recursion)
        return type(self)()


class enable_grad(no_grad):
    """Record the graph again inside a :func:`no_grad` block."""

    _mode = True


def is_grad_enabled() -> bool:
    return _grad_enabled


_NO_KWARGS: dict[str, Any] = {}  # shared by every node without keyword arguments: never mutated


class Primitive:
    """An operation: ``forward`` on raw arrays and one VJP per differentiable argument.

    Calling a primitive on tensors computes the forward value and, when some argument needs a
    gradient, records the node. Non-tensor arguments (Python numbers, axes) are constants. With
    no Tensor among the arguments the call is the plain forward (arrays in, an array out).
    ``on_arrays``: the VJPs also accept plain arrays (see :func:`defvjp`).
    """

    __slots__ = ("name", "forward", "vjps", "vjp_argnum", "on_arrays")

    def __init__(self, forward: Callable[..., Any], name: str | None = None) -> None:
        self.name = name or forward.__name__
        self.forward = forward
        self.vjps: tuple[Callable[..., Any] | None, ...] = ()
        self.vjp_argnum: Callable[..., Any] | None = None
        self.on_arrays = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply(args, kwargs)

    def apply(self, args: tuple[Any, ...], kwargs: dict[str, Any] = _NO_KWARGS) -> Any:
        """``self(*args, **kwargs)`` with the arguments already packed (Tensor's operators use it)."""
        inputs, parents, plain = [], [], True
        for a in args:  # a loop, not comprehensions: this runs for every operation
            if isinstance(a, Tensor):
                plain = False
                inputs.append(a.data)
                if a.requires_grad:
                    parents.append(a)
            else:
                inputs.append(a)
        data = self.forward(*inputs, **kwargs) if kwargs else self.forward(*inputs)
        if plain:  # plain arrays: nothing to record (how VJPs run on arrays)
            return data
        if not (parents and _grad_enabled):
            return _leaf(data)
        out = Tensor.__new__(Tensor)
        out.data, out.grad, out.requires_grad, out.op, out.args, out.kwargs = data, None, True, self, args, kwargs
        out.parents, out.inputs, out._seq, out._order = tuple(parents), inputs, next(_created), None
        return out

    def vjp(self, argnum: int, g: Any, out: Any, args: Sequence[Any] | None = None,
            kwargs: Any = None) -> Any:
        """The VJP of this operation for argument ``argnum``: ``Jᵀ g`` shaped like that argument.

        ``out`` is the node, or its value when ``args`` (then the arguments' values) are given;
        ``args``/``kwargs`` default to the node's own.
        """
        if args is None:
            args, kwargs = out.args, out.kwargs
        if self.vjp_argnum is not None:
            return self.vjp_argnum(argnum, g, out, *args, **kwargs)
        fn = self.vjps[argnum] if argnum < len(self.vjps) else None
        if fn is None:
            raise TypeError(f"{self.name} is not differentiable with respect to argument {argnum}")
        return fn(g, out, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


_created = itertools.count(1)  # numbers the recorded nodes in the order they are made (leaves: 0)


def primitive(forward: Callable[..., Any]) -> Primitive:
    """Decorator: make a forward function on raw arrays into a graph-recording primitive."""
    return Primitive(forward)


def defvjp(prim: Primitive, *vjps: Callable[..., Any] | None, argnum: Callable[..., Any] | None = None,
           on_arrays: bool = False) -> None:
    """Register the VJPs of ``prim``: ``vjp_i(g, out, *args, **kwargs) -> Jᵢᵀ g``.

    For operations with a variable number of tensor arguments (concat, stack) pass
    ``argnum=f`` with ``f(i, g, out, *args, **kwargs)`` instead. By default the VJPs receive
    Tensors (under :func:`no_grad` unless ``create_graph=True``). ``on_arrays=True`` declares
    that they also work on plain arrays (they use only primitives and array operators, and
    read masks from an argument's raw value): a backward pass without ``create_graph`` then
    calls them on the arrays the forward saw, and no Tensor is made for an intermediate gradient.
    """
    prim.vjps, prim.vjp_argnum, prim.on_arrays = vjps, argnum, on_arrays


class Tensor:
    """A node of the computation graph: value, operation, arguments, parents, gradient.

    ``data`` is the backend array (NumPy, CuPy, ...). Leaves (``op is None``) made with
    ``requires_grad=True`` accumulate their gradient into ``grad`` (a Tensor) on backward.
    """

    # ``inputs``: a recorded node's argument values as the forward saw them (the arrays its VJPs
    # run on); ``_seq``: when the node was recorded (1, 2, ...; 0 for a leaf), see
    # :func:`_reverse_topological`; ``_order``: the graph's reverse topological order below this
    # node, set by the first backward from it. A leaf has no ``inputs`` or ``_order``.
    __slots__ = ("data", "grad", "requires_grad", "op", "args", "kwargs", "parents", "inputs", "_seq",
                 "_order", "__weakref__")
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
        self.kwargs: Any = _NO_KWARGS
        self.parents: tuple[Tensor, ...] = ()
        self._seq = 0

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
        return math.prod(self.data.shape)

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
    return _leaf(B.asarray(data.data if isinstance(data, Tensor) else data, dtype), requires_grad)


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__array_namespace__")


def _leaf(data: Any, requires_grad: bool = False) -> Tensor:
    """A leaf Tensor around an array of the backend (no conversion: the engine's own)."""
    t = Tensor.__new__(Tensor)
    t.data, t.grad, t.requires_grad, t.op, t.args, t.kwargs, t.parents, t._seq = (
        data, None, requires_grad, None, (), _NO_KWARGS, (), 0)
    return t


def _seed(root: Tensor, grad: Any) -> Any:
    """The output gradient ``ȳ``: ``grad`` as a Tensor, or an array of ones for a one-element
    root when ``grad`` is None."""
    if grad is None:
        data = root.data
        if math.prod(data.shape) != 1:
            raise RuntimeError(
                f"backward() needs an output gradient for a non-scalar tensor of shape "
                f"{root.shape}: pass one of that shape, y.backward(g), or reduce first, "
                "e.g. y.sum().backward()"
            )
        if not isinstance(data, _HOST):
            return B.xp.ones_like(data)
        one = _UNITS.get((data.dtype, data.shape))  # looked up here: one call less per backward
        return _ones(data) if one is None else one
    g = grad if isinstance(grad, Tensor) else _leaf(B.asarray(grad, root.dtype))
    if g.shape != root.shape:
        raise ValueError(f"output gradient has shape {g.shape} but the tensor has shape {root.shape}")
    return g


_HOST = (np.ndarray, np.generic)  # NumPy values (a full reduction returns a NumPy scalar)
_UNITS: dict[tuple[Any, tuple[int, ...]], np.ndarray] = {}  # (dtype, shape) -> read-only ones


def _ones(like: Any) -> np.ndarray:
    """Ones shaped like the NumPy value ``like``: one shared read-only array per dtype and shape,
    made once and then found in ``_UNITS`` by :func:`_seed`, so the usual seed ``ȳ = 1`` is a
    dict lookup. Nothing writes into a gradient in flight, and a leaf or captured gradient that
    would receive it as is gets a copy (:func:`_keep`)."""
    one = _UNITS[(like.dtype, like.shape)] = np.ones(like.shape, like.dtype)
    one.flags.writeable = False
    return one


def _reverse_topological(roots: Sequence[Tensor]) -> list[Tensor]:
    """The recorded nodes (leaves left out) reachable from ``roots``, each before its parents.

    A node is recorded after its parents (they are its arguments), so the order of recording,
    newest first, is a reverse topological order: collect the reachable nodes (a sweep over a
    growing list, no recursion) and sort them by their recording number ``_seq``. Leaves need
    no order: they only sum what they receive (:func:`_backprop` hands it over at the end).
    (Sets and dicts of nodes compare them by identity: a Tensor's hash is ``object.__hash__``.)
    """
    nodes: list[Tensor] = []
    seen: set[Tensor] = set()
    for root in roots:
        if root.op is not None and root not in seen:
            seen.add(root)
            nodes.append(root)
    for node in nodes:  # the list grows while it is read: every reachable node once
        for p in node.parents:
            if p.op is not None and p not in seen:
                seen.add(p)
                nodes.append(p)
    if len(nodes) > 1:
        nodes.sort(key=_recorded, reverse=True)
    return nodes


_recorded = operator.attrgetter("_seq")


def _graph_order(roots: Sequence[Tensor]) -> list[Tensor]:
    """:func:`_reverse_topological`, remembered on a single root: a recorded graph never changes
    (a node's parents are fixed when it is recorded), so a second backward from the same root
    (a replayed graph) skips the sort. The root keeps the order of the nodes below it only, so
    it holds no reference to itself."""
    if len(roots) != 1:
        return _reverse_topological(roots)
    root = roots[0]
    if root.op is None:  # a leaf: no recorded node below it
        return []
    below = root._order
    if below is None:
        order = _reverse_topological(roots)
        root._order = order[1:]
        return order
    return [root, *below]


def _backprop(roots: Sequence[Tensor], seeds: Sequence[Any], create_graph: bool,
              capture: dict[Tensor, Tensor | None] | None) -> None:
    """Send gradients (``seeds``: arrays or Tensors) from ``roots`` to every reachable node.

    Leaves accumulate into ``.grad``; with ``capture`` given, the gradients of the nodes it
    holds are stored there instead and no ``.grad`` is touched. Without ``create_graph`` the
    gradients in flight are raw arrays, and a VJP registered without ``on_arrays`` gets them
    wrapped in Tensors; with it they are Tensors and every VJP records its operations.
    """
    global _grad_enabled
    grads: dict[Tensor, Any] = {}  # node -> the sum of the gradients it has received so far
    for r, s in zip(roots, seeds):
        if create_graph != isinstance(s, Tensor):  # a Tensor ȳ keeps its own graph for create_graph
            s = _leaf(s) if create_graph else s.data
        grads[r] = grads[r] + s if r in grads else s
    handed: set[int] = set()  # ids of the arrays handed out as results: the next taker gets a copy
    old, _grad_enabled = _grad_enabled, create_graph  # a plain flag: no context manager per call
    try:
        for node in _graph_order(roots):  # recorded nodes; the leaves stay in ``grads``
            g = grads.pop(node, None)
            if g is None:
                continue
            if capture is not None and node in capture:
                capture[node] = _captured(g, create_graph, handed)
            op, kwargs = node.op, node.kwargs
            if create_graph:
                out, args = node, node.args
            elif op.on_arrays:
                out, args = node.data, node.inputs
            else:  # a rule that expects Tensors, run on arrays
                out, args, g = node, node.args, _leaf(g)
            rules = op.vjps if op.vjp_argnum is None else ()
            for i, arg in enumerate(node.args):
                if not isinstance(arg, Tensor) or not arg.requires_grad:
                    continue  # a constant, or a tensor no gradient is wanted for
                rule = rules[i] if i < len(rules) else None  # called directly: the common case
                ga = rule(g, out, *args, **kwargs) if rule is not None else op.vjp(i, g, out, args, kwargs)
                if not create_graph and isinstance(ga, Tensor):  # from a rule that expects Tensors
                    ga = ga.data
                prev = grads.get(arg)
                grads[arg] = ga if prev is None else prev + ga
        for node, g in grads.items():  # what is left: leaves (and nodes no longer requiring grad)
            if node.op is not None:
                continue
            if capture is not None:
                if node in capture:
                    capture[node] = _captured(g, create_graph, handed)
            elif node.requires_grad:
                _accumulate(node, g, create_graph, handed)
    finally:
        _grad_enabled = old


def _captured(g: Any, create_graph: bool, handed: set[int]) -> Any:
    """A gradient :func:`grad` returns: the node itself with ``create_graph``, else a leaf of its own."""
    return g if create_graph else _leaf(_keep(g, handed))


def _accumulate(leaf: Tensor, g: Any, create_graph: bool, handed: set[int]) -> None:
    """``leaf.grad += g``, as a new Tensor: an array ``g`` is wrapped (copied unless :func:`_keep` may hand it over)."""
    if create_graph:
        leaf.grad = g if leaf.grad is None else leaf.grad + g
    elif leaf.grad is not None:
        leaf.grad = _leaf(leaf.grad.data + g)
    else:
        leaf.grad = _leaf(_keep(g, handed))


def _keep(g: Any, handed: set[int]) -> Any:
    """Array ``g`` as a result the caller may own and update in place: ``g`` itself the first
    time if it is neither a view (of another gradient, or a read-only broadcast) nor read-only
    (the shared seed of :func:`_ones`), else a copy, so no two results of one backward pass
    share memory. CuPy's flags have no ``writeable`` (its views are caught by ``owndata``);
    arrays without flags (array_api_strict) are always copied."""
    flags = getattr(g, "flags", None)
    if flags is None or not flags.owndata or not getattr(flags, "writeable", True) or id(g) in handed:
        g = B.xp.asarray(g, copy=True)
    handed.add(id(g))
    return g


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
    capture: dict[Tensor, Tensor | None] = dict.fromkeys(ins)
    _backprop(outs, seeds, create_graph, capture)
    return [capture[x] if capture[x] is not None else Tensor(B.xp.zeros_like(x.data)) for x in ins]


def hvp(f: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> Tensor:
    """Exact Hessian-vector product ``∇²f(x) v`` by differentiating the gradient (double backward)."""
    x = Tensor(x.data, requires_grad=True)
    with enable_grad():  # works inside no_grad() too, e.g. in an optimizer step
        (g,) = grad(f(x), x, create_graph=True)
        (hv,) = grad((g * v).sum(), x)
    return hv.detach()


def hessian(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """The exact Hessian of a scalar ``f`` at a 1-D ``x``: row i is ``∇(∇f)ᵢ``, one backward
    pass through the recorded graph of ``∇f`` per row, seeded with the unit vector eᵢ."""
    if x.ndim != 1:
        raise ValueError(f"hessian() expects a 1-D parameter vector, got shape {x.shape}: reshape it first")
    x = Tensor(x.data, requires_grad=True)
    with enable_grad():
        (g,) = grad(f(x), x, create_graph=True)
    eye = B.xp.eye(x.shape[0], dtype=x.dtype, device=x.data.device)
    rows = [grad(g, x, grad_outputs=_leaf(eye[i, ...]))[0].data for i in range(x.shape[0])]
    return Tensor(B.xp.stack(rows, axis=0))
