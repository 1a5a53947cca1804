"""``collect`` as LMS exports and shared folders feed it: who is who (issue 13: accent twins, names
without Latin letters, a roster), links refused (issue 13: a linked notebook, a linked folder, a
hard link to the solution), one student's files never costing a classmate (issue 14: a careless
or linked timestamp.txt, an unreadable notebook, an unknown layout, several files for one
notebook, files naming a classmate). The batches run through ``python -m grader collect`` and
the real autograde (slow tests), and each honest student's own score is asserted. The fixture
assignment is tests/fixtures/attacks (part1: scale, Stack, answer, why; part2: total).
"""
from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import shutil
import stat
import struct
import unicodedata
import zipfile
from pathlib import Path

import nbformat
import pytest

from fixtures.attacks import kit
from grader.cli import main
from grader.autograde.collect import ZipLimits, collect, name_key, student_id
from grader.config import Course, UsageError

ASG = kit.ASG
ZERO = {"part1": {"scale": 0.0, "stack": 0.0, "answer": 0.0, "why": 0.0}, "part2": {"total": 0.0}}  # blank
MISSING_PART1 = {"part1": {"scale": 0.0, "stack": 0.0, "answer": 0.0, "why": 0.0}}
BLANK = ({"scale_impl": None, "stack_impl": None, "answer_impl": None, "why": None}, {"total_impl": None})


# ---------------------------------------------------------------- helpers

def _full(course: Course) -> dict[str, bytes]:
    """Both notebooks with the model answers, as a student would upload them."""
    return {name: nbformat.writes(nb).encode() for name, nb in kit.standard(course).items()}


def _blank(course: Course) -> dict[str, bytes]:
    """Both notebooks with every answer cell left as released."""
    return {name: nbformat.writes(nb).encode() for name, nb in kit.standard(course, *BLANK).items()}


def _zip(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """A zip of ``files``; ``links``: entries that are symbolic links (name -> target)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix: the mode bits below are read
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _cli(course: Course, *args: str) -> tuple[int, str]:
    """``python -m grader ARGS`` on the course's work area: exit status and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main(["--root", str(course.root), "--work", str(course.work), *args])
    return rc, out.getvalue()


def _collect(course: Course, source: Path, *args: str) -> tuple[int, str]:
    """``python -m grader collect`` into the course's work area: exit status and what it printed."""
    return _cli(course, "collect", str(source), *args)


def _flag_lines(output: str, student: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith(f"FLAGGED {student}:")]


def _submitted(course: Course) -> dict[str, list[str]]:
    """Student -> the files collected for them."""
    return {d.name: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
            for d in sorted(course.submitted.iterdir())}


def _mini(tmp_path: Path) -> Course:
    """A course with the fixture's assignment and notebook names, for tests that grade nothing."""
    for name in ("part1", "part2"):
        (tmp_path / "solutions" / ASG).mkdir(parents=True, exist_ok=True)
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / "solutions" / ASG / f"{name}.ipynb")
    return Course.at(tmp_path, tmp_path / "work")


# ---------------------------------------------------------------- identity, no grading

def test_ids_without_a_roster_are_stable_unique_and_never_empty():
    names = ["José García", "Jose Garcia", "张伟", "李娜"]
    ids = [student_id(n) for n in names]
    assert len(set(ids)) == 4 and all(ids)
    assert ids[1] == "jose_garcia" and ids[0].startswith("jose_garcia_")   # the accent keeps its own id
    assert ids[2].startswith("student_") and ids[3].startswith("student_")
    assert [student_id(n) for n in names] == ids                           # stable
    assert student_id(unicodedata.normalize("NFD", "José García")) == ids[0]  # macOS file names
    assert student_id("JOSÉ  GARCÍA") == ids[0] and student_id("Ann Lee") == student_id("ann_lee") == "ann_lee"
    assert student_id("Mary-Jane O.") == "mary-jane_o." and student_id("...") != "..."  # never a hidden folder
    assert name_key("José García") != name_key("Jose Garcia")


def test_lms_ids_in_moodle_and_canvas_names_decide_over_the_name(tmp_path):
    course = _mini(tmp_path)
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,name,lms_id\njs,Jane Q. Smith,12345\njg,José García,777\nother,Jane Smith,555\n")
    src = _zip(tmp_path / "lms.zip", {
        "Jane Smith_12345_assignsubmission_file_/part1.ipynb": b"jane, Moodle folder",
        "Jane Smith_12345_assignsubmission_file_part2.ipynb": b"jane, Moodle file",
        "garciajose_777_4242_part1.ipynb": b"jose, Canvas",
        "smithjane_999_4343_part1.ipynb": b"an LMS id the roster does not have",
    })
    report = collect(course, src, roster=roster)
    assert (course.submitted / "js" / ASG / "part1.ipynb").read_bytes() == b"jane, Moodle folder"
    assert (course.submitted / "js" / ASG / "part2.ipynb").read_bytes() == b"jane, Moodle file"
    assert (course.submitted / "jg" / ASG / "part1.ipynb").read_bytes() == b"jose, Canvas"
    assert sorted(_submitted(course)) == ["jg", "js"]       # 'other' (LMS id 555) is not smithjane_999
    assert [source for source, _ in report.unmatched] == ["smithjane_999_4343_part1.ipynb"]


