"""Building blocks of hidden checks: safe calls, dtype-aware comparison, mistake diagnosis.

A check compares the student's function with the reference on fresh random inputs and, at the
first difference, says what is wrong without revealing expected values::

    SPEC = specs(__name__)              # catalog entries from the .toml next to the module

    @check
    def check_square(square):
        spec = SPEC["square"]
        with guard(spec) as reference:  # course's own square() now refuses to run
            for dtype in spec.dtypes:
                x = rng("square", dtype).standard_normal((3, 5)).astype(dtype)
                got = call(square, x, what="square(x)")
                compare(got, reference(x), what="square(x)", tol=spec.tol(dtype),
                        mistakes={"x + x: doubled instead of squared": x + x})

Messages name the call, the shape/dtype problem or the first wrong index and the size of the
error; when the answer equals a known wrong formula (``mistakes``), they name the mistake.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import types
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from grader.kernel.agent import Remote, RemoteClass, type_name, where
from grader.catalog import DEFAULT_TOL, Exercise, load_module_specs
from grader.checks import CheckFailed

__all__ = [
    "SHAPES", "DEFAULT_TOL", "specs", "rng", "call", "as_array", "compare", "diagnose",
    "check_number", "guard", "resolve", "refusing", "is_class", "type_name", "patched_global", "construct",
    "where_said",
]

#: Shapes that catch hard-coded sizes, axis mix-ups and broadcasting by accident.
SHAPES: tuple[tuple[int, ...], ...] = ((1,), (7,), (3, 5), (2, 3, 4))


def specs(module_name: str) -> dict[str, Exercise]:
    """Catalog entries of a check module (``grader/checks/<name>.toml``), keyed by exercise id."""
    return load_module_specs(module_name)


def rng(*key: object) -> np.random.Generator:
    """A generator seeded from ``key``: the same inputs on every run, different per exercise."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def where_said(exc: BaseException) -> str:
    """' (line 3: `return x / 0`)' for the innermost frame of the student's own code (said by
    the kernel for an exception that came from there)."""
    return exc.where if isinstance(getattr(exc, "where", None), str) else where(exc)


def call(fn: Callable[..., Any], *args: Any, what: str, inputs_unchanged: bool = True,
         **kwargs: Any) -> Any:
    """Call the student's ``fn`` on copies of the array arguments and return its result.

    Any exception becomes a :class:`CheckFailed` naming the call and the student's line (a
    failure of something the check handed over, such as ``f`` or a refused library function,
    gets the line of the student's code that called it); a function that writes into its input
    arrays fails when ``inputs_unchanged``.
    """
    if not callable(fn):
        raise CheckFailed(f"{what}: expected a function, got {type_name(fn)}.")
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    try:
        out = fn(*copies, **kwargs)
    except CheckFailed as exc:
        said = where_said(exc)
        if not said or "(line " in str(exc):
            raise
        raise CheckFailed(f"{exc}{said}") from None
    except NotImplementedError:
        raise CheckFailed(f"{what} is not implemented yet (it raised NotImplementedError).") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: the student's code must not end the kernel
        raise CheckFailed(f"{what} raised {type(exc).__name__}: {exc}{where_said(exc)}") from None
    if inputs_unchanged:
        for i, (a, c) in enumerate(zip(args, copies)):
            if isinstance(a, np.ndarray) and not np.array_equal(a, c, equal_nan=True):
                raise CheckFailed(f"{what} changed its argument {i + 1} in place; "
                                  "compute a new array instead of writing into the input.")
    return out


def _plain_number(value: Any) -> bool:
    """A Python int or float, or a NumPy number of its exact type (no subclass, no bool)."""
    t = type(value)
    return t in (int, float) or (isinstance(value, np.number) and t.__module__ == "numpy")


