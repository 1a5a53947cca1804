"""``check``: the course grades itself. For every assignment: a fresh build equals notebooks/,
the catalog matches the graded cells, no hidden test reaches the release, every solution
scores full marks on its autograded cells and every untouched release scores zero."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from grader.release.build import build, compare_release, locate, stub_function
from grader.catalog import Catalog
from grader.config import Course, GraderError
from grader.results.feedback import forbidden_texts
from grader.autograde.pipeline import Result, checks_version, grade_submission, make_job, make_template
from grader.nb import read_notebook

__all__ = ["check_course", "catalog_problems"]


def _graded_cells(course: Course, assignment: str) -> dict[tuple[str, str], tuple[float, bool]]:
    """(notebook, grade_id) -> (points, graded by hand) for every graded cell of the sources."""
    cells = {}
    for path in sorted((course.solutions / assignment).glob("*.ipynb")):
        for cell in read_notebook(path).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") or meta.get("task"):
                by_hand = cell.cell_type == "markdown" or bool(meta.get("task"))
                cells[(path.stem, meta["grade_id"])] = (float(meta.get("points", 0)), by_hand)
    return cells


def catalog_problems(course: Course, assignment: str, catalog: Catalog) -> list[str]:
    """Where the catalog and the notebooks disagree (cells, points, kinds), and 'replaces'
    paths that name no function in course/."""
    cells = _graded_cells(course, assignment)
    entries = {(ex.notebook, ex.id): ex for ex in catalog.for_assignment(assignment)}
    problems = [f"{assignment}/{nb}/{gid}: graded cell has no catalog entry (add it to grader/checks/*.toml)"
                for nb, gid in sorted(cells.keys() - entries.keys())]
    problems += [f"{assignment}/{nb}/{gid}: catalog entry names no graded cell of the notebook"
                 for nb, gid in sorted(entries.keys() - cells.keys())]
    for key in sorted(cells.keys() & entries.keys()):
        (points, by_hand), ex = cells[key], entries[key]
        if points != ex.points:
            problems.append(f"{ex.key}: the notebook gives {points:g} points, the catalog {ex.points:g}")
        if by_hand != (ex.kind == "written"):
            problems.append(f"{ex.key}: catalog kind {ex.kind!r} but the cell is "
                            f"{'graded by hand' if by_hand else 'autograded'}")
        if ex.replaces:
            try:
                path, qualname = locate(course.root / "course", ex.replaces)
                stub_function(path.read_text(encoding="utf-8"), qualname, "")
            except GraderError as exc:
                problems.append(f"{ex.key}: replaces = {ex.replaces}: {exc}")
    return problems


def _leaks(course: Course, assignment: str, release: Path) -> list[str]:
    needles = forbidden_texts(course, assignment)
    problems = []
    for path in sorted(release.glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        problems += [f"{assignment}/{path.name}: the release contains {n!r}" for n in needles if n in text]
    return problems


def _score_problems(result: Result, by_hand: set[tuple[str, str]], expect_full: bool) -> list[str]:
    if result.outcome != "graded":
        return [f"{result.assignment} ({result.student}): autograde failed: {result.message}"]
    problems = []
    for nb in result.notebooks:
        for gid, cell in sorted(nb.cells.items()):
            auto, top = cell["auto_score"] or 0.0, cell["max_score"]
            if (nb.name, gid) in by_hand:
                continue
            if expect_full and auto != top:
                problems.append(f"{result.assignment}/{nb.name}/{gid}: the solution scores {auto:g}/{top:g}")
            if not expect_full and auto != 0:
                problems.append(f"{result.assignment}/{nb.name}/{gid}: the untouched release scores {auto:g}")
        problems += [f"{result.assignment}/{nb.name}: {flag}" for flag in nb.flags]
    return problems


def check_course(course: Course, assignments: list[str] | None = None, *, timeout: int = 60,
                 out: Callable[[str], None] = print) -> list[str]:
    """Run every check above, printing per-notebook run times; returns the problems found."""
    assignments = assignments or course.assignments()
    catalog = course.catalog()
    version = checks_version(course)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="grader-check-") as tmp:
        fresh, db_url = Path(tmp) / "notebooks", f"sqlite:///{tmp}/gradebook.db"
        build(course, assignments, release_root=fresh, db_url=db_url)
        problems += compare_release(course, fresh, assignments)
        for assignment in assignments:
            problems += catalog_problems(course, assignment, catalog)
            problems += _leaks(course, assignment, fresh / assignment)
            template = make_template(db_url, assignment, fresh / assignment)
            cells = _graded_cells(course, assignment)
            by_hand = {key for key, (_, hand) in cells.items() if hand}
            for who, folder, expect_full in (("solution", course.solutions, True),
                                            ("release", fresh, False)):
                result = grade_submission(make_job(course, assignment, f"_{who}", folder / assignment,
                                                   template, timeout=timeout, checks_version=version))
                problems += _score_problems(result, by_hand, expect_full)
                for nb in result.notebooks:
                    auto = [(c["auto_score"] or 0.0, c["max_score"]) for gid, c in nb.cells.items()
                            if (nb.name, gid) not in by_hand]
                    out(f"{assignment}/{nb.name} {who}: {sum(a for a, _ in auto):g}/{sum(m for _, m in auto):g} "
                        f"autograded points, notebook ran in {nb.seconds:.1f} s")
                out(f"{assignment} {who}: autograde took {result.seconds:.1f} s")
    return problems
