"""``collect``: submissions from a folder or an LMS zip into work/submitted/<student>/<asg>/.

Recognised layouts (inside a folder or a zip):

- ``<student>/<assignment>/<notebook>.ipynb`` (and an optional ``timestamp.txt`` beside it);
- ``<student>/<notebook>.ipynb`` (the assignment from ``--assignment`` or the notebook name);
- flat LMS file names:
  ``smith_jane_12345_attempt_2026-11-01-10-00-00_optimizers.ipynb`` (name, LMS id, time),
  ``smithjane_12345_678901_optimizers.ipynb`` or ``smithjane_LATE_12345_678901_optimizers.ipynb``
  (name, LMS id, submission id) and ``Jane Smith - optimizers.ipynb``.

Notebook names are matched after dropping case, copy suffixes (``optimizers (1)``,
``optimizers-2``, ``optimizers copy``) and separators. Students are matched through the roster
(``student_id,name,lms_id``) by LMS id, then by name in any word order; without a roster the
id is the LMS id or the name as ``jane_smith``. Nothing is dropped silently: files that cannot
be placed are listed with the reason, and later attempts replace earlier ones visibly.
"""
from __future__ import annotations

import csv
import datetime
import re
import shutil
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.utils import parse_utc

from grader.config import Course, GraderError

__all__ = ["collect", "CollectReport", "Submission", "parse_filename", "canonical", "slug", "Roster"]

_ATTEMPT = re.compile(r"^(?P<who>.+?)_attempt_(?P<ts>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})_(?P<file>.+)$")
_CANVAS = re.compile(r"^(?P<who>[^\W_]+)(?P<late>_late)?_(?P<lms>\d+)_\d+_(?P<file>.+)$", re.IGNORECASE)
_DASH = re.compile(r"^(?P<who>.+?)\s+-\s+(?P<file>.+)$")
_COPY_SUFFIX = re.compile(r"(\s*\(\d+\)|[-_ ]\d+|[-_ ]copy|[-_ ]checkpoint)$")


def slug(text: str) -> str:
    """``Jane  Smith-Ödön`` -> ``jane_smith_odon``: ASCII, lower case, ``_`` between words."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")


def canonical(name: str) -> str:
    """A notebook name without case and separators: ``Opti-Mizers`` -> ``optimizers``."""
    return slug(name).replace("_", "")


def _variants(name: str) -> list[str]:
    """Canonical forms of ``name``, then of it with copy suffixes stripped one by one."""
    forms, name = [canonical(name)], name.strip().lower()
    while (stripped := _COPY_SUFFIX.sub("", name)) != name:
        name = stripped
        forms.append(canonical(name))
    return forms


def _name_key(name: str) -> str:
    return " ".join(sorted(slug(name).split("_")))


@dataclass(frozen=True)
class Parsed:
    """What a path says about its submission; ``student`` is a folder name when given."""

    file: str
    student: str | None = None
    name: str | None = None
    lms_id: str | None = None
    assignment: str | None = None
    timestamp: str | None = None


def parse_filename(parts: tuple[str, ...]) -> Parsed | None:
    """Read student, assignment, notebook and time from a relative path's parts (None: unknown)."""
    stem = Path(parts[-1]).stem
    if len(parts) >= 3:
        return Parsed(file=stem, student=parts[-3], assignment=parts[-2])
    if len(parts) == 2:
        return Parsed(file=stem, student=parts[0])
    if m := _ATTEMPT.match(stem):
        tokens = m["who"].split("_")
        lms = tokens.pop() if tokens[-1].isdigit() else None
        d, t = m["ts"][:10], m["ts"][11:].replace("-", ":")
        return Parsed(file=m["file"], name=" ".join(tokens), lms_id=lms, timestamp=f"{d} {t}")
    if m := _CANVAS.match(stem):
        return Parsed(file=m["file"], name=m["who"], lms_id=m["lms"])
    if m := _DASH.match(stem):
        return Parsed(file=m["file"], name=m["who"])
    return None


class Roster:
    """Students of the course from a CSV with columns ``student_id,name,lms_id``."""

    def __init__(self, path: Path):
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
        missing = {"student_id", "name", "lms_id"} - set(rows[0] if rows else {})
        if missing:
            raise GraderError(f"{path}: roster needs columns student_id,name,lms_id; missing {sorted(missing)}")
        self.rows = rows
        self.ids = {r["student_id"].strip() for r in rows}
        self.by_lms = {r["lms_id"].strip(): r["student_id"].strip() for r in rows if r["lms_id"].strip()}
        self.by_name = {_name_key(r["name"]): r["student_id"].strip() for r in rows}

    def find(self, parsed: Parsed) -> str | None:
        """The roster's student id for a parsed path, by LMS id, id or name."""
        if parsed.lms_id and parsed.lms_id in self.by_lms:
            return self.by_lms[parsed.lms_id]
        if parsed.student and parsed.student in self.ids:
            return parsed.student
        for text in (parsed.name, parsed.student):
            if text and _name_key(text) in self.by_name:
                return self.by_name[_name_key(text)]
        return None


