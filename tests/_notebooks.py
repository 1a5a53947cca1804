"""Running a notebook top to bottom in a real kernel, as a student's Lab does (shared by tests)."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def _env(**extra: str) -> dict[str, str]:
    """The kernel's environment: one BLAS thread, and none of the grader's or a backend run's
    variables (a student's kernel has none of them), unless given in ``extra``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **extra}
    for name in ("COURSE_BACKEND", "NBGRADER_EXECUTION", "NBGRADER_VALIDATING"):
        if name not in extra:
            env.pop(name, None)
    return env


def execute(nb: nbformat.NotebookNode, folder: Path, *, allow_errors: bool = True, **env: str) -> None:
    """Run every cell of ``nb`` in place, in ``folder``, in a fresh python3 kernel."""
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=allow_errors,
                   resources={"metadata": {"path": str(folder)}}).execute(env=_env(**env))
