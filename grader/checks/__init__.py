"""Hidden checks: one module per assignment, called from one-line hidden-test regions.

A hidden-test region in a solution notebook is a single line such as::

    ### BEGIN HIDDEN TESTS
    from grader.checks import fixture as _c; _c.check_square(square)
    ### END HIDDEN TESTS

Each ``check_<name>(answer) -> None`` is decorated with :func:`check`. It returns None (nbgrader
reads a number left as a test cell's value as a partial score) and fails by raising
:class:`CheckFailed` with a message in the student's terms. The decorator re-raises from a
frame compiled without source, so a student's traceback ends in one line naming the check:
no grader path, no check source, no expected value. The pieces checks are built from live in
:mod:`grader.checks._core`.

**Trust.** Code in the student's kernel can change anything there, so the grade does not come
from this kernel. In a grading kernel the grader runs :func:`_arm` first, before any
student code; from then on every check call is also *recorded* and sent to the grader over
the kernel's message channel: the arguments and every value the student's functions returned
or changed, as plain data only (exact ``numpy.ndarray`` of a numeric dtype, NumPy scalars,
Python numbers, strings, tuples, lists, dicts, NumPy generators, dtypes; functions become
numbered references, anything else an opaque name). The grader re-runs the same check in a
clean process on those values (:mod:`grader.replay`): the verdict that counts is that one.
Checks whose arguments cannot travel as plain data (a student's class) are judged in the
kernel, against a snapshot of NumPy, builtins, these modules and IPython's hooks taken at
start-up (:class:`_Monitor`); a change found there fails the check and flags the notebook.

This package is imported inside grading kernels: keep it free of nbgrader and other heavy
imports.
"""
from __future__ import annotations

import builtins
import functools
import hashlib
import importlib
import json
import os
import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["CheckFailed", "check"]


class CheckFailed(AssertionError):
    """A hidden check found a mistake; the message is shown to the student."""


# Compiled under a pseudo file name: linecache has no source for it, so IPython shows the
# frame as one line. The failure is re-raised with its traceback cleared, which drops every
# grader frame between the student's cell and this one.
_WRAPPER_SOURCE = '''
def _make(body, run):
    def hidden_test(*args, **kwargs):
        __tracebackhide__ = True
        failure = run(body, args, kwargs)
        if failure is None:
            return None
        raise failure.with_traceback(None) from None
    return hidden_test
'''
_namespace: dict[str, Any] = {}
exec(compile(_WRAPPER_SOURCE, "<hidden test>", "exec"), _namespace)


def _internal_error(exc: Exception) -> CheckFailed:
    """Turn an unexpected exception inside a check into a failure the student can report."""
    return CheckFailed(
        f"the hidden test could not evaluate your answer ({type(exc).__name__}: {exc}). "
        "If your visible tests pass, tell your instructor."
    )


def _evaluate(body: Callable[..., Any], args: tuple, kwargs: dict) -> CheckFailed | None:
    """Run a check body; its failure (or None). Interrupts propagate."""
    try:
        body(*args, **kwargs)
    except CheckFailed as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - a broken check must not look like a pass
        return _internal_error(exc)
    return None


def _run(body: Callable[..., Any], args: tuple, kwargs: dict) -> CheckFailed | None:
    harness = _HARNESS
    return _evaluate(body, args, kwargs) if harness is None else harness.run(body, args, kwargs)


def check(body: Callable[..., Any]) -> Callable[..., None]:
    """Wrap a check so it returns None and its failures show no grader frames.

    The wrapper's code object is renamed after the check, so a traceback ends in
    ``File <hidden test>, in check_square(*args, **kwargs)``.
    """
    wrapper = _namespace["_make"](body, _run)
    wrapper.__code__ = wrapper.__code__.replace(co_name=body.__name__, co_qualname=body.__name__)
    return functools.wraps(body)(wrapper)


# -- plain data: a JSON tree plus byte buffers ---------------------------------------------------

#: NumPy dtype kinds that travel: bool, signed and unsigned integers, floats, complex.
ARRAY_KINDS = "biufc"
#: Most bytes one check may record (the largest graded outputs are a few MB per call).
RECORD_LIMIT = 512 * 2**20
_MAX_DEPTH = 40
GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class TooLarge(Exception):
    """The values to record exceed :data:`RECORD_LIMIT`."""


