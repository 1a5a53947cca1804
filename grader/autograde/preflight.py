"""Broken submissions: read what can be read, repair what nbgrader would trip on, say what
was done.

:func:`prepare` takes the submitted files and the assignment's structure (from the template
gradebook, :func:`load_template`) and returns, per notebook of the assignment, the file to
grade or the reason it cannot be graded, with messages and flags:

===============================  ===========================================================
submitted                        outcome
===============================  ===========================================================
not JSON / not a notebook        ``unreadable``, 0 points, flagged
notebook missing                 ``missing``, 0 points, flagged
extra notebook                   ignored, with a message
renamed notebook                 graded as the notebook its cells belong to, with a message
wrong or missing kernel          the assignment's kernel, with a message
nbgrader metadata stripped,      rebuilt from the assignment for every cell recognised by its
edited or invalid                grade_id, by its (locked) source, or by its position
cells of an older release        locked cells get the current source; unknown graded cells
                                 are no longer graded; with a message
test or locked cell deleted      restored in place, with a message (a deleted written answer:
                                 also flagged)
cell duplicated                  the last copy keeps the role, earlier ones become plain cells
cells reordered                  the assignment's order restored (a student's own cells move
                                 with the cell they followed), with a message
===============================  ===========================================================
"""
from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nbformat
from nbformat.notebooknode import NotebookNode

__all__ = ["TemplateCell", "TemplateNotebook", "load_template", "prepare", "Prepared", "Verdict"]


@dataclass(frozen=True)
class TemplateCell:
    """A cell of the assignment as the gradebook knows it."""

    name: str
    cell_type: str
    locked: bool
    source: str
    checksum: str | None
    grade: bool
    solution: bool
    task: bool
    points: float | None

    def metadata(self) -> dict[str, Any]:
        """nbgrader metadata as generate_assignment writes it."""
        meta = {"cell_type": self.cell_type, "grade": self.grade, "grade_id": self.name, "locked": self.locked,
                "schema_version": 3, "solution": self.solution, "task": self.task}
        if self.checksum:
            meta["checksum"] = self.checksum
        if self.grade or self.task:
            meta["points"] = self.points
        return meta


@dataclass(frozen=True)
class TemplateNotebook:
    name: str
    kernelspec: dict[str, Any] | None
    cells: tuple[TemplateCell, ...]


def load_template(db_url: str, assignment: str) -> dict[str, TemplateNotebook]:
    """The assignment's notebooks and cells, in notebook order, from a template gradebook
    (an SQLite file written by :func:`grader.autograde.pipeline.make_template`)."""
    from nbgrader.api import Gradebook

    from sqlalchemy import text

    out = {}
    with Gradebook(db_url) as gb:
        for nb in gb.find_assignment(assignment).notebooks:
            # the template (grader.autograde.pipeline.make_template) wrote the cells in release order
            rows = gb.db.execute(text("SELECT name FROM source_cell WHERE notebook_id = :id ORDER BY rowid"),
                                 {"id": nb.id}).fetchall()
            position = {row[0]: i for i, row in enumerate(rows)}
            grades = {c.name: c.max_score for c in nb.grade_cells}
            solutions = {c.name for c in nb.solution_cells}
            tasks = {c.name: c.max_score for c in nb.task_cells}
            cells = tuple(TemplateCell(
                name=c.name, cell_type=c.cell_type, locked=bool(c.locked), source=c.source or "",
                checksum=c.checksum, grade=c.name in grades, solution=c.name in solutions,
                task=c.name in tasks, points=grades.get(c.name, tasks.get(c.name)))
                for c in sorted(nb.source_cells, key=lambda c: position.get(c.name, len(position))))
            out[nb.name] = TemplateNotebook(nb.name, json.loads(nb.kernelspec) if nb.kernelspec else None, cells)
    return out


@dataclass
class Verdict:
    """One notebook of the assignment before grading: ``data`` to grade (None: it cannot be
    graded, ``outcome`` says why), messages and flags."""

    data: bytes | None = None
    outcome: str = "graded"
    messages: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    notebooks: dict[str, Verdict]
    messages: list[str]           # about the submission as a whole (extra files)


