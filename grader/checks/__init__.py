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

This package is imported inside grading kernels: keep it free of nbgrader and other heavy
imports.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

__all__ = ["CheckFailed", "check"]


class CheckFailed(AssertionError):
    """A hidden check found a mistake; the message is shown to the student."""


# Compiled under a pseudo file name: linecache has no source for it, so IPython shows the
# frame as one line. The failure is re-raised with its traceback cleared, which drops every
# grader frame between the student's cell and this one.
_WRAPPER_SOURCE = '''
def _make(body, CheckFailed, internal_error):
    def hidden_test(*args, **kwargs):
        __tracebackhide__ = True
        try:
            body(*args, **kwargs)
        except CheckFailed as exc:
            failure = exc
        except Exception as exc:
            failure = internal_error(exc)
        else:
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


def check(body: Callable[..., Any]) -> Callable[..., None]:
    """Wrap a check so it returns None and its failures show no grader frames.

    The wrapper's code object is renamed after the check, so a traceback ends in
    ``File <hidden test>, in check_square(*args, **kwargs)``.
    """
    wrapper = _namespace["_make"](body, CheckFailed, _internal_error)
    wrapper.__code__ = wrapper.__code__.replace(co_name=body.__name__, co_qualname=body.__name__)
    return functools.wraps(body)(wrapper)