class Codec:
    """Encodes values as a JSON-able tree whose arrays go to ``buffers``.

    ``on_callable(fn) -> tree`` decides what a function becomes (None: an opaque name).
    Exact types only: an ndarray subclass, a custom mapping or an object claiming to equal
    everything is recorded as ``{"$o": type name}`` and decodes to :class:`Opaque`; a class of
    the notebook posing as an array or a number is also listed in ``impostors``.
    """

    def __init__(self, on_callable: Callable[[Any], Any] | None = None,
                 impostors: list[str] | None = None) -> None:
        self.buffers: list[bytes] = []
        self.size = 0
        self.on_callable = on_callable
        self.impostors = impostors if impostors is not None else []
        self.functions: list[Callable[..., Any]] = []

    @classmethod
    def numbering(cls) -> Codec:
        """A codec that numbers the functions it meets ``{"$cb": j}``, keeping them in
        ``functions`` (the check's own functions handed to a student's function)."""
        codec = cls()
        codec.on_callable = lambda f: codec.functions.append(f) or {"$cb": len(codec.functions) - 1}
        return codec

    def _buffer(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > RECORD_LIMIT:
            raise TooLarge(f"more than {RECORD_LIMIT >> 20} MB")
        self.buffers.append(data)
        return len(self.buffers) - 1

    def encode(self, value: Any, depth: int = 0) -> Any:
        t = type(value)
        if value is None or t in (bool, int, str):
            return value
        if t is float:
            return value if value == value and abs(value) != float("inf") else {"$x": repr(value)}
        if t is complex:
            return {"$c": [self.encode(value.real), self.encode(value.imag)]}
        if depth > _MAX_DEPTH:
            return {"$o": "deeply nested value"}
        np = sys.modules.get("numpy")
        if np is not None:
            if t is np.ndarray:
                if value.dtype.kind not in ARRAY_KINDS or value.dtype.fields is not None:
                    return {"$o": f"ndarray of dtype {value.dtype}"}
                data = np.ascontiguousarray(value).tobytes()
                return {"$a": self._buffer(data), "dtype": value.dtype.str, "shape": list(value.shape)}
            if isinstance(value, np.generic) and t.__module__ == "numpy":
                if value.dtype.kind not in ARRAY_KINDS:
                    return {"$o": t.__name__}
                return {"$s": self._buffer(value.tobytes()), "dtype": value.dtype.str}
            if isinstance(value, np.dtype) and value.kind in ARRAY_KINDS and value.fields is None:
                return {"$dt": value.str}
            if t is np.random.Generator and type(value.bit_generator).__name__ in GENERATORS:
                return {"$g": self.encode(value.bit_generator.state, depth + 1)}
        if t is tuple or (isinstance(value, tuple) and hasattr(t, "_fields")):  # namedtuples too
            return {"$t": [self.encode(v, depth + 1) for v in value]}
        if t is list:
            return [self.encode(v, depth + 1) for v in value]
        if isinstance(value, dict) and (t is dict or t.__module__ == "collections"):
            return {"$d": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]}
        if isinstance(value, type):
            if value in (bool, int, float, complex):
                return {"$ty": f"builtins.{value.__name__}"}
            if np is not None and issubclass(value, np.generic) and value.__module__ == "numpy":
                return {"$ty": f"numpy.{value.__name__}"}
        elif callable(value) and self.on_callable is not None:
            return self.on_callable(value)
        if _imitates(value):
            self.impostors.append(t.__name__)
        return {"$o": t.__name__}


#: Methods by which an object passes for an array or a number.
_IMITATION = ("__eq__", "__ne__", "__array__", "__array_interface__", "__array_ufunc__", "__array_function__",
              "__float__", "__int__", "__index__", "__bool__")


def _imitates(value: Any) -> bool:
    """Whether ``value``'s class, defined in the notebook, poses as an array or a number: an
    ndarray or number subclass, or a class overriding comparison or conversion."""
    t = type(value)
    module = sys.modules.get(t.__module__)
    if t.__module__ != "__main__" and getattr(module, "__file__", None):
        return False  # a library's class: a wrong answer at worst, not a disguise
    np = sys.modules.get("numpy")
    import numbers
    if (np is not None and isinstance(value, (np.ndarray, np.generic))) or isinstance(value, numbers.Number):
        return True
    return any(name in vars(k) for k in t.__mro__ if k is not object for name in _IMITATION)


