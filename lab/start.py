#!/usr/bin/env python3
"""The course's JupyterLab: the student set-up written into this Python environment, then Lab.

    python lab/start.py [JUPYTER LAB OPTIONS]   student Lab on notebooks/ (what `make lab` runs)
    python lab/start.py --apply                 only write the student set-up, start nothing
    python lab/start.py --instructor [OPTIONS]  the full nbgrader UI on the course root
                                                (what `make lab-instructor` runs)
    python lab/start.py --root DIR [OPTIONS]    open DIR instead of notebooks/

Run it with the environment's own interpreter (`.venv/bin/python`, or `python` with the
environment activated): the set-up goes into that environment (``sys.prefix``), where Jupyter
and IPython read it, so a plain `jupyter lab` started there later is the student Lab too:

- ``etc/jupyter/labconfig/page_config.json``: nbgrader's instructor plugins off (the Nbgrader
  menu, Formgrader, the Create Assignment sidebar, Course List, Assignment List); its Validate
  button stays.
- ``etc/jupyter/jupyter_server_config.json``: nbgrader's formgrader, course-list and
  assignment-list server extensions off (``/formgrader`` answers 404), validate on.
- ``share/jupyter/lab/settings/overrides.json``: no "get notified about official Jupyter
  news?" prompt, no update check.
- ``etc/ipython/ipython_kernel_config.py``: kernels use one BLAS/OpenMP thread unless
  OMP_NUM_THREADS (or OPENBLAS_/MKL_NUM_THREADS, ...) is set.

JSON files are merged into what is already there (these keys win); the files themselves live
in ``lab/student/`` next to this script, laid out as under the environment's prefix.

``--instructor`` puts ``lab/instructor/`` first on JUPYTER_CONFIG_PATH (Jupyter's
highest-priority config folders, above the environment's and the user's), whose files turn
those plugins and server extensions back on and point nbgrader/formgrader at the course's
settings (``grader/nbgrader_config.py``). Only the instructor's checkout has that folder.

Standard library only: it runs before anything is imported from the course.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUDENT = HERE / "student"
INSTRUCTOR = HERE / "instructor"
#: Where JupyterLab's app folder sits under a prefix (``jupyterlab.commands.get_app_dir``).
LAB_APP_DIR = Path("share", "jupyter", "lab")

__all__ = ["apply", "destination", "instructor_env", "lab_command", "main"]


def destination(relative: Path, prefix: Path) -> Path:
    """Where a file of ``lab/student/`` goes under ``prefix``. JupyterLab's app folder honours
    JUPYTERLAB_DIR, as JupyterLab does, when the prefix is this interpreter's."""
    lab_dir = os.environ.get("JUPYTERLAB_DIR")
    if lab_dir and prefix == Path(sys.prefix) and relative.parts[:3] == LAB_APP_DIR.parts:
        return Path(lab_dir).joinpath(*relative.parts[3:])
    return prefix / relative


def _merge(target: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
    return target


def _write(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it already holds it (atomically: a Lab starting at the
    same time reads the old file or the new one)."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def apply(prefix: Path | None = None, source: Path = STUDENT) -> list[Path]:
    """Write the student set-up (``source``, by default ``lab/student/``) into ``prefix`` (by
    default this environment's). JSON files are merged into existing ones; others replaced.
    Returns the files that changed."""
    prefix = Path(sys.prefix) if prefix is None else Path(prefix)
    changed = []
    for src in sorted(p for p in source.rglob("*") if p.is_file()):
        if src.name.startswith(".") or "__pycache__" in src.parts:
            continue
        dest = destination(src.relative_to(source), prefix)
        text = src.read_text(encoding="utf-8")
        if src.suffix == ".json":
            current: dict[str, Any] = {}
            if dest.is_file():
                try:
                    current = json.loads(dest.read_text(encoding="utf-8") or "{}")
                except json.JSONDecodeError:
                    print(f"warning: {dest} is not valid JSON; replacing it", file=sys.stderr)
            if not isinstance(current, dict):
                current = {}
            text = json.dumps(_merge(current, json.loads(text)), indent=2) + "\n"
        if _write(dest, text):
            changed.append(dest)
    return changed


def instructor_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with ``lab/instructor/`` first on JUPYTER_CONFIG_PATH."""
    env = dict(os.environ if env is None else env)
    rest = [p for p in env.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p]
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join([str(INSTRUCTOR), *rest])
    return env


def lab_command(root: Path, lab_args: list[str]) -> list[str]:
    """The `jupyter lab` command line: this interpreter's JupyterLab opening ``root``; the
    caller's options come last, so they win."""
    return [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}", *lab_args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python lab/start.py", allow_abbrev=False,
        description="Write the course's student JupyterLab set-up into this Python environment "
                    "and start JupyterLab. Other options go to `jupyter lab`.")
    parser.add_argument("--apply", action="store_true",
                        help="only write the set-up into this environment; start nothing")
    parser.add_argument("--instructor", action="store_true",
                        help="the full nbgrader UI (lab/instructor/ first on JUPYTER_CONFIG_PATH)")
    parser.add_argument("--root", type=Path,
                        help="folder to open (default: notebooks/; the course root with --instructor)")
    args, lab_args = parser.parse_known_args(argv)
    try:
        changed = apply()
    except OSError as exc:
        print(f"error: cannot write the JupyterLab set-up into {sys.prefix}: {exc}\n"
              "Run this with the interpreter of an environment you own (a virtual environment: "
              "python -m venv .venv), not the system's.", file=sys.stderr)
        return 1
    for path in changed:
        print(f"lab/start.py: wrote {path}")
    if args.apply:
        return 0
    env = dict(os.environ)
    if args.instructor:
        if not INSTRUCTOR.is_dir():
            print("error: no lab/instructor/ here; the instructor set-up is only in the course "
                  "repository, not in the student edition", file=sys.stderr)
            return 1
        env = instructor_env(env)
    root = (args.root or (ROOT if args.instructor else ROOT / "notebooks")).resolve()
    cmd = lab_command(root, lab_args)
    if os.name == "posix":
        # Jupyter itself takes the terminal and its signals (Ctrl-C asks before shutting down).
        os.execve(cmd[0], cmd, env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Windows: Jupyter answers Ctrl-C itself
    return subprocess.run(cmd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