def test_one_file_matching_two_roster_rows_is_not_collected(tmp_path):
    course = _mini(tmp_path)
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,name,lms_id\nwz1,Wei Zhang,\nwz2,Wei Zhang,\nann,Ann Lee,\n")
    src = _zip(tmp_path / "lms.zip", {"Wei Zhang - part1.ipynb": b"whose?", "Ann Lee - part1.ipynb": b"ann"})
    report = collect(course, src, roster=roster)
    assert _submitted(course) == {"ann": [f"{ASG}/part1.ipynb"]}
    (source, reason), = report.unmatched
    assert source == "Wei Zhang - part1.ipynb"
    assert "matches 2 students of the roster: wz1 (Wei Zhang), wz2 (Wei Zhang)" in reason


def test_two_uploads_of_one_student_stop_that_student_and_overwrite_nothing(tmp_path):
    course = _mini(tmp_path)
    earlier = course.submitted / "ann_lee" / ASG / "part1.ipynb"
    _tree(course.submitted, {f"ann_lee/{ASG}/part1.ipynb": b"collected last week"})
    src = _tree(tmp_path / "in", {f"Ann Lee/{ASG}/part1.ipynb": b"one", f"ann_lee/{ASG}/part1.ipynb": b"other",
                                  f"bo/{ASG}/part1.ipynb": b"bo"})
    report = collect(course, src)
    assert earlier.read_bytes() == b"collected last week"
    assert (course.submitted / "bo" / ASG / "part1.ipynb").read_bytes() == b"bo"
    (flag,) = report.flags_of("ann_lee")
    assert flag.source == "Ann Lee and ann_lee" and "nothing of ann_lee is collected" in flag.reason
    assert [s.student for s in report.collected] == ["bo"]


def test_zip_links_devices_and_paths_out_of_the_export_are_refused(tmp_path):
    course = _mini(tmp_path)
    src = tmp_path / "lms.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr(f"ann/{ASG}/part1.ipynb", b"ann's own")
        for name, mode in ((f"ann/{ASG}/part2.ipynb", stat.S_IFLNK | 0o777), ("ann/pipe.ipynb", stat.S_IFIFO | 0o644)):
            info = zipfile.ZipInfo(name)
            info.create_system, info.external_attr = 3, mode << 16
            zf.writestr(info, b"../../solutions/00_attacks/part2.ipynb")
        zf.writestr("ann/../../evil/part2.ipynb", b"slip")
        zf.writestr(f"/bo/{ASG}/part1.ipynb", b"absolute")
    report = collect(course, src)
    assert _submitted(course) == {"ann": [f"{ASG}/part1.ipynb"]}   # nothing but ann's own notebook
    reasons = {f.source: f.reason for f in report.flags_of("ann")}
    assert reasons[f"ann/{ASG}/part2.ipynb"].startswith("is a symbolic link")
    assert reasons["ann/pipe.ipynb"].startswith("is a FIFO")
    assert reasons["ann/evil/part2.ipynb"].startswith("its path 'ann/../../evil/part2.ipynb' leaves the export")
    assert [f.reason for f in report.flags_of("bo")] == [
        f"its path '/bo/{ASG}/part1.ipynb' leaves the export; not collected"]


def test_fifos_and_links_in_a_folder_are_refused_without_blocking(tmp_path):
    course = _mini(tmp_path)
    src = _tree(tmp_path / "in", {f"ann/{ASG}/part1.ipynb": b"ann's own", "elsewhere/secret.ipynb": b"secret"})
    os.mkfifo(src / "ann" / ASG / "part2.ipynb")
    os.symlink(src / "elsewhere" / "secret.ipynb", src / "ann" / "part2.ipynb")
    report = collect(course, src, assignment=ASG)
    assert (course.submitted / "ann" / ASG / "part1.ipynb").read_bytes() == b"ann's own"
    assert not (course.submitted / "ann" / ASG / "part2.ipynb").exists()
    reasons = {f.source: f.reason for f in report.flags_of("ann")}
    assert reasons[f"ann/{ASG}/part2.ipynb"].startswith("is a FIFO")
    assert reasons["ann/part2.ipynb"].startswith("is a symbolic link")


def test_exit_status_says_clean_needs_attention_or_bad_input(tmp_path):
    course = _mini(tmp_path)
    clean = _tree(tmp_path / "clean", {f"ann/{ASG}/part1.ipynb": b"a"})
    messy = _tree(tmp_path / "messy", {f"bo/{ASG}/part1.ipynb": b"b", f"bo/{ASG}/timestamp.txt": b"soon"})
    bad_roster = tmp_path / "roster.csv"
    bad_roster.write_text("student_id,name,lms_id\nann,Ann Lee,1\nann,Ann Other,2\n")
    assert _collect(course, clean)[0] == 0
    rc, out = _collect(course, messy)
    assert rc == 1 and "FLAGGED bo: bo/00_attacks/timestamp.txt: 'soon' is not a time" in out
    assert _collect(course, tmp_path / "missing")[0] == 2
    rc, out = _collect(course, clean, "--roster", str(bad_roster))
    assert rc == 2 and "student_id 'ann' already on line 2" in out
    assert _collect(course, clean, "--assignment", "99_nope")[0] == 2


# ---------------------------------------------------------------- LMS wrappers, size limits, corrupt members

#: Files as Canvas (with its LATE marker) and Moodle (flat and folder forms) name them.
LMS_FILES = {
    "adalovelace_101_9001_part1.ipynb": b"ada part1",
    "adalovelace_101_9002_part2.ipynb": b"ada part2",
    "bobbyb_LATE_102_9003_part1.ipynb": b"bob part1, late",
    "Cy Young_103_assignsubmission_file_part2.ipynb": b"cy part2",
    "Dee Dee_104_assignsubmission_file_/part1.ipynb": b"dee part1",
}


