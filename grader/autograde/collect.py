"""``collect``: submissions from a folder or an LMS zip into work/submitted/<student>/<asg>/.

Recognised layouts (inside a folder or a zip; one top folder holding several student folders
or LMS-named files, as zipping an export folder makes, is stepped into):

- ``<student>/<assignment>/<notebook>.ipynb`` (and an optional ``timestamp.txt`` beside it);
- ``<student>/<notebook>.ipynb`` (the assignment from ``--assignment`` or the notebook name);
- Moodle folders ``Jane Smith_12345_assignsubmission_file_/<notebook>.ipynb`` (name, LMS id);
- flat LMS file names:
  ``smith_jane_12345_attempt_2026-11-01-10-00-00_optimizers.ipynb`` (name, LMS id, time),
  ``smithjane_12345_678901_optimizers.ipynb`` or ``smithjane_LATE_12345_678901_optimizers.ipynb``
  (Canvas: name, LMS id, submission id), ``Jane Smith_12345_assignsubmission_file_optimizers.ipynb``
  (Moodle: name, LMS id) and ``Jane Smith - optimizers.ipynb``.

Notebook names are matched after dropping case, copy suffixes (``optimizers (1)``,
``optimizers-2``, ``optimizers copy``) and separators.

**Who.** With a roster (``student_id,name,lms_id``) every id comes from the roster: an LMS id in
the export decides; otherwise the student id or the full name after Unicode normalization (NFKC,
case folded, words split at spaces and ``_``), then the same words in any order. Files that match
no roster row, or several, are not collected. Without a roster the id is the LMS id, or the name's
words joined by ``_`` when they are plain ASCII (``Ann Lee`` -> ``ann_lee``), else what ASCII
survives plus a hash of the whole name (``José García`` -> ``jose_garcia_<hash>``, ``张伟`` ->
``student_<hash>``): names that differ only in accents, or have no Latin letters, keep ids of
their own. Two uploads (folders, or files naming the student differently) that resolve to one
student stop that student's collection; a folder or file name inside one student's upload that
names another student is refused, and so (without a roster) is an upload named as a copy of
another's (``s1_ok_copy - optimizers.ipynb``).

**Links.** Only regular files are read: a symbolic link (to a file or a folder), a hard link
(``st_nlink > 1``), a device, FIFO or socket, and a zip entry whose mode says so or whose path
leaves the export, is refused and flagged for its student. Folders are walked by file descriptor
without following links, so nothing outside the submission tree is ever read.

**Bounded zips.** A zip is read within :class:`ZipLimits` (what its notebooks unpack to, how
many entries it has): past either nothing is collected, and no entry is unpacked past the limit,
whatever its header says. An entry that cannot be unpacked is flagged for its student only.

**Per student.** A problem with one student's files (a link, an unreadable file, an unknown
layout, a ``timestamp.txt`` that is not a time, which holds back the notebooks beside it) is
flagged for that student and the rest of the batch is collected. Several files for one student
and notebook: the latest when the export times each one (attempt names, ``timestamp.txt``) and
no two tie for last, one copy when all are identical, the one named exactly as the notebook
when the others carry a copy suffix (``part1 (1).ipynb``: those are kept in ``work/set_aside/``
and the student is flagged); otherwise none is graded, all are kept in ``work/set_aside/`` and
the student is flagged, for the instructor to decide.

**Collected before.** A notebook never replaces a different one an earlier collect put in
``work/submitted`` unless it is known to be newer: when both are timed (``timestamp.txt``,
attempt names) the later is kept and a note gives both times; when either is untimed (Canvas
exports have no times) the earlier stays, the new file goes to ``work/set_aside/`` and the
student is flagged, unless ``--replace`` says the export is newer (the replaced file is set
aside, and a ``timestamp.txt`` that timed it is removed). An identical file changes nothing.

**Late.** Canvas's ``LATE`` in a file name is kept as ``lms_late.txt`` beside the notebooks
(the export says late, not when); autograde, given a due date and a late penalty and finding
no ``timestamp.txt``, charges such a submission as late by the least the marker implies: one
started day (:func:`grader.autograde.pipeline.make_job`).
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import io
import os
import re
import stat
import unicodedata
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from nbgrader.utils import parse_utc

from grader.config import LMS_LATE, Course, UsageError, read_input
from grader.defaults import ZipLimits

__all__ = ["CollectReport", "Flag", "Roster", "Submission", "ZipLimits", "canonical", "collect", "name_key",
           "parse_filename", "slug", "student_id"]

_ATTEMPT = re.compile(r"^(?P<who>.+?)_attempt_(?P<ts>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})_(?P<file>.+)$")
_MOODLE = re.compile(r"^(?P<who>.+?)_(?P<lms>\d+)_assignsubmission_[a-z]+_(?P<file>.*)$")
_CANVAS = re.compile(r"^(?P<who>[^\W_]+)(?P<late>_late)?_(?P<lms>\d+)_\d+_(?P<file>.+)$", re.IGNORECASE)
_DASH = re.compile(r"^(?P<who>.+?)\s+-\s+(?P<file>.+)$")
_COPY_SUFFIX = re.compile(r"(\s*\(\d+\)|[-_ ]\d+|[-_ ]copy|[-_ ]checkpoint)$")
# Only explicit copy marks on a student's name: ``jane_smith_2`` may well be a real student.
_NAME_COPY = re.compile(r"(\s*\(\d+\)|[-_ ]copy)$", re.IGNORECASE)
_PLAIN_KEY = re.compile(r"[a-z0-9][a-z0-9.-]*( [a-z0-9][a-z0-9.-]*)*")  # kept as is, spaces -> _
_TIMESTAMP = "timestamp.txt"
_SET_ASIDE = "set_aside"


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


def name_key(text: str) -> str:
    """A name as compared: NFKC, case folded, words split at spaces and ``_``, nothing dropped
    (``JOSÉ_García`` -> ``josé garcía``, never ``jose garcia``)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.replace("_", " ").split())


