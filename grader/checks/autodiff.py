"""Hidden checks of assignment 01_autodiff (solutions/01_autodiff/autodiff.ipynb).

The exercises run on the notebook's own tiny graph (``Node``: value, fn, args, parents, grad),
so no course function shares their signatures and the catalog names no ``replaces``. A graded
function must still be the student's own. While a check runs, the library pieces that would
do the exercise's work refuse to: course's backward engine (``course.autodiff._backprop``,
behind ``Tensor.backward`` and ``course.grad``), its graph ordering
(``course.autodiff._reverse_topological``, which would accept a ``Node`` since it only reads
``.parents``), the VJPs registered on ``course.ops`` primitives, ``course.ops.unbroadcast``
and the library's finite differences (``course.gradcheck.numerical_grad``). Results must be
NumPy arrays: a course Tensor handed back is refused with a hint.

``check_backward`` builds its graphs from the notebook's ``Node`` class with reference VJPs
attached (``node.fn.vjp``) and temporarily points the notebook's ``topological_order`` at the
reference, so a mistake in an earlier exercise does not fail this one; a backward that only
works with the student's own ordering convention is accepted too. Its graphs include nodes used
several times, a constant first argument, a vector root, and a diamond with a long chain to the
same intermediate node (paths of 4 and 8 nodes), which a breadth-first walk gets wrong.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from grader.kernel.agent import Remote, headroom
from grader.checks import CheckFailed, check
from grader.checks._core import (as_array, call, check_number, compare, construct, guard, is_class, patched_global,
                                 resolve, rng, specs, type_name)

SPEC = specs(__name__)

#: Library functions that would do an exercise's work; refused while a check runs.
_BACKPROP = "course.autodiff._backprop"
_ORDER = "course.autodiff._reverse_topological"
_UNBROADCAST = "course.ops.unbroadcast"
_NUMERICAL = ("course.gradcheck.numerical_grad", "course.gradcheck.numerical_gradient")
_PRIMITIVES = ("add", "mul", "matmul", "exp", "log", "relu", "sum")


# -- references on arrays ---------------------------------------------------------------------

def _unbroadcast(g: np.ndarray, shape: tuple[int, ...], reduce: Callable[..., Any] = np.sum) -> np.ndarray:
    """Sum ``g`` over the axes broadcasting added in front or stretched from 1, to ``shape``."""
    g = np.asarray(g)
    if g.shape == tuple(shape):
        return g  # the same array, as a framework's add passes g on: backward must not alias it
    g = reduce(g, axis=tuple(range(g.ndim - len(shape))))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return np.asarray(reduce(g, axis=stretched, keepdims=True) if stretched else g)


def _vjp_sum(g: np.ndarray, a: np.ndarray, axis: int | None = None) -> tuple[np.ndarray]:
    g = np.asarray(g)
    if axis is not None:
        g = np.expand_dims(g, axis)
    return (np.broadcast_to(g, a.shape).copy(),)


_REF_VJP: dict[str, Callable[..., tuple[np.ndarray, ...]]] = {
    "add": lambda g, a, b: (_unbroadcast(g, a.shape), _unbroadcast(g, b.shape)),
    "mul": lambda g, a, b: (_unbroadcast(g * b, a.shape), _unbroadcast(g * a, b.shape)),
    "matmul": lambda g, a, b: (g @ b.T, a.T @ g),
    "exp": lambda g, a: (g * np.exp(a),),
    "log": lambda g, a: (g / a,),
    "relu": lambda g, a: (np.where(a > 0, g, np.zeros_like(g)),),
    "sum": _vjp_sum,
}
_FORWARD: dict[str, Callable[..., Any]] = {
    "add": np.add, "mul": np.multiply, "matmul": np.matmul, "exp": np.exp, "log": np.log,
    "relu": lambda a: np.maximum(a, 0), "sum": lambda a, axis=None: np.sum(a, axis=axis),
}


# The checks' twin of the notebook's ``Op``: a name, a forward and the reference VJP (a
# SimpleNamespace, so a grading kernel gets it as plain data whose functions call back here).
_OPS = {name: types.SimpleNamespace(name=name, forward=_FORWARD[name], vjp=_REF_VJP[name]) for name in _FORWARD}


def _node_parents(node: Any) -> Any:
    return node.parents


def _ref_order(root: Any, parents: Callable[[Any], Any] = _node_parents) -> list[Any]:
    """Reverse topological order (root first), iterative depth-first post-order; ``parents``
    reads a node's parents (a graph the check built knows them without asking the kernel)."""
    post, seen = [], {id(root)}
    stack = [(root, iter(parents(root)))]
    while stack:
        node, pending = stack[-1]
        for p in pending:
            if id(p) not in seen:
                seen.add(id(p))
                stack.append((p, iter(parents(p))))
                break
        else:
            stack.pop()
            post.append(node)
    return post[::-1]


def _ref_backward(root: Any, G: _Graph, *, accumulate: bool = True,
                  pair_with_parents: bool = False, in_place: bool = False) -> dict[int, np.ndarray]:
    """Adjoints by id(node) of a graph ``G`` built, without touching ``.grad``; the flags give
    known wrong variants (``in_place``: ``+=`` into whatever array a node holds, shared or not)."""
    grads = {id(root): np.ones_like(G.value(root))}
    for node in _ref_order(root, G.parents):
        fn, args, parents, _ = G.links[id(node)]
        if fn is None:
            continue
        values = [G.value(a) if G.is_node(a) else a for a in args]
        targets = parents if pair_with_parents else args
        for arg, g in zip(targets, fn.vjp(grads[id(node)], *values)):
            if G.is_node(arg):
                key = id(arg)
                if in_place and key in grads:
                    grads[key] += g
                else:
                    grads[key] = grads[key] + g if accumulate and key in grads else g
    return grads