@pytest.mark.parametrize("as_zip", [True, False], ids=["zip", "folder"])
def test_one_wrapper_folder_of_flat_lms_files_is_stepped_into(tmp_path, as_zip):
    course = _mini(tmp_path)
    files = {f"submissions/{name}": data for name, data in LMS_FILES.items()}
    src = _zip(tmp_path / "lms.zip", files) if as_zip else _tree(tmp_path / "export", files)
    report = collect(course, src)
    part1, part2 = f"{ASG}/part1.ipynb", f"{ASG}/part2.ipynb"
    late = f"{ASG}/lms_late.txt"  # Canvas's LATE, kept for autograde
    assert _submitted(course) == {"101": [part1, part2], "102": [late, part1], "103": [part2], "104": [part1]}
    assert [s.late for s in report.collected] == [False, False, True, False, False]
    assert (course.submitted / "102" / ASG / "part1.ipynb").read_bytes() == b"bob part1, late"
    assert (course.submitted / "104" / ASG / "part1.ipynb").read_bytes() == b"dee part1"
    assert report.flagged == [] and report.unmatched == []


@pytest.mark.parametrize("files", [
    {"ann/part1.ipynb": b"a1", "ann/part2.ipynb": b"a2"},                       # <student>/<notebook>
    {"ann/part1.ipynb": b"a1", "ann/adalovelace_101_9001_part2.ipynb": b"a2"},  # not all LMS-named
    {f"ann/{ASG}/part1.ipynb": b"a1"},                                          # <student>/<assignment>/
], ids=["plain", "mixed", "assignment"])
def test_one_student_folder_is_not_taken_for_a_wrapper(tmp_path, files):
    course = _mini(tmp_path)
    collect(course, _zip(tmp_path / "one.zip", files), assignment=ASG)
    assert list(_submitted(course)) == ["ann"]