def student_id(text: str) -> str:
    """The id of a student known only by a name or folder name, without a roster: stable, never
    empty, and different for names that differ in anything but case and spacing."""
    key = name_key(text)
    if _PLAIN_KEY.fullmatch(key):
        return key.replace(" ", "_")
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{slug(key) or 'student'}_{digest}"


@dataclass(frozen=True)
class Parsed:
    """What a path says about its submission; ``student`` is a folder name when given."""

    file: str
    student: str | None = None
    name: str | None = None
    lms_id: str | None = None
    assignment: str | None = None
    timestamp: str | None = None
    late: bool = False  # Canvas's LATE in the file name: late, time unknown


def parse_filename(parts: tuple[str, ...]) -> Parsed | None:
    """Read student, assignment, notebook and time from a relative path's parts: a flat LMS file
    name, ``student/notebook`` or ``student/assignment/notebook`` (None: none of these)."""
    stem = Path(parts[-1]).stem
    if len(parts) == 3:
        return Parsed(file=stem, student=parts[0], assignment=parts[1])
    if len(parts) == 2:
        return Parsed(file=stem, student=parts[0])
    if len(parts) != 1:
        return None
    if m := _ATTEMPT.match(stem):
        tokens = m["who"].split("_")
        lms = tokens.pop() if tokens[-1].isdigit() else None
        d, t = m["ts"][:10], m["ts"][11:].replace("-", ":")
        return Parsed(file=m["file"], name=" ".join(tokens), lms_id=lms, timestamp=f"{d} {t}")
    if m := _MOODLE.match(stem):
        return Parsed(file=m["file"], name=m["who"], lms_id=m["lms"])
    if m := _CANVAS.match(stem):
        return Parsed(file=m["file"], name=m["who"], lms_id=m["lms"], late=bool(m["late"]))
    if m := _DASH.match(stem):
        return Parsed(file=m["file"], name=m["who"])
    return None


def _folder_who(name: str) -> Parsed:
    """Who a student folder's name says: a Moodle folder carries name and LMS id."""
    if m := _MOODLE.match(name):
        return Parsed(file="", name=m["who"], lms_id=m["lms"])
    return Parsed(file="", student=name)


@dataclass(frozen=True)
class _Row:
    id: str
    name: str
    lms_id: str
    key: str  # name_key(name)


class Roster:
    """Students of the course from a CSV with columns ``student_id,name,lms_id``."""

    def __init__(self, path: Path):
        rows = list(csv.DictReader(io.StringIO(read_input(path, "roster"), newline="")))
        missing = {"student_id", "name", "lms_id"} - set(rows[0] if rows else {})
        if missing:
            raise UsageError(f"{path}: roster needs columns student_id,name,lms_id (a header line, then a row "
                             f"per student); missing {sorted(missing)}")
        self.rows = rows  # as read, for export
        self.students = [_Row(_cell(r, "student_id"), _cell(r, "name"), _cell(r, "lms_id"),
                              name_key(_cell(r, "name"))) for r in rows]
        _check_roster(path, self.students)
        self.ids = {s.id for s in self.students}
        self.by_lms = {s.lms_id: s.id for s in self.students if s.lms_id}
        self.names = {s.id: s.name for s in self.students}

    def match(self, who: Parsed) -> list[str]:
        """The roster ids ``who`` may be: one (found), none, or several (ambiguous). An LMS id in
        the roster decides; otherwise the student id or the full name, then its words in any order."""
        if who.lms_id and who.lms_id in self.by_lms:
            return [self.by_lms[who.lms_id]]
        # a row with another LMS id is someone else; rows without one may still be this student
        rows = [s for s in self.students if not (who.lms_id and s.lms_id)]
        keys = {name_key(t) for t in (who.name, who.student) if t}
        found = {s.id for s in rows if s.key in keys or name_key(s.id) in keys}
        if not found:
            words = {tuple(sorted(k.split())) for k in keys}
            found = {s.id for s in rows if tuple(sorted(s.key.split())) in words}
        return sorted(found)


