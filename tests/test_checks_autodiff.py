"""Hidden checks of 01_autodiff, called directly: the notebook's solutions and other correct
formulas pass; realistic wrong answers fail with a message naming the mistake; answers that
hand the work to the library are refused.

The notebook's given code (Node, Op, the seven operations) and its solution cells are read from
solutions/01_autodiff/autodiff.ipynb and run in a fresh namespace per test, as in a kernel."""
from __future__ import annotations

import linecache
import textwrap
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest

import course
from course import ops
from grader.checks import CheckFailed
from grader.checks import autodiff as C

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "01_autodiff" / "autodiff.ipynb"
_CELLS = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source
          for c in nbformat.read(NOTEBOOK, as_version=4).cells}
_SOLUTION_CELLS = ("node_class", "numerical_gradient_code", "topological_order_code",
                   "vjp_add_mul_code", "vjp_matmul_code", "vjp_elementwise_code", "vjp_sum_code",
                   "register_vjps", "backward_code", "answers_code")


def notebook(*sources: str) -> dict[str, Any]:
    """A kernel-like namespace: the notebook's given code and solutions, then ``sources``
    (a student's redefinitions) on top."""
    ns: dict[str, Any] = {"np": np, "__name__": "__main__"}
    for gid in _SOLUTION_CELLS:
        exec(compile(_CELLS[gid], f"<cell {gid}>", "exec"), ns)
    for src in sources:
        exec(compile(textwrap.dedent(src), "<student cell>", "exec"), ns)
    return ns


def fails(check: Any, *args: Any, match: str) -> str:
    with pytest.raises(CheckFailed, match=match) as info:
        check(*args)
    return str(info.value)


def test_notebook_cells_found() -> None:
    for gid in _SOLUTION_CELLS:
        assert gid in _CELLS, f"solution notebook has no cell {gid}"


# -- the reference solutions pass --------------------------------------------------------------

def test_solutions_pass() -> None:
    nb = notebook()
    C.check_numerical_gradient(nb["numerical_gradient"])
    C.check_topological_order(nb["topological_order"], nb["Node"])
    for name in ("add", "mul", "matmul", "exp", "log", "relu", "sum"):
        getattr(C, f"check_vjp_{name}")(nb[f"vjp_{name}"])
    C.check_backward(nb["backward"], nb["Node"])
    C.check_answer_fd_evals(nb["answer_fd_evals"])
    C.check_answer_jacobian_passes(nb["answer_jacobian_passes"])


def test_checks_return_none_and_leave_library_intact() -> None:
    nb = notebook()
    backprop, order = course.autodiff._backprop.__code__, course.autodiff._reverse_topological.__code__
    vjps = ops.mul.vjps
    assert C.check_backward(nb["backward"], nb["Node"]) is None
    assert C.check_vjp_mul(nb["vjp_mul"]) is None
    assert course.autodiff._backprop.__code__ is backprop
    assert course.autodiff._reverse_topological.__code__ is order
    assert ops.mul.vjps is vjps
    x = course.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * x).sum().backward()  # the library still differentiates after a check
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_unimplemented_stubs_fail() -> None:
    nb = notebook("""
        def numerical_gradient(f, x, eps=1e-6):
            raise NotImplementedError()
        def backward(root):
            raise NotImplementedError()
    """)
    fails(C.check_numerical_gradient, nb["numerical_gradient"], match="not implemented")
    fails(C.check_backward, nb["backward"], nb["Node"], match="not implemented")


# -- numerical_gradient ------------------------------------------------------------------------

def test_numerical_gradient_alternatives_pass() -> None:
    nb = notebook("""
        def numerical_gradient(f, x, eps=1e-6):   # one-hot directions, float64 result
            x = np.asarray(x, dtype=np.float64)
            grad = np.empty(x.shape)
            for k in range(x.size):
                e = np.zeros(x.size)
                e[k] = eps
                e = e.reshape(x.shape)
                grad.flat[k] = (f(x + e) - f(x - e)) / (2 * eps)
            return grad
    """)
    C.check_numerical_gradient(nb["numerical_gradient"])
    nb = notebook("""
        def numerical_gradient(f, x, eps=1e-6):   # in place on a float64 view, restored by subtraction
            x = np.asarray(x, dtype=np.float64)
            grad = np.zeros(x.shape)
            it = np.nditer(x, flags=["multi_index"])
            for _ in it:
                i = it.multi_index
                x[i] += eps
                fp = f(x)
                x[i] -= 2 * eps
                fm = f(x)
                x[i] += eps
                grad[i] = (fp - fm) / (2 * eps)
            return grad
    """)
    C.check_numerical_gradient(nb["numerical_gradient"])