def _ref_numerical_gradient(f: Callable[[np.ndarray], Any], x: Any, eps: float) -> np.ndarray:
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = f(x)
        x[i] = old - eps
        fm = f(x)
        x[i] = old
        grad[i] = (fp - fm) / (2 * eps)
    return grad


# -- keeping the library out of the student's answer -----------------------------------------

@contextlib.contextmanager
def _refusing(spec: Any, *paths: str, primitives: bool = False) -> Iterator[None]:
    """Make the named library functions (those that exist) and, with ``primitives``, the VJPs
    of course.ops primitives raise CheckFailed naming ``spec.function`` while the block runs."""
    with contextlib.ExitStack() as stack:
        for path in paths:
            try:
                resolve(path)
            except (ImportError, AttributeError):
                continue  # not in this edition of the library: nothing to refuse
            try:
                stack.enter_context(guard(dataclasses.replace(spec, replaces=path)))
            except TypeError:
                continue  # a decorated function cannot be swapped out; the other guards remain
        if primitives:
            stack.enter_context(_blocked_primitive_vjps(spec))
        yield


@contextlib.contextmanager
def _blocked_primitive_vjps(spec: Any) -> Iterator[None]:
    try:
        ops = importlib.import_module("course.ops")
    except ImportError:
        yield
        return

    def blocker(name: str) -> Callable[..., Any]:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            raise CheckFailed(f"{spec.function} must be your own implementation: it used the VJP of "
                              f"course.ops.{name}, the library's version of this rule.")
        return blocked

    saved = []
    for name in _PRIMITIVES:
        prim = getattr(ops, name, None)
        if prim is None or not hasattr(prim, "vjps"):
            continue
        saved.append((prim, prim.vjps, prim.vjp_argnum))
        prim.vjps = tuple(blocker(name) if v is not None else None for v in prim.vjps)
        if prim.vjp_argnum is not None:
            prim.vjp_argnum = blocker(name)
    try:
        yield
    finally:
        for prim, vjps, argnum in saved:
            prim.vjps, prim.vjp_argnum = vjps, argnum


# -- graphs on the notebook's Node class ------------------------------------------------------

def _node_type(Node: Any) -> type:
    """The notebook's Node class, after checking it builds nodes with the five attributes."""
    if not is_class(Node):
        raise CheckFailed(f"expected the notebook's Node class, got {type_name(Node)}.")
    try:
        n = Node(np.zeros(2))
    except Exception as exc:
        raise CheckFailed(f"Node(value) raised {type(exc).__name__}: {exc}; run the notebook's "
                          "Node cell unchanged.") from None
    missing = [a for a in ("value", "fn", "args", "parents", "grad") if not hasattr(n, a)]
    if missing:
        raise CheckFailed(f"Node objects lack {missing}; run the notebook's Node cell unchanged.")
    return Node


class _Graph:
    """Builds a graph of the notebook's nodes with reference ops and remembers, per node, its
    label and what it was built from (fn, args, parents, value): the references read those,
    not the student's objects."""

    def __init__(self, Node: type, dtype: Any = np.float64) -> None:
        self.Node, self.dtype = Node, np.dtype(dtype)
        self.labels: dict[int, str] = {}
        self.nodes: list[Any] = []
        self.links: dict[int, tuple[Any, tuple, tuple, np.ndarray]] = {}

    def leaf(self, label: str, value: Any) -> Any:
        value = np.asarray(value, dtype=self.dtype)
        return self._keep(label, construct(self.Node, value), (None, (), (), value))

    def const(self, value: Any) -> np.ndarray:
        return np.asarray(value, dtype=self.dtype)

    def __call__(self, label: str, name: str, *args: Any) -> Any:
        op = _OPS[name]
        parents = tuple(a for a in args if self.is_node(a))
        value = op.forward(*[self.value(a) if self.is_node(a) else a for a in args])
        node = construct(self.Node, value, fn=op, args=args, parents=parents)
        return self._keep(label, node, (op, args, parents, value))

    def is_node(self, obj: Any) -> bool:
        return id(obj) in self.links

    def value(self, node: Any) -> np.ndarray:
        return self.links[id(node)][3]

    def parents(self, node: Any) -> Any:
        link = self.links.get(id(node))
        return link[2] if link is not None else node.parents

    def _keep(self, label: str, node: Any, link: tuple[Any, tuple, tuple, np.ndarray]) -> Any:
        self.labels[id(node)] = label
        self.nodes.append(node)
        self.links[id(node)] = link
        return node


def _draw(key: str, shape: Sequence[int], dtype: Any, *, low: float | None = None,
          high: float | None = None) -> np.ndarray:
    gen = rng("autodiff", key, tuple(shape), str(dtype))
    x = gen.uniform(low, high, shape) if low is not None else gen.standard_normal(shape)
    return np.asarray(x, dtype=dtype)


# Each scenario builds (description, root) on a _Graph.
def _shared(G: _Graph) -> tuple[str, Any]:
    a = G.leaf("a", _draw("shared", (2, 3), G.dtype))
    b = G("b", "add", a, a)
    c = G("c", "mul", b, b)
    return "a (2, 3); b = a + a; c = b * b; root = sum(c)", G("root", "sum", c)