def as_array(value: Any, *, what: str, shape: tuple[int, ...] | None = None,
             dtype: np.dtype | str | None = None) -> np.ndarray:
    """``value`` as a plain ndarray after checking its type, shape and dtype.

    Accepts exact ``numpy.ndarray`` objects, NumPy scalars and Python numbers; anything else
    (lists, Tensors, ndarray subclasses, objects that claim to equal everything) fails with a
    message saying what to return.
    """
    if value is None:
        raise CheckFailed(f"{what} returned None (a missing `return`, or a value never set?); "
                          "expected a NumPy array.")
    if type(value) is not np.ndarray and not _plain_number(value):
        hint = " (a Tensor: return its .data array)" if type_name(value) == "Tensor" or hasattr(value, "requires_grad") else ""
        if isinstance(value, np.ndarray) or (isinstance(value, Remote) and hasattr(value, "dtype")):
            hint = " (an ndarray subclass: return a plain array, np.asarray(...))"
        raise CheckFailed(f"{what} returned {type_name(value)}{hint}; expected a NumPy array.")
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise CheckFailed(f"{what} returned an array of dtype {arr.dtype}; expected numbers.")
    if shape is not None and arr.shape != tuple(shape):
        raise CheckFailed(f"{what} returned shape {arr.shape}; expected shape {tuple(shape)}.")
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise CheckFailed(f"{what} returned dtype {arr.dtype} for {np.dtype(dtype)} inputs; keep "
                          "the input's dtype (create new arrays with dtype=x.dtype).")
    return arr


def diagnose(student: np.ndarray, candidates: Mapping[str, Any] | None, *,
             tol: tuple[float, float]) -> str | None:
    """The name of the first known mistake whose output matches the student's, else None."""
    for name, wrong in (candidates or {}).items():
        wrong = np.asarray(wrong)
        if wrong.shape == student.shape and np.allclose(student, wrong, rtol=tol[0], atol=tol[1],
                                                        equal_nan=True):
            return name
    return None


def compare(actual: Any, expected: np.ndarray, *, what: str, tol: tuple[float, float] | None = None,
            mistakes: Mapping[str, Any] | None = None, check_dtype: bool = True) -> None:
    """Fail unless ``actual`` matches ``expected`` within ``tol = (rtol, atol)``.

    Entry i passes when ``|a_i - e_i| <= atol + rtol * |e_i|``; the default tolerance comes
    from the expected dtype (:data:`DEFAULT_TOL`). The message gives the first wrong index and
    the relative error there, and names a matching entry of ``mistakes``; never the expected
    value itself.
    """
    expected = np.asarray(expected)
    arr = as_array(actual, what=what, shape=expected.shape,
                   dtype=expected.dtype if check_dtype else None)
    rtol, atol = tol if tol is not None else DEFAULT_TOL.get(expected.dtype.name, DEFAULT_TOL["float64"])
    a, e = arr.astype(np.float64), expected.astype(np.float64)
    ok = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if ok.all():
        return
    bad = np.argwhere(~ok)
    idx = tuple(int(i) for i in bad[0])
    where = f"index {idx}" if idx else "the result"
    if not np.isfinite(a[idx]):
        detail = f"your value is {a[idx]}"
    else:
        rel = abs(a[idx] - e[idx]) / max(abs(e[idx]), atol, np.finfo(np.float64).tiny)
        detail = f"relative error {rel:.2g}"
    message = f"{what} is wrong at {len(bad)} of {ok.size} entries; first at {where} ({detail})."
    mistake = diagnose(arr, mistakes, tol=(rtol, atol))
    if mistake:
        message += f" It matches a known mistake: {mistake}."
    raise CheckFailed(message)


def check_number(value: Any, expected: float, *, what: str, tol: tuple[float, float] = (1e-6, 0.0),
                 mistakes: Mapping[str, float] | None = None) -> None:
    """Fail unless ``value`` is a real number within ``tol = (rtol, atol)`` of ``expected``.

    The message repeats the student's value and names a matching entry of ``mistakes``; it
    gives no error size, which would reveal the answer.
    """
    if not _plain_number(value):
        raise CheckFailed(f"{what} should be a number, not {type_name(value)}.")
    got = np.float64(value)
    if np.isclose(got, expected, rtol=tol[0], atol=tol[1]):
        return
    message = f"{what} = {float(got)!r} is not correct."
    mistake = diagnose(got, {k: np.float64(v) for k, v in (mistakes or {}).items()}, tol=tol)
    if mistake:
        message += f" It matches a known mistake: {mistake}."
    raise CheckFailed(message)