@pytest.mark.parametrize("body, match", [
    ("""
        x = np.array(x, dtype=float)
        g = np.zeros(x.shape)
        f0 = f(x)
        for i in np.ndindex(x.shape):
            xp = x.copy(); xp[i] += eps
            g[i] = (f(xp) - f0) / eps
        return g
     """, "one-sided \\(forward\\) differences"),
    ("""
        x = np.array(x, dtype=float)
        g = np.zeros(x.shape)
        for i in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy(); xp[i] += eps; xm[i] -= eps
            g[i] = (f(xp) - f(xm)) / eps
        return g
     """, "divided by eps instead of 2 eps"),
    ("""
        g = np.zeros(x.shape)                  # integer x: x[i] + eps is rounded away
        for i in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy(); xp[i] += eps; xm[i] -= eps
            g[i] = (f(xp) - f(xm)) / (2 * eps)
        return g
     """, "returned zeros|inaccurate"),
    ("""
        g = np.zeros_like(x)                   # an integer x gives an integer gradient
        for i in np.ndindex(x.shape):
            xp, xm = x.astype(float), x.astype(float); xp[i] += eps; xm[i] -= eps
            g[i] = (f(xp) - f(xm)) / (2 * eps)
        return g
     """, "integer array"),
    ("""
        g = np.zeros(x.shape)                  # perturbs the caller's array and never restores it
        for i in np.ndindex(x.shape):
            x[i] += eps; fp = f(x)
            x[i] -= 2 * eps; fm = f(x)
            g[i] = (fp - fm) / (2 * eps)
        return g
     """, "changed the caller's x"),
    ("""
        flat = np.array(x, dtype=float).ravel()  # f gets a flattened array
        g = np.zeros(flat.shape)
        for i in range(flat.size):
            xp, xm = flat.copy(), flat.copy(); xp[i] += eps; xm[i] -= eps
            g[i] = (f(xp) - f(xm)) / (2 * eps)
        return g.reshape(np.shape(x))
     """, "called f with an array of shape"),
    ("""
        return course.gradcheck.numerical_grad(f, np.asarray(x, dtype=float), eps=eps, order=2)
     """, "must be your own implementation"),
])
def test_numerical_gradient_wrong_answers_fail(body: str, match: str) -> None:
    src = "def numerical_gradient(f, x, eps=1e-6):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    nb = notebook("import course\nimport course.gradcheck\n" + src)
    fails(C.check_numerical_gradient, nb["numerical_gradient"], match=match)


def test_numerical_gradient_float32_work_fails() -> None:
    nb = notebook("""
        def numerical_gradient(f, x, eps=1e-6):   # keeps float32: x[i] + eps is rounded
            x = x.astype(x.dtype if x.dtype.kind == "f" else np.float64)
            g = np.zeros(x.shape)
            for i in np.ndindex(x.shape):
                xp, xm = x.copy(), x.copy(); xp[i] += eps; xm[i] -= eps
                g[i] = (f(xp) - f(xm)) / (2 * eps)
            return g
    """)
    fails(C.check_numerical_gradient, nb["numerical_gradient"], match="float32")


# -- topological_order -------------------------------------------------------------------------

def test_topological_order_alternatives_pass() -> None:
    nb = notebook("""
        def topological_order(root):              # Kahn's algorithm on child counts
            children, stack, seen = {}, [root], {id(root)}
            while stack:
                node = stack.pop()
                for p in node.parents:
                    children[id(p)] = children.get(id(p), 0) + 1
                    if id(p) not in seen:
                        seen.add(id(p)); stack.append(p)
            order, ready = [], [root]
            while ready:
                node = ready.pop()
                order.append(node)
                for p in node.parents:
                    children[id(p)] -= 1
                    if children[id(p)] == 0:
                        ready.append(p)
            return tuple(order)
    """)
    C.check_topological_order(nb["topological_order"], nb["Node"])


