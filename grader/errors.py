"""The grader's one exception, on the lowest floor so every module can raise it."""
from __future__ import annotations

__all__ = ["GraderError"]


class GraderError(RuntimeError):
    """A grading step cannot go on; the message says what is wrong and what to do."""