def _bomb(path: Path, size: int) -> Path:
    """ann's notebook and bob's ``size`` bytes of zeros (a few KB deflated)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"ann/{ASG}/part1.ipynb", b"ann")
        zf.writestr(f"bob/{ASG}/part1.ipynb", bytes(size))
    return path


def test_a_zip_that_unpacks_past_the_limit_is_refused_and_nothing_collected(tmp_path):
    course = _mini(tmp_path)
    bomb = _bomb(tmp_path / "bomb.zip", 3 << 20)
    assert bomb.stat().st_size < 20_000
    with pytest.raises(UsageError, match=r"^bomb.zip: its notebooks unpack to more than 2 MB \(at least 3 MB\)"):
        collect(course, bomb, limits=ZipLimits(max_bytes=2 << 20))
    assert not course.submitted.exists()
    rc, out = _collect(course, bomb, "--max-unzipped-mb", "2")
    assert rc == 2 and out.count("\n") == 1 and "raise the limit with --max-unzipped-mb 4" in out
    assert not course.submitted.exists()
    assert _collect(course, bomb, "--max-unzipped-mb", "4")[0] == 0
    assert sorted(_submitted(course)) == ["ann", "bob"]


def test_a_header_that_understates_the_size_never_unpacks_more(tmp_path):
    """bob's entry says 16 bytes and inflates to 3 MB: at most 16 bytes are unpacked, the entry
    fails its checksum and is flagged; ann is collected."""
    course = _mini(tmp_path)
    data = bytearray(_bomb(tmp_path / "liar.zip", 3 << 20).read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local and central headers
        at = data.rfind(signature)  # bob's: the second entry
        data[at + offset:at + offset + 4] = struct.pack("<I", 16)
    (tmp_path / "liar.zip").write_bytes(bytes(data))
    report = collect(course, tmp_path / "liar.zip", limits=ZipLimits(max_bytes=1 << 20))
    assert list(_submitted(course)) == ["ann"]
    (flag,) = report.flags_of("bob")
    assert flag.reason.startswith("cannot be read from the zip") and "CRC" in flag.reason


def test_a_zip_with_too_many_entries_is_refused(tmp_path):
    course = _mini(tmp_path)
    many = _zip(tmp_path / "many.zip", {f"s{i}/{ASG}/part1.ipynb": b"x" for i in range(30)})
    with pytest.raises(UsageError, match=r"many.zip has 30 entries, more than the 20 .* --max-members 30"):
        collect(course, many, limits=ZipLimits(max_members=20))
    assert not course.submitted.exists()


def test_a_corrupt_member_costs_only_its_student(tmp_path):
    """One entry with a flipped byte (its checksum fails), one whose deflate stream is broken:
    both students are flagged, every other member is collected, the exit status says so."""
    course = _mini(tmp_path)
    files = {f"{who}/{ASG}/part1.ipynb": f"{who}'s notebook ".encode() * 40 for who in ("ann", "bob", "cy", "dan")}
    src = tmp_path / "lms.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, payload in files.items():
            zf.writestr(name, payload, compress_type=zipfile.ZIP_STORED if name.startswith("bob") else None)
    data = bytearray(src.read_bytes())
    data[data.find(b"bob's notebook") + 3] ^= 0xFF              # stored: the CRC no longer matches
    cy = data.find(b"cy/" + ASG.encode() + b"/part1.ipynb") + len(f"cy/{ASG}/part1.ipynb")
    data[cy + 2:cy + 8] = b"\xff" * 6                             # deflated: the stream is broken
    src.write_bytes(bytes(data))
    rc, out = _collect(course, src)
    assert rc == 1
    assert sorted(_submitted(course)) == ["ann", "dan"]
    assert (course.submitted / "dan" / ASG / "part1.ipynb").read_bytes() == files[f"dan/{ASG}/part1.ipynb"]
    for who in ("bob", "cy"):
        (line,) = _flag_lines(out, who)
        assert line.startswith(f"FLAGGED {who}: {who}/{ASG}/part1.ipynb: cannot be read from the zip"), line


# ---------------------------------------------------------------- collecting again: never older over newer

def _source(tmp_path: Path, name: str, files: dict[str, bytes], as_zip: bool) -> Path:
    return _zip(tmp_path / f"{name}.zip", files) if as_zip else _tree(tmp_path / name, files)


@pytest.mark.parametrize("as_zip", [True, False], ids=["zip", "folder"])
def test_timed_collections_keep_the_newer_file_and_say_why(tmp_path, as_zip):
    course = _mini(tmp_path)
    dest = course.submitted / "ann" / ASG
    tuesday = _source(tmp_path, "tue", {f"ann/{ASG}/part1.ipynb": b"tuesday", f"bo/{ASG}/part1.ipynb": b"bo",
                                        f"ann/{ASG}/timestamp.txt": b"2026-11-02 10:00:00"}, as_zip)
    assert _collect(course, tuesday)[0] == 0
    rc, out = _collect(course, tuesday)                      # the same export again: nothing changes
    assert rc == 0 and "note:" not in out and (dest / "part1.ipynb").read_bytes() == b"tuesday"
    monday = _source(tmp_path, "mon", {f"ann/{ASG}/part1.ipynb": b"monday", f"bo/{ASG}/part1.ipynb": b"bo",
                                       f"cy/{ASG}/part1.ipynb": b"cy", f"ann/{ASG}/timestamp.txt": b"2026-11-01 10:00:00"},
                     as_zip)
    rc, out = _collect(course, monday)
    assert rc == 0 and (dest / "part1.ipynb").read_bytes() == b"tuesday"
    assert (dest / "timestamp.txt").read_text() == "2026-11-02 10:00:00\n"
    assert (f"note: ann/{ASG}/part1.ipynb: not collected: {dest / 'part1.ipynb'}, collected before, is newer "
            "(2026-11-02 10:00:00 after 2026-11-01 10:00:00); kept it") in out
    assert (course.submitted / "cy" / ASG / "part1.ipynb").read_bytes() == b"cy"    # classmates as usual
    assert "bo/" not in out and (course.submitted / "bo" / ASG / "part1.ipynb").read_bytes() == b"bo"
    wednesday = _source(tmp_path, "wed", {f"ann/{ASG}/part1.ipynb": b"wednesday",
                                          f"ann/{ASG}/timestamp.txt": b"2026-11-03 10:00:00"}, as_zip)
    rc, out = _collect(course, wednesday)
    assert rc == 0 and (dest / "part1.ipynb").read_bytes() == b"wednesday"
    assert (dest / "timestamp.txt").read_text() == "2026-11-03 10:00:00\n"
    assert (f"replaced {dest / 'part1.ipynb'}, collected before: the export's is newer "
            "(2026-11-03 10:00:00 after 2026-11-02 10:00:00)") in out


def test_attempt_exports_collected_again_keep_the_later_attempt(tmp_path):
    course = _mini(tmp_path)
    dest = course.submitted / "ann_lee" / ASG
    assert _collect(course, _zip(tmp_path / "later.zip", {
        "ann_lee_attempt_2026-11-02-10-00-00_part1.ipynb": b"second attempt"}))[0] == 0
    rc, out = _collect(course, _zip(tmp_path / "earlier.zip", {
        "ann_lee_attempt_2026-11-01-10-00-00_part1.ipynb": b"first attempt",
        "bo_attempt_2026-11-01-10-00-00_part1.ipynb": b"bo"}))
    assert rc == 0 and (dest / "part1.ipynb").read_bytes() == b"second attempt"
    assert (dest / "timestamp.txt").read_text() == "2026-11-02 10:00:00\n"
    assert "is newer (2026-11-02 10:00:00 after 2026-11-01 10:00:00); kept it" in out
    assert (course.submitted / "bo" / ASG / "part1.ipynb").read_bytes() == b"bo"


@pytest.mark.parametrize("as_zip", [True, False], ids=["zip", "folder"])
def test_an_untimed_export_replaces_nothing_unless_told_it_is_newer(tmp_path, as_zip):
    course = _mini(tmp_path)
    dest = course.submitted / "101" / ASG / "part1.ipynb"
    first = {"adalovelace_101_9001_part1.ipynb": b"ada, first download", "bobbyb_102_9002_part1.ipynb": b"bob"}
    assert _collect(course, _source(tmp_path, "first", first, as_zip))[0] == 0
    again = _source(tmp_path, "again", {"adalovelace_101_9001_part1.ipynb": b"ada, second download",
                                        "bobbyb_102_9002_part1.ipynb": b"bob", "cyc_103_9003_part1.ipynb": b"cy"},
                    as_zip)
    rc, out = _collect(course, again)
    assert rc == 1 and dest.read_bytes() == b"ada, first download"
    aside = course.work / "set_aside" / "101" / ASG / "part1"
    assert (aside / "not-collected-adalovelace_101_9001_part1.ipynb").read_bytes() == b"ada, second download"
    (line,) = _flag_lines(out, "101")
    assert (f"differs from {dest}, collected before, and which is newer is unknown (the file collected before "
            "has no time); kept the earlier file") in line and "collect it again with --replace" in line
    assert _flag_lines(out, "102") == [] and "bobbyb" not in out                # identical: nothing to say
    assert (course.submitted / "103" / ASG / "part1.ipynb").read_bytes() == b"cy"
    rc, out = _collect(course, again, "--replace")
    assert rc == 0 and dest.read_bytes() == b"ada, second download"
    assert (aside / "replaced-part1.ipynb").read_bytes() == b"ada, first download"
    assert (f"note: adalovelace_101_9001_part1.ipynb: replaced {dest}, collected before (--replace); the replaced "
            f"file is in {aside / 'replaced-part1.ipynb'}") in out


def test_replacing_timed_work_with_an_untimed_late_export_keeps_only_what_the_lms_said(tmp_path):
    course = _mini(tmp_path)
    dest = course.submitted / "101" / ASG
    _tree(dest, {"part1.ipynb": b"from the shared folder", "timestamp.txt": b"2026-11-01 10:00:00"})
    late = _zip(tmp_path / "late.zip", {"adalovelace_LATE_101_9001_part1.ipynb": b"from Canvas"})
    rc, out = _collect(course, late)
    assert rc == 1 and "(the export does not time it)" in _flag_lines(out, "101")[0]
    assert not (dest / "lms_late.txt").exists()                 # nothing of that export was collected
    rc, out = _collect(course, late, "--replace")
    assert rc == 0 and (dest / "part1.ipynb").read_bytes() == b"from Canvas"
    assert not (dest / "timestamp.txt").exists() and "timestamp.txt: removed" in out
    assert "the exact time is unknown" in (dest / "lms_late.txt").read_text()
    assert f"note: 101/{ASG}: the LMS marked it late, time unknown" in out
    rc, out = _collect(course, _zip(tmp_path / "on_time.zip", {"adalovelace_101_9001_part1.ipynb": b"regraded"}),
                       "--replace")
    assert rc == 0 and not (dest / "lms_late.txt").exists() and "lms_late.txt: removed" in out


def test_an_lms_late_marker_is_charged_one_day_unless_a_timestamp_says_when(tmp_path):
    course = _mini(tmp_path)
    folder = _tree(tmp_path / "sub", {"part1.ipynb": b"{}", "lms_late.txt": b"late"})
    due = datetime.datetime(2026, 11, 1, 22, 59)
    job = kit.make_job(course, ASG, "ann", folder, b"", due=due, late_penalty="0.1")
    assert job.lms_late and job.timestamp == "2026-11-01 22:59:01"   # one started day late: the least
    assert job.late_note == "the LMS marked this late; its time is unknown, so it is charged as at most one day late"
    undated = kit.make_job(course, ASG, "ann", folder, b"", late_penalty="0.1")
    assert undated.lms_late and undated.timestamp is None and "autograde again with --due" in undated.late_note
    assert undated.sha256 != kit.make_job(course, ASG, "ann", _tree(tmp_path / "b", {"part1.ipynb": b"{}"}), b"").sha256
    (folder / "timestamp.txt").write_text("2026-11-01 08:00:00")
    timed = kit.make_job(course, ASG, "ann", folder, b"", due=due, late_penalty="0.1")
    assert not timed.lms_late and timed.timestamp == "2026-11-01 08:00:00" and timed.late_note == ""


# ---------------------------------------------------------------- issue 13, graded end to end

ROSTER_13 = """student_id,name,lms_id
s101,José García,
s102,Jose Garcia,
s103,张伟,
s104,李娜,
s105,Link Notebook,
s106,Link Assignment,
s107,Link Student,
s108,Hard Link,
s109,Zip Link,
s110,Ann Honest,
s111,Deep Link,
"""


@pytest.fixture(scope="module")
def names_and_links(tmp_path_factory):
    """One batch: the LMS zip of the four names (and a link entry), then a shared folder with
    links to the instructor's solution; collected with the roster, graded."""
    tmp = tmp_path_factory.mktemp("collect13")
    with kit.clean_jupyter(tmp):
        course = kit.build_course(tmp / "course")
        full, blank = _full(course), _blank(course)
        solution = course.solutions / ASG
        jose_nfd = unicodedata.normalize("NFD", "José García")  # as a Mac names it
        lms = {f"{jose_nfd} - {n}.ipynb": full[n] for n in full}
        lms |= {f"Jose Garcia - {n}.ipynb": blank[n] for n in blank}
        lms |= {f"张伟 - {n}.ipynb": full[n] for n in full} | {f"李娜 - {n}.ipynb": blank[n] for n in blank}
        lms["Zip Link - part2.ipynb"] = blank["part2"]
        zpath = _zip(tmp / "lms.zip", lms, links={"Zip Link - part1.ipynb": str(solution / "part1.ipynb")})
        shared = _tree(tmp / "shared", {
            f"s105/{ASG}/part2.ipynb": full["part2"],
            f"s108/{ASG}/part2.ipynb": blank["part2"],
            f"s110/{ASG}/part1.ipynb": full["part1"], f"s110/{ASG}/part2.ipynb": full["part2"],
            f"s111/{ASG}/part1.ipynb": full["part1"], f"s111/{ASG}/part2.ipynb": full["part2"],
        })
        os.symlink(solution / "part1.ipynb", shared / "s105" / ASG / "part1.ipynb")   # a linked notebook
        (shared / "s106").mkdir()
        os.symlink(solution, shared / "s106" / ASG)                                   # a linked assignment
        elsewhere = _tree(tmp / "elsewhere", {f"{ASG}/{n}.ipynb": (solution / f"{n}.ipynb").read_bytes()
                                              for n in full})
        os.symlink(elsewhere, shared / "s107")                                        # a linked student
        os.link(solution / "part1.ipynb", shared / "s108" / ASG / "part1.ipynb")      # a hard link
        (shared / "s111" / ASG / "extra" / "deeper").mkdir(parents=True)
        os.symlink(solution / "part1.ipynb", shared / "s111" / ASG / "extra" / "deeper" / "part1.ipynb")
        roster = tmp / "roster.csv"
        roster.write_text(ROSTER_13)
        runs = [_collect(course, zpath, "--roster", str(roster)), _collect(course, shared, "--roster", str(roster))]
        yield course, runs, kit.grade_all(course)