_RECURSIVE = """
    def topological_order(root):
        order, seen = [], set()
        def visit(node):
            if id(node) in seen:
                return
            seen.add(id(node))
            for p in node.parents:
                visit(p)
            order.append(node)
        visit(root)
        return order[::-1]
"""


@pytest.mark.parametrize("src, match", [
    ("""
        def topological_order(root):              # breadth-first
            order, seen, queue = [], {id(root)}, [root]
            while queue:
                node = queue.pop(0)
                order.append(node)
                for p in node.parents:
                    if id(p) not in seen:
                        seen.add(id(p)); queue.append(p)
            return order
     """, "breadth-first"),
    ("""
        def topological_order(root):              # no visited set: shared nodes repeat
            post, stack = [], [(root, False)]
            while stack:
                node, done = stack.pop()
                if done:
                    post.append(node)
                    continue
                stack.append((node, True))
                stack.extend((p, False) for p in node.parents)
            return post[::-1]
     """, "more than once"),
    ("""
        def topological_order(root):              # leaves first
            post, seen, stack = [], {id(root)}, [(root, iter(root.parents))]
            while stack:
                node, parents = stack[-1]
                for p in parents:
                    if id(p) not in seen:
                        seen.add(id(p)); stack.append((p, iter(p.parents))); break
                else:
                    stack.pop(); post.append(node)
            return post
     """, "reverse it"),
    ("""
        def topological_order(root):              # root and its direct parents only
            return [root] + list(dict.fromkeys(root.parents))
     """, "nodes root depends on"),
    (_RECURSIVE, "recursion limit"),
    ("""
        import course.autodiff
        def topological_order(root):
            return course.autodiff._reverse_topological([root])
     """, "must be your own implementation"),
    ("""
        def topological_order(root):              # a generator
            yield root
     """, "return a list"),
])
def test_topological_order_wrong_answers_fail(src: str, match: str) -> None:
    nb = notebook(src)
    fails(C.check_topological_order, nb["topological_order"], nb["Node"], match=match)


def test_recursion_is_refused_even_with_a_raised_limit() -> None:
    import sys
    nb = notebook(_RECURSIVE)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        fails(C.check_topological_order, nb["topological_order"], nb["Node"], match="recursion")
        assert sys.getrecursionlimit() == 100_000, "the check must restore the caller's limit"
    finally:
        sys.setrecursionlimit(old)


# -- VJPs: correct alternatives ----------------------------------------------------------------

def test_vjp_alternatives_pass() -> None:
    nb = notebook("""
        def unbroadcast(g, shape):                # loops instead of one sum call
            while g.ndim > len(shape):
                g = g.sum(axis=0)
            for i, n in enumerate(shape):
                if n == 1 and g.shape[i] != 1:
                    g = g.sum(axis=i, keepdims=True)
            return g
        def vjp_add(g, a, b):
            return [unbroadcast(g, a.shape), unbroadcast(g, b.shape)]   # a list works too
        def vjp_mul(g, a, b):
            return unbroadcast(g * b, np.shape(a)), unbroadcast(a * g, np.shape(b))
        def vjp_matmul(g, A, B):
            return np.einsum("mn,kn->mk", g, B), (g.T @ A).T
        def vjp_exp(g, a):
            return (np.exp(a) * g,)
        def vjp_log(g, a):
            return (g * a ** -1,)
        def vjp_relu(g, a):
            return (g * (a >= 0),)                # the other one-sided derivative at 0
        def vjp_sum(g, a, axis=None):
            if axis is None:
                return (np.ones_like(a) * g, None)
            return (np.repeat(np.expand_dims(g, axis), a.shape[axis], axis=axis),)
    """)
    for name in ("add", "mul", "matmul", "exp", "log", "relu", "sum"):
        getattr(C, f"check_vjp_{name}")(nb[f"vjp_{name}"])
    nb = notebook("""
        def vjp_relu(g, a):
            return (np.where(a > 0, g, np.where(a == 0, 0.5 * g, 0 * g)),)   # 1/2 at the kink
    """)
    C.check_vjp_relu(nb["vjp_relu"])


