"""``build``: release notebooks from solutions, the check that notebooks/ is up to date, and the
student edition (release notebooks + ``course`` with every graded reference stubbed out)."""
from __future__ import annotations

import ast
import filecmp
import shutil
import tempfile
import tomllib
from pathlib import Path

from grader.catalog import Exercise
from grader.config import Course, GraderError, UsageError, nbgrader_config
from grader.labsetup import write_student_setup
from grader.nb import HIDDEN_BEGIN, read_notebook

__all__ = ["build", "compare_release", "verify_release", "student_edition", "edition_library",
           "stub_function", "stub_message", "locate"]


def _validate_source(path: Path) -> None:
    """A source notebook must give stable cell ids (or every build differs) and a kernel."""
    nb = read_notebook(path)
    ids = [cell.get("id") for cell in nb.cells]
    if nb.nbformat_minor < 5 or None in ids:
        raise UsageError(f"{path}: cells without ids (nbformat 4.{nb.nbformat_minor}); open and "
                         "save it in JupyterLab (which writes nbformat 4.5 ids) before building")
    if len(set(ids)) != len(ids):
        raise UsageError(f"{path}: duplicated cell ids {sorted({i for i in ids if ids.count(i) > 1})}")
    if "kernelspec" not in nb.metadata:
        raise UsageError(f"{path}: no kernelspec in the notebook metadata; students would be "
                         "asked to pick a kernel. Save it once with the Python 3 kernel.")
    for cell in nb.cells:
        if HIDDEN_BEGIN in cell.source and not cell.metadata.get("nbgrader", {}).get("grade"):
            raise UsageError(f"{path}: cell {cell.id} has hidden tests but is not an autograded "
                             "test cell; hidden tests there would reach students")


def build(course: Course, assignments: list[str] | None = None, *,
          release_root: Path | None = None, db_url: str | None = None) -> list[Path]:
    """Generate release notebooks (``nbgrader generate_assignment``) and register each
    assignment in the gradebook. ``release_root`` / ``db_url`` redirect the output (used to
    compare a fresh build with the committed notebooks/). Returns the notebooks written."""
    from nbgrader.converters import GenerateAssignment

    from grader.nb import run_converter

    config = nbgrader_config(course)
    if release_root is not None:
        config.CourseDirectory.release_directory = str(release_root)
    if db_url is not None:
        config.CourseDirectory.db_url = db_url
    written: list[Path] = []
    for assignment in assignments or course.assignments():
        for path in sorted((course.solutions / assignment).glob("*.ipynb")):
            _validate_source(path)
        run_converter(GenerateAssignment, config, assignment=assignment, force=True,
                      create_assignment=True)
        out = Path(release_root or course.notebooks) / assignment
        written += sorted(out.glob("*.ipynb"))
    return written


def compare_release(course: Course, fresh: Path, assignments: list[str] | None = None) -> list[str]:
    """Differences between notebooks/ and a build written to ``fresh`` (empty: up to date)."""
    problems = []
    for assignment in assignments or course.assignments():
        if not (course.notebooks / assignment).is_dir():
            problems.append(f"notebooks/{assignment}: missing (run `python -m grader build`)")
            continue
        cmp = filecmp.dircmp(fresh / assignment, course.notebooks / assignment)
        problems += _tree_differences(cmp, f"notebooks/{assignment}")
    return problems


def verify_release(course: Course) -> list[str]:
    """Differences between notebooks/ and a fresh build from solutions/ (empty: up to date)."""
    with tempfile.TemporaryDirectory(prefix="grader-build-") as tmp:
        fresh = Path(tmp) / "notebooks"
        build(course, release_root=fresh, db_url=f"sqlite:///{tmp}/gradebook.db")
        return compare_release(course, fresh)


def _tree_differences(cmp: filecmp.dircmp, where: str) -> list[str]:
    problems = [f"{where}/{name}: missing (run `python -m grader build`)" for name in cmp.left_only]
    problems += [f"{where}/{name}: not generated from solutions/ (remove it)" for name in cmp.right_only
                 if name not in ("__pycache__", ".ipynb_checkpoints")]
    # shallow=False: compare bytes, not just size and mtime
    _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
    problems += [f"{where}/{name}: differs from a fresh build (run `python -m grader build`)"
                 for name in mismatch + errors]
    for name, sub in cmp.subdirs.items():
        problems += _tree_differences(sub, f"{where}/{name}")
    return problems


def locate(course_dir: Path, dotted: str) -> tuple[Path, list[str]]:
    """(module file, qualified name parts) for ``course.mod.func`` or ``course.mod.Class.meth``."""
    parts = dotted.split(".")
    if parts[0] != "course" or len(parts) < 2:
        raise GraderError(f"'replaces = {dotted}' must name a function inside the course package")
    for cut in range(len(parts) - 1, 0, -1):  # longest module path first
        module = parts[1:cut]
        candidates = [course_dir.joinpath(*module, "__init__.py")]
        if module:
            candidates.insert(0, course_dir.joinpath(*module[:-1], module[-1] + ".py"))
        for candidate in candidates:
            if candidate.is_file():
                return candidate, parts[cut:]
    raise GraderError(f"'replaces = {dotted}': no module file for it under {course_dir}")


