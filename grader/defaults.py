"""Defaults the command line shows in its help, in a module that imports nothing heavy, so that
``python -m grader --help`` and a mistyped option answer without loading nbgrader."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DB_ENV", "ZipLimits"]

#: Environment variable naming the gradebook URL when ``--db`` is not given.
DB_ENV = "GRADER_DB_URL"


@dataclass(frozen=True)
class ZipLimits:
    """The most collect reads from one zip: ``max_bytes`` unpacked (the notebooks and
    timestamps it reads; nothing else is unpacked) and ``max_members`` entries of any kind.
    Past either, nothing is collected; an entry that unpacks to more than its header says
    stops the read at the limit (a zip bomb)."""

    max_bytes: int = 2 << 30      # 2 GiB: 400 students handing in 5 MB of notebooks each
    max_members: int = 20_000     # 400 students, 50 files each