# -- VJPs: wrong answers -----------------------------------------------------------------------

_WRONG_VJPS = [
    ("add", "def vjp_add(g, a, b):\n    return g, g", "output's shape"),
    ("add", "def vjp_add(g, a, b):\n    return g.sum(axis=0), g.sum(axis=0)", "has shape"),
    ("add", """
        def vjp_add(g, a, b):
            def unb(x, shape):
                while x.ndim > len(shape):
                    x = x.mean(axis=0)
                axes = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
                return x.mean(axis=axes, keepdims=True) if axes else x
            return unb(g, a.shape), unb(g, b.shape)
     """, "averaged over the broadcast axes"),
    ("add", "def vjp_add(g, a, b):\n    return unbroadcast(np.ones_like(g), a.shape), unbroadcast(np.ones_like(g), b.shape)",
     "incoming gradient g is missing"),
    ("add", "def vjp_add(g, a, b):\n    return g", "return a tuple"),
    ("mul", "def vjp_mul(g, a, b):\n    return unbroadcast(g * a, a.shape), unbroadcast(g * b, b.shape)",
     "multiply by the OTHER argument"),
    ("mul", "def vjp_mul(g, a, b):\n    return unbroadcast(np.ones_like(g) * b, a.shape), unbroadcast(np.ones_like(g) * a, b.shape)",
     "without g"),
    ("mul", "def vjp_mul(g, a, b):\n    return g * b, g * a", "output's shape|has shape"),
    ("mul", "def vjp_mul(g, a, b):\n    return unbroadcast(g / b, a.shape), unbroadcast(g / a, b.shape)",
     "rule for division"),
    ("mul", """
        def vjp_mul(g, a, b):                    # float64 scratch arrays for float32 inputs
            ga = np.zeros(np.broadcast_shapes(a.shape, b.shape)) + g * b
            return unbroadcast(ga, a.shape), unbroadcast(g * a, b.shape)
     """, "dtype"),
    ("matmul", "def vjp_matmul(g, A, B):\n    return g @ B, A.T @ g", "B must be transposed|has shape"),
    ("matmul", "def vjp_matmul(g, A, B):\n    return A.T @ g, g @ B.T", "wrong order"),
    ("matmul", "def vjp_matmul(g, A, B):\n    return g @ B.T, A @ g", "A must be transposed|has shape"),
    ("matmul", "def vjp_matmul(g, A, B):\n    return g @ B.T, g.T @ A", "transposed|has shape"),
    ("exp", "def vjp_exp(g, a):\n    return (np.exp(a),)", "exp\\(a\\) without g"),
    ("exp", "def vjp_exp(g, a):\n    return (g * a,)", "derivative of exp is exp"),
    ("exp", "def vjp_exp(g, a):\n    return g * np.exp(a)", "return a tuple"),
    ("exp", "def vjp_exp(g, a):\n    return (exp(a),)", "Node"),
    ("log", "def vjp_log(g, a):\n    return (g * np.log(a),)", "derivative of log"),
    ("log", "def vjp_log(g, a):\n    return (1 / a,)", "without g"),
    ("log", "def vjp_log(g, a):\n    return (-g / a ** 2,)", "derivative of 1 / a"),
    ("relu", "def vjp_relu(g, a):\n    return (np.maximum(g, 0),)", "relu\\(g\\)"),
    ("relu", "def vjp_relu(g, a):\n    return (g * np.sign(a),)", "sign"),
    ("relu", "def vjp_relu(g, a):\n    return ((a > 0).astype(a.dtype),)", "without g"),
    ("relu", "def vjp_relu(g, a):\n    return (g * np.maximum(a, 0),)", "not relu\\(a\\)"),
    ("sum", "def vjp_sum(g, a, axis=None):\n    return (np.broadcast_to(g, a.shape).copy(),)",
     "wrong axis|raised ValueError"),
    ("sum", "def vjp_sum(g, a, axis=None):\n    return (np.ones(a.shape) * g,)", "dtype|wrong axis|raised"),
    ("sum", "def vjp_sum(g, a, axis=None):\n    return (np.ones_like(a),)", "incoming gradient g is missing"),
    ("sum", """
        def vjp_sum(g, a, axis=None):
            n = a.size if axis is None else a.shape[axis]
            g = g if axis is None else np.expand_dims(g, axis)
            return (np.broadcast_to(g, a.shape) / n,)
     """, "VJP of the mean"),
    ("sum", "def vjp_sum(g, a, axis=None):\n    return (g,)", "has shape"),
]


