"""Soak test of autograding (not part of CI): 200 fabricated submissions of the tests' fixture
assignment — good, wrong, broken and adversarial, some late — graded with ``--workers 2``
through the command line, killed (SIGKILL) after a quarter of them were recorded, then
resumed. It shows every submission accounted for: each one in the summary with an outcome,
recorded exactly once in the audit log, and in the gradebook whenever it was graded; a third
run grades nothing. It reports per kind of submission the outcomes, scores and flags.

    python bench/soak.py [--submissions 200] [--workers 2] [--timeout 10] [--no-kill]
"""
from __future__ import annotations

import _common as C  # first: pins the thread pools before NumPy loads

import argparse  # noqa: E402
import collections  # noqa: E402
import copy  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import nbformat  # noqa: E402
from nbgrader.api import Gradebook  # noqa: E402

from bench_autograde import prepare  # noqa: E402
from grader.autograde.record import audit_log, load_summary  # noqa: E402
from grader.config import REPO_ROOT  # noqa: E402
from grader.release.fabricate import fill_submission  # noqa: E402
from grader.nb import read_notebook  # noqa: E402

Notebook = nbformat.NotebookNode
LOOP_SQUARE = ("import numpy as np\n\ndef square(x):\n    out = np.empty_like(x)\n    for i, v in enumerate(x.flat):\n"
               "        out.flat[i] = v * v\n    return out")


def _answers(**answers: str) -> Callable[[Notebook, Notebook], Notebook]:
    return lambda rel, sol: fill_submission(rel, sol, answers)


def _cells(edit: Callable[[list], list]) -> Callable[[Notebook, Notebook], Notebook]:
    def make(rel: Notebook, sol: Notebook) -> Notebook:
        nb = fill_submission(rel, sol)
        nb.cells = edit(nb.cells)
        return nb
    return make