def _cell(row: dict[str, str | None], column: str) -> str:
    return (row[column] or "").strip()  # a short row reads None


def _check_roster(path: Path, students: list[_Row]) -> None:
    """Student ids must be usable folder names and unique, LMS ids unique: both decide whose
    grade a file is."""
    problems, seen_ids, seen_lms = [], {}, {}
    for line, s in enumerate(students, start=2):
        if not s.id or s.id in (".", "..") or s.id.startswith(".") or any(c in s.id for c in "/\\\0"):
            problems.append(f"line {line}: student_id {s.id!r} cannot be a folder name")
        if s.id in seen_ids:
            problems.append(f"line {line}: student_id {s.id!r} already on line {seen_ids[s.id]}")
        if s.lms_id and s.lms_id in seen_lms:
            problems.append(f"line {line}: lms_id {s.lms_id!r} already on line {seen_lms[s.lms_id]}")
        seen_ids.setdefault(s.id, line)
        if s.lms_id:
            seen_lms.setdefault(s.lms_id, line)
    if problems:
        raise UsageError(f"{path}: fix the roster: " + "; ".join(problems))


@dataclass
class Submission:
    """One notebook placed in work/submitted."""

    source: str
    student: str
    assignment: str
    notebook: str
    timestamp: str | None
    late: bool = False  # the LMS marked it late (its time unknown)


class Flag(NamedTuple):
    """A problem with one student's files: the student, the file in the export, what and why."""

    student: str
    source: str
    reason: str


@dataclass
class CollectReport:
    """What collect did: placed notebooks, problems per student, files of no known student, notes."""

    collected: list[Submission] = field(default_factory=list)
    flagged: list[Flag] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)   # (source, reason)
    notes: list[str] = field(default_factory=list)

    def flags_of(self, student: str) -> list[Flag]:
        """The problems reported for ``student``."""
        return [f for f in self.flagged if f.student == student]