@pytest.mark.parametrize("name, src, match", _WRONG_VJPS)
def test_vjp_wrong_answers_fail(name: str, src: str, match: str) -> None:
    nb = notebook(src)
    fails(getattr(C, f"check_vjp_{name}"), nb[f"vjp_{name}"], match=match)


@pytest.mark.parametrize("name, src", [
    ("mul", """
        import course
        def vjp_mul(g, a, b):                    # lets course's backward do the work
            ta, tb = course.Tensor(a, requires_grad=True), course.Tensor(b, requires_grad=True)
            (ta * tb * course.Tensor(g)).sum().backward()
            return ta.grad.numpy(), tb.grad.numpy()
     """),
    ("add", """
        from course import ops, Tensor
        def vjp_add(g, a, b):
            return ops.unbroadcast(Tensor(g), a.shape).numpy(), ops.unbroadcast(Tensor(g), b.shape).numpy()
     """),
    ("exp", """
        from course import ops, Tensor
        def vjp_exp(g, a):                       # the library's registered VJP rule
            out = ops.exp(Tensor(a, requires_grad=True))
            return (out.op.vjp(0, Tensor(g), out).numpy(),)
     """),
    ("matmul", """
        import course
        def vjp_matmul(g, A, B):
            tA, tB = course.Tensor(A, requires_grad=True), course.Tensor(B, requires_grad=True)
            gA, gB = course.grad((tA @ tB * course.Tensor(g)).sum(), [tA, tB])
            return gA.numpy(), gB.numpy()
     """),
])
def test_vjp_delegating_to_the_library_fails(name: str, src: str) -> None:
    nb = notebook(src)
    fails(getattr(C, f"check_vjp_{name}"), nb[f"vjp_{name}"], match="must be your own implementation")


# -- backward ----------------------------------------------------------------------------------

def test_backward_alternatives_pass() -> None:
    nb = notebook("""
        def backward(root):                       # adjoints in a dict, stored at the end
            order = topological_order(root)
            adj = {id(root): np.ones_like(root.value)}
            for node in order:
                if node.fn is None:
                    continue
                vals = [a.value if isinstance(a, Node) else a for a in node.args]
                for arg, g in zip(node.args, node.fn.vjp(adj[id(node)], *vals)):
                    if isinstance(arg, Node):
                        adj[id(arg)] = adj[id(arg)] + g if id(arg) in adj else g
            for node in order:
                node.grad = adj[id(node)]
    """)
    C.check_backward(nb["backward"], nb["Node"])
    nb = notebook("""
        def backward(root):                       # zeros first, then in-place adds into them
            order = topological_order(root)
            for node in order:
                node.grad = np.zeros_like(node.value)
            root.grad += 1
            for node in order:
                if node.fn is not None:
                    vals = [getattr(a, "value", a) for a in node.args]
                    for arg, g in zip(node.args, node.fn.vjp(node.grad, *vals)):
                        if isinstance(arg, Node):
                            arg.grad += g
    """)
    C.check_backward(nb["backward"], nb["Node"])


def test_backward_with_its_own_ordering_convention_passes() -> None:
    # topological_order returns leaves first (it fails its own check) and backward walks it
    # backwards: consistent, so backward earns its points.
    nb = notebook("""
        def topological_order(root):
            post, seen, stack = [], {id(root)}, [(root, iter(root.parents))]
            while stack:
                node, parents = stack[-1]
                for p in parents:
                    if id(p) not in seen:
                        seen.add(id(p)); stack.append((p, iter(p.parents))); break
                else:
                    stack.pop(); post.append(node)
            return post

        def backward(root):
            order = topological_order(root)[::-1]
            for node in order:
                node.grad = None
            root.grad = np.ones_like(root.value)
            for node in order:
                if node.fn is None:
                    continue
                vals = [a.value if isinstance(a, Node) else a for a in node.args]
                for arg, g in zip(node.args, node.fn.vjp(node.grad, *vals)):
                    if isinstance(arg, Node):
                        arg.grad = g if arg.grad is None else arg.grad + g
    """)
    fails(C.check_topological_order, nb["topological_order"], nb["Node"], match="reverse it")
    C.check_backward(nb["backward"], nb["Node"])