class Opaque:
    """Stands for a value that did not travel as plain data: no array, number or container."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name} object>"


def decode(tree: Any, buffers: list[bytes], on_callable: Callable[[Any], Any]) -> Any:
    """Inverse of :meth:`Codec.encode`; ``on_callable(tree)`` makes functions. Validates every
    array (dtype kind, size) so a crafted record cannot smuggle objects in."""
    import numpy as np

    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        return [decode(v, buffers, on_callable) for v in tree]
    if not isinstance(tree, dict) or len(tree) > 3:
        raise ValueError("malformed record")
    if "$x" in tree:
        return float(tree["$x"])
    if "$c" in tree:
        re, im = (decode(v, buffers, on_callable) for v in tree["$c"])
        return complex(re, im)
    if "$a" in tree or "$s" in tree:
        dtype = np.dtype(tree["dtype"])
        if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.hasobject:
            raise ValueError(f"dtype {dtype} is not plain data")
        data = buffers[tree["$a"] if "$a" in tree else tree["$s"]]
        shape = tuple(int(n) for n in tree.get("shape", ()))
        if len(data) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise ValueError("array size does not match its buffer")
        arr = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        return arr if "$a" in tree else arr[()]
    if "$dt" in tree:
        dtype = np.dtype(tree["$dt"])
        if dtype.kind not in ARRAY_KINDS or dtype.hasobject:
            raise ValueError(f"dtype {dtype} is not plain data")
        return dtype
    if "$g" in tree:
        state = decode(tree["$g"], buffers, on_callable)
        if not isinstance(state, dict) or state.get("bit_generator") not in GENERATORS:
            raise ValueError("unknown random generator")
        gen = np.random.Generator(getattr(np.random, state["bit_generator"])())
        gen.bit_generator.state = state
        return gen
    if "$t" in tree:
        return tuple(decode(v, buffers, on_callable) for v in tree["$t"])
    if "$d" in tree:
        return {decode(k, buffers, on_callable): decode(v, buffers, on_callable) for k, v in tree["$d"]}
    if "$ty" in tree:
        module, _, name = str(tree["$ty"]).partition(".")
        value = getattr(builtins if module == "builtins" else np, name, None) if module in ("builtins", "numpy") else None
        if not isinstance(value, type) or not (value in (bool, int, float, complex) or issubclass(value, np.generic)):
            raise ValueError(f"unknown type {tree['$ty']!r}")
        return value
    if "$o" in tree:
        return Opaque(str(tree["$o"]))
    return on_callable(tree)


def digest(tree: Any, buffers: list[bytes]) -> str:
    """Identity of an encoded value: equal inputs, equal digests."""
    h = hashlib.sha256(json.dumps(tree, sort_keys=True).encode())
    for data in buffers:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


# -- recording a check in the kernel ------------------------------------------------------------

def exception_event(exc: BaseException) -> dict[str, Any]:
    """How a student function's exception is recorded (its class name, kind and message)."""
    t = type(exc)
    kind = ("checkfailed" if isinstance(exc, CheckFailed) else
            "builtin" if getattr(builtins, t.__name__, None) is t else "other")
    try:
        message = str(exc)[:2000]
    except Exception:  # noqa: BLE001 - a student's exception may fail even to print
        message = "?"
    return {"raise": t.__name__, "kind": kind, "message": message}