def _mlp(G: _Graph) -> tuple[str, Any]:
    X = G.const(_draw("X", (5, 4), G.dtype))
    W1 = G.leaf("W1", _draw("W1", (4, 6), G.dtype))
    b1 = G.leaf("b1", _draw("b1", (6,), G.dtype))
    W2 = G.leaf("W2", _draw("W2", (6, 3), G.dtype) / 2)
    z1 = G("X @ W1", "matmul", X, W1)
    s = G("X @ W1 + b1", "add", z1, b1)
    h = G("h = relu(X @ W1 + b1)", "relu", s)
    z2 = G("z = h @ W2", "matmul", h, W2)
    e = G("exp(z)", "exp", z2)
    p = G("exp(z) + 1", "add", e, G.const(1.0))
    lp = G("log(exp(z) + 1)", "log", p)
    total = G("sum(log(exp(z) + 1))", "sum", lp)
    return ("X constant (5, 4); h = relu(X @ W1 + b1); z = h @ W2; "
            "root = 0.5 * sum(log(exp(z) + 1))"), G("root", "mul", G.const(0.5), total)


def _vector_root(G: _Graph) -> tuple[str, Any]:
    a = G.leaf("a", _draw("vector", (4,), G.dtype))
    e = G("exp(a)", "exp", a)
    return "a (4,); root = exp(a) * a, a vector (seed ones)", G("root", "mul", e, a)


def _three_children(G: _Graph) -> tuple[str, Any]:
    x = G.leaf("x", _draw("three", (3, 2), G.dtype, low=0.5, high=2.0))
    t = G("x * x + exp(x)", "add", G("x * x", "mul", x, x), G("exp(x)", "exp", x))
    u = G("x * x + exp(x) + log(x)", "add", t, G("log(x)", "log", x))
    return "x (3, 2); root = sum(x * x + exp(x) + log(x), axis=0)", G("root", "sum", u, 0)


def _diamond_chain(G: _Graph) -> tuple[str, Any]:
    """e = exp(x) reached from the root along a path of 4 nodes and one of 8 (through a chain),
    x directly and through e: a backward that visits a node before all its users have sent
    their part gets it wrong."""
    x = G.leaf("x", _draw("diamond", (3,), G.dtype, low=0.5, high=1.5))
    e = G("e = exp(x)", "exp", x)
    t = e
    for i in range(1, 6):
        t = G(f"t{i} = 0.9 * t{i - 1} (t0 = e)", "mul", t, G.const(0.9))
    s = G("log(e) + t5", "add", G("log(e)", "log", e), t)
    q = G("(log(e) + t5) * x", "mul", s, x)
    return ("x (3,); e = exp(x); t5 = 0.9^5 e through a chain of 5 nodes; "
            "root = sum((log(e) + t5) * x)"), G("root", "sum", q)


_SCENARIOS = (_shared, _mlp, _vector_root, _three_children, _diamond_chain)


# -- comparison helpers -----------------------------------------------------------------------

def _as_grads(result: Any, n: int, what: str, example: str, *, extra_none: bool = False) -> tuple:
    """The tuple a VJP returned, after checking it holds one entry per array argument."""
    if not isinstance(result, (tuple, list)):
        raise CheckFailed(f"{what} returned a value of type {type_name(result)}; return a tuple "
                          f"with one gradient per array argument, {example}.")
    if len(result) != n and not (extra_none and len(result) == n + 1 and result[-1] is None):
        raise CheckFailed(f"{what} returned {len(result)} values; return a tuple with one gradient "
                          f"per array argument, {example}.")
    return tuple(result[:n])


_UNBROADCAST_HINT = "sum it over the axes broadcasting added or stretched (unbroadcast)"


def _check_grad(got: Any, expected: np.ndarray, *, what: str, arg: str | None,
                arg_shape: tuple, tol: tuple[float, float], out_shape: tuple | None = None,
                out_hint: str = _UNBROADCAST_HINT, mistakes: Mapping[str, Any] | None = None) -> None:
    """Compare one adjoint (of argument ``arg``, or a whole ``what`` when None); a wrong shape
    gets ``out_hint`` when it is the output's shape ``out_shape``."""
    full = what if arg is None else f"{what} (gradient for {arg})"
    arr = as_array(got, what=full)
    shape = tuple(arg_shape)
    if arr.shape != shape:
        if out_shape is not None and arr.shape == tuple(out_shape):
            hint = f"that is the output's shape: {out_hint} to get the shape {shape}"
        else:
            hint = f"it must have the shape {shape}" + (f" of {arg}" if arg else "")
        raise CheckFailed(f"{full} has shape {arr.shape}; {hint}.")
    compare(arr, expected, what=full, tol=tol,
            mistakes={k: v for k, v in (mistakes or {}).items() if v is not None})


def _maybe(fn: Callable[[], Any]) -> Any:
    """A known wrong variant's value, or None where its formula does not even run."""
    try:
        with np.errstate(all="ignore"):
            return np.asarray(fn())
    except (ValueError, TypeError, IndexError):
        return None


def _desc(shape: tuple) -> str:
    return str(tuple(shape))


# -- numerical_gradient -----------------------------------------------------------------------