def _parse(data: bytes) -> tuple[NotebookNode | None, str]:
    """The notebook (nbformat 4) or None and why not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        return None, "JSON, but not a notebook (no list of cells)"
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds on odd files
        return None, f"not a notebook nbformat can read ({type(exc).__name__}: {exc})"
    for cell in nb.cells:
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            return None, "a cell of an unknown type"
        if not isinstance(cell.get("source", ""), str):
            return None, "a cell whose source is not text"
    return nb, ""


def _normal(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _visible(source: str) -> str:
    """A locked cell as the release shows it: hidden-test regions removed, normalized."""
    from grader.nb import split_hidden

    return _normal("\n".join(split_hidden(source)[0]))


def _known_ids(nb: NotebookNode, names: Mapping[str, TemplateCell]) -> set[str]:
    return {c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.cells} & set(names)


def _claim(nb: NotebookNode, tmpl: TemplateNotebook) -> int:
    """How strongly ``nb`` looks like ``tmpl`` (matching grade ids and locked sources)."""
    names = {c.name: c for c in tmpl.cells}
    locked = {_visible(c.source) for c in tmpl.cells if c.locked and c.source.strip()}
    return len(_known_ids(nb, names)) + sum(1 for c in nb.cells if _normal(c.get("source", "")) in locked)


def prepare(submitted: Mapping[str, bytes], template: Mapping[str, TemplateNotebook]) -> Prepared:
    """Match submitted files to the assignment's notebooks and repair them (module docstring)."""
    verdicts = {name: Verdict() for name in template}
    messages: list[str] = []
    parsed: dict[str, NotebookNode] = {}
    for fname, data in sorted(submitted.items()):
        nb, why = _parse(data)
        if nb is not None:
            parsed[fname] = nb
        elif fname in template:
            verdicts[fname] = Verdict(outcome="unreadable", messages=[f"{fname}.ipynb is unreadable: {why}"],
                                      flags=[f"unreadable notebook: {why}"])
        else:
            messages.append(f"{fname}.ipynb is not part of the assignment and unreadable ({why}); ignored")
    chosen: dict[str, tuple[str, NotebookNode]] = {n: (n, parsed[n]) for n in template if n in parsed}
    spare = {f: nb for f, nb in parsed.items() if f not in chosen}
    for name in template:
        if name in chosen or verdicts[name].outcome == "unreadable" or not spare:
            continue
        fname, score = max(((f, _claim(nb, template[name])) for f, nb in spare.items()), key=lambda t: t[1])
        if score > 0:
            chosen[name] = (fname, spare.pop(fname))
            verdicts[name].messages.append(f"submitted as {fname}.ipynb; graded as {name}.ipynb")
    messages += [f"{f}.ipynb is not part of the assignment; ignored" for f in sorted(spare)]
    for name, verdict in verdicts.items():
        if name in chosen:
            nb = _repair(chosen[name][1], template[name], verdict)
            verdict.data = (nbformat.writes(nb) + "\n").encode()
        elif verdict.outcome != "unreadable":
            verdict.outcome = "missing"
            verdict.messages.append(f"{name}.ipynb was not submitted")
            verdict.flags.append("missing notebook")
    return Prepared(verdicts, messages)