@pytest.mark.slow
def test_accent_twins_and_cjk_names_each_keep_their_own_score(names_and_links):
    _, _, results = names_and_links
    assert kit.scores(results["s101"]) == kit.FULL     # José García: complete
    assert kit.scores(results["s102"]) == ZERO         # Jose Garcia: blank, not José's 5 points
    assert kit.scores(results["s103"]) == kit.FULL     # 张伟: complete
    assert kit.scores(results["s104"]) == ZERO         # 李娜: blank
    assert kit.scores(results["s110"]) == kit.FULL     # an honest folder upload
    assert kit.scores(results["s111"]) == kit.FULL     # own work, with a link deep inside


@pytest.mark.slow
def test_each_link_is_refused_flagged_and_scores_nothing(names_and_links):
    _, runs, results = names_and_links
    output = "\n".join(out for _, out in runs)
    assert [rc for rc, _ in runs] == [1, 1]             # collected, with students to look at
    expected = {"s105": f"s105/{ASG}/part1.ipynb: is a symbolic link", "s106": f"s106/{ASG}: is a symbolic link",
                "s107": "s107: is a symbolic link", "s108": f"s108/{ASG}/part1.ipynb: is a hard link (2 names",
                "s109": "Zip Link - part1.ipynb: is a symbolic link",
                "s111": f"s111/{ASG}/extra/deeper/part1.ipynb: is a symbolic link"}
    for student, start in expected.items():
        (line,) = _flag_lines(output, student)
        assert line.startswith(f"FLAGGED {student}: {start}"), line
    for student in ("s105", "s108", "s109"):            # the linked notebook: 0, and flagged missing
        assert kit.scores(results[student])["part1"] == MISSING_PART1["part1"]
        assert kit.notebook_of(results[student], "part1").flags == ["missing notebook"]
    assert kit.scores(results["s105"])["part2"] == {"total": 1.0}   # their own other notebook counts
    assert "s106" not in results and "s107" not in results          # nothing of theirs was collected