@dataclass
class Submission:
    """One notebook placed in work/submitted."""

    source: str
    student: str
    assignment: str
    notebook: str
    timestamp: str | None


@dataclass
class CollectReport:
    """What collect did: placed notebooks, files it could not place, and notes worth reading."""

    collected: list[Submission] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)   # (source, reason)
    notes: list[str] = field(default_factory=list)


def _notebook_index(course: Course) -> dict[str, dict[str, str]]:
    """assignment -> canonical notebook name -> notebook name."""
    return {a: {canonical(n): n for n in course.notebook_names(a)} for a in course.assignments()}


def _place(parsed: Parsed, index: dict[str, dict[str, str]], assignment: str | None) -> tuple[str, str] | str:
    """(assignment, notebook) for a parsed path, or the reason it cannot be placed."""
    asg = parsed.assignment or assignment
    if asg is not None and asg not in index:
        return f"unknown assignment {asg!r} (known: {', '.join(index)})"
    for key in _variants(parsed.file):  # an exact name wins over one with a copy suffix removed
        candidates = [a for a in ([asg] if asg else index) if key in index[a]]
        if len(candidates) == 1:
            return candidates[0], index[candidates[0]][key]
        if len(candidates) > 1:
            return f"notebook name {parsed.file!r} is in several assignments {candidates}; pass --assignment"
    where = f"assignment {asg}" if asg else "any assignment"
    return f"notebook name {parsed.file!r} matches no notebook of {where}"


def _student(parsed: Parsed, roster: Roster | None, report: CollectReport, source: str) -> str | None:
    if roster is not None:
        found = roster.find(parsed)
        if found:
            return found
        report.notes.append(f"{source}: not in the roster; collected under the id from the file name")
    raw = parsed.student or parsed.lms_id or parsed.name
    return slug(raw) if raw else None


def collect(course: Course, source: Path, *, assignment: str | None = None,
            roster: Path | None = None) -> CollectReport:
    """Copy every notebook under ``source`` (a folder or a .zip) to
    ``work/submitted/<student>/<assignment>/<notebook>.ipynb`` with its ``timestamp.txt``."""
    if not source.exists():
        raise GraderError(f"{source} does not exist")
    with tempfile.TemporaryDirectory(prefix="grader-collect-") as tmp:
        if source.is_file() and zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as zf:
                zf.extractall(tmp)
            base = Path(tmp)
        elif source.is_dir():
            base = source
        else:
            raise GraderError(f"{source} is neither a folder nor a zip file")
        return _collect_tree(course, base, assignment, Roster(roster) if roster else None)


def _collect_tree(course: Course, base: Path, assignment: str | None, roster: Roster | None) -> CollectReport:
    report = CollectReport()
    index = _notebook_index(course)
    chosen: dict[tuple[str, str, str], tuple[Submission, Path]] = {}
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base)
        if not path.is_file() or any(p.startswith((".", "__MACOSX")) for p in rel.parts):
            continue
        if path.suffix != ".ipynb":
            if path.name != "timestamp.txt":
                report.unmatched.append((str(rel), "not a notebook"))
            continue
        parsed = parse_filename(rel.parts)
        if parsed is None:
            report.unmatched.append((str(rel), "cannot tell the student from the file name"))
            continue
        placed = _place(parsed, index, assignment)
        if isinstance(placed, str):
            report.unmatched.append((str(rel), placed))
            continue
        student = _student(parsed, roster, report, str(rel))
        if not student:
            report.unmatched.append((str(rel), "no student id in the path"))
            continue
        stamp = path.parent / "timestamp.txt"
        timestamp = parsed.timestamp or (stamp.read_text().strip() if stamp.exists() else None)
        sub = Submission(str(rel), student, placed[0], placed[1], timestamp)
        key = (student, placed[0], placed[1])
        if key in chosen:
            old = chosen[key][0]
            winner, loser = (sub, old) if _when(old.timestamp) <= _when(timestamp) else (old, sub)
            report.notes.append(f"{loser.source}: replaced by the later attempt {winner.source}")
            if winner is old:
                continue
        chosen[key] = (sub, path)
    latest: dict[Path, str] = {}  # nbgrader keeps one time per assignment: the last notebook's
    for (student, asg, notebook), (sub, path) in sorted(chosen.items()):
        dest = course.submitted / student / asg
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / f"{notebook}.ipynb")
        if sub.timestamp and _when(sub.timestamp) >= _when(latest.get(dest)):
            latest[dest] = sub.timestamp
        report.collected.append(sub)
    for dest, timestamp in latest.items():
        (dest / "timestamp.txt").write_text(timestamp + "\n")
    return report


def _when(timestamp: str | None) -> datetime.datetime:
    """A timestamp as a naive UTC datetime (nbgrader's convention); None sorts first."""
    return parse_utc(timestamp) if timestamp else datetime.datetime.min
