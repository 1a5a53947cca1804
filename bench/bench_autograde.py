"""Autograding throughput: ``python -m grader autograde`` against stock ``nbgrader autograde``.

One fabricated class of ONE assignment (default ``03_initialization``: model answers, and every
third student leaving some answers undone) is graded, serially, by both graders in one run, in
interleaved rounds and at two class sizes n1 < n2. Ours runs with every defence on (sandboxed
kernel, the clean checker process, tamper checks); stock nbgrader runs the same release and
submissions with a plain nbgrader configuration (the hidden tests run inside the student's
kernel, which imports this course's ``grader.checks``). The figure is the marginal cost of one
more notebook, (T(n2) - T(n1)) / (n2 - n1), in CPU seconds of the grading command and every
process it waited for (``RUSAGE_CHILDREN``: the same core count for both, so notebooks per
minute per core), medians over the rounds; wall time is shown too. Both graders must give the
model answers full marks. Benchmarks report; they never fail.

    python bench/bench_autograde.py [--quick] [--assignment 03_initialization] [--sizes 2 6]
        [--repeats 2]
"""
from __future__ import annotations

import _common as C  # first: pins the thread pools before NumPy loads

import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from grader.autograde.record import load_summary  # noqa: E402
from grader.config import BLAS_THREAD_VARS, Course  # noqa: E402
from grader.nb import read_notebook, write_notebook  # noqa: E402
from grader.release.build import build  # noqa: E402
from grader.release.fabricate import assemble_course, fill_submission  # noqa: E402

TARGET = 1.5
STOCK_CONFIG = """\
c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.db_url = "sqlite:///{root}/gradebook.db"
c.CourseDirectory.course_id = "default_course"
c.Execute.timeout = 60
"""


def prepare(tmp: Path, assignment: str) -> tuple[Course, Path]:
    """A throwaway course root (a copy: edits to the checkout during a run change nothing) with
    a built gradebook; returns (course with a seed working area, its release folder)."""
    root = assemble_course(tmp / "root", ["course", "grader", f"solutions/{assignment}", "pyproject.toml"])
    course = Course(root, tmp / "seed")
    build(course, [assignment])
    return course, course.notebooks / assignment