def resolve(dotted: str) -> Any:
    """The object at a dotted path such as ``course.optim.adam_step`` (a module attribute chain)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(f"no module found for {dotted!r}")


_BLOCKER_SOURCE = '''
def blocked(*args, **kwargs):
    raise __import__("grader.checks", fromlist=["CheckFailed"]).CheckFailed({message!r})
'''


@contextlib.contextmanager
def guard(spec: Exercise) -> Iterator[Callable[..., Any]]:
    """Make ``spec.replaces`` (the library's version of this exercise) refuse to run.

    Inside the block the reference function's ``__code__`` raises :class:`CheckFailed`, so a
    student function that merely delegates to it fails; the block receives an untouched copy
    to compute expected values with. The code is restored on exit, also on failure.
    """
    if not spec.replaces:
        raise ValueError(f"catalog entry {spec.key} names no 'replaces' function to guard")
    target = resolve(spec.replaces)
    target = getattr(target, "__func__", target)  # classmethods
    if not isinstance(target, types.FunctionType):
        raise TypeError(f"cannot guard {spec.replaces}: it is a {type(target).__name__}, not a "
                        "Python function")
    original = target.__code__
    if original.co_freevars:
        raise TypeError(f"cannot guard {spec.replaces}: it is a closure (a decorated function?); "
                        "point 'replaces' at the undecorated function")
    pristine = types.FunctionType(original, target.__globals__, target.__name__,
                                  target.__defaults__, target.__closure__)
    pristine.__kwdefaults__ = target.__kwdefaults__
    message = (f"{spec.function} must be your own implementation: it called "
               f"{spec.replaces}, the library's version of this exercise.")
    namespace: dict[str, Any] = {}
    exec(compile(_BLOCKER_SOURCE.format(message=message), "<hidden test>", "exec"), namespace)
    target.__code__ = namespace["blocked"].__code__
    try:
        yield pristine
    finally:
        target.__code__ = original


@contextlib.contextmanager
def refusing(spec: Exercise, paths: Sequence[str]) -> Iterator[dict[str, Callable[..., Any]]]:
    """:func:`guard` for every library function in ``paths`` that exists here (the speed package
    ``course.fast`` is absent from the student edition: nothing to refuse there); the block
    receives untouched copies, by path."""
    with contextlib.ExitStack() as stack:
        pristine = {}
        for dotted in paths:
            try:
                resolve(dotted)
            except (ImportError, AttributeError):
                continue
            pristine[dotted] = stack.enter_context(guard(dataclasses.replace(spec, replaces=dotted)))
        yield pristine


def is_class(value: Any) -> bool:
    """Whether ``value`` is a class: here, or the notebook's (seen from the checker)."""
    return isinstance(value, (type, RemoteClass))


@contextlib.contextmanager
def patched_global(fn: Any, name: str, value: Any) -> Iterator[bool]:
    """While the block runs, the global ``name`` of ``fn``'s module (where the student's
    function looks it up) is ``value``, if the student defined a function of that name; the
    block receives whether they did. Restored on exit (a grading kernel also restores it when
    the check ends)."""
    if isinstance(fn, Remote):
        own = callable(fn._peer.request("global", fn, name))
        if not own:
            yield False
            return
        fn._peer.request("patch", fn, (name, value))
        try:
            yield True
        finally:
            fn._peer.request("unpatch", fn)
        return
    namespace = getattr(fn, "__globals__", None)
    saved = namespace.get(name) if namespace is not None else None
    if not callable(saved):
        yield False
        return
    namespace[name] = value
    try:
        yield True
    finally:
        namespace[name] = saved



def construct(cls: Any, *args: Any, **kwargs: Any) -> Any:
    """``cls(*args, **kwargs)`` for an object the check builds to work with (a graph's node):
    in a grading kernel the call does not bring back changes to its arguments, which saves
    two encodings per call; the check reads what it needs from the object afterwards."""
    if isinstance(cls, Remote):
        return cls._peer.call(cls, args, kwargs, observe=False)
    return cls(*args, **kwargs)