def _scalar_fn(x_shape: tuple, A: np.ndarray) -> Callable[[np.ndarray], float]:
    """f(v) = sum(sin(v) v^2) + 0.5 (a . v)^2, refusing arrays not shaped like x."""
    def f(v: np.ndarray) -> float:
        v = np.asarray(v)
        if v.shape != x_shape:
            raise CheckFailed(f"numerical_gradient called f with an array of shape {v.shape}, but x "
                              f"has shape {x_shape}: give f arrays shaped like x.")
        return float(np.sum(np.sin(v) * v ** 2) + 0.5 * np.sum(A * v) ** 2)
    return f


def _fd_variants(f: Callable, x: np.ndarray, eps: float) -> dict[str, Any]:
    xf = np.array(x, dtype=np.float64)

    def quotient(step_plus: float, step_minus: float, denom: float) -> np.ndarray:
        out = np.zeros_like(xf)
        for i in np.ndindex(xf.shape):
            xp, xm = xf.copy(), xf.copy()
            xp[i] += step_plus
            xm[i] -= step_minus
            out[i] = (f(xp) - f(xm)) / denom
        return out

    return {
        "one-sided (forward) differences (f(x + eps e_i) - f(x)) / eps; use central differences":
            lambda: quotient(eps, 0.0, eps),
        "one-sided (backward) differences (f(x) - f(x - eps e_i)) / eps; use central differences":
            lambda: quotient(0.0, eps, eps),
        "divided by eps instead of 2 eps": lambda: quotient(eps, eps, eps),
    }


def _call_leaving_x(numerical_gradient: Callable, f: Callable, x: np.ndarray, what: str,
                    **kwargs: Any) -> Any:
    """Call it on a copy of x and fail if that copy comes back changed by more than rounding
    (restoring x[i] by subtracting eps again is fine)."""
    seen: dict[str, np.ndarray] = {}

    def run(f_: Callable, x_: np.ndarray) -> Any:
        seen["x"] = x_
        return numerical_gradient(f_, x_, **kwargs)

    got = call(run, f, x, what=what, inputs_unchanged=False)
    if not np.allclose(np.asarray(seen["x"], dtype=np.float64), x, rtol=1e-12, atol=0.0):
        raise CheckFailed(f"{what} changed the caller's x; perturb a float64 copy "
                          "(np.array(x, dtype=np.float64)) and leave x as it was.")
    return got


@check
def check_numerical_gradient(numerical_gradient: Callable[..., Any]) -> None:
    spec = SPEC["numerical_gradient"]
    tol = spec.tol("float64")
    with _refusing(spec, _BACKPROP, *_NUMERICAL):
        cases = [((5,), np.float64), ((3, 4), np.float64), ((1,), np.float64),
                 ((2, 3, 2), np.float64), ((), np.float64), ((2, 3), np.float32),
                 ((2, 3), np.int64)]
        for shape, dtype in cases:
            gen = rng("numerical_gradient", shape, str(np.dtype(dtype)))
            if np.dtype(dtype).kind == "i":
                x = gen.integers(-3, 4, size=shape).astype(dtype)
            else:
                x = gen.uniform(-1.5, 1.5, size=shape).astype(dtype)
            f = _scalar_fn(x.shape, gen.standard_normal(shape))
            eps = 1e-4
            what = f"numerical_gradient(f, x, eps={eps}) for x of shape {shape} and dtype {np.dtype(dtype)}"
            arr = as_array(_call_leaving_x(numerical_gradient, f, x, what, eps=eps), what=what,
                           shape=x.shape)
            expected = _ref_numerical_gradient(f, x, eps)
            if arr.dtype.kind in "iu":
                raise CheckFailed(f"{what} returned an integer array; create the gradient as a "
                                  "float64 array (np.zeros(x.shape)), not with np.zeros_like(x).")
            if np.dtype(dtype).kind != "f" and np.allclose(arr, 0.0) and not np.allclose(expected, 0.0):
                raise CheckFailed(f"{what} returned zeros: on an integer array x[i] + eps rounds back "
                                  "to x[i]; perturb a float64 copy of x.")
            if dtype == np.float32 and not np.allclose(arr, expected, rtol=tol[0], atol=tol[1]):
                raise CheckFailed(f"{what} is inaccurate: float32 keeps about 7 digits, so x[i] + eps "
                                  "is rounded; perturb a float64 copy of x and return float64.")
            compare(arr, expected, what=what, tol=tol, check_dtype=False,
                    mistakes={k: _maybe(v) for k, v in _fd_variants(f, x, eps).items()})
        # The default step must give an accurate gradient too.
        x = rng("numerical_gradient", "default").uniform(-1, 1, (4,))
        A = np.ones(4)
        f = _scalar_fn(x.shape, A)
        exact = np.sin(x) * 2 * x + np.cos(x) * x ** 2 + A * np.sum(A * x)
        got = _call_leaving_x(numerical_gradient, f, x, "numerical_gradient(f, x) with the default eps")
        compare(as_array(got, what="numerical_gradient(f, x)", shape=x.shape), exact,
                what="numerical_gradient(f, x) with the default eps, against the exact gradient",
                tol=(1e-6, 1e-8), check_dtype=False)


# -- topological_order ------------------------------------------------------------------------

