"""Shared helpers of the tests of the hidden checks (tests/test_checks_*.py)."""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grader.checks import CheckFailed

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"


def solution_cells(assignment: str, notebook: str, suffix: str = "_impl") -> dict[str, str]:
    """Source of the answer cells of a solution notebook whose grade_id ends with ``suffix``."""
    cells = json.loads((SOLUTIONS / assignment / f"{notebook}.ipynb").read_text(encoding="utf-8"))["cells"]
    return {cell["metadata"]["nbgrader"]["grade_id"]: "".join(cell["source"]) for cell in cells
            if cell["metadata"].get("nbgrader", {}).get("grade_id", "").endswith(suffix)}


def solution_namespace(assignment: str, notebook: str, suffix: str = "_impl") -> dict[str, Any]:
    """The solution notebook's answer cells run into one namespace: the model answers."""
    namespace: dict[str, Any] = {"np": np, "math": math}
    for source in solution_cells(assignment, notebook, suffix).values():
        exec(source, namespace)
    return namespace


def fails(check: Callable[[Any], None], answer: Any, *needles: str) -> str:
    """The check rejects ``answer``; its message contains every needle (case-insensitive)."""
    with pytest.raises(CheckFailed) as info:
        check(answer)
    message = str(info.value)
    assert "could not evaluate" not in message, f"the check itself crashed: {message}"
    for needle in needles:
        assert needle.lower() in message.lower(), f"{needle!r} not in: {message}"
    return message
