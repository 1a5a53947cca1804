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

**Where checks run.** In an instructor's kernel (a solution notebook, a test) a check runs
right here, on the objects it is given. A grading kernel has no ``grader`` package at all: its
``grader.checks`` is a stand-in (:mod:`grader.kernel.agent`) that asks a clean process, the checker
(:mod:`grader.kernel.checker`), to run the check; there the student's functions and objects are
handles (:class:`grader.kernel.agent.Remote`) whose calls run back in the kernel. A check is written
once for both: it calls what it is given and compares what comes back, and uses the helpers
of ``_core`` (``C.call``, ``C.is_class``, ``C.type_name``, ``C.patched_global``) where it
needs more than calling.
"""
from __future__ import annotations

import functools
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


def check(body: Callable[..., Any]) -> Callable[..., None]:
    """Wrap a check so it returns None and its failures show no grader frames.

    The wrapper's code object is renamed after the check, so a traceback ends in
    ``File <hidden test>, in check_square(*args, **kwargs)``.
    """
    wrapper = _namespace["_make"](body, _evaluate)
    wrapper.__code__ = wrapper.__code__.replace(co_name=body.__name__, co_qualname=body.__name__)
    return functools.wraps(body)(wrapper)