@pytest.mark.slow
def test_nothing_else_is_collected_and_nothing_outside_the_tree_is_read(names_and_links):
    course, _, results = names_and_links
    assert _submitted(course) == {
        "s101": [f"{ASG}/part1.ipynb", f"{ASG}/part2.ipynb"], "s102": [f"{ASG}/part1.ipynb", f"{ASG}/part2.ipynb"],
        "s103": [f"{ASG}/part1.ipynb", f"{ASG}/part2.ipynb"], "s104": [f"{ASG}/part1.ipynb", f"{ASG}/part2.ipynb"],
        "s105": [f"{ASG}/part2.ipynb"], "s108": [f"{ASG}/part2.ipynb"], "s109": [f"{ASG}/part2.ipynb"],
        "s110": [f"{ASG}/part1.ipynb", f"{ASG}/part2.ipynb"], "s111": [f"{ASG}/part1.ipynb", f"{ASG}/part2.ipynb"],
    }
    solutions = {p.read_bytes() for p in (course.solutions / ASG).glob("*.ipynb")}
    assert not any(p.read_bytes() in solutions for p in course.submitted.rglob("*.ipynb"))
    assert sorted(results) == ["s101", "s102", "s103", "s104", "s105", "s108", "s109", "s110", "s111"]


@pytest.fixture(scope="module")
def names_without_roster(tmp_path_factory):
    """The four names of issue 13 from an LMS zip without a roster: ids made from the names."""
    tmp = tmp_path_factory.mktemp("collect13b")
    with kit.clean_jupyter(tmp):
        course = kit.build_course(tmp / "course")
        full, blank = _full(course), _blank(course)
        files = {f"{who} - {n}.ipynb": (full if done else blank)[n] for who, done in
                 (("José García", True), ("Jose Garcia", False), ("张伟", True), ("李娜", False)) for n in full}
        rc, _ = _collect(course, _zip(tmp / "lms.zip", files))
        yield course, rc, kit.grade_all(course)


@pytest.mark.slow
def test_without_a_roster_accent_twins_and_cjk_names_get_ids_and_scores_of_their_own(names_without_roster):
    course, rc, results = names_without_roster
    assert rc == 0
    ids = {who: student_id(who) for who in ("José García", "Jose Garcia", "张伟", "李娜")}
    assert sorted(results) == sorted(ids.values()) and sorted(_submitted(course)) == sorted(ids.values())
    assert kit.scores(results[ids["José García"]]) == kit.FULL
    assert kit.scores(results[ids["Jose Garcia"]]) == ZERO
    assert kit.scores(results[ids["张伟"]]) == kit.FULL
    assert kit.scores(results[ids["李娜"]]) == ZERO


# ---------------------------------------------------------------- issue 14, graded end to end

