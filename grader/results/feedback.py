"""Feedback HTML for students: nbgrader's generate_feedback, minus every trace of hidden tests.

nbgrader shows hidden tests in feedback by design (its issues #917, #1363). Two layers keep
them out: :class:`HideHiddenTests` removes the hidden-test regions from the cells and cuts the
error tracebacks of those cells down to ``ExceptionName: message``; then :func:`verify_feedback`
reads the rendered text of every page and rejects (deletes) any that still shows a hidden-test
line, a hidden-test marker or a path into grader/ more often than the student's own answers
write it.

Pages stay small (under 300 KB for the solution notebooks, from 0.27-2.4 MB): the page's
stylesheet is ours (``grader/results/templates/feedback_small``, 3 KB instead of nbgrader's inlined
Bootstrap, 117 KB), code keeps its highlighting but loses the tags of tokens the highlighting
style leaves unstyled (names, punctuation: half the spans), and embedded plots are redrawn at
most :data:`IMAGE_WIDTH` pixels wide in :data:`IMAGE_COLOURS` colours. A notebook that was not
graded (missing, unreadable) gets a short page saying so, since nbgrader writes none.
"""
from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import nbgrader

from grader.config import Course, GraderError, UsageError

__all__ = ["generate_feedback", "verify_feedback", "forbidden_texts", "IMAGE_WIDTH", "IMAGE_COLOURS"]

#: Widest embedded image of a feedback page, in pixels (a plot stays readable at this width).
IMAGE_WIDTH = 400
#: Colours of a redrawn image: enough for a plot's lines, labels and a colour map's steps.
IMAGE_COLOURS = 32
_IMAGE = re.compile(r'(src="data:image/png;base64,)([A-Za-z0-9+/=\s]+)(")')
_STYLED = re.compile(r"\.highlight \.([A-Za-z0-9]+) \{")      # a token class the style colours
_TOKEN = re.compile(r'<span class="([A-Za-z0-9]+)">([^<]*)</span>')


def forbidden_texts(course: Course, assignment: str) -> list[str]:
    """What must never reach a student: hidden-test lines, the markers, grader paths."""
    from grader.nb import HIDDEN_BEGIN, HIDDEN_END, hidden_test_lines, read_notebook

    texts = [HIDDEN_BEGIN, HIDDEN_END, "grader.checks", "grader/checks", "<hidden test>",
             str(course.root / "grader")]
    for path in sorted((course.solutions / assignment).glob("*.ipynb")):
        texts += hidden_test_lines(read_notebook(path))
    return sorted(set(texts))


def _visible_text(page: str) -> str:
    """The page's text as a reader sees it: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())


def _own_text(course: Course, assignment: str, page: Path) -> str:
    """The visible text of what the student wrote in the notebook of ``page``: the sources of
    their answer cells and added cells (nbgrader overwrites the others from the gradebook),
    spaced as :func:`_visible_text` spaces a page; "" without a readable submission."""
    from grader.nb import read_notebook

    try:
        student = page.relative_to(course.feedback).parts[0]
        nb = read_notebook(course.submitted / student / assignment / page.with_suffix(".ipynb").name)
        sources = [cell.source for cell in nb.cells
                   if cell.metadata.get("nbgrader", {}).get("solution") or
                   not cell.metadata.get("nbgrader", {}).get("grade_id")]
    except (ValueError, OSError, AttributeError, TypeError):  # not under feedback/, missing, not a notebook
        return ""
    return " ".join(" ".join(sources).split())


def verify_feedback(course: Course, assignment: str, pages: list[Path]) -> list[str]:
    """Problems found in feedback pages (empty when clean); offending pages are deleted. A text
    shown no more often than the student's own answers write it is theirs, not a leak (an
    answer may name ``grader.checks`` in a comment, or call a check the way a hidden test does)."""
    needles = [" ".join(t.split()) for t in forbidden_texts(course, assignment)]
    problems = []
    for page in pages:
        text, own = _visible_text(page.read_text(encoding="utf-8")), _own_text(course, assignment, page)
        leaked = [n for n in needles if text.count(n) > own.count(n)]
        if leaked:
            problems.append(f"{page}: shows {leaked[0]!r}; page deleted")
            page.unlink()
    return problems


def _smaller_png(data: str) -> str:
    """A base64 PNG redrawn at most IMAGE_WIDTH wide in IMAGE_COLOURS colours (on white), if smaller."""
    from PIL import Image

    raw = base64.b64decode(data)
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except Exception:  # noqa: BLE001 - not an image Pillow reads: keep it as it is
        return data
    flat = Image.new("RGB", image.size, "white")
    flat.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
    if flat.width > IMAGE_WIDTH:
        flat = flat.resize((IMAGE_WIDTH, round(flat.height * IMAGE_WIDTH / flat.width)), Image.LANCZOS)
    out = io.BytesIO()
    flat.quantize(colors=IMAGE_COLOURS, method=Image.Quantize.FASTOCTREE).save(out, "PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode() if out.tell() < len(raw) else data


def _plain_tokens(page: str) -> str:
    """``page`` without the ``<span class="n">x</span>`` wrappers of code tokens whose class
    the page's highlighting style does not colour: they render the same as bare text."""
    styled = set(_STYLED.findall(page))
    return _TOKEN.sub(lambda m: m[0] if m[1] in styled else m[2], page)