def _gid(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _copy(cell):
    """A cell as Jupyter duplicates it: same content and metadata, a new id."""
    twin = copy.deepcopy(cell)
    twin.id = f"{cell.id}-copy"
    return twin


def _strip_metadata(rel: Notebook, sol: Notebook) -> Notebook:
    nb = fill_submission(rel, sol)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    return nb


def _kernel(rel: Notebook, sol: Notebook) -> Notebook:
    nb = fill_submission(rel, sol)
    nb.metadata.kernelspec.name = "python2"
    return nb


#: kind -> (how many in every 25 submissions, notebook maker or raw file text, file name)
KINDS: dict[str, tuple[int, Callable[[Notebook, Notebook], Notebook] | str, str]] = {
    "good": (4, _answers(), "fixture"),
    "good-loop": (1, _answers(square_impl=LOOP_SQUARE), "fixture"),
    "wrong-double": (1, _answers(square_impl="def square(x):\n    return x + x"), "fixture"),
    "wrong-var": (1, _answers(var_3y_answer="var_3y = 6.0"), "fixture"),
    "untouched": (1, lambda rel, sol: rel, "fixture"),
    "broken-json": (1, "{ not json", "fixture"),
    "broken-metadata": (1, _strip_metadata, "fixture"),
    "broken-deleted-test": (1, _cells(lambda cells: [c for c in cells if _gid(c) != "square"]), "fixture"),
    "broken-duplicated-test": (1, _cells(lambda cells: cells + [_copy(c) for c in cells if _gid(c) == "square"]),
                               "fixture"),
    "broken-renamed": (1, _answers(), "fixture-copy"),
    "broken-kernel": (1, _kernel, "fixture"),
    "broken-no-notebook": (1, "", "README"),
    "adv-allclose": (1, _answers(square_impl="import numpy as np\nnp.allclose = lambda *a, **k: True\n"
                                              "np.testing.assert_allclose = lambda *a, **k: None\n\n"
                                              "def square(x):\n    return x + x"), "fixture"),
    "adv-equal-to-all": (1, _answers(square_impl="class Anything:\n    def __eq__(self, other):\n        return True\n"
                                                  "    __array_priority__ = 1000\n\n"
                                                  "def square(x):\n    return Anything()"), "fixture"),
    "adv-sys-exit": (1, _answers(square_impl="import sys\nsys.exit(0)"), "fixture"),
    "adv-os-exit": (1, _answers(square_impl="import os\nos._exit(0)"), "fixture"),
    "adv-infinite-loop": (1, _answers(var_3y_answer="while True:\n    pass"), "fixture"),
    "adv-print-flood": (1, _answers(var_3y_answer="for i in range(10**5):\n    print(i)\nvar_3y = 18.0"), "fixture"),
    "adv-memory": (1, _answers(var_3y_answer="hog = bytearray(2 * 2**30)\nvar_3y = 18.0"), "fixture"),
    "adv-leftover-process": (1, _answers(var_3y_answer="import subprocess\nsubprocess.Popen(['sleep', '120'])\n"
                                                       "var_3y = 18.0"), "fixture"),
    "adv-read-gradebook": (1, _answers(var_3y_answer="import glob\n"
                                                     "leak = glob.glob('/**/gradebook.db', recursive=True)\n"
                                                     "var_3y = 18.0"), "fixture"),
}
CYCLE = [kind for kind, (n, _, _) in KINDS.items() for _ in range(n)]


def fabricate(seed, assignment: str, release: Path, n: int) -> dict[str, str]:
    """``n`` submissions cycling through :data:`KINDS` (every 7th late); student -> kind."""
    rel = read_notebook(release / "fixture.ipynb")
    sol = read_notebook(seed.solutions / assignment / "fixture.ipynb")
    kinds = {}
    for i in range(n):
        kind = CYCLE[i % len(CYCLE)]
        student = f"{kind}-{i:03d}"
        _, make, name = KINDS[kind]
        folder = seed.submitted / student / assignment
        folder.mkdir(parents=True)
        suffix = ".txt" if name == "README" else ".ipynb"
        text = make if isinstance(make, str) else nbformat.writes(make(rel, sol)) + "\n"
        (folder / f"{name}{suffix}").write_text(text)
        if i % 7 == 3:
            (folder / "timestamp.txt").write_text("2026-11-03 10:00:00")
        kinds[student] = kind
    return kinds


RECORDED = re.compile(r"^[\w-]+: ")


def cli(seed, assignment: str, args: argparse.Namespace, kill_after: int | None) -> tuple[int, float]:
    """``python -m grader autograde`` on the soak; SIGKILL after ``kill_after`` recorded results.
    Returns (results printed, seconds)."""
    cmd = [sys.executable, "-m", "grader", "--root", str(seed.root), "--work", str(seed.work), "autograde",
           assignment, "--workers", str(args.workers), "--timeout", str(args.timeout), "--due", "2026-11-01 12:00:00",
           "--late-penalty", "0.1"]
    start, printed = time.perf_counter(), 0
    run = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in run.stdout:
        if RECORDED.match(line) and not line.startswith("summary:"):
            printed += 1
            if kill_after is not None and printed >= kill_after:
                run.send_signal(signal.SIGKILL)
                break
        elif "submission(s) graded" in line:
            print(f"  {line.strip()}")
    run.wait()
    return printed, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submissions", type=int, default=200)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=int, default=10, help="seconds per cell (the infinite loops wait for it)")
    p.add_argument("--no-kill", action="store_true", help="grade in one run, without the SIGKILL and resume")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        seed, assignment, release = prepare(Path(tmp), None)
        kinds = fabricate(seed, assignment, release, args.submissions)
        print(f"## Soak: {len(kinds)} submissions of {assignment}, {len(KINDS)} kinds, --workers {args.workers}\n")
        print(C.machine_report(None) + "\n")
        phases = []
        if not args.no_kill:
            printed, seconds = cli(seed, assignment, args, kill_after=len(kinds) // 4)
            phases.append(f"run 1: {printed} recorded, then SIGKILL after {seconds:.0f} s")
        printed, seconds = cli(seed, assignment, args, kill_after=None)
        phases.append(f"run {len(phases) + 1}: {printed} recorded in {seconds:.0f} s "
                      f"({60 * printed / seconds:.1f} per minute)")
        again, _ = cli(seed, assignment, args, kill_after=None)
        phases.append(f"run {len(phases) + 1}: {again} recorded (everything up to date)")
        print("\n".join(f"- {line}" for line in phases) + "\n")

        summary = load_summary(seed, assignment)["submissions"]
        log = collections.Counter(row["student"] for row in audit_log(seed, assignment))
        with Gradebook(seed.db_url) as gb:
            in_book = {s.student.id for s in gb.assignment_submissions(assignment)}
        graded = {s for s, e in summary.items() if e["outcome"] == "graded"}
        none = lambda names: sorted(names) or "none"  # noqa: E731
        print(f"- in the summary: {len(summary)} of {len(kinds)}; missing: {none(set(kinds) - set(summary))}")
        print(f"- audit log: {sum(log.values())} rows; recorded more than once: "
              f"{none(s for s, n in log.items() if n > 1)}; never: {none(set(kinds) - set(log))}")
        print(f"- gradebook: {len(in_book)} submissions; graded but not in it: {none(graded - in_book)}\n")

        rows = []
        for kind in KINDS:
            entries = [summary[s] for s, k in kinds.items() if k == kind and s in summary]
            outcomes = collections.Counter(e["outcome"] for e in entries)
            scores = sorted({e["score"] for e in entries})
            flagged = sum(1 for e in entries if any(nb.get("flags") for nb in e["notebooks"].values()))
            seconds = [e["seconds"] for e in entries]
            rows.append([kind, str(len(entries)), ", ".join(f"{o} {n}" for o, n in sorted(outcomes.items())),
                         "/".join(f"{s:g}" for s in scores) or "-", str(flagged),
                         f"{sum(seconds) / len(seconds):.1f}" if seconds else "-"])
        print(C.table(["kind", "n", "outcomes", "scores (of 5)", "flagged", "mean s"], rows))
        print(f"\n{C.load_note()}")


if __name__ == "__main__":
    main()