# -- reading the export: regular files only ------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """A file of the export: its path parts, its bytes (notebooks and timestamps only), or why it
    is not read."""

    parts: tuple[str, ...]
    data: bytes | None = None
    refused: str | None = None

    @property
    def source(self) -> str:
        return "/".join(self.parts)


def _hidden(parts: tuple[str, ...]) -> bool:
    """Checkpoints, dot files and macOS resource forks: never submissions."""
    return any(p.startswith((".", "__MACOSX")) for p in parts)


def _wanted(parts: tuple[str, ...]) -> bool:
    return not _hidden(parts) and (parts[-1].endswith(".ipynb") or parts[-1] == _TIMESTAMP)


def _refusal(mode: int, links: int = 1) -> str | None:
    """Why a file of this mode and link count is not read (None: a plain regular file)."""
    if stat.S_ISLNK(mode):
        return "is a symbolic link; links are not followed"
    if stat.S_ISREG(mode):
        return None if links <= 1 else f"is a hard link ({links} names for one file); only plain files are read"
    kind = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device",
            stat.S_IFSOCK: "a socket"}.get(stat.S_IFMT(mode), "not a regular file")
    return f"is {kind}; only plain files are read"


def _folder_entries(root: Path) -> Iterator[Entry]:
    """Every file under ``root`` (the instructor's folder, which may itself be a link), walked by
    descriptor: a link met on the way is reported, never followed, even if swapped in mid-walk."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield from _walk(fd, ())
    finally:
        os.close(fd)


def _walk(dir_fd: int, prefix: tuple[str, ...]) -> Iterator[Entry]:
    for name in sorted(os.listdir(dir_fd)):
        parts = prefix + (name,)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
                try:
                    yield from _walk(sub, parts)
                finally:
                    os.close(sub)
            elif (why := _refusal(st.st_mode, st.st_nlink)) or not _wanted(parts):
                yield Entry(parts, refused=why)
            else:
                yield _read_file(dir_fd, name, parts)
        except OSError as exc:  # vanished, replaced by a link (ELOOP), unreadable
            yield Entry(parts, refused=f"cannot be read ({exc.strerror or exc})")


def _read_file(dir_fd: int, name: str, parts: tuple[str, ...]) -> Entry:
    """The bytes of a plain file, checked again on the open descriptor (no FIFO can block it)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if why := _refusal(st.st_mode, st.st_nlink):
            return Entry(parts, refused=why)
        return Entry(parts, data=fh.read())


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The entry's name; names without the UTF-8 flag are often UTF-8 anyway (not CP437)."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        return info.filename


def _too_big(path: Path, size: int, limits: ZipLimits) -> UsageError:
    return UsageError(
        f"{path.name}: its notebooks unpack to more than {limits.max_bytes / 2**20:,.0f} MB (at least "
        f"{size / 2**20:,.0f} MB), the most collect unpacks from one zip (a zip bomb, or an unusually "
        "large export?); nothing collected. If the export is genuine, raise the limit with "
        f"--max-unzipped-mb {max(2 * limits.max_bytes, size) // 2**20}")


def _zip_entries(path: Path, limits: ZipLimits = ZipLimits()) -> list[Entry]:
    """Every file entry of the zip, read in memory (nothing is extracted): entries that are links
    or devices by their mode bits, or whose path leaves the export, are refused. Past
    ``limits`` a UsageError, before anything is collected."""
    entries = []
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UsageError(f"{path.name} is not a readable zip file ({exc}): download the export again, or "
                         "unpack it and collect the folder") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise UsageError(f"{path.name} has {len(infos):,} entries, more than the {limits.max_members:,} collect "
                             "reads from one zip (a zip bomb?); nothing collected. If the export is genuine, raise "
                             f"the limit with --max-members {len(infos)}")
        declared = sum(i.file_size for i in infos if _wanted(tuple(_zip_name(i).replace("\\", "/").split("/"))))
        if declared > limits.max_bytes:
            raise _too_big(path, declared, limits)
        budget = limits.max_bytes
        for info in infos:
            name = _zip_name(info).replace("\\", "/")
            if name.endswith("/"):
                continue
            raw = name.split("/")
            parts = tuple(p for p in raw if p not in ("", ".", ".."))
            if not parts:
                continue
            mode = info.external_attr >> 16  # many zippers store permission bits only: no file type
            if name.startswith("/") or ".." in raw or re.match(r"[A-Za-z]:", name):
                entries.append(Entry(parts, refused=f"its path {name!r} leaves the export"))
            elif stat.S_IFMT(mode) and (why := _refusal(mode)):
                entries.append(Entry(parts, refused=why))
            elif not _wanted(parts):
                entries.append(Entry(parts))
            else:
                try:
                    with zf.open(info) as fh:
                        data = fh.read(budget + 1)  # never more than the limit, whatever the header says
                except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
                    entries.append(Entry(parts, refused=f"cannot be read from the zip ({exc})"))
                    continue
                budget -= len(data)
                if budget < 0:
                    raise _too_big(path, limits.max_bytes - budget, limits)
                entries.append(Entry(parts, data=data))
    return entries


# -- deciding who and what ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Candidate:
    source: str
    data: bytes
    timestamp: str | None
    late: bool = False


@dataclass
class _Upload:
    """One top-level entry of the export: a student's folder, or one flat LMS file."""

    name: str
    flat: bool
    entries: list[tuple[tuple[str, ...], Entry]]   # (path inside the folder; () when flat, entry)
    who: Parsed | None = None
    student: str | None = None

    @property
    def identity(self) -> tuple[str, str]:
        """What says who this is: an LMS id, a folder, or a name in flat file names."""
        if self.who.lms_id:
            return "lms", self.who.lms_id
        return ("folder", self.name) if self.who.student is not None else ("name", name_key(self.who.name))


class _Collection:
    """One run of collect: uploads resolved to students, their notebooks gathered and written."""

    def __init__(self, course: Course, assignment: str | None, roster: Roster | None, replace: bool = False):
        self.course, self.assignment, self.roster, self.replace = course, assignment, roster, replace
        self.index = {a: {canonical(n): n for n in course.notebook_names(a)} for a in course.assignments()}
        if assignment is not None and assignment not in self.index:
            raise UsageError(f"--assignment {assignment}: no such assignment (known: {', '.join(self.index)})")
        self.report = CollectReport()
        self.candidates: dict[tuple[str, str, str], list[_Candidate]] = defaultdict(list)
        self.known: set[str] = set(roster.ids) if roster else set()  # every student a path may name

    def run(self, entries: list[Entry]) -> CollectReport:
        uploads = self.uploads(entries)
        self.resolve(uploads)
        for up in uploads:
            if up.student:
                self.gather(up)
        self.write()
        return self.report

    def flag(self, student: str, source: str, reason: str) -> None:
        self.report.flagged.append(Flag(student, source, reason))

    # the uploads ----------------------------------------------------------------------------
    def uploads(self, entries: list[Entry]) -> list[_Upload]:
        """Entries grouped by their top-level name, inside a single wrapping folder if there is one."""
        wrapper = self._wrapper(entries)
        by_top: dict[tuple[str, bool], _Upload] = {}
        for entry in entries:
            if _hidden(entry.parts) and not entry.refused:
                continue
            parts = entry.parts[1:] if wrapper and entry.parts[0] == wrapper and len(entry.parts) > 1 else entry.parts
            if _hidden(parts[:1]):  # a link named like a hidden file, outside any student's folder
                self.report.unmatched.append((entry.source, entry.refused))
                continue
            top = (parts[0], len(parts) == 1)
            by_top.setdefault(top, _Upload(parts[0], flat=top[1], entries=[])).entries.append((parts[1:], entry))
        return list(by_top.values())

    def _wrapper(self, entries: list[Entry]) -> str | None:
        """The one top folder of an export zipped as a folder (``submissions/...``), not itself
        a student of the roster, holding folders (none an assignment) and files named as an LMS
        names them, with an LMS id (``ada_123_456_optimizers.ipynb``): two or more folders, or
        any LMS-named file or Moodle folder. Anything else is one student's own folder."""
        visible = [e.parts for e in entries if not _hidden(e.parts)]
        tops = {p[0] for p in visible}
        if len(tops) != 1 or any(len(p) < 2 for p in visible):
            return None
        top, seconds = tops.pop(), {p[1] for p in visible if len(p) > 2}
        files = [parse_filename(p[1:]) for p in visible if len(p) == 2]
        if not all(f and f.lms_id for f in files):
            return None  # <student>/<notebook>.ipynb
        if seconds & set(self.index) or (self.roster and self.roster.match(_folder_who(top))):
            return None
        lms_named = files or any(_folder_who(name).lms_id for name in seconds)
        return top if lms_named or len(seconds) >= 2 else None

    # who ------------------------------------------------------------------------------------
    def lookup(self, who: Parsed) -> list[str]:
        """Student ids ``who`` may be: from the roster, else the LMS id or an id made from the name."""
        if self.roster is not None:
            return self.roster.match(who)
        if who.lms_id:
            return [who.lms_id]
        text = who.student or who.name or ""
        return [student_id(text)] if name_key(text) else []

    def claimed(self, text: str, owner: str, *, flat: bool = False) -> str | None:
        """The student other than ``owner`` that a folder name (or, ``flat``, a file name) names,
        itself or behind a copy mark (``s1_ok_copy``, ``s1_ok (1)``)."""
        who = parse_filename((text,)) if flat else _folder_who(text)
        if who is None:
            return None
        refs = [who] + [Parsed(file="", student=bare) for label in (who.name, who.student)
                        if label and (bare := _NAME_COPY.sub("", label)) != label]
        return next((sid for ref in refs for sid in self.lookup(ref) if sid != owner and sid in self.known), None)

    def resolve(self, uploads: list[_Upload]) -> None:
        """Each upload's student, or why it has none; a name copying another student's is refused
        (without a roster, where it would make a student of its own); doubles stopped."""
        for up in uploads:
            up.who = parse_filename((up.name,)) if up.flat else _folder_who(up.name)
            if up.who is None and any(e.refused for _, e in up.entries):
                up.who = _folder_who(up.name)  # a linked student folder looks like a file
            if up.who is None:
                reason = "not a notebook" if not up.name.endswith(".ipynb") else \
                    "cannot tell the student from the file name"
                self.report.unmatched.append((up.name, reason))
                continue
            found = self.lookup(up.who)
            if len(found) == 1:
                up.student = found[0]
            else:
                refused = [e.refused for _, e in up.entries if up.flat and e.refused]
                self.report.unmatched.append((up.name, "; ".join([*refused, self._no_student(up.who, found)])))
        self.known |= {up.student for up in uploads if up.student}
        for up in uploads:
            if self.roster is None and up.student and (other := self.claimed(up.name, up.student, flat=up.flat)):
                self.report.unmatched.append((up.name, (
                    f"named like a copy of {other}'s upload; not collected: if it is {other}'s, put it in "
                    f"{other}'s upload; if it is another student's, collect with a --roster naming them")))
                up.student = None
        self._stop_doubles(uploads)

    def _no_student(self, who: Parsed, found: list[str]) -> str:
        said = ", ".join(f"{k} {v!r}" for k, v in (("LMS id", who.lms_id), ("name", who.name),
                                                    ("folder", who.student)) if v)
        if found:
            names = ", ".join(f"{sid} ({self.roster.names[sid]})" for sid in found)
            return (f"{said} matches {len(found)} students of the roster: {names}; not collected: put the "
                    "export's LMS ids in the roster's lms_id column, or copy the file by hand")
        if self.roster is not None:
            return f"{said} is not in the roster; not collected: add the student's row and collect again"
        return f"no student id in the path ({said or 'nothing'})"

    def _stop_doubles(self, uploads: list[_Upload]) -> None:
        """Two different uploads (two folders, or differently named files) of one student:
        collect neither, so that neither replaces the other."""
        by_student: dict[str, dict[tuple[str, str], str]] = defaultdict(dict)
        for up in uploads:
            if up.student:
                by_student[up.student].setdefault(up.identity, up.name)
        for sid, names in by_student.items():
            if len(names) > 1:
                self.flag(sid, " and ".join(names.values()), (
                    f"{len(names)} uploads resolve to student {sid}; nothing of {sid} is collected and "
                    "nothing already in work/submitted is changed: give the roster the LMS ids, or remove "
                    "the upload that is not theirs, and collect again"))
        for up in uploads:
            if up.student and len(by_student[up.student]) > 1:
                up.student = None

    # what -----------------------------------------------------------------------------------
    def gather(self, up: _Upload) -> None:
        """Candidate notebooks of one student's upload; every problem is flagged for that student."""
        sid = up.student
        stamps = {} if up.flat else self.timestamps(sid, up)
        for inner, entry in up.entries:
            if up.flat:
                if entry.refused or not up.name.endswith(".ipynb"):
                    self.flag(sid, entry.source, f"{entry.refused or 'not a notebook'}; not collected")
                else:
                    self.place(sid, entry, up.who, up.who.timestamp)
            elif inner[-1] == _TIMESTAMP and len(inner) <= 2 and not _hidden(inner):
                continue  # read by timestamps()
            elif entry.refused:
                self.flag(sid, entry.source, f"{entry.refused}; not collected")
            elif len(inner) > 2 or (len(inner) == 2 and inner[0] not in self.index):
                self.flag(sid, entry.source, self._bad_layout(sid, inner))
            elif not inner[-1].endswith(".ipynb"):
                self.flag(sid, entry.source, "not a notebook; not collected")
            elif stamps.get(inner[:-1], "") is not None:  # None: held back, its timestamp.txt is flagged
                self.place_in_folder(sid, entry, inner, stamps.get(inner[:-1]))

    def _bad_layout(self, sid: str, inner: tuple[str, ...]) -> str:
        for part in inner[:-1]:
            if other := self.claimed(part, sid):
                return (f"the folder {part!r} names student {other}, but it is in {sid}'s upload; refused: no "
                        "file in one student's upload is collected for another")
        if len(inner) == 2:
            return f"unknown assignment {inner[0]!r} (known: {', '.join(self.index)}); not collected"
        return (f"unknown layout (expected {sid}/<assignment>/<notebook>.ipynb or {sid}/<notebook>.ipynb); "
                "not collected")

    def timestamps(self, sid: str, up: _Upload) -> dict[tuple[str, ...], str | None]:
        """Folder -> its timestamp.txt; None where it is unusable (flagged, its notebooks held back:
        nbgrader would grade them on time)."""
        found: dict[tuple[str, ...], str | None] = {}
        for inner, entry in up.entries:
            if inner[-1] != _TIMESTAMP or len(inner) > 2 or _hidden(inner):
                continue
            problem, text = entry.refused, None
            if problem is None:
                text = entry.data.decode("utf-8-sig", "replace").strip()
                try:
                    parse_utc(text)
                except (ValueError, OverflowError):
                    problem = f"{text[:40]!r} is not a time (nbgrader reads e.g. 2026-11-01 10:00:00)"
            if problem:
                self.flag(sid, entry.source, f"{problem}; the notebooks beside it are not collected: fix or "
                                             "delete it and collect again")
            found[inner[:-1]] = None if problem else text
        return found

    def place_in_folder(self, sid: str, entry: Entry, inner: tuple[str, ...], timestamp: str | None) -> None:
        """A notebook in a student's folder. A file name in an LMS format is the student's own
        (then its notebook part counts) or refused as naming another student."""
        file, late = Path(inner[-1]).stem, False
        if (named := parse_filename((inner[-1],))) is not None:
            if other := self.claimed(inner[-1], sid, flat=True):
                self.flag(sid, entry.source, f"the file name names student {other}, but it is in {sid}'s upload; "
                                             "refused: no file in one student's upload is collected for another")
                return
            if self.lookup(Parsed(file="", name=named.name, lms_id=named.lms_id)) == [sid]:
                file, late = named.file, named.late
        self.place(sid, entry, Parsed(file=file, assignment=inner[0] if len(inner) == 2 else None, late=late),
                   timestamp)

    def place(self, sid: str, entry: Entry, parsed: Parsed, timestamp: str | None) -> None:
        """``entry`` as a candidate for its (assignment, notebook), or flagged with why it has none."""
        placed = self._notebook(parsed)
        if isinstance(placed, str):
            self.flag(sid, entry.source, f"{placed}; not collected")
        else:
            self.candidates[(sid, *placed)].append(_Candidate(entry.source, entry.data, timestamp, parsed.late))

    def _notebook(self, parsed: Parsed) -> tuple[str, str] | str:
        """(assignment, notebook) for a parsed path, or the reason it cannot be placed."""
        asg = parsed.assignment or self.assignment
        for key in _variants(parsed.file):  # an exact name wins over one with a copy suffix removed
            found = [a for a in ([asg] if asg else self.index) if key in self.index[a]]
            if len(found) == 1:
                return found[0], self.index[found[0]][key]
            if len(found) > 1:
                return f"notebook name {parsed.file!r} is in several assignments {found}; pass --assignment"
        where = f"assignment {asg}" if asg else "any assignment"
        return f"notebook name {parsed.file!r} matches no notebook of {where}"

    # choose and write -----------------------------------------------------------------------
    def choose(self, key: tuple[str, str, str], cands: list[_Candidate]) -> _Candidate | None:
        """One file per student and notebook: the only one, identical copies, or the latest when
        the export times every one and no two tie; otherwise none, all set aside, flagged."""
        latest = max(cands, key=lambda c: _when(c.timestamp))
        if len({c.data for c in cands}) == 1:
            if len(cands) > 1:
                self.report.notes.append(f"{' and '.join(c.source for c in cands)}: identical; collected once")
            return latest
        times = [_when(c.timestamp) for c in cands]
        if all(c.timestamp for c in cands) and times.count(max(times)) == 1:
            self.report.notes.extend(f"{c.source}: replaced by the later attempt {latest.source}"
                                     for c in cands if c is not latest)
            return latest
        exact = [c for c in cands if Path(c.source).name == f"{key[2]}.ipynb"]
        if len(exact) == 1:  # the others carry a copy suffix ("part1 (1).ipynb"): keep the named one, say so
            self.set_aside(key, [c for c in cands if c is not exact[0]], kept=exact[0])
            return exact[0]
        self.set_aside(key, cands)
        return None

    def set_aside(self, key: tuple[str, str, str], cands: list[_Candidate], kept: _Candidate | None = None) -> None:
        """Keep ``cands`` in work/set_aside/ for the instructor, and say so (and which file was
        ``kept`` for grading, if one was)."""
        sid, asg, notebook = key
        folder = self.course.work / _SET_ASIDE / sid / asg / notebook
        for i, c in enumerate(cands, start=1):
            self.set_aside_one(key, str(i), Path(c.source).name, c.data)
        dest = self.course.submitted / sid / asg / f"{notebook}.ipynb"
        files = " and ".join(c.source for c in ([kept] if kept else []) + cands)
        if kept is not None:
            self.flag(sid, files, (
                f"{len(cands) + 1} different files for {asg}/{notebook}.ipynb and the export does not say "
                f"which is the last; graded {kept.source}, the one named exactly {notebook}.ipynb; the "
                f"other(s) are in {folder}: if one is the right one, copy it to {dest} and grade again"))
            return
        earlier = f"; the copy collected before, {dest}, is left as it was" if dest.exists() else ""
        self.flag(sid, files, (
            f"{len(cands)} different files for {asg}/{notebook}.ipynb and the export does not say which is "
            f"the last; none is graded: they are in {folder}, numbered in this order; copy the right one "
            f"to {dest}{earlier}"))

    def write(self) -> None:
        """Chosen notebooks into work/submitted unless what is there is newer (:meth:`admit`), with
        the assignment's latest time as nbgrader's and the LMS's late marker beside them."""
        latest: dict[Path, str] = {}
        untimed: set[Path] = set()   # replaced by untimed files (--replace): the old time is wrong now
        late: dict[Path, bool] = {}
        for key, cands in sorted(self.candidates.items()):
            chosen = self.choose(key, cands)
            if chosen is None or (written := self.admit(key, chosen)) is None:
                continue
            sid, asg, notebook = key
            dest = self.course.submitted / sid / asg
            if written:
                _write(dest / f"{notebook}.ipynb", chosen.data)
                late[dest] = late.get(dest, False) or chosen.late
                if chosen.timestamp is None:
                    untimed.add(dest)
                elif _when(chosen.timestamp) >= _when(latest.get(dest)):
                    latest[dest] = chosen.timestamp
            self.report.collected.append(Submission(chosen.source, sid, asg, notebook, chosen.timestamp, chosen.late))
        for dest, timestamp in latest.items():
            _write(dest / _TIMESTAMP, (timestamp + "\n").encode())
        for dest in untimed - set(latest):
            if self.replace and (dest / _TIMESTAMP).is_file():
                (dest / _TIMESTAMP).unlink()
                self.report.notes.append(f"{dest / _TIMESTAMP}: removed, the files it timed were replaced by "
                                         "untimed ones (--replace)")
        for dest, is_late in late.items():
            self.mark_late(dest, is_late)

    def admit(self, key: tuple[str, str, str], chosen: _Candidate) -> bool | None:
        """Whether ``chosen`` is written over what an earlier collect put there: True (nothing
        there, or newer by both times, or ``--replace``), False (the same file: nothing changes),
        None (kept the earlier file, said why; an untimed one differing is set aside, flagged)."""
        sid, asg, notebook = key
        path = self.course.submitted / sid / asg / f"{notebook}.ipynb"
        if not path.is_file():
            return True
        before = path.read_bytes()
        if before == chosen.data:
            return False
        then, now = _collected_time(path.parent), chosen.timestamp
        if then and now and _when(then) != _when(now):
            if _when(now) > _when(then):
                self.report.notes.append(f"{chosen.source}: replaced {path}, collected before: the export's is "
                                         f"newer ({now} after {then})")
                return True
            self.report.notes.append(f"{chosen.source}: not collected: {path}, collected before, is newer "
                                     f"({then} after {now}); kept it")
            return None
        if self.replace:
            aside = self.set_aside_one(key, "replaced", path.name, before)
            self.report.notes.append(f"{chosen.source}: replaced {path}, collected before (--replace); the replaced "
                                     f"file is in {aside}")
            return True
        aside = self.set_aside_one(key, "not-collected", Path(chosen.source).name, chosen.data)
        why = (f"both say {now}" if then and now else
               "the export does not time it" if then else "the file collected before has no time")
        self.flag(sid, chosen.source, (
            f"differs from {path}, collected before, and which is newer is unknown ({why}); kept the earlier "
            f"file, this one is in {aside}: if this export is newer than what was collected, collect it again "
            "with --replace (or copy the file over), then grade again"))
        return None

    def set_aside_one(self, key: tuple[str, str, str], label: str, name: str, data: bytes) -> Path:
        """Keep one file in work/set_aside/<student>/<asg>/<notebook>/ as ``<label>-<name>``."""
        sid, asg, notebook = key
        path = self.course.work / _SET_ASIDE / sid / asg / notebook / f"{label}-{name}"
        _write(path, data)
        return path

    def mark_late(self, dest: Path, late: bool) -> None:
        """Keep what the LMS said: a late submission without a time gets ``lms_late.txt``, which
        autograde reads; files replaced (--replace) by ones not marked late lose it."""
        marker = dest / LMS_LATE
        if late:
            _write(marker, b"The LMS marked this submission late; the export does not say when it was submitted, "
                           b"so the exact time is unknown.\n")
            self.report.notes.append(f"{dest.relative_to(self.course.submitted)}: the LMS marked it late, time "
                                     f"unknown ({marker}); autograde with --due and --late-penalty charges it as "
                                     "one day late")
        elif self.replace and marker.is_file():
            marker.unlink()
            self.report.notes.append(f"{marker}: removed, the files the LMS marked late were replaced (--replace)")


def _collected_time(folder: Path) -> str | None:
    """The time in a folder's timestamp.txt (collected before), None if it has none or no time."""
    try:
        text = (folder / _TIMESTAMP).read_text(encoding="utf-8").strip()
        parse_utc(text)
    except (OSError, UnicodeError, ValueError, OverflowError):
        return None
    return text


def _write(path: Path, data: bytes) -> None:
    """Write a file of the work area afresh (never through a link left there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def collect(course: Course, source: Path, *, assignment: str | None = None, roster: Path | None = None,
            limits: ZipLimits = ZipLimits(), replace: bool = False) -> CollectReport:
    """Copy every notebook under ``source`` (a folder or a .zip, read within ``limits``) to
    ``work/submitted/<student>/<assignment>/<notebook>.ipynb`` with its ``timestamp.txt`` (or the
    LMS's late marker); ``replace``: the export is newer than what was collected before, take its
    files even where neither is timed. See the module docstring for who, links, and what is flagged."""
    if not source.exists():
        raise UsageError(f"{source} does not exist; give the folder or .zip the LMS export was saved as")
    run = _Collection(course, assignment, Roster(roster) if roster else None, replace)
    if source.is_file() and zipfile.is_zipfile(source):
        entries = _zip_entries(source, limits)
    elif source.is_dir():
        try:
            entries = list(_folder_entries(source))
        except OSError as exc:  # the folder itself; what is inside is flagged entry by entry
            raise UsageError(f"{source} cannot be read ({exc.strerror}); check its permissions") from None
    else:
        raise UsageError(f"{source} is neither a folder nor a readable zip file (a download cut short?); "
                         "download the export again, or unpack it and collect the folder")
    return run.run(entries)


def _when(timestamp: str | None) -> datetime.datetime:
    """A timestamp as a naive UTC datetime (nbgrader's convention); None sorts first."""
    return parse_utc(timestamp) if timestamp else datetime.datetime.min
