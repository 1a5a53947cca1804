"""``report``: per-exercise score table (text) and a histogram of totals (PNG); with
``--mistakes``, what the class got wrong: the named mistakes the hidden checks diagnosed."""
from __future__ import annotations

import re
import statistics
from collections import Counter
from pathlib import Path

from grader.autograde.record import load_summary, open_gradebook
from grader.config import Course

__all__ = ["report", "mistakes"]

#: How a hidden check names a diagnosed mistake (grader.checks._core.compare / check_number).
_MISTAKE = re.compile(r"It matches a known mistake: (.+)\.$", re.M)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*r) for r in [header, *rows])


def _savefig(fig: object, png: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)


def _pyplot() -> object:
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def mistakes(course: Course, assignment: str, *, png: Path | None = None) -> str:
    """Per exercise, the named mistakes the hidden checks diagnosed over every graded
    submission: how many students made each, their share of the class (the submissions graded),
    and one student id as an example; then the checks that failed without a named mistake. A
    bar chart of the most common mistakes (share of the class) goes to ``png`` when given."""
    entries = {s: e for s, e in load_summary(course, assignment)["submissions"].items() if e.get("outcome") == "graded"}
    if not entries:
        return f"{assignment}: no graded submissions in {course.db_url}"
    named: dict[str, Counter[str]] = {}
    example: dict[tuple[str, str], str] = {}
    unnamed: Counter[str] = Counter()
    for student in sorted(entries):
        for nb in entries[student]["notebooks"].values():
            for gid, message in (nb.get("diagnoses") or {}).items():
                found = _MISTAKE.findall(message)
                unnamed.update([gid] if not found else [])
                for name in dict.fromkeys(found):
                    named.setdefault(gid, Counter())[name] += 1
                    example.setdefault((gid, name), student)
    n = len(entries)
    out = [f"{assignment}: what {n} graded submission(s) got wrong (named mistakes the hidden checks diagnosed)"]
    rows = [[gid, name, str(k), f"{100 * k / n:.0f}%", example[(gid, name)]]
            for gid in sorted(named) for name, k in named[gid].most_common()]
    out.append(_table(["exercise", "mistake", "students", "share", "e.g."], rows) if rows
               else "no named mistake was diagnosed")
    if unnamed:
        out.append("failed without a named mistake: " + ", ".join(f"{gid} {k}" for gid, k in sorted(unnamed.items())))
    if png is not None and rows:
        plt = _pyplot()
        top = sorted(rows, key=lambda r: -int(r[2]))[:12][::-1]
        fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(top)))
        ax.barh([f"{r[0]}: {r[1][:60]}" for r in top], [100 * int(r[2]) / n for r in top])
        ax.set(xlabel=f"share of the class (% of {n} submissions)", title=f"{assignment}: named mistakes")
        _savefig(fig, png)
        out.append(f"chart: {png}")
    return "\n".join(out)


def report(course: Course, assignment: str, *, png: Path | None = None, students: bool = False) -> str:
    """Text report of one assignment from the gradebook; writes a histogram of the submissions'
    totals (percent of the maximum, after late penalties) to ``png`` when given.

    A cell counts as graded once it has an auto or manual score; ``pending`` counts answers
    still waiting for a hand grade (``python -m grader manual``)."""
    per_cell: dict[str, list[float]] = {}
    maxima: dict[str, float] = {}
    pending: dict[str, int] = {}
    totals: list[tuple[str, float, float, float]] = []  # student, score, penalty, max
    with open_gradebook(course.db_url) as gb:
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
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(percents, bins=[i * 10 for i in range(11)], edgecolor="black")
        ax.set(xlabel="total score (% of maximum)", ylabel="submissions",
               title=f"{assignment} ({len(percents)} submissions)")
        _savefig(fig, png)
        out.append(f"histogram: {png}")
    return "\n".join(out)