def test_backward_uses_the_reference_order_when_the_students_is_wrong() -> None:
    nb = notebook("""
        def topological_order(root):              # breadth-first: wrong, but backward is right
            order, seen, queue = [], {id(root)}, [root]
            while queue:
                node = queue.pop(0)
                order.append(node)
                for p in node.parents:
                    if id(p) not in seen:
                        seen.add(id(p)); queue.append(p)
            return order
    """)
    fails(C.check_topological_order, nb["topological_order"], nb["Node"], match="breadth-first")
    C.check_backward(nb["backward"], nb["Node"])
    assert nb["topological_order"].__name__ == "topological_order"
    assert "queue" in nb["topological_order"].__code__.co_varnames  # the student's is restored


_BACKWARD = """
    def backward(root):
        order = topological_order(root)
        {reset}
        root.grad = {seed}
        for node in {walk}:
            if node.fn is None:
                continue
            vals = [a.value if isinstance(a, Node) else a for a in node.args]
            for arg, g in zip({targets}, node.fn.vjp(node.grad, *vals)):
                if isinstance(arg, Node):
                    {accumulate}
"""
_RIGHT = dict(reset="for n in order: n.grad = None", walk="order", seed="np.ones_like(root.value)",
              targets="node.args", accumulate="arg.grad = g if arg.grad is None else arg.grad + g")


@pytest.mark.parametrize("change, match", [
    (dict(accumulate="arg.grad = g"), "not accumulated"),
    (dict(reset="pass"), "carried over from the first call"),
    (dict(targets="node.parents"), "paired with node.parents"),
    (dict(seed="np.ones(root.value.shape)"), "dtype"),
    (dict(seed="np.array(1.0, dtype=root.value.dtype)"), "has shape"),
    (dict(accumulate="""if arg.grad is None:
                        arg.grad = g
                    else:
                        arg.grad += g"""), "another node's grad shares"),   # aliasing
])
def test_backward_wrong_answers_fail(change: dict[str, str], match: str) -> None:
    nb = notebook(_BACKWARD.format(**{**_RIGHT, **change}))
    fails(C.check_backward, nb["backward"], nb["Node"], match=match)


def test_backward_only_leaves_fails() -> None:
    nb = notebook("""
        def backward(root):                       # keeps adjoints to itself, stores leaves only
            order = topological_order(root)
            adj = {id(root): np.ones_like(root.value)}
            for node in order:
                node.grad = None
                if node.fn is None:
                    node.grad = adj[id(node)]
                    continue
                vals = [a.value if isinstance(a, Node) else a for a in node.args]
                for arg, g in zip(node.args, node.fn.vjp(adj[id(node)], *vals)):
                    if isinstance(arg, Node):
                        adj[id(arg)] = adj[id(arg)] + g if id(arg) in adj else g
    """)
    fails(C.check_backward, nb["backward"], nb["Node"], match="grad is None")


def test_backward_in_forward_order_fails() -> None:
    nb = notebook(_BACKWARD.format(**{**_RIGHT, "walk": "order[::-1]"}))   # leaves first
    fails(C.check_backward, nb["backward"], nb["Node"], match="backward\\(root\\)")


def test_backward_through_course_tensors_is_refused() -> None:
    nb = notebook("""
        import course
        from course import ops
        _OPS = {"add": ops.add, "mul": ops.mul, "matmul": ops.matmul, "exp": ops.exp,
                "log": ops.log, "relu": ops.relu, "sum": ops.sum}
        def backward(root):                       # rebuild the graph in course and let it work
            order = topological_order(root)
            t = {}
            for node in reversed(order):
                if node.fn is None:
                    t[id(node)] = course.Tensor(node.value, requires_grad=True)
                else:
                    args = [t[id(a)] if isinstance(a, Node) else a for a in node.args]
                    t[id(node)] = _OPS[node.fn.name](*args)
            grads = course.grad(t[id(root)], [t[id(n)] for n in order],
                                grad_outputs=course.Tensor(np.ones_like(root.value)))
            for node, g in zip(order, grads):
                node.grad = g.numpy()
    """)
    fails(C.check_backward, nb["backward"], nb["Node"], match="must be your own implementation")