def fabricate(course: Course, assignment: str, release: Path, n: int) -> list[str]:
    """``n`` students: student i leaves answer j undone when i % 3 == 0 and (i + j) % 3 == 0."""
    for path in sorted(release.glob("*.ipynb")):
        released, solution = read_notebook(path), read_notebook(course.solutions / assignment / path.name)
        answers = [c.metadata.nbgrader.grade_id for c in solution.cells
                   if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]
        for i in range(n):
            undone = {gid: None for j, gid in enumerate(answers) if i % 3 == 0 and (i + j) % 3 == 0}
            write_notebook(fill_submission(released, solution, undone),
                           course.submitted / f"s{i:03d}" / assignment / path.name)
    return [f"s{i:03d}" for i in range(n)]


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds of ``cmd`` and the processes it waited for, wall seconds)."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):  # 1: a submission needs attention, which is data here
        sys.exit(f"{' '.join(cmd[:4])} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def _class(seed: Course, dest: Path, students: list[str], assignment: str) -> Path:
    """A fresh copy of the seed's gradebook and the first ``students``' submissions."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2(seed.work / "gradebook.db", dest / "gradebook.db")
    for s in students:
        shutil.copytree(seed.submitted / s / assignment, dest / "submitted" / s / assignment)
    return dest


def ours(seed: Course, tmp: Path, students: list[str], assignment: str) -> tuple[float, float, float]:
    """(CPU s, wall s, mean score fraction) of ``python -m grader autograde`` on the class."""
    work = _class(seed, tmp / "ours", students, assignment)
    env = {**os.environ, "PYTHONPATH": str(seed.root)}
    cpu, wall = _timed([sys.executable, "-m", "grader", "--root", str(seed.root), "--work", str(work),
                        "autograde", assignment], seed.root, env)
    subs = load_summary(Course(seed.root, work), assignment)["submissions"]
    if len(subs) != len(students):
        sys.exit(f"python -m grader autograde recorded {len(subs)} of {len(students)} submissions")
    return cpu, wall, sum(e["score"] / e["max_score"] for e in subs.values()) / len(students)


def stock(seed: Course, tmp: Path, students: list[str], assignment: str) -> tuple[float, float, float]:
    """The same for stock ``nbgrader autograde`` with a plain configuration."""
    from nbgrader.api import Gradebook

    root = _class(seed, tmp / "stock", students, assignment)
    shutil.copytree(seed.solutions / assignment, root / "source" / assignment)
    (root / "nbgrader_config.py").write_text(STOCK_CONFIG.format(root=str(root)))
    env = {**os.environ, "PYTHONPATH": str(seed.root), "MPLBACKEND": "Agg", **dict.fromkeys(BLAS_THREAD_VARS, "1")}
    cpu, wall = _timed([sys.executable, "-m", "nbgrader", "autograde", assignment, "--force"], root, env)
    with Gradebook(f"sqlite:///{root}/gradebook.db") as gb:
        fractions = [gb.find_submission(assignment, s).score / gb.find_submission(assignment, s).max_score
                     for s in students]
    return cpu, wall, sum(fractions) / len(students)


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--assignment", default="03_initialization", help="assignment to grade (default %(default)s)")
    p.add_argument("--sizes", type=int, nargs=2, default=None, help="class sizes n1 n2 (default 2 6, quick 1 3)")
    args = p.parse_args()
    n1, n2 = args.sizes or ((1, 3) if args.quick else (2, 6))
    repeats = args.repeats or (1 if args.quick else 2)
    with tempfile.TemporaryDirectory(prefix="bench-autograde-") as name:
        tmp = Path(name)
        seed, release = prepare(tmp, args.assignment)
        students = fabricate(seed, args.assignment, release, n2)
        notebooks = len(list(release.glob("*.ipynb")))
        print(f"## Autograding throughput: {args.assignment}, classes of {n1} and {n2} students "
              f"({notebooks} notebook(s) each), {repeats} interleaved round(s)\n")
        print(C.machine_report(None) + "\n")
        graders = {"ours": ours, "stock": stock}
        times: dict[tuple[str, int], list[tuple[float, float]]] = {}
        scores: dict[str, set[float]] = {"ours": set(), "stock": set()}
        for r in range(repeats):  # rotate the order each round: load drifts on a shared machine
            order = [(g, n) for n in (n1, n2) for g in graders]
            for g, n in order[r % len(order):] + order[:r % len(order)]:
                cpu, wall, score = graders[g](seed, tmp, students[:n], args.assignment)
                times.setdefault((g, n), []).append((cpu, wall))
                if n == n2:
                    scores[g].add(round(score, 4))
                print(f"  round {r + 1}: {g:5s} {n} students: {cpu:6.1f} s CPU, {wall:6.1f} s wall, "
                      f"mean score {score:.0%}", flush=True)
        rows, marginal = [], {}
        for g in graders:
            per = [[(b[k] - a[k]) / ((n2 - n1) * notebooks) for a, b in zip(times[(g, n1)], times[(g, n2)])]
                   for k in (0, 1)]
            marginal[g] = (C.median(per[0]), C.median(per[1]))
            rows.append([g, f"{marginal[g][0]:.2f} s", f"{marginal[g][1]:.2f} s", f"{60 / marginal[g][0]:.1f}"])
        print("\n" + C.table(["grader", "one more notebook, CPU", "wall", "notebooks / min / core"], rows))
        ratio, wall_ratio = marginal["stock"][0] / marginal["ours"][0], marginal["stock"][1] / marginal["ours"][1]
        same = scores["ours"] == scores["stock"] and len(scores["ours"]) == 1
        print(f"\nautograde throughput ours/stock = {ratio:.2f}x (wall {wall_ratio:.2f}x; target >= {TARGET:.2f}x: "
              f"{C.verdict(ratio >= TARGET)}); mean scores ours {sorted(scores['ours'])} stock "
              f"{sorted(scores['stock'])}{'' if same else ' (DIFFERENT)'}; {C.load_note()}")


if __name__ == "__main__":
    main()