def _order_problem(order: Sequence[Any], root: Any, G: _Graph) -> str | None:
    """Why ``order`` is not a reverse topological order of root's graph, or None if it is."""
    reachable = {id(n): n for n in _ref_order(root, G.parents)}
    ids = [id(n) for n in order]
    foreign = [n for n in order if id(n) not in reachable]
    if foreign:
        kind = type_name(foreign[0])
        return (f"it contains a {kind} that is not a node root depends on; list the Node objects "
                "reachable through .parents")
    if len(set(ids)) != len(ids):
        return ("a node appears more than once; a node reached along several paths (as a in "
                "b = a + a) must be listed once: remember visited nodes in a set of id(node)")
    if len(ids) != len(reachable):
        return (f"it lists {len(ids)} of the {len(reachable)} nodes root depends on; follow "
                ".parents all the way down to the leaves")
    position = {i: k for k, i in enumerate(ids)}
    for node in order:
        for p in G.parents(node):
            if position[id(p)] < position[id(node)]:
                return "a node comes after one of its parents"
    return None


def _describe_order_mistake(order: list[Any], root: Any, what: str, G: _Graph) -> None:
    problem = _order_problem(order, root, G)
    if problem is None:
        return
    if problem == "a node comes after one of its parents":
        if _order_problem(order[::-1], root, G) is None:
            problem = ("the list runs from the leaves to root; reverse it so that root comes "
                       "first and every node precedes its parents")
        else:
            problem = ("a node comes before one of its children (breadth-first order does this "
                       "when a node is reachable along paths of different lengths); use a "
                       "depth-first post-order, reversed")
    raise CheckFailed(f"{what} is not a reverse topological order: {problem}.")


def _chain(G: _Graph, n: int) -> Any:
    node = G.leaf("x", 1.0)
    for i in range(n - 1):
        node = G(f"n{i}", "mul", node, G.const(1.0))
    return node


def _order_graphs(G: _Graph) -> list[tuple[str, Any]]:
    single = G.leaf("x", 2.0)
    x = G.leaf("x", 0.5)
    bfs_trap = G("root", "mul", x, G("log(exp(x))", "log", G("exp(x)", "exp", x)))
    a = G.leaf("a", [1.0, 2.0])
    G("exp(a)", "exp", a)  # built from a but not used by the root below
    shared_leaf = G("root", "sum", G("c", "mul", G("b", "add", a, a), G("b", "add", a, a)))
    graphs = [
        ("a single leaf x", single),
        ("root = x * log(exp(x))", bfs_trap),
        ("root = sum((a + a) * (a + a)), with an unused node exp(a) beside it", shared_leaf),
    ]
    for build in _SCENARIOS:
        desc, root = build(G)
        graphs.append((desc, root))
    # Many diamonds in a row: every node is shared by two children.
    d = G.leaf("x", 1.0)
    for i in range(20):
        d = G(f"d{i}", "add", G(f"l{i}", "relu", d), G(f"r{i}", "mul", d, G.const(0.5)))
    graphs.append(("20 diamonds in a row: d_{k+1} = relu(d_k) + d_k * 0.5", d))
    return graphs


@contextlib.contextmanager
def _recursion_headroom(fn: Any, frames: int) -> Iterator[None]:
    """Calls of ``fn`` may nest only ``frames`` deeper: recursion on a long chain fails even
    where the student raised the interpreter's limit (in the kernel, for a notebook's ``fn``)."""
    if isinstance(fn, Remote):
        fn._peer.headroom = frames
        try:
            yield
        finally:
            fn._peer.headroom = None
        return
    with headroom(frames):
        yield


def _same_links(now: Any, then: Any) -> bool:
    """A node's parents or args unchanged: the same tuple, or (from a grading kernel, where
    each read is a new tuple) the same nodes and equal constants."""
    if now is then:
        return True
    return (type(now) is tuple and type(then) is tuple and len(now) == len(then)
            and all(a is b or (type(a) is np.ndarray and type(b) is np.ndarray and np.array_equal(a, b))
                    or (type(a) in (int, float) and a == b) for a, b in zip(now, then)))


def _order_of(topological_order: Callable, root: Any, what: str) -> list[Any]:
    got = call(topological_order, root, what=what)
    if not isinstance(got, (list, tuple)):
        raise CheckFailed(f"{what} returned a {type_name(got)}; return a list of nodes.")
    return list(got)


@check
def check_topological_order(topological_order: Callable[..., Any], Node: type) -> None:
    spec = SPEC["topological_order"]
    Node = _node_type(Node)
    with _refusing(spec, _ORDER, _BACKPROP):
        G = _Graph(Node)
        for desc, root in _order_graphs(G):
            what = f"topological_order(root) for {desc}"
            nodes = _ref_order(root, G.parents)  # this graph's (each read is a call into a grading kernel)
            before = [(n.parents, n.args) for n in nodes]
            order = _order_of(topological_order, root, what)
            if any(not (_same_links(n.parents, p) and _same_links(n.args, a)) for n, (p, a) in zip(nodes, before)):
                raise CheckFailed(f"{what} changed the graph (a node's parents or args); only read it.")
            _describe_order_mistake(order, root, what, G)
        # Deep graphs must not use recursion: a chain twice as deep as the 300 frames it may use
        # (each node is one call into a grading kernel: no longer than that needs).
        root = _chain(G, 600)
        what = "topological_order(root) for a chain of 600 nodes"
        try:
            with _recursion_headroom(topological_order, 300):
                order = _order_of(topological_order, root, what)
        except CheckFailed as exc:
            if "RecursionError" in str(exc):
                raise CheckFailed(f"{what} hit Python's recursion limit: keep your own stack (a list) "
                                  "instead of calling a function recursively.") from None
            raise
        _describe_order_mistake(order, root, what, G)