class _Recording:
    """The event log of one check call: each call of a student's function (the digest of its
    inputs, what it returned or raised, its arguments if it changed them) and each call the
    student's code made back into a function the check gave it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.buffers: list[bytes] = []
        self.size = 0
        self.student: list[Callable[..., Any]] = []
        self.calls = 0
        self.overflow = False
        self.impostors: list[str] = []

    def _add(self, codec: Codec, tree: Any) -> Any:
        """Move a codec's buffers into this recording, renumbering the tree's references."""
        offset = len(self.buffers)
        self.size += codec.size
        if self.size > RECORD_LIMIT:
            self.overflow = True
            raise TooLarge(f"more than {RECORD_LIMIT >> 20} MB")
        self.buffers.extend(codec.buffers)
        return _shift(tree, offset) if offset else tree

    def student_ref(self, fn: Callable[..., Any]) -> dict[str, int]:
        self.student.append(fn)
        return {"$f": len(self.student) - 1}

    def wrap(self, value: Any, tree: Any) -> Any:
        """``value`` with the student functions its ``tree`` names replaced by recording proxies."""
        return _substitute(value, tree, "$f", self.proxy)

    def proxy(self, fid: int) -> Callable[..., Any]:
        fn = self.student[fid]

        def recorded(*args: Any, **kwargs: Any) -> Any:
            return self.call(fid, fn, args, kwargs)

        if isinstance(fn, types.FunctionType):
            functools.update_wrapper(recorded, fn)
        return recorded

    def call(self, fid: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        number = self.calls
        self.calls += 1
        before = Codec.numbering()
        tree = before.encode((args, kwargs))
        callbacks = before.functions
        key = digest(tree, before.buffers)
        self.events.append({"call": fid, "n": number, "in": key})
        args, kwargs = _substitute((args, kwargs), tree, "$cb", lambda j: self.callback(number, j, callbacks[j]))
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.events.append({**exception_event(exc), **self._after(args, kwargs, key)})
            raise
        out = Codec(self.student_ref, self.impostors)
        tree = self._add(out, out.encode(result))
        self.events.append({"ret": tree, **self._after(args, kwargs, key)})
        return self.wrap(result, tree)

    def _after(self, args: tuple, kwargs: dict, key: str) -> dict[str, Any]:
        """The arguments again, if the call changed them (so the re-run can change them too)."""
        codec = Codec.numbering()
        tree = codec.encode((args, kwargs))
        return {} if digest(tree, codec.buffers) == key else {"after": self._add(codec, tree)}

    def callback(self, number: int, j: int, fn: Callable[..., Any]) -> Callable[..., Any]:
        def called(*args: Any, **kwargs: Any) -> Any:
            codec = Codec(self.student_ref, self.impostors)
            self.events.append({"cb": [number, j], "args": self._add(codec, codec.encode((args, kwargs)))})
            return fn(*args, **kwargs)

        return called


def _shift(tree: Any, offset: int) -> Any:
    if isinstance(tree, list):
        return [_shift(t, offset) for t in tree]
    if isinstance(tree, dict):
        out = {k: _shift(v, offset) for k, v in tree.items()}
        for key in ("$a", "$s"):
            if key in tree:
                out[key] = tree[key] + offset
        return out
    return tree


def _substitute(value: Any, tree: Any, key: str, make: Callable[[int], Any]) -> Any:
    """``value`` with the functions its ``tree`` marks ``{key: n}`` replaced by ``make(n)``
    (containers rebuilt only where something changed, so identities stay)."""
    if isinstance(tree, dict) and key in tree:
        return make(tree[key])
    if isinstance(tree, list) and type(value) is list:
        items: Any = [_substitute(v, t, key, make) for v, t in zip(value, tree)]
    elif isinstance(tree, dict) and "$t" in tree:
        items = tuple(_substitute(v, t, key, make) for v, t in zip(value, tree["$t"]))
    elif isinstance(tree, dict) and "$d" in tree:
        items = {k: _substitute(v, t[1], key, make) for (k, v), t in zip(value.items(), tree["$d"])}
        return items if any(items[k] is not v for k, v in value.items()) else value
    else:
        return value
    return items if any(a is not b for a, b in zip(items, value)) else value


def _opaque_names(tree: Any) -> list[str]:
    if isinstance(tree, list):
        return [n for t in tree for n in _opaque_names(t)]
    if isinstance(tree, dict):
        if "$o" in tree:
            return [tree["$o"]]
        return [n for v in tree.values() for n in _opaque_names(v)]
    return []


# -- the snapshot of what checks rely on -----------------------------------------------------------

#: Builtins IPython adds and removes around each cell; not something a check relies on.
_VOLATILE_BUILTINS = {"exit", "quit", "get_ipython", "display", "help", "copyright", "credits",
                      "license", "runfile"}
#: Modules whose functions, classes and submodules the snapshot keeps (with every loaded
#: submodule of numpy and of grader).
_WATCHED = ("builtins", "math", "numbers", "operator", "functools", "numpy", "grader")


def _fingerprint(obj: Any) -> tuple:
    """What must stay the same for a watched object to behave the same."""
    if isinstance(obj, types.FunctionType):
        cells = []
        for cell in obj.__closure__ or ():
            try:
                cells.append(id(cell.cell_contents))
            except ValueError:
                cells.append(None)
        return (id(obj.__code__), id(obj.__defaults__), id(obj.__kwdefaults__), tuple(cells))
    if isinstance(obj, type):
        return tuple((k, id(v)) for k, v in vars(obj).items()
                     if isinstance(v, (types.FunctionType, staticmethod, classmethod, property)))
    return ()


def _same(a: Any, b: Any) -> bool:
    """Identity, except for bound methods (IPython binds a fresh one for every cell)."""
    return a is b or (isinstance(a, types.MethodType) and a == b)


def _watched(obj: Any) -> bool:
    return isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.ModuleType, type)) \
        or type(obj).__name__ in ("ufunc", "_ArrayFunctionDispatcher")


class _Monitor:
    """A snapshot of NumPy, builtins, the grader's modules, sys hooks and IPython's display,
    traceback, exception and event hooks; :meth:`changes` names everything that differs.

    Importing modules, seeding generators, plotting or printing changes nothing it watches.
    """

    def __init__(self) -> None:
        self.library = tuple(os.path.join(d, "") for d in
                             {sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
        self.modules = {name: mod for name, mod in sys.modules.items()
                        if isinstance(mod, types.ModuleType) and name.split(".")[0] in _WATCHED}
        self.attrs = {name: {k: (v, _fingerprint(v)) for k, v in list(vars(mod).items()) if _watched(v)
                             and not (name == "builtins" and k in _VOLATILE_BUILTINS)}
                      for name, mod in self.modules.items()}
        self.hooks = self._hooks()
        self.classes = {name: _fingerprint(cls) for name, cls in self._ipython_classes().items()}
        self.instance = {label: dict(self._overrides(obj)) for label, obj in self._ipython_objects().items()}
        self.lists = self._lists()
        self.events = {k: list(v) for k, v in self._events().items()}

    @staticmethod
    def _shell() -> Any:
        ipython = sys.modules.get("IPython")
        return ipython.get_ipython() if ipython is not None else None

    def _ipython_objects(self) -> dict[str, Any]:
        shell = self._shell()
        if shell is None:
            return {}
        objects = {"shell": shell, "displayhook": shell.displayhook, "display_pub": shell.display_pub,
                   "display_formatter": shell.display_formatter, "compile": shell.compile}
        if getattr(shell, "kernel", None) is not None:
            objects["kernel"] = shell.kernel
        return objects

    def _ipython_classes(self) -> dict[str, type]:
        return {f"{c.__module__}.{c.__qualname__}": c for obj in self._ipython_objects().values()
                for c in type(obj).__mro__ if c is not object}

    @staticmethod
    def _overrides(obj: Any) -> dict[str, Any]:
        """Instance attributes that are callables (where a method could be swapped out)."""
        return {k: v for k, v in vars(obj).items() if callable(v) and not isinstance(v, type)}

    def _hooks(self) -> dict[str, Any]:
        shell = self._shell()
        hooks = {"sys.excepthook": sys.excepthook, "sys.displayhook": sys.displayhook,
                 "sys.breakpointhook": sys.breakpointhook}
        if shell is not None:
            hooks.update({f"IPython {k}": getattr(shell, k) for k in
                          ("displayhook", "display_pub", "display_formatter", "compile", "CustomTB",
                           "custom_exceptions", "InteractiveTB", "SyntaxTB", "kernel")})
        return hooks

    def _lists(self) -> dict[str, list[int]]:
        shell = self._shell()
        if shell is None:
            return {}
        return {k: [id(x) for x in getattr(shell, k, [])]
                for k in ("input_transformers_cleanup", "input_transformers_post", "ast_transformers")}

    def _events(self) -> dict[str, list[Any]]:
        shell = self._shell()
        return dict(shell.events.callbacks) if shell is not None else {}

    def _student_code(self, fn: Any) -> bool:
        while isinstance(fn, functools.partial) or hasattr(fn, "__func__"):
            fn = fn.func if isinstance(fn, functools.partial) else fn.__func__
        code = getattr(fn, "__code__", None)
        return code is not None and not os.path.abspath(code.co_filename).startswith(self.library)

    def changes(self) -> list[str]:
        found = []
        for name, mod in self.modules.items():
            if sys.modules.get(name) is not mod:
                found.append(f"sys.modules[{name!r}] was replaced or removed")
                continue
            current = vars(mod)
            for key, (obj, print_) in self.attrs[name].items():
                now = current.get(key, _MISSING)
                if not _same(now, obj):
                    found.append(f"{name}.{key} was {'removed' if now is _MISSING else 'replaced'}")
                elif _fingerprint(obj) != print_:
                    found.append(f"{name}.{key} was modified")
        for label, obj in self.hooks.items():
            now = self._hooks().get(label)
            if not _same(now, obj) and not (isinstance(obj, tuple) and now == obj):
                found.append(f"{label} was replaced")
        for name, cls in self._ipython_classes().items():
            if name in self.classes and _fingerprint(cls) != self.classes[name]:
                found.append(f"IPython: a method of {name} was replaced")
        for label, obj in self._ipython_objects().items():
            now, then = self._overrides(obj), self.instance.get(label, {})
            if now.keys() != then.keys() or not all(_same(now[k], then[k]) for k in now):
                found.append(f"IPython: a method of the {label} object was replaced")
        for key, ids in self._lists().items():
            if ids != self.lists.get(key, []):
                found.append(f"IPython: shell.{key} was changed (it can rewrite cells)")
        for event, callbacks in self._events().items():
            new = [cb for cb in callbacks if cb not in self.events.get(event, []) and self._student_code(cb)]
            if new:
                found.append(f"IPython: the notebook registered a {event!r} event callback")
        if sys.gettrace() is not None or sys.getprofile() is not None:
            found.append("a trace or profile function was installed (sys.settrace/setprofile)")
        return found


_MISSING = object()


# -- the armed kernel -------------------------------------------------------------------------------

class _Harness:
    """Records every check call in a grading kernel and sends it to the grader."""

    def __init__(self, monitor: _Monitor, send: Callable[[dict[str, Any], list[bytes]], None]) -> None:
        self.monitor, self.send, self.sequence = monitor, send, 0

    def run(self, body: Callable[..., Any], args: tuple, kwargs: dict) -> CheckFailed | None:
        header: dict[str, Any] = {"v": 1, "module": body.__module__, "check": body.__name__,
                                  "seq": self.sequence, "mode": "kernel", "args": None, "events": []}
        self.sequence += 1
        violations = self.monitor.changes()
        if violations:
            failure: CheckFailed | None = _tampered(violations)
            return self._report(header, [], failure, violations)
        recording = _Recording()
        codec = Codec(recording.student_ref, recording.impostors)
        try:
            tree = codec.encode((args, kwargs))
        except TooLarge:
            tree = {"$o": "too large to record"}
        if not _opaque_names(tree):  # plain data and functions only: the grader can re-run it
            header.update(mode="replay", args=recording._add(codec, tree))
            args, kwargs = recording.wrap((args, kwargs), tree)
        failure = _evaluate(body, args, kwargs)
        if recording.overflow:
            failure = CheckFailed("your function returned more data than the hidden test can "
                                  "check (hundreds of MB); return arrays of the expected shape.")
            header["mode"] = "kernel"
        header["events"] = recording.events if header["mode"] == "replay" else []
        violations = self.monitor.changes() + [
            f"the answer includes a {name} object, a class of the notebook posing as an array or a number"
            for name in dict.fromkeys(recording.impostors)]
        if violations:
            failure = _tampered(violations)
        return self._report(header, recording.buffers if header["mode"] == "replay" else [],
                            failure, violations)

    def _report(self, header: dict[str, Any], buffers: list[bytes], failure: CheckFailed | None,
                violations: list[str]) -> CheckFailed | None:
        header.update(ok=failure is None, message="" if failure is None else str(failure),
                      violations=violations)
        self.send(header, buffers)
        return failure


def _tampered(violations: list[str]) -> CheckFailed:
    shown = "; ".join(violations[:3]) + (f"; and {len(violations) - 3} more" if len(violations) > 3 else "")
    return CheckFailed(f"the hidden test cannot trust this notebook: {shown}. "
                       "This answer gets no points and is flagged for your instructor to review.")


_HARNESS: _Harness | None = None

#: Comm target of the records; :mod:`grader.execute` receives them.
RECORD_TARGET = "grader.record"


def _arm() -> None:
    """Start recording in this kernel (the grader runs this as a silent cell before any
    notebook code): import NumPy, these modules and the assignment's check modules
    ($GRADER_CHECK_MODULES, comma-separated), snapshot them, and send records as comm messages."""
    global _HARNESS
    import comm
    for name in ("numpy", "numpy.fft", "numpy.linalg", "numpy.random", "numpy.testing", "grader.checks._core"):
        importlib.import_module(name)  # loaded now, so the snapshot covers them
    for name in filter(None, os.environ.get("GRADER_CHECK_MODULES", "").split(",")):
        importlib.import_module(f"grader.checks.{name}")

    def send(header: dict[str, Any], buffers: list[bytes]) -> None:
        channel = comm.create_comm(target_name=RECORD_TARGET, data={"record": json.dumps(header)},
                                   buffers=buffers)
        channel.close()

    _HARNESS = _Harness(_Monitor(), send)