def test_backward_rejects_a_non_node_class() -> None:
    nb = notebook()
    fails(C.check_backward, nb["backward"], 3, match="Node class")


# -- numeric answers ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [159020, 159020.0, np.int64(159020)])
def test_fd_evals_accepts_numbers(value: Any) -> None:
    C.check_answer_fd_evals(value)


@pytest.mark.parametrize("value, match", [
    (79510, "one evaluation per parameter"), (79511, "one-sided"), (158800, "biases"),
    ("159020", "should be a number"), (None, "should be a number"), (159021, "not correct"),
])
def test_fd_evals_wrong(value: Any, match: str) -> None:
    fails(C.check_answer_fd_evals, value, match=match)


@pytest.mark.parametrize("value, match", [(1, "one vector-Jacobian product"),
                                          (79510, "forward mode"), (20, "not correct")])
def test_jacobian_passes_wrong(value: Any, match: str) -> None:
    C.check_answer_jacobian_passes(10)
    fails(C.check_answer_jacobian_passes, value, match=match)


def test_messages_do_not_reveal_expected_values() -> None:
    msg = fails(C.check_answer_fd_evals, 12345, match="not correct")
    assert "159020" not in msg


def test_backward_that_visits_a_node_before_all_its_users_fails() -> None:
    """Breadth-first from the root sends e = exp(x) on before the long chain to it has arrived:
    only the diamond-plus-chain graph, with paths of 4 and 8 nodes to e, catches it."""
    nb = notebook("""
        def backward(root):
            seen, queue = {id(root)}, [root]
            for node in queue:                    # breadth-first: not a topological order
                node.grad = None
                for p in node.parents:
                    if id(p) not in seen:
                        seen.add(id(p))
                        queue.append(p)
            root.grad = np.ones_like(root.value)
            for node in queue:
                if node.fn is None or node.grad is None:
                    continue
                vals = [getattr(a, "value", a) for a in node.args]
                for arg, g in zip(node.args, node.fn.vjp(node.grad, *vals)):
                    if isinstance(arg, Node):
                        arg.grad = g if arg.grad is None else arg.grad + g
    """)
    fails(C.check_backward, nb["backward"], nb["Node"], match="t5 = 0.9")


def test_a_failure_of_what_the_check_handed_over_keeps_the_students_line() -> None:
    """f refuses an array of the wrong shape; the message says which line of the student's
    numerical_gradient called it, as for any other error raised from their code."""
    src = textwrap.dedent("""
        def numerical_gradient(f, x, eps=1e-6):
            x = np.array(x, dtype=np.float64)
            grad = np.zeros_like(x)
            for i in np.ndindex(x.shape):
                e = np.zeros_like(x)
                e[i] = eps
                grad[i] = (f((x + e).ravel()) - f((x - e).ravel())) / (2 * eps)
            return grad
    """)
    name = "<ipython-input-7-student>"                     # IPython keeps a cell's source here
    linecache.cache[name] = (len(src), None, src.splitlines(True), name)
    nb = notebook()
    exec(compile(src, name, "exec"), nb)
    message = fails(C.check_numerical_gradient, nb["numerical_gradient"], match="shaped like x")
    assert "(line 8: `grad[i] = (f((x + e).ravel())" in message, message


def test_a_none_gradient_is_reported_as_none() -> None:
    nb = notebook("""
        def vjp_exp(g, a):
            (g * np.exp(a),)
    """)
    fails(C.check_vjp_exp, nb["vjp_exp"], match="returned a value of type NoneType")
    nb = notebook("""
        def vjp_exp(g, a):
            return (None,)
    """)
    fails(C.check_vjp_exp, nb["vjp_exp"], match=r"returned None \(a missing `return`")
