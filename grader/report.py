"""``report``: per-exercise score table (text) and a histogram of totals (PNG)."""
from __future__ import annotations

import statistics
from pathlib import Path

from nbgrader.api import Gradebook

from grader.config import Course

__all__ = ["report"]


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*r) for r in [header, *rows])


def report(course: Course, assignment: str, *, png: Path | None = None, students: bool = False) -> str:
    """Text report of one assignment from the gradebook; writes a histogram of the submissions'
    totals (percent of the maximum, after late penalties) to ``png`` when given.

    A cell counts as graded once it has an auto or manual score; ``pending`` counts answers
    still waiting for a hand grade (``python -m grader manual``)."""
    per_cell: dict[str, list[float]] = {}
    maxima: dict[str, float] = {}
    pending: dict[str, int] = {}
    totals: list[tuple[str, float, float, float]] = []  # student, score, penalty, max
    with Gradebook(course.db_url) as gb:
        for sub in sorted(gb.assignment_submissions(assignment), key=lambda s: s.student.id):
            for nb in sub.notebooks:
                for g in nb.grades:
                    key = f"{nb.name}/{g.name}"
                    maxima[key] = g.max_score
                    per_cell.setdefault(key, [])
                    if g.manual_score is None and g.auto_score is None:
                        pending[key] = pending.get(key, 0) + 1
                    else:
                        per_cell[key].append(g.score)
            totals.append((sub.student.id, sub.score, sub.late_submission_penalty or 0.0, sub.max_score))
    if not totals:
        return f"{assignment}: no graded submissions in {course.db_url}"
    rows = []
    for key in sorted(per_cell):
        xs, top = per_cell[key], maxima[key]
        rows.append([key, f"{top:g}", str(len(xs)), f"{statistics.fmean(xs):.2f}" if xs else "-",
                     f"{100 * sum(x >= top for x in xs) / len(xs):.0f}%" if xs else "-",
                     str(sum(x == 0 for x in xs)), str(pending.get(key, 0))])
    out = [f"{assignment}: {len(totals)} submissions",
           _table(["exercise", "max", "graded", "mean", "full", "zero", "pending"], rows)]
    percents = [100 * max(0.0, s - p) / m for _, s, p, m in totals if m]
    out.append(f"total: mean {statistics.fmean(percents):.1f}%, median {statistics.median(percents):.1f}%")
    if students:
        out.append(_table(["student", "score", "late penalty", "max"],
                          [[sid, f"{s:g}", f"{p:g}", f"{m:g}"] for sid, s, p, m in totals]))
    if png is not None:
        import matplotlib
        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(percents, bins=[i * 10 for i in range(11)], edgecolor="black")
        ax.set(xlabel="total score (% of maximum)", ylabel="submissions",
               title=f"{assignment} ({len(percents)} submissions)")
        fig.tight_layout()
        png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png, dpi=100)
        plt.close(fig)
        out.append(f"histogram: {png}")
    return "\n".join(out)
