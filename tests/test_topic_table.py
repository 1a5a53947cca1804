"""The README's topic table maps each topic of the lecture notes to the cell that teaches it.

Every row must name a cell (its nbgrader cell id or grade_id) that exists in that notebook of
``solutions/``, and every topic issue 9 lists as missing must have a row in the notebook it is
bound to.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## What the notes teach, and where"
SIXTH = "06_training_in_practice"

# Issue 9, item 1: (topic, regex a row's topic must match, notebook that teaches it).
ISSUE9_TOPICS: list[tuple[str, str, str]] = [
    ("perceptron loss", r"perceptron", SIXTH),
    ("multi-class hinge loss", r"hinge", SIXTH),
    ("square loss", r"square(d)?( error)? loss", SIXTH),
    ("the schedule eta_t = min(0.1, 100/t)", r"100\s*/\s*t", SIXTH),
    ("piecewise-constant schedules", r"piecewise", SIXTH),
    ("the 1/sqrt(t) schedule", r"1\s*/\s*(√|sqrt)\s*\(?t", SIXTH),
    ("RMSProp with Nesterov momentum", r"rmsprop.*nesterov", SIXTH),
    ("gradient clipping for cliffs", r"clipping", SIXTH),
    ("GPUs and keeping parameters on the device", r"\bgpu", SIXTH),
    ("the ill-conditioning condition and the best step", r"ill-conditioning.*(best|optimal) step", SIXTH),
    ("standard error sigma/sqrt(n) of a minibatch gradient", r"standard error", SIXTH),
    ("sub-linear return of bigger batches", r"sub-?linear", SIXTH),
    ("momentum's terminal velocity", r"terminal velocity", SIXTH),
    ("weight-space symmetry (n!)^m", r"weight-space symmetr", SIXTH),
    ("ReLU rescaling symmetry", r"rescaling", SIXTH),
    ("tanh sign-flip symmetry", r"sign[- ]flip", SIXTH),
    ("plateaus", r"plateau", SIXTH),
    ("cliffs", r"cliff", SIXTH),
    ("empirical against true risk", r"empirical.*risk|true risk", SIXTH),
    ("surrogate losses", r"surrogate", SIXTH),
    ("backprop as the delta recursion of the matrix form", r"δ recursion|delta recursion", SIXTH),
    ("data augmentation", r"augmentation", SIXTH),
    ("transfer learning", r"transfer learning", SIXTH),
    ("bottleneck layers", r"bottleneck", SIXTH),
    ("greedy layer-wise pre-training (history)", r"pre-?training", SIXTH),
    ("the notes' homework to explore initialization interactively", r"interactiv|explorer", "03_initialization"),
    ("the conditions sum eps = inf, sum eps^2 < inf", r"convergence conditions", "02_optimizers"),
]


def _rows() -> list[dict[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert HEADING in text, f"README.md has no section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    lines = [ln.strip() for ln in section.splitlines() if ln.strip().startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["topic", "notes", "notebook", "cell"], f"unexpected table header {header}"
    rows = []
    for ln in lines[2:]:
        cols = [c.strip() for c in ln.strip("|").split("|")]
        assert len(cols) == 4, f"a row of the topic table needs 4 columns: {ln}"
        rows.append(dict(zip(header, cols)))
    return rows


ROWS = _rows()


def _cell_ids(notebook: str) -> set[str]:
    ids: set[str] = set()
    for path in sorted((ROOT / "solutions" / notebook).glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            ids.add(cell.get("id"))
            ids.add(cell.metadata.get("nbgrader", {}).get("grade_id"))
    return ids - {None}


def test_table_is_not_empty():
    assert len(ROWS) >= 40, "the topic table should list every topic the notes teach"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['notebook']}:{r['cell']}")
def test_row_names_an_existing_cell(row):
    folder = ROOT / "solutions" / row["notebook"]
    assert folder.is_dir(), f"topic {row['topic']!r}: no assignment solutions/{row['notebook']}"
    assert re.fullmatch(r"\d{3}(, \d{3})*|—", row["notes"]), (
        f"topic {row['topic']!r}: the notes column lists seed numbers such as '001, 003' (— for none)")
    missing = [cell for cell in row["cell"].split(", ") if cell not in _cell_ids(row["notebook"])]
    assert not missing, (
        f"topic {row['topic']!r}: {row['notebook']} has no cell with id {missing}; "
        f"use the cells' `id` (or their nbgrader grade_id), separated by ', '")


@pytest.mark.parametrize("topic,pattern,notebook", ISSUE9_TOPICS, ids=[t[0] for t in ISSUE9_TOPICS])
def test_issue9_topic_is_taught(topic, pattern, notebook):
    rows = [r for r in ROWS if r["notebook"] == notebook and re.search(pattern, r["topic"], re.I)]
    assert rows, (f"issue 9 topic {topic!r} has no row for {notebook} in README's topic table "
                  f"(a row whose topic matches /{pattern}/)")
