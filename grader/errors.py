"""The grader's exceptions, on the lowest floor so every module can raise them."""
from __future__ import annotations

__all__ = ["GraderError", "UsageError"]


class GraderError(RuntimeError):
    """A grading step cannot go on; the message says what is wrong and what to do.
    ``python -m grader`` prints it as one paragraph and exits with :attr:`exit_status`."""

    exit_status = 1  # a grading failure: something could not be graded or written


class UsageError(GraderError):
    """The command's input is wrong, and nothing was done: a missing or unknown assignment, an
    unreadable or corrupt file (zip, notebook, roster, CSV), a bad option value or database URL,
    a gradebook or scheduler that cannot be reached. The message names the fix."""

    exit_status = 2