def _shrink(page: Path) -> None:
    """Rewrite a feedback page with small images and plain unstyled tokens."""
    text = page.read_text(encoding="utf-8")
    smaller = _plain_tokens(_IMAGE.sub(lambda m: m[1] + _smaller_png(m[2]) + m[3], text))
    if smaller != text:
        page.write_text(smaller, encoding="utf-8")


def _not_graded_pages(course: Course, assignment: str, students: list[str] | None) -> list[Path]:
    """A page for each recorded notebook that has none: it was missing or unreadable."""
    from grader.autograde.record import load_summary

    pages = []
    for student, entry in load_summary(course, assignment)["submissions"].items():
        if students and student not in students:
            continue
        for name, nb in entry.get("notebooks", {}).items():
            page = course.feedback / student / assignment / f"{name}.html"
            if page.exists() or nb.get("outcome") == "graded":
                continue
            why = html.escape(nb.get("message") or nb.get("outcome", ""))
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(
                f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(name)}</title></head>"
                f"<body><h1>{html.escape(assignment)} / {html.escape(name)}.ipynb</h1>"
                f"<p><strong>Not graded: {html.escape(nb.get('outcome', ''))}.</strong> {why}</p>"
                f"<p>Score: {nb.get('score', 0):g} / {nb.get('max_score', 0):g}.</p>"
                "<p>Submit the notebook again as it is saved by JupyterLab (File &gt; Save, then upload "
                "the .ipynb file itself), or ask your instructor.</p></body></html>\n", encoding="utf-8")
            pages.append(page)
    return pages


def generate_feedback(course: Course, assignment: str, students: list[str] | None = None) -> list[Path]:
    """Write ``work/feedback/<student>/<assignment>/<notebook>.html`` for autograded submissions
    (and a short page for each notebook not graded), with small images, and verify every page;
    GraderError lists any leak (those pages are deleted)."""
    from nbgrader.converters import GenerateFeedback

    from grader.autograde.record import load_summary
    from grader.config import nbgrader_config
    from grader.nb import run_converter

    autograded = {p.parent.name for p in course.autograded.glob(f"*/{assignment}") if p.is_dir()}
    known = autograded | set(load_summary(course, assignment)["submissions"])  # with notebooks not graded
    missing = sorted(set(students) - known) if students else ([] if known else ["anyone"])
    if missing:
        raise UsageError(f"nothing of {assignment} is autograded for {', '.join(missing)} in {course.autograded}; "
                         f"run `python -m grader autograde {assignment}` first (or check the --student names)")
    config = nbgrader_config(course)
    # nbgrader's page with our small stylesheet instead of its inlined Bootstrap (117 KB a page).
    # Here, not in nbgrader_config: formgrader's own HTMLExporter would take it up. Naming the
    # template folders means naming nbgrader's too, which ours extends.
    config.HTMLExporter.template_name = "feedback_small"
    config.HTMLExporter.template_file = "feedback_small.html.j2"
    config.HTMLExporter.extra_template_basedirs = [
        str(Path(__file__).parent / "templates"),
        str(Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates")]
    runs = sorted(set(students) & autograded) if students else (["*"] if autograded else [])
    for student in runs:
        run_converter(GenerateFeedback, config, assignment=assignment, student=student, force=True)
    pages = sorted(p for student in (students or ["*"])
                   for p in course.feedback.glob(f"{student}/{assignment}/*.html"))
    for page in pages:
        _shrink(page)
    pages = sorted(pages + _not_graded_pages(course, assignment, students))
    problems = verify_feedback(course, assignment, pages)
    if problems:
        raise GraderError("feedback leaked hidden-test content:\n" + "\n".join(problems))
    return pages