def stub_function(source: str, qualname: list[str], message: str) -> str:
    """``source`` with the body of function ``qualname`` replaced by
    ``raise NotImplementedError(message)``; its signature, decorators, docstring and every other
    line stay as written."""
    body: list[ast.stmt] = ast.parse(source).body
    node: ast.AST | None = None
    for name in qualname:
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == name), None)
        if node is None:
            raise GraderError(f"no definition of {'.'.join(qualname)} found")
        body = node.body
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise GraderError(f"{'.'.join(qualname)} is not a function")
    stmts = node.body
    if ast.get_docstring(node, clean=False) is not None:
        stmts = stmts[1:]
    lines = source.splitlines(keepends=True)
    first = stmts[0] if stmts else node.body[-1]
    if first.lineno == node.lineno:
        raise GraderError(f"{'.'.join(qualname)}: a one-line function cannot be stubbed; "
                          "put its body on its own lines")
    indent = " " * node.body[0].col_offset
    stub = f"{indent}raise NotImplementedError({message!r})\n"
    if stmts:
        start, end = stmts[0].lineno - 1, stmts[-1].end_lineno
    else:  # docstring only: add the stub after it
        start = end = node.body[0].end_lineno
    return "".join(lines[:start]) + stub + "".join(lines[end:])


def stub_message(ex: Exercise) -> str:
    """What a stubbed library function of the edition says: the exercise, where it is, and how
    the student's own function plugs in."""
    plug = f": {ex.plug}" if ex.plug else ""
    return (f"{ex.function} is exercise '{ex.id}' of {ex.assignment} "
            f"(notebooks/{ex.assignment}/{ex.notebook}.ipynb): write it there and pass your "
            f"function in{plug}")


_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")


def edition_library(course: Course, dest: Path) -> list[Exercise]:
    """Write ``dest/course``: the course's library without the speed package ``course/fast``
    and with each catalog'd reference (``replaces`` and ``also_replaces``) stubbed, as students
    get it and as grading kernels run it. Returns the exercises stubbed."""
    library = course.root / "course"

    def leave_out(folder: str, names: list[str]) -> set[str]:
        # fused kernels and flat buffers restate graded formulas; without them every call
        # reaches the readable code, i.e. the stubs
        return set(_IGNORE(folder, names)) | ({"fast"} if Path(folder) == library else set())

    shutil.copytree(library, dest / "course", ignore=leave_out)
    stubbed = [ex for ex in course.catalog().functions if ex.replaces]
    edits: dict[Path, str] = {}
    for ex in stubbed:
        for dotted in (ex.replaces, *ex.also_replaces):
            path, qualname = locate(dest / "course", dotted)
            text = edits.get(path) or path.read_text(encoding="utf-8")
            edits[path] = stub_function(text, qualname, stub_message(ex))
    for path, text in edits.items():
        compile(text, str(path), "exec")  # a broken stub must fail here, not in class
        path.write_text(text, encoding="utf-8")
    return stubbed


def student_edition(course: Course, dest: Path, *, verify: bool = True) -> list[Exercise]:
    """Write the hand-out: ``dest/notebooks`` (the release), ``dest/course`` without the speed
    package ``course/fast`` and with each catalog'd reference (``replaces`` and
    ``also_replaces``) stubbed, licence files, a pyproject that installs ``course`` only, and
    the student JupyterLab set-up (``dest/lab``, see :mod:`grader.labsetup`) with a README.
    ``verify`` first checks that notebooks/ is what solutions/ builds (skip it right after a
    build). Returns the exercises stubbed."""
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"{dest} is not empty; give a new folder for the student edition")
    stale = verify_release(course) if verify else []
    if stale:
        raise GraderError("notebooks/ is not what solutions/ builds:\n" + "\n".join(stale))
    shutil.copytree(course.notebooks, dest / "notebooks", ignore=_IGNORE, dirs_exist_ok=True)
    stubbed = edition_library(course, dest)
    for name in ("LICENSE", "NOTICE"):
        if (course.root / name).is_file():
            shutil.copy2(course.root / name, dest / name)
    if (course.root / "pyproject.toml").is_file():
        (dest / "pyproject.toml").write_text(_student_pyproject(course), encoding="utf-8")
    if (course.root / "lab").is_dir():
        lines = write_student_setup(dest, lab=course.root / "lab")
        (dest / "README.md").write_text("\n".join(_EDITION_README + lines) + "\n", encoding="utf-8")
    return stubbed


_EDITION_README = [
    "# The course notebooks",
    "",
    "`notebooks/` holds the assignments; `course/` is the small library they plug into. Its",
    "graded functions are stubs that name their exercise: write yours in the notebook and pass it",
    "in as the stub's message says (e.g. `optim.Adam(params, update=adam_step)`).",
    "",
]


def _student_pyproject(course: Course) -> str:
    """A pyproject for the edition: the repository's name, version and dependencies, the
    ``course`` package only, no grader script."""
    project = tomllib.loads((course.root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    deps = ",\n".join(f'    "{d}"' for d in project.get("dependencies", []))
    return (
        "[build-system]\nrequires = [\"setuptools>=77\"]\nbuild-backend = \"setuptools.build_meta\"\n\n"
        f"[project]\nname = \"{project['name']}-student\"\nversion = \"{project['version']}\"\n"
        f"requires-python = \"{project.get('requires-python', '>=3.11')}\"\n"
        f"dependencies = [\n{deps}\n]\n\n"
        "[tool.setuptools.packages.find]\ninclude = [\"course*\"]\n"
    )
