"""Same batch, two checkouts, same grades? Grades one fabricated batch with
``python -m grader autograde`` from another commit (default: where this branch left main) in a
temporary ``git worktree``, and from this working tree, then compares every student,
assignment, notebook and cell: score, flags and outcome. Exit 1 on any difference.

The batch, per assignment (all five by default): the model solution, a half-done notebook
(every other answer left as released), the release itself, and three mutants: ``scaled`` (every
answer function returns 1.5 times its float results), ``tamper`` (the first answer also
silences every hidden check that follows) and ``reordered`` (the last graded cell moved to the
top, which preflight puts back).

    python bench/compare_grading.py [--base COMMIT] [--assignment A ...] [--workers 1] [--timeout 30]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.nb import read_notebook, write_notebook  # noqa: E402
from grader.release.fabricate import assemble_course, fill_submission  # noqa: E402

Notebook = nbformat.NotebookNode
COPIED = ["course", "grader", "solutions", "notebooks", "pyproject.toml"]
SILENCE = ("import sys as _s\n_m = _s.modules.get('grader.checks')\nif _m is not None:\n"
           "    type(_m).__getattr__ = lambda self, name: type('Q', (), {'__getattr__': "
           "lambda s, n: (lambda *a, **k: None)})()\n")
_DEF = re.compile(r"^def (\w+)\(", re.MULTILINE)


def _answers(nb: Notebook) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]


def _scaled(release: Notebook, solution: Notebook) -> Notebook:
    nb = fill_submission(release, solution)
    for cell in _answers(nb):
        for f in _DEF.findall(cell.source):
            cell.source += (f"\n\n_right_{f} = {f}\n\ndef {f}(*args, **kwargs):\n"
                            f"    out = _right_{f}(*args, **kwargs)\n"
                            "    kind = getattr(getattr(out, 'dtype', None), 'kind', 'f' if type(out) is float else '')\n"
                            "    return out * 1.5 if kind == 'f' else out\n")
    return nb


def _tamper(release: Notebook, solution: Notebook) -> Notebook:
    nb = fill_submission(release, solution)
    first = _answers(nb)[0]
    first.source = SILENCE + first.source
    return nb


def _reordered(release: Notebook, solution: Notebook) -> Notebook:
    nb = fill_submission(release, solution)
    graded = [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade")]
    nb.cells.insert(0, nb.cells.pop(graded[-1]))
    return nb


def _half(release: Notebook, solution: Notebook) -> Notebook:
    ids = [c.metadata.nbgrader.grade_id for c in _answers(solution)]
    return fill_submission(release, solution, {gid: None for gid in ids[1::2]})


KINDS: dict[str, Callable[[Notebook, Notebook], Notebook]] = {
    "model": fill_submission, "half": _half, "release": lambda release, solution: release,
    "scaled": _scaled, "tamper": _tamper, "reordered": _reordered}


def fabricate(submitted: Path, assignments: list[str]) -> None:
    """One student per kind, each submitting every assignment (from this checkout's notebooks)."""
    for asg in assignments:
        for release_path in sorted((ROOT / "notebooks" / asg).glob("*.ipynb")):
            release = read_notebook(release_path)
            solution = read_notebook(ROOT / "solutions" / asg / release_path.name)
            for kind, make in KINDS.items():
                write_notebook(make(release, solution), submitted / kind / asg / release_path.name)


def grade(label: str, checkout: Path, tmp: Path, submitted: Path, assignments: list[str],
          options: list[str]) -> dict[str, Any]:
    """Build and autograde the batch with ``checkout``'s grader (its own copy of the course);
    returns per assignment the summary's submissions."""
    root = assemble_course(tmp / f"{label}-root", COPIED, source=checkout)
    work = tmp / f"{label}-work"
    shutil.copytree(submitted, work / "submitted")
    env = {**os.environ, "PYTHONPATH": str(root)}  # this root's grader, not the installed one

    def cli(*args: str) -> None:
        cmd = [sys.executable, "-m", "grader", "--root", str(root), "--work", str(work), *args]
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        if done.returncode not in (0, 1):  # 1: some submission needs attention, which is data here
            sys.exit(f"{label}: {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    where = subprocess.run([sys.executable, "-c", "import grader; print(grader.__file__)"], cwd=root, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(root)), f"{label} would grade with {where}, not its own grader"
    cli("build")
    out = {}
    for asg in assignments:
        start = time.perf_counter()
        cli("autograde", asg, *options)
        print(f"  {label} {asg}: {time.perf_counter() - start:.0f} s", flush=True)
        out[asg] = json.loads((work / "summary" / f"{asg}.json").read_text())["submissions"]
    return out


def _rows(summary: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """(assignment, student[, notebook[, cell]]) -> what is compared there."""
    rows: dict[tuple[str, ...], Any] = {}
    for asg, students in summary.items():
        for student, entry in students.items():
            rows[(asg, student)] = {"outcome": entry["outcome"], "score": entry.get("score"),
                                    "max_score": entry.get("max_score")}
            for name, nb in entry.get("notebooks", {}).items():
                rows[(asg, student, name)] = {"outcome": nb["outcome"], "score": nb["score"],
                                              "flags": sorted(nb["flags"]), "late_penalty": nb.get("late_penalty")}
                for gid, cell in nb["cells"].items():
                    rows[(asg, student, name, gid)] = {k: cell[k] for k in ("auto_score", "max_score",
                                                                           "needs_manual_grade")}
    return rows


def compare(base: dict[str, Any], this: dict[str, Any]) -> list[str]:
    a, b = _rows(base), _rows(this)
    return [f"{'/'.join(key)}: base {a.get(key)} != this {b.get(key)}"
            for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="commit to compare with (default: git merge-base HEAD main)")
    parser.add_argument("--assignment", action="append", help="only these (default: all)")
    parser.add_argument("--workers", default="1")
    parser.add_argument("--timeout", default="30", help="seconds per cell")
    args = parser.parse_args(argv)
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, check=True, capture_output=True,  # noqa: E731
                                    text=True).stdout.strip()
    base = args.base or git("merge-base", "HEAD", "main")
    assignments = args.assignment or sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    options = ["--workers", args.workers, "--timeout", args.timeout]
    with tempfile.TemporaryDirectory(prefix="compare-grading-") as name:
        tmp = Path(name)
        git("worktree", "add", "--detach", str(tmp / "base"), base)
        try:
            fabricate(tmp / "submitted", assignments)
            print(f"base {base[:10]} vs this working tree ({git('rev-parse', '--short', 'HEAD')}"
                  f"{', with uncommitted changes' if git('status', '--porcelain', '--untracked-files=no') else ''}):"
                  f" {len(KINDS)} submissions x {len(assignments)} assignments", flush=True)
            summaries = {label: grade(label, checkout, tmp, tmp / "submitted", assignments, options)
                         for label, checkout in (("base", tmp / "base"), ("this", ROOT))}
        finally:
            git("worktree", "remove", "--force", str(tmp / "base"))
    rows = _rows(summaries["this"])
    for asg in assignments:
        print(f"{asg}: " + ", ".join(f"{kind} {rows[(asg, kind)]['score']:g}/{rows[(asg, kind)]['max_score']:g}"
                                     for kind in KINDS if (asg, kind) in rows))
    flagged = sum(1 for key, row in rows.items() if len(key) == 3 and row["flags"])
    cells = sum(1 for key in rows if len(key) == 4)
    differences = compare(summaries["base"], summaries["this"])
    print(f"compared {len(rows)} rows ({cells} cells, {flagged} flagged notebooks): "
          + (f"{len(differences)} difference(s)" if differences else "identical"))
    print("\n".join(differences))
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
