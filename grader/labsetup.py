"""The student's JupyterLab set-up, carried into the student edition.

The repository's ``lab/`` holds it: ``lab/start.py`` (standard library only) writes
``lab/student/`` into the Python environment it runs in (nbgrader's instructor plugins and
server extensions off, Validate on, no news prompt, one BLAS thread per kernel by default) and
starts JupyterLab on ``notebooks/``. ``lab/instructor/`` (the full nbgrader UI and the course's
nbgrader settings) stays out of the edition. :func:`write_student_setup` copies the rest, so an
edition installs as ``pip install -e .`` and starts as ``python lab/start.py``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from grader.config import REPO_ROOT, GraderError

__all__ = ["LAB", "STUDENT_FILES", "write_student_setup", "readme_lines"]

#: The repository's lab/ folder.
LAB = REPO_ROOT / "lab"
#: What the edition gets from lab/: the script and the student config tree (not lab/instructor/).
STUDENT_FILES = ("start.py", "student")


def readme_lines() -> list[str]:
    """Markdown for the edition's README: how to start the course's JupyterLab."""
    return [
        "## Start JupyterLab",
        "",
        "In a new virtual environment (`python -m venv .venv`, then `source .venv/bin/activate`,",
        "or `.venv\\Scripts\\activate` on Windows), from this folder:",
        "",
        "```",
        "pip install -e .",
        "python lab/start.py",
        "```",
        "",
        "`lab/start.py` sets up JupyterLab in that environment for the course (the *Validate*",
        "button on every notebook, none of nbgrader's instructor tools, no news prompt) and opens",
        "`notebooks/`. Options after it go to `jupyter lab` (e.g. `python lab/start.py",
        "--no-browser --port=9999`); `python lab/start.py --apply` only sets up, and a plain",
        "`jupyter lab` in that environment is then the same JupyterLab.",
        "",
        "Course kernels run NumPy's BLAS on one thread: the course's arrays are small and extra",
        "threads only slow them down on a laptop or a shared machine. To choose another number,",
        "start JupyterLab with `OMP_NUM_THREADS` set, e.g. `OMP_NUM_THREADS=4 python lab/start.py`.",
    ]


def write_student_setup(dest: Path, *, lab: Path = LAB) -> list[str]:
    """Copy ``lab/start.py`` and ``lab/student/`` into ``dest/lab/`` (the edition's root is
    ``dest``, next to its ``notebooks/``) and return the README lines (:func:`readme_lines`)
    that say how to use them. ``lab`` is the folder to copy from (default: this checkout's)."""
    missing = [name for name in STUDENT_FILES if not (lab / name).exists()]
    if missing:
        raise GraderError(f"{lab}: missing {missing}; the student JupyterLab set-up lives in lab/")
    out = Path(dest) / "lab"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(lab / "start.py", out / "start.py")
    shutil.copytree(lab / "student", out / "student", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    return readme_lines()
