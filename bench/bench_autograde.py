"""Autograding throughput: submissions per minute, serial vs ``--workers 2``, in one run.

Forty fabricated submissions of ONE assignment (default ``03_initialization``; a mix of model
answers and answers with some exercises left undone) are graded with real nbgrader twice,
from the same built gradebook into two working areas: in this process (``workers=1``), then
by two worker processes. Both runs must record the same scores cell by cell; the report gives
wall time, submissions per minute and the speed-up (target >= 1.7x on 2 cores). Benchmarks
report; they never fail. ``--quick`` grades the tiny fixture assignment of the tests instead.

    python bench/bench_autograde.py [--quick] [--assignment 03_initialization] [--submissions 40]
        [--workers 2] [--repeats 1]
"""
from __future__ import annotations

import _common as C  # first: pins the thread pools before NumPy loads

import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from grader.autograde.record import load_summary  # noqa: E402
from grader.release.build import build  # noqa: E402
from grader.config import REPO_ROOT, Course  # noqa: E402
from grader.release.fabricate import assemble_course, fill_submission  # noqa: E402
from grader.nb import read_notebook, write_notebook  # noqa: E402
from grader.autograde.scheduler import autograde  # noqa: E402

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "grader"
TARGET = 1.7


def prepare(tmp: Path, assignment: str | None) -> tuple[Course, str, Path]:
    """A throwaway course root (a copy: edits to the checkout during a run cannot change the
    checks under it) and a built gradebook for ``assignment`` (None: the tests' fixture
    assignment); returns (course with a seed working area, assignment, release folder)."""
    if assignment is None:
        grader_core = [str(p.relative_to(REPO_ROOT)) for p in sorted((REPO_ROOT / "grader").rglob("*.py")) if "checks" not in p.parts]
        root = assemble_course(tmp / "root", [*grader_core, "grader/checks/__init__.py", "grader/checks/_core.py",
                                              "course/testing.py", "pyproject.toml"], overlay=FIXTURE)
        assignment = "00_fixture"
    else:
        root = assemble_course(tmp / "root", ["course", "grader", f"solutions/{assignment}", "pyproject.toml"])
    course = Course(root, tmp / "seed")
    release = tmp / "release"
    build(course, [assignment], release_root=release, db_url=course.db_url)
    return course, assignment, release / assignment


def fabricate(course: Course, assignment: str, release: Path, n: int) -> None:
    """``n`` submissions: student i leaves answer cell j undone when (i + j) % 3 == 0 for
    every third student, else answers everything with the model answer."""
    for path in sorted(release.glob("*.ipynb")):
        released, solution = read_notebook(path), read_notebook(course.solutions / assignment / path.name)
        answers = [c.metadata.nbgrader.grade_id for c in solution.cells
                   if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]
        for i in range(n):
            undone = {gid: None for j, gid in enumerate(answers) if i % 3 == 0 and (i + j) % 3 == 0}
            write_notebook(fill_submission(released, solution, undone),
                           course.submitted / f"s{i:03d}" / assignment / path.name)


def grade(seed: Course, assignment: str, work: Path, workers: int) -> tuple[float, dict | None]:
    """Grade the seed's submissions in a copy of its working area; (seconds, cell scores, or
    None when a submission was not graded)."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(seed.work, work)
    course = Course(seed.root, work)
    start = time.perf_counter()
    results = autograde(course, assignment, workers=workers)
    seconds = time.perf_counter() - start
    bad = [f"{r.student}: {r.outcome} {r.message[:200]}" for r in results if r.outcome != "graded"]
    if bad:
        print("  not graded:\n    " + "\n    ".join(bad))
        return seconds, None
    scores = {s: {nb: {g: c["auto_score"] for g, c in e["cells"].items()} for nb, e in entry["notebooks"].items()}
              for s, entry in load_summary(course, assignment)["submissions"].items()}
    return seconds, scores


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--assignment", default="03_initialization", help="assignment to grade (default %(default)s)")
    p.add_argument("--submissions", type=int, default=40, help="fabricated submissions (default %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the parallel run (default %(default)s)")
    args = p.parse_args()
    repeats = args.repeats or 1
    with tempfile.TemporaryDirectory(prefix="bench-autograde-") as tmp:
        seed, assignment, release = prepare(Path(tmp), None if args.quick else args.assignment)
        fabricate(seed, assignment, release, args.submissions)
        print(f"## Autograding throughput: {args.submissions} submissions of {assignment}\n")
        print(C.machine_report(None) + "\n")
        times: dict[int, list[float]] = {1: [], args.workers: []}
        runs = []
        for r in range(repeats):  # alternate the order each round: load drifts on a shared machine
            for workers in ([1, args.workers] if r % 2 == 0 else [args.workers, 1]):
                seconds, scores = grade(seed, assignment, Path(tmp) / f"work-{workers}", workers)
                times[workers].append(seconds)
                runs.append(scores)
                print(f"  round {r + 1}, {workers} worker(s): {seconds:.1f} s "
                      f"({'same scores as' if scores == runs[0] else 'NOT THE SAME SCORES AS'} the first run)")
        valid = runs[0] is not None and all(scores == runs[0] for scores in runs)
        serial, parallel = C.median(times[1]), C.median(times[args.workers])
        rate = lambda s: 60 * args.submissions / s  # noqa: E731
        print("\n" + C.table(["run", "wall time", "submissions / min"], [
            ["serial (1 process)", f"{serial:.1f} s", f"{rate(serial):.1f}"],
            [f"--workers {args.workers}", f"{parallel:.1f} s", f"{rate(parallel):.1f}"]]))
        speedup = serial / parallel
        print(f"\nspeed-up {speedup:.2f}x (target >= {TARGET}x on 2 cores: "
              f"{C.verdict(speedup >= TARGET if valid else None)}"
              f"{'' if valid else ', runs not comparable: see above'}); {C.load_note()}")


if __name__ == "__main__":
    main()