@pytest.fixture(scope="module")
def careless_batch(tmp_path_factory):
    """One zip of folder uploads (the problems sort before their classmates), then a shared folder;
    no roster; collected and graded."""
    tmp = tmp_path_factory.mktemp("collect14")
    with kit.clean_jupyter(tmp):
        course = kit.build_course(tmp / "course")
        full, blank = _full(course), _blank(course)
        marked = kit.standard(course)["part1"]
        marked.metadata["marker"] = "c_unreadable's own"
        unreadable = nbformat.writes(marked).encode()
        files = {
            f"a_careless/{ASG}/part1.ipynb": full["part1"], f"a_careless/{ASG}/part2.ipynb": full["part2"],
            f"a_careless/{ASG}/timestamp.txt": b"sometime last week",
            f"b_linked/{ASG}/part1.ipynb": full["part1"], f"b_linked/{ASG}/part2.ipynb": full["part2"],
            f"c_unreadable/{ASG}/part1.ipynb": unreadable, f"c_unreadable/{ASG}/part2.ipynb": full["part2"],
            f"d_layout/work/{ASG}/part1.ipynb": full["part1"], "d_layout/part2.ipynb": full["part2"],
            f"s1_ok/{ASG}/part1.ipynb": full["part1"], f"s1_ok/{ASG}/part2.ipynb": full["part2"],
            f"s1_ok/{ASG}/timestamp.txt": b"2026-11-01 10:00:00",
            "s1_ok/part1 (1).ipynb": blank["part1"],                    # issue 14's two files
            "s1_ok_copy - part1.ipynb": blank["part1"],
            f"mallory/{ASG}/part1.ipynb": blank["part1"], f"mallory/{ASG}/part2.ipynb": blank["part2"],
            f"mallory/s1_ok/{ASG}/part1.ipynb": blank["part1"],        # claims s1_ok's folder
            "mallory/s2_ok - part2.ipynb": blank["part2"],             # claims s2_ok by name
            f"s2_ok/{ASG}/part1.ipynb": full["part1"], f"s2_ok/{ASG}/part2.ipynb": full["part2"],
            "s3_ok_attempt_2026-11-01-10-00-00_part1.ipynb": blank["part1"],   # the LMS's attempts
            "s3_ok_attempt_2026-11-02-09-00-00_part1.ipynb": full["part1"],
            "s3_ok_attempt_2026-11-02-09-00-00_part2.ipynb": full["part2"],
            f"s4_ok/{ASG}/part1.ipynb": blank["part1"], f"s4_ok/{ASG}/timestamp.txt": b"2026-11-01 08:00:00",
            "s4_ok/part1.ipynb": full["part1"], "s4_ok/part2.ipynb": full["part2"],
            "s4_ok/timestamp.txt": b"2026-11-02 08:00:00",
        }
        zpath = _zip(tmp / "lms.zip", files, links={f"b_linked/{ASG}/timestamp.txt": "../../s1_ok/timestamp.txt"})
        data = bytearray(zpath.read_bytes())
        at = data.find(b"c_unreadable's own")
        data[at] ^= 0xFF  # one flipped byte: the entry's CRC no longer matches
        zpath.write_bytes(bytes(data))
        shared = _tree(tmp / "shared", {
            f"e_linked/{ASG}/part1.ipynb": full["part1"], f"e_linked/{ASG}/part2.ipynb": full["part2"],
            f"z_last/{ASG}/part1.ipynb": full["part1"], f"z_last/{ASG}/part2.ipynb": full["part2"],
        })
        (tmp / "early.txt").write_text("2000-01-01 00:00:00")  # outside the export
        os.symlink(tmp / "early.txt", shared / "e_linked" / ASG / "timestamp.txt")
        runs = [_collect(course, zpath), _collect(course, shared)]
        yield course, runs, kit.grade_all(course)


@pytest.mark.slow
def test_every_honest_classmate_is_collected_with_their_own_score(careless_batch):
    course, runs, results = careless_batch
    assert [rc for rc, _ in runs] == [1, 1]
    for student in ("s1_ok", "s2_ok", "s3_ok", "s4_ok", "z_last"):
        assert kit.scores(results[student]) == kit.FULL, student
    assert kit.scores(results["mallory"]) == ZERO                # only their own blank upload
    assert (course.submitted / "s3_ok" / ASG / "timestamp.txt").read_text() == "2026-11-02 09:00:00\n"
    assert (course.submitted / "s4_ok" / ASG / "timestamp.txt").read_text() == "2026-11-02 08:00:00\n"
    assert "s1_ok_copy" not in results and not (course.submitted / "s1_ok_copy").exists()


