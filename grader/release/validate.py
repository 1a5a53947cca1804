"""``validate``: run a student's notebook as nbgrader validate does and list the visible tests'
messages, one line each, instead of full tracebacks."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import nbformat
from nbgrader.validator import Validator
from traitlets.config import Config

from grader.config import REPO_ROOT, UsageError, environment, kernel_env

__all__ = ["validate"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _last_line(text: str) -> str:
    lines = [line for line in _ANSI.sub("", text).splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed"


def validate(path: Path, *, root: Path = REPO_ROOT, timeout: int = 60) -> tuple[bool, str]:
    """Execute ``path`` with ``root`` importable; (passed, report). The report names each
    failing test cell by its first line and gives the error message it raised. A path that is
    no notebook file, or one that cannot be opened, is a UsageError."""
    if not path.is_file():
        raise UsageError(f"{path}: no such notebook file; give the path of the .ipynb file")
    try:
        nbformat.read(path, as_version=4)
    except (ValueError, OSError) as exc:  # nbformat's NotJSONError is a ValueError; so is bad UTF-8
        first = " ".join(str(exc).split())[:200]
        raise UsageError(f"{path.name}: not a notebook that can be opened ({type(exc).__name__}: {first}); "
                         "download it again from JupyterLab (File > Download), or restore it from the "
                         "release notebook and copy your answers back") from None
    config = Config()
    config.Execute.timeout = timeout
    log = logging.getLogger("grader.release.validate")
    log.setLevel(logging.ERROR)
    validator = Validator(config=config, log=log)
    with environment(kernel_env(root)):
        results = validator.validate(str(path.resolve()))
    if "type_changed" in results:
        cells = ", ".join(f"{c['old_type']} -> {c['new_type']}" for c in results["type_changed"])
        return False, f"{path.name}: cells changed type ({cells}); restore them from the release notebook"
    if "changed" in results:
        return False, (f"{path.name}: {len(results['changed'])} test cell(s) were edited; the grader "
                       "restores them, so undo the edits (e.g. copy them from the release notebook)")
    failed = results.get("failed", [])
    if not failed:
        return True, f"{path.name}: all visible tests pass"
    lines = [f"{path.name}: {len(failed)} cell(s) fail"]
    for cell in failed:
        first = cell["source"].splitlines()[0] if cell["source"] else "(empty cell)"
        why = _last_line(cell["raw_error"])
        if why.startswith("CellTimeoutError"):  # this cell, not the next: say what happened to it
            why = f"ran past the {timeout} s limit per cell and was stopped (an endless loop?)"
        lines.append(f"  - {first[:70]}\n      {why}")
    return False, "\n".join(lines)