# -- VJPs -------------------------------------------------------------------------------------

_BINARY_SHAPES = (((3, 5), (3, 5)), ((3, 5), (5,)), ((5,), (3, 5)), ((3, 5), (3, 1)),
                  ((1, 5), (4, 1)), ((2, 3, 4), (4,)), ((2, 3, 4), (3, 1)), ((2, 1, 4), (3, 1)),
                  ((), (3,)), ((7,), ()), ((1,), (6,)), ((4, 4), (4, 1)), ((), ()))


def _check_binary(fn: Callable, name: str, mistakes_for: Callable[..., dict[str, dict[str, Any]]]) -> None:
    spec = SPEC[f"vjp_{name}"]
    with _refusing(spec, _BACKPROP, _UNBROADCAST, primitives=True):
        for dtype in spec.dtypes:
            for sa, sb in _BINARY_SHAPES:
                a = _draw(f"{name} a", sa, dtype)
                b = _draw(f"{name} b", sb, dtype)
                out_shape = np.broadcast_shapes(sa, sb)
                g = _draw(f"{name} g", out_shape, dtype)
                what = f"vjp_{name}(g, a, b) with a.shape={_desc(sa)}, b.shape={_desc(sb)}, {dtype}"
                got = _as_grads(call(fn, g, a, b, what=what), 2, what, "(ga, gb)")
                expected = _REF_VJP[name](g, a, b)
                wrong = mistakes_for(g, a, b)
                for arg, value, exp_value, shape in (("a", got[0], expected[0], sa),
                                                     ("b", got[1], expected[1], sb)):
                    _check_grad(value, exp_value, what=what, arg=arg, arg_shape=shape,
                                out_shape=out_shape, tol=spec.tol(dtype), mistakes=wrong[arg])


