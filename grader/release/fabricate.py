"""Throwaway course roots and fabricated submissions, for tests, demos and benchmarks."""
from __future__ import annotations

import copy
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import nbformat

from grader.config import REPO_ROOT
from grader.nb import without_solution_markers

__all__ = ["assemble_course", "fill_submission"]

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")


def assemble_course(dest: Path, include: Iterable[str], *, overlay: Path | None = None,
                    source: Path = REPO_ROOT) -> Path:
    """Build a course root at ``dest``: the ``include`` paths copied from ``source`` (files or
    folders, relative to it), then every file of ``overlay`` copied on top."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in include:
        src = source / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=_IGNORE, dirs_exist_ok=True)
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    if overlay is not None:
        shutil.copytree(overlay, dest, ignore=_IGNORE, dirs_exist_ok=True)
    return dest


def fill_submission(release: nbformat.NotebookNode, solution: nbformat.NotebookNode,
                    answers: Mapping[str, str | None] | None = None) -> nbformat.NotebookNode:
    """A student's notebook: the release with every answer cell filled in.

    An answer cell (nbgrader ``solution``) gets ``answers[grade_id]`` when given (``None``
    leaves the release's stub), else the solution's text without its solution markers.
    """
    answers = answers or {}
    reference = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
                 if c.metadata.get("nbgrader", {}).get("solution")}
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("solution"):
            continue
        grade_id = meta["grade_id"]
        if grade_id in answers:
            if answers[grade_id] is not None:
                cell.source = answers[grade_id]
        else:
            cell.source = without_solution_markers(reference[grade_id])
    return nb