@pytest.mark.slow
def test_each_problem_is_flagged_for_the_student_whose_file_caused_it(careless_batch):
    _, runs, results = careless_batch
    output = "\n".join(out for _, out in runs)
    (line,) = _flag_lines(output, "a_careless")
    assert line.startswith(f"FLAGGED a_careless: a_careless/{ASG}/timestamp.txt: 'sometime last week' is not a time")
    assert "the notebooks beside it are not collected" in line
    (line,) = _flag_lines(output, "b_linked")
    assert line.startswith(f"FLAGGED b_linked: b_linked/{ASG}/timestamp.txt: is a symbolic link")
    (line,) = _flag_lines(output, "e_linked")
    assert line.startswith(f"FLAGGED e_linked: e_linked/{ASG}/timestamp.txt: is a symbolic link")
    assert not {"a_careless", "b_linked", "e_linked"} & set(results)    # held back, not graded on time
    (line,) = _flag_lines(output, "c_unreadable")
    assert line.startswith(f"FLAGGED c_unreadable: c_unreadable/{ASG}/part1.ipynb: cannot be read from the zip")
    assert kit.scores(results["c_unreadable"]) == {**MISSING_PART1, "part2": {"total": 1.0}}
    (line,) = _flag_lines(output, "d_layout")
    assert line.startswith(f"FLAGGED d_layout: d_layout/work/{ASG}/part1.ipynb: unknown layout")
    assert kit.scores(results["d_layout"]) == {**MISSING_PART1, "part2": {"total": 1.0}}
    claims = _flag_lines(output, "mallory")
    assert len(claims) == 2
    assert claims[0].startswith(f"FLAGGED mallory: mallory/s1_ok/{ASG}/part1.ipynb: the folder 's1_ok' names "
                                "student s1_ok, but it is in mallory's upload; refused")
    assert claims[1].startswith("FLAGGED mallory: mallory/s2_ok - part2.ipynb: the file name names student s2_ok")
    assert "NOT COLLECTED: s1_ok_copy - part1.ipynb: named like a copy of s1_ok's upload" in output
    assert "s3_ok_attempt_2026-11-01-10-00-00_part1.ipynb: replaced by the later attempt" in output


@pytest.mark.slow
def test_several_files_for_one_notebook_keep_the_named_one_and_set_the_copies_aside(careless_batch, tmp_path):
    course, runs, results = careless_batch
    output = "\n".join(out for _, out in runs)
    (line,) = _flag_lines(output, "s1_ok")
    assert line.startswith(f"FLAGGED s1_ok: s1_ok/{ASG}/part1.ipynb and s1_ok/part1 (1).ipynb: 2 different "
                           f"files for {ASG}/part1.ipynb and the export does not say which is the last; graded "
                           f"s1_ok/{ASG}/part1.ipynb, the one named exactly part1.ipynb")
    aside = course.work / "set_aside" / "s1_ok" / ASG / "part1"
    assert sorted(p.name for p in aside.iterdir()) == ["1-part1 (1).ipynb"]
    assert kit.scores(results["s1_ok"]) == kit.FULL  # their own work, not the blank copy's 0
    # the instructor could still pick the copy: it is graded as what it is
    shutil.copyfile(aside / "1-part1 (1).ipynb", course.submitted / "s1_ok" / ASG / "part1.ipynb")
    with kit.clean_jupyter(tmp_path):
        assert kit.scores(kit.grade_one(course, "s1_ok")) == {"part1": ZERO["part1"], "part2": {"total": 1.0}}


# ---------------------------------------------------------------- issue 12: Canvas's LATE, graded end to end

def _summary(course: Course) -> dict[str, dict]:
    """Per student, what the last autograde recorded (work/summary/<asg>.json)."""
    return json.loads((course.summaries / f"{ASG}.json").read_text(encoding="utf-8"))["submissions"]


@pytest.fixture(scope="module")
def canvas_late(tmp_path_factory):
    """A Canvas zip (no times) where 102's files carry LATE; graded first without a due date
    (102 only), then with --due and --late-penalty 0.1; feedback written."""
    tmp = tmp_path_factory.mktemp("collect12late")
    with kit.clean_jupyter(tmp):
        course = kit.build_course(tmp / "course")
        full = _full(course)
        files = {"adalovelace_101_9001_part1.ipynb": full["part1"], "adalovelace_101_9002_part2.ipynb": full["part2"],
                 "bobbyb_LATE_102_9003_part1.ipynb": full["part1"], "bobbyb_LATE_102_9004_part2.ipynb": full["part2"]}
        runs = {"collect": _collect(course, _zip(tmp / "canvas.zip", files))}
        grade = ("autograde", ASG, "--timeout", str(kit.TIMEOUT), "--workers", "2")
        runs["undated"] = _cli(course, *grade, "--student", "102")
        undated = _summary(course)["102"]
        runs["dated"] = _cli(course, *grade, "--due", "2026-11-01T23:59:00+01:00", "--late-penalty", "0.1")
        runs["feedback"] = _cli(course, "feedback", ASG)
        yield course, runs, undated, _summary(course)


@pytest.mark.slow
def test_canvas_late_costs_the_late_student_one_day_and_the_on_time_one_nothing(canvas_late):
    course, runs, undated, summary = canvas_late
    assert [rc for rc, _ in runs.values()] == [0, 0, 0, 0], runs
    assert f"note: 102/{ASG}: the LMS marked it late, time unknown" in runs["collect"][1]
    assert "the assignment has no due date, so the marker cannot be applied" in runs["undated"][1]
    assert "--due" in undated["late"] and all(nb["late_penalty"] is None for nb in undated["notebooks"].values())
    assert "102: the LMS marked this late; its time is unknown, so it is charged as at most one day late" \
        in runs["dated"][1]
    for student, late in (("101", False), ("102", True)):
        notebooks = summary[student]["notebooks"]
        assert {name: nb["score"] for name, nb in notebooks.items()} == {"part1": 4.0, "part2": 1.0}
        penalties = {name: nb["late_penalty"] for name, nb in notebooks.items()}
        assert penalties == ({"part1": pytest.approx(0.4), "part2": pytest.approx(0.1)} if late else
                             {"part1": None, "part2": None}), student
        assert summary[student]["timestamp"] == ("2026-11-01 22:59:01" if late else None)
        assert any(f.startswith("late: ") for f in summary[student]["flags"]) == late
        page = (course.feedback / student / ASG / "part1.html").read_text(encoding="utf-8")
        assert ("Late submission.</strong> The LMS marked this late; its time is unknown, so it is charged as "
                "at most one day late." in page) == late