def _add_mistakes(g: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict[str, dict[str, Any]]:
    def for_arg(x: np.ndarray) -> dict[str, Any]:
        return {
            "averaged over the broadcast axes; a value used n times gets the SUM of its n "
            "contributions": _maybe(lambda: _unbroadcast(g, x.shape, np.mean)),
            "returned ones: the incoming gradient g is missing": _maybe(lambda: np.ones(x.shape)),
        }
    return {"a": for_arg(a), "b": for_arg(b)}


def _mul_mistakes(g: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict[str, dict[str, Any]]:
    def for_arg(x: np.ndarray, other: np.ndarray, name: str, other_name: str) -> dict[str, Any]:
        return {
            f"g * {name}: multiply by the OTHER argument ({other_name})":
                _maybe(lambda: _unbroadcast(g * x, x.shape)),
            f"{other_name} without g: the incoming gradient is missing":
                _maybe(lambda: _unbroadcast(np.ones_like(g) * other, x.shape)),
            "averaged over the broadcast axes instead of summed":
                _maybe(lambda: _unbroadcast(g * other, x.shape, np.mean)),
            f"g / {other_name}: that is the rule for division": _maybe(lambda: _unbroadcast(g / other, x.shape)),
        }
    return {"a": for_arg(a, b, "a", "b"), "b": for_arg(b, a, "b", "a")}


@check
def check_vjp_add(vjp_add: Callable[..., Any]) -> None:
    _check_binary(vjp_add, "add", _add_mistakes)


@check
def check_vjp_mul(vjp_mul: Callable[..., Any]) -> None:
    _check_binary(vjp_mul, "mul", _mul_mistakes)


# Square shapes first: there every wrong formula runs, so its message names the mistake.
_MATMUL_SHAPES = (((3, 3), (3, 3)), ((4, 4), (4, 4)), ((3, 4), (4, 5)), ((1, 4), (4, 1)),
                  ((5, 1), (1, 3)), ((2, 6), (6, 2)), ((1, 1), (1, 1)))


@check
def check_vjp_matmul(vjp_matmul: Callable[..., Any]) -> None:
    spec = SPEC["vjp_matmul"]
    with _refusing(spec, _BACKPROP, primitives=True):
        for dtype in spec.dtypes:
            for sa, sb in _MATMUL_SHAPES:
                A, B = _draw("matmul A", sa, dtype), _draw("matmul B", sb, dtype)
                g = _draw("matmul g", (sa[0], sb[1]), dtype)
                what = f"vjp_matmul(g, A, B) with A.shape={sa}, B.shape={sb}, {dtype}"
                got = _as_grads(call(vjp_matmul, g, A, B, what=what), 2, what, "(gA, gB)")
                shapes = [np.shape(v) for v in got]
                if sa != sb and shapes == [sb, sa]:
                    raise CheckFailed(f"{what} returned (gB, gA); return the gradient for A first.")
                gA, gB = _REF_VJP["matmul"](g, A, B)
                wrong_A = {"g @ B: B must be transposed (g @ B.T)": _maybe(lambda: g @ B),
                           "B.T @ g: the factors are in the wrong order (g @ B.T)": _maybe(lambda: B.T @ g),
                           "B @ g.T: that is (g @ B.T) transposed": _maybe(lambda: B @ g.T),
                           "A.T @ g: that is the gradient for B (returned in the wrong order?)":
                               _maybe(lambda: A.T @ g)}
                wrong_B = {"A @ g: A must be transposed (A.T @ g)": _maybe(lambda: A @ g),
                           "g @ A: the factors are in the wrong order (A.T @ g)": _maybe(lambda: g @ A),
                           "g.T @ A: that is (A.T @ g) transposed": _maybe(lambda: g.T @ A),
                           "g @ B.T: that is the gradient for A (returned in the wrong order?)":
                               _maybe(lambda: g @ B.T)}
                out_shape = (sa[0], sb[1])
                hint = "gA = g @ B.T and gB = A.T @ g have the shapes of A and B"
                _check_grad(got[0], gA, what=what, arg="A", arg_shape=sa, out_shape=out_shape,
                            out_hint=hint, tol=spec.tol(dtype), mistakes=wrong_A)
                _check_grad(got[1], gB, what=what, arg="B", arg_shape=sb, out_shape=out_shape,
                            out_hint=hint, tol=spec.tol(dtype), mistakes=wrong_B)


_UNARY_SHAPES = ((7,), (3, 5), (2, 3, 4), (1,), ())


def _check_unary(fn: Callable, name: str, draw: Callable[[tuple, Any], np.ndarray],
                 mistakes: Callable[[np.ndarray, np.ndarray], dict[str, Any]],
                 adjust: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None) -> None:
    spec = SPEC[f"vjp_{name}"]
    with _refusing(spec, _BACKPROP, primitives=True):
        for dtype in spec.dtypes:
            for shape in _UNARY_SHAPES:
                a = draw(shape, dtype)
                g = _draw(f"{name} g", shape, dtype)
                what = f"vjp_{name}(g, a) with a.shape={_desc(shape)}, {dtype}"
                (got,) = _as_grads(call(fn, g, a, what=what), 1, what, "(ga,) (note the comma)")
                (expected,) = _REF_VJP[name](g, a)
                if adjust is not None:
                    expected = adjust(np.asarray(got), expected, g, a)
                _check_grad(got, expected, what=what, arg="a", arg_shape=shape, out_shape=shape,
                            tol=spec.tol(dtype), mistakes=mistakes(g, a))


@check
def check_vjp_exp(vjp_exp: Callable[..., Any]) -> None:
    _check_unary(vjp_exp, "exp", lambda s, dt: _draw("exp a", s, dt),
                 lambda g, a: {"exp(a) without g: multiply by the incoming gradient": np.exp(a),
                               "g * a: the derivative of exp is exp": g * a,
                               "exp(g): apply the derivative to a, then multiply by g": np.exp(g)})


@check
def check_vjp_log(vjp_log: Callable[..., Any]) -> None:
    _check_unary(vjp_log, "log", lambda s, dt: _draw("log a", s, dt, low=0.2, high=3.0),
                 lambda g, a: {"1 / a without g: multiply by the incoming gradient": 1 / a,
                               "g * log(a): the derivative of log(a) is 1 / a": g * np.log(a),
                               "g / a**2: the derivative of log(a) is 1 / a, not -1/a^2": g / a ** 2,
                               "-g / a**2: that is the derivative of 1 / a": -g / a ** 2,
                               "g * a: the derivative of log(a) is 1 / a": g * a})


def _relu_input(shape: tuple, dtype: Any) -> np.ndarray:
    a = _draw("relu a", shape, dtype)
    a.reshape(-1)[::4] = 0  # exact zeros, where either one-sided derivative is accepted
    return a


def _relu_at_zero(got: np.ndarray, expected: np.ndarray, g: np.ndarray, a: np.ndarray) -> np.ndarray:
    """At a == 0 accept any value between 0 and g (a subgradient); elsewhere the reference."""
    if got.shape != expected.shape:
        return expected
    got64 = got.astype(np.float64)
    lo, hi = np.minimum(0, g), np.maximum(0, g)
    ok_zero = (a == 0) & (got64 >= lo - 1e-6 * np.abs(g)) & (got64 <= hi + 1e-6 * np.abs(g))
    return np.where(ok_zero, got.astype(expected.dtype), expected)


@check
def check_vjp_relu(vjp_relu: Callable[..., Any]) -> None:
    _check_unary(vjp_relu, "relu", _relu_input,
                 lambda g, a: {"1[a > 0] without g: multiply by the incoming gradient": (a > 0).astype(a.dtype),
                               "relu(g): pass g where a > 0, whatever the sign of g": np.maximum(g, 0),
                               "g * relu(a): the derivative of relu is 1[a > 0], not relu(a)": g * np.maximum(a, 0),
                               "g * sign(a): the derivative is 0 (not -1) where a < 0": g * np.sign(a)},
                 adjust=_relu_at_zero)


# Square cases first: broadcasting g without its axis runs there, so the mistake gets named.
_SUM_CASES = (((7,), None), ((4, 4), 1), ((3, 3, 3), 1), ((4, 4), 0), ((3, 5), None), ((3, 5), 0),
              ((3, 5), 1), ((2, 3, 4), -1), ((2, 3, 4), 1), ((2, 3, 4), None), ((1,), 0),
              ((), None), ((2, 3, 4), -3))


@check
def check_vjp_sum(vjp_sum: Callable[..., Any]) -> None:
    spec = SPEC["vjp_sum"]
    with _refusing(spec, _BACKPROP, primitives=True):
        for dtype in spec.dtypes:
            for shape, axis in _SUM_CASES:
                a = _draw("sum a", shape, dtype)
                g = np.asarray(_draw("sum g", np.sum(a, axis=axis).shape, dtype))
                if axis is None:
                    what = f"vjp_sum(g, a) with a.shape={_desc(shape)}, {dtype}"
                    result = call(vjp_sum, g, a, what=what)
                else:
                    what = f"vjp_sum(g, a, {axis}) with a.shape={_desc(shape)}, {dtype}"
                    result = call(vjp_sum, g, a, axis, what=what)
                (got,) = _as_grads(result, 1, what, "(ga,): axis is a constant and gets no gradient",
                                   extra_none=True)
                (expected,) = _vjp_sum(g, a, axis)
                wrong = {
                    "g broadcast along the wrong axis: put the summed axis back with "
                    "np.expand_dims(g, axis) before broadcasting": _maybe(lambda: np.broadcast_to(g, a.shape)),
                    "returned ones: the incoming gradient g is missing": np.ones(shape),
                    "divided by the number of summed entries: that is the VJP of the mean":
                        expected / max(1, a.size // max(1, g.size)),
                }
                _check_grad(got, expected, what=what, arg="a", arg_shape=shape, out_shape=g.shape,
                            out_hint="copy g back along the summed axes (np.expand_dims, then "
                                     "np.broadcast_to)", tol=spec.tol(dtype), mistakes=wrong)


# -- backward ---------------------------------------------------------------------------------

def _run_backward(backward: Callable[..., Any], G: _Graph, desc: str, root: Any) -> None:
    """Run backward(root) twice on the graph and compare every node's grad with the reference."""
    expected = _ref_backward(root, G)
    variants = {
        "gradients not accumulated: a node used by several children must ADD what each sends "
        "(a.grad = a.grad + g), not keep the last one": _safe_variant(root, G, accumulate=False),
        "adjoints paired with node.parents instead of node.args: a constant argument (as X in "
        "X @ W1) shifts them onto the wrong node; zip the vjp's results with node.args":
            _safe_variant(root, G, pair_with_parents=True),
        "a.grad += g wrote into an array that another node's grad shares (a VJP may return g "
        "itself, as add does): write a.grad = a.grad + g": _safe_variant(root, G, in_place=True),
    }
    order = _ref_order(root, G.parents)
    values = [n.value.copy() for n in order]
    for attempt in (1, 2):
        what = f"backward(root) on: {desc}" + (" (called a second time)" if attempt == 2 else "")
        call(backward, root, what=what)
        if any(not np.array_equal(n.value, v) for n, v in zip(order, values)):
            raise CheckFailed(f"{what} changed a node's value; only write .grad.")
        for node in order:
            label = G.labels.get(id(node), "a node")
            got = node.grad
            if got is None:
                raise CheckFailed(f"after {what}, {label}.grad is None; backward must store the "
                                  "gradient of every node root depends on, intermediate ones too.")
            want = expected[id(node)]
            mistakes = {k: v.get(id(node)) for k, v in variants.items() if v is not None}
            if attempt == 2:
                mistakes["gradients carried over from the first call: set every node's grad to "
                          "None at the start of backward"] = 2 * want
            _check_grad(got, want, what=f"after {what}, {label}.grad", arg=None,
                        arg_shape=want.shape,
                        tol=SPEC["backward"].tol(want.dtype), mistakes=mistakes)


def _safe_variant(root: Any, G: _Graph, **flags: Any) -> dict[int, np.ndarray] | None:
    try:
        with np.errstate(all="ignore"):
            return _ref_backward(root, G, **flags)
    except (ValueError, TypeError, KeyError):
        return None


def _backward_cases(backward: Callable[..., Any], Node: type) -> None:
    for dtype in SPEC["backward"].dtypes:
        for build in _SCENARIOS:
            G = _Graph(Node, dtype)
            desc, root = build(G)
            _run_backward(backward, G, f"{desc} [{dtype}]", root)


@check
def check_backward(backward: Callable[..., Any], Node: type) -> None:
    spec = SPEC["backward"]
    Node = _node_type(Node)
    with _refusing(spec, _BACKPROP, _ORDER, primitives=True):
        own = False
        try:
            # the notebook's topological_order (if backward uses one) is the reference meanwhile
            with patched_global(backward, "topological_order", _ref_order) as own:
                _backward_cases(backward, Node)
        except CheckFailed as first:
            # A backward written for the student's own ordering convention is right too.
            if not own:
                raise
            try:
                _backward_cases(backward, Node)
            except CheckFailed:
                raise first from None


# -- numeric answers --------------------------------------------------------------------------

_D = 784 * 100 + 100 + 100 * 10 + 10  # parameters of the 784-100-10 network with biases


@check
def check_answer_fd_evals(answer_fd_evals: Any) -> None:
    check_number(answer_fd_evals, 2 * _D, what="answer_fd_evals", tol=(0.0, 0.5), mistakes={
        "that is one evaluation per parameter; central differences need two (x + eps and x - eps)": _D,
        "that is the one-sided count d + 1; the question asks for central differences": _D + 1,
        "the biases are parameters too (100 + 10 of them)": 2 * (784 * 100 + 100 * 10),
    })


@check
def check_answer_jacobian_passes(answer_jacobian_passes: Any) -> None:
    check_number(answer_jacobian_passes, 10, what="answer_jacobian_passes", tol=(0.0, 0.5), mistakes={
        "one backward pass gives one vector-Jacobian product (one row of J for a unit seed), "
        "not the whole 10-row Jacobian": 1,
        "one pass per parameter is the count of forward mode (Jacobian-vector products)": _D,
    })