def _repair(nb: NotebookNode, tmpl: TemplateNotebook, verdict: Verdict) -> NotebookNode:
    """The notebook with every recognised cell carrying the assignment's metadata, in the
    assignment's order, deleted locked/graded cells restored, duplicates and unknown roles
    dropped, and the assignment's kernel."""
    nb = copy.deepcopy(nb)
    say = verdict.messages.append
    names = {c.name: c for c in tmpl.cells}
    order = {c.name: i for i, c in enumerate(tmpl.cells)}
    by_source = {_visible(c.source): c.name for c in tmpl.cells if c.locked and c.source.strip()}

    # which template cell each submitted cell is (None: the student's own)
    roles: list[str | None] = []
    owns: list[Any] = []
    stripped = unknown = 0
    for cell in nb.cells:
        meta = cell.setdefault("metadata", {})
        own = meta.pop("nbgrader", None)
        owns.append(own)
        gid = own.get("grade_id") if isinstance(own, dict) else None
        if gid is not None and gid not in names:
            unknown += 1
            gid = None
        if gid is None:
            gid = by_source.get(_normal(cell.get("source", "")))
            stripped += gid is not None
        if gid is not None and cell.cell_type != names[gid].cell_type and not names[gid].locked:
            gid = None  # an answer cell turned into another type: the student's own now
        roles.append(gid)
    if unknown:
        say(f"{unknown} cell(s) carry grade ids this assignment does not have (an older release?); "
            "they are not graded")
    # duplicates: the last copy keeps the role
    seen: set[str] = set()
    duplicated = set()
    for i in range(len(roles) - 1, -1, -1):
        role = roles[i]
        if role is not None and role in seen:
            duplicated.add(role)
            roles[i] = None
        elif role is not None:
            seen.add(role)
    if duplicated:
        say(f"cell(s) {', '.join(sorted(duplicated))} appear more than once; the last copy is graded")
    # answer cells that lost their metadata: the only unclaimed cell of their type between
    # the recognised neighbours of the assignment
    positions = {r: i for i, r in enumerate(roles) if r is not None}
    for tc in tmpl.cells:
        if tc.name in positions or not tc.solution:
            continue
        before = [positions[c.name] for c in tmpl.cells[:order[tc.name]] if c.name in positions]
        after = [positions[c.name] for c in tmpl.cells[order[tc.name] + 1:] if c.name in positions]
        lo, hi = max(before, default=-1), min(after, default=len(roles))
        free = [i for i in range(lo + 1, hi) if roles[i] is None and nb.cells[i].cell_type == tc.cell_type]
        if len(free) == 1:
            roles[free[0]] = tc.name
            positions[tc.name] = free[0]
            stripped += 1
    # blocks: a recognised cell and the student's cells after it, in the assignment's order
    head: list[NotebookNode] = []
    blocks: dict[str, list[NotebookNode]] = {}
    current: list[NotebookNode] = head
    edited = differed = 0
    for cell, role, own in zip(nb.cells, roles, owns):
        if role is None:
            current.append(cell)
            continue
        tc = names[role]
        if isinstance(own, dict) and own.get("grade_id") == role:
            canon = tc.metadata()
            differed += any(own.get(k) != canon.get(k) for k in ("grade", "locked", "solution", "task", "points"))
        if tc.locked:  # instructor cells are the assignment's, whatever was submitted
            edited += _normal(cell.get("source", "")) not in (_visible(tc.source), _normal(tc.source)) \
                or cell.cell_type != tc.cell_type
            cell = _from_template(tc, cell.get("id"))
        cell.metadata["nbgrader"] = tc.metadata()
        current = blocks[role] = [cell]
    if stripped:
        say(f"nbgrader metadata of {stripped} cell(s) was missing and has been rebuilt")
    if differed:
        say(f"nbgrader metadata of {differed} cell(s) differed from the assignment and was restored")
    present = [r for r in roles if r is not None]
    if present != sorted(present, key=order.__getitem__):
        say("cells were out of the assignment's order; the order was restored")
    cells, restored = list(head), []
    for tc in tmpl.cells:
        if tc.name in blocks:
            cells += blocks[tc.name]
        elif tc.locked or tc.grade or tc.task:
            cells.append(_from_template(tc))
            restored.append(tc.name)
            if tc.solution:
                verdict.flags.append(f"{tc.name}: the answer cell was deleted; restored empty")
    if restored:
        say(f"deleted cell(s) {', '.join(restored)} restored from the assignment")
    if edited:
        say(f"{edited} locked cell(s) differ from the assignment (edited, or an older release); the "
            "assignment's version is graded")
    nb.cells = cells
    if tmpl.kernelspec and nb.metadata.get("kernelspec", {}).get("name") != tmpl.kernelspec.get("name"):
        got = nb.metadata.get("kernelspec", {}).get("name")
        say(f"kernel {got!r} replaced by the assignment's {tmpl.kernelspec.get('name')!r}" if got
            else f"no kernel named; the assignment's {tmpl.kernelspec.get('name')!r} is used")
    if tmpl.kernelspec:
        nb.metadata["kernelspec"] = tmpl.kernelspec
    ids: set[str] = set()
    for cell in nb.cells:  # nbformat 4.5: unique ids
        if not isinstance(cell.get("id"), str) or cell.get("id") in ids or not cell["id"]:
            cell["id"] = uuid.uuid4().hex[:12]
        ids.add(cell["id"])
        if cell.cell_type == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
    nb.nbformat, nb.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
    return nb


def _from_template(tc: TemplateCell, cell_id: Any = None) -> NotebookNode:
    cell = {"cell_type": tc.cell_type, "id": cell_id if isinstance(cell_id, str) and cell_id else uuid.uuid4().hex[:12],
            "metadata": {"nbgrader": tc.metadata()}, "source": tc.source}
    if tc.cell_type == "code":
        cell.update(outputs=[], execution_count=None)
    return nbformat.from_dict(cell)
