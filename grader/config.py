"""Where a course lives on disk, and the nbgrader configuration built from it.

The repository is the nbgrader course directory: ``solutions/`` holds the source notebooks and
``notebooks/`` the generated release. Everything produced while grading (submissions,
autograded notebooks, feedback, the gradebook, summaries, reports) goes to a working area,
``<root>/work`` by default (git-ignored), or any folder given as ``--work``.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbgrader.api
import sqlalchemy
from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.preprocessors import NbGraderPreprocessor as Preprocessor
from sqlalchemy.exc import SAWarning
from traitlets import Float
from traitlets.config import Config

from grader.catalog import Catalog, load_catalog
from grader.defaults import DB_ENV
from grader.errors import GraderError, UsageError

__all__ = ["Course", "GraderError", "UsageError", "read_input", "DailyPenalty", "nbgrader_config", "kernel_env",
           "environment", "REPO_ROOT", "DB_ENV", "BLAS_THREAD_VARS"]

#: The checkout this package was imported from: the default course root.
REPO_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def _alembic_head() -> str:
    """The gradebook schema version, read in-process. nbgrader runs ``alembic heads`` in a
    subprocess for every new gradebook (seconds each, and it needs alembic on PATH)."""
    from alembic.script import ScriptDirectory
    from nbgrader.dbutil import ALEMBIC_DIR

    return ScriptDirectory(ALEMBIC_DIR).get_current_head()


nbgrader.api.get_alembic_version = _alembic_head


@functools.lru_cache(maxsize=8)
def _engine(url: str) -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(url, echo=False, future=True)


def _gradebook_engine(url: str, **kwargs: Any) -> sqlalchemy.Engine:
    """``create_engine`` for ``nbgrader.api.Gradebook``: the same engine again for the same
    database. nbgrader opens a Gradebook, so a new engine, a dozen times for each notebook it
    grades, and every new engine compiles each SQL statement anew (35 ms of a notebook's
    0.33 s in the grading process). It is disposed of before it is handed out, as
    ``Gradebook.close`` does: each Gradebook starts on new connections, to the file that is at
    the path now."""
    if kwargs != {"echo": False, "future": True}:
        return sqlalchemy.create_engine(url, **kwargs)
    engine = _engine(str(url))
    engine.dispose()
    return engine


nbgrader.api.create_engine = _gradebook_engine
# nbgrader 0.9 with SQLAlchemy 2.1 warns on every submission it creates; the warning is harmless.
warnings.filterwarnings("ignore", category=SAWarning, module="nbgrader")


def read_input(path: Path, what: str) -> str:
    """The text of an input file the instructor named (``what``: "roster", "CSV"...), or a
    UsageError saying why it cannot be read: missing, a folder, unreadable, not UTF-8."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist; check the path") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a folder; give the file itself") from None
    except OSError as exc:
        raise UsageError(f"{what} {path} cannot be read ({exc.strerror}); check its permissions") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as CSV UTF-8 "
                         "(in Excel: Save As > CSV UTF-8) and try again") from None


@dataclass(frozen=True)
class Course:
    """A course root (solutions/, notebooks/, course/, grader/) and its working area."""

    root: Path
    work: Path
    db: str | None = None    # gradebook URL; None: SQLite in the working area

    @classmethod
    def at(cls, root: str | os.PathLike[str] | None = None,
           work: str | os.PathLike[str] | None = None, db: str | None = None) -> Course:
        """The course at ``root``, working area ``work`` (default ROOT/work), gradebook ``db``
        (default: $GRADER_DB_URL, else SQLite in the working area; ``postgres://`` is read as
        ``postgresql://``). Without ``root``: the current folder if it holds solutions/, else
        this checkout."""
        if root is None:
            root = Path.cwd() if (Path.cwd() / "solutions").is_dir() else REPO_ROOT
        root_path = Path(root).resolve()
        work_path = Path(work).resolve() if work is not None else root_path / "work"
        url = db or os.environ.get(DB_ENV) or None
        if url and url.startswith("postgres://"):  # libpq's and Heroku's spelling; SQLAlchemy wants postgresql://
            url = "postgresql://" + url[len("postgres://"):]
        return cls(root_path, work_path, url)

    solutions = property(lambda self: self.root / "solutions")
    notebooks = property(lambda self: self.root / "notebooks")
    submitted = property(lambda self: self.work / "submitted")
    autograded = property(lambda self: self.work / "autograded")
    feedback = property(lambda self: self.work / "feedback")
    summaries = property(lambda self: self.work / "summary")
    reports = property(lambda self: self.work / "reports")
    checks_dir = property(lambda self: self.root / "grader" / "checks")

    @property
    def db_url(self) -> str:
        """The gradebook: ``db`` (any SQLAlchemy URL nbgrader accepts, e.g.
        postgresql://user@host/db), else SQLite in the working area."""
        return self.db or f"sqlite:///{self.work / 'gradebook.db'}"

    def assignments(self) -> list[str]:
        """Assignment folders under solutions/ that hold at least one notebook."""
        if not self.solutions.is_dir():
            raise UsageError(f"{self.root} has no solutions/ folder; pass --root COURSE_ROOT "
                              "(the folder holding solutions/, notebooks/, course/ and grader/)")
        return sorted(p.name for p in self.solutions.iterdir()
                      if p.is_dir() and any(p.glob("*.ipynb")))

    def notebook_names(self, assignment: str) -> list[str]:
        """Notebook names (no .ipynb) of an assignment, from its source folder."""
        self.check_assignment(assignment)
        return sorted(p.stem for p in (self.solutions / assignment).glob("*.ipynb"))

    def check_assignment(self, *assignments: str) -> None:
        """A UsageError listing the known assignments unless solutions/ has every one given."""
        known = self.assignments() if assignments else []
        for assignment in assignments:
            if assignment not in known:
                raise UsageError(f"no assignment {assignment!r} in {self.solutions} (known: "
                                 f"{', '.join(known) or 'none'}); check the name, or pass --root COURSE_ROOT")

    def catalog(self) -> Catalog:
        """Catalog entries from this root's grader/checks/*.toml."""
        return load_catalog([self.checks_dir])


#: In a submission folder beside the notebooks: the LMS marked it late without saying when
#: (collect writes it; autograde charges it as one day late, see grader.autograde.pipeline.make_job).
LMS_LATE = "lms_late.txt"


class DailyPenalty(LateSubmissionPlugin):
    """Late penalty of ``fraction`` of the notebook's score per started day late.

    penalty = min(score, score * fraction * ceil(seconds_late / 86400)).
    """

    fraction = Float(0.1, help="Share of the score lost per started day late.").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float:
        return min(score, score * self.fraction * math.ceil(total_seconds_late / 86400))


def nbgrader_config(course: Course, *, timeout: int = 60, late_penalty: str = "none") -> Config:
    """nbgrader settings for ``course``.

    ``late_penalty``: ``none``, ``zero`` (a late notebook scores 0) or a fraction such as
    ``0.1`` (lose 10% of the score per started day late, :class:`DailyPenalty`). ``timeout``:
    seconds one cell may run.
    """
    from grader.nb import HideHiddenTests  # nbconvert-heavy; only graders need it
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import GetGrades

    course.work.mkdir(parents=True, exist_ok=True)  # SQLite creates the gradebook, not its folder
    c = Config()
    c.CourseDirectory.root = str(course.root)
    c.CourseDirectory.source_directory = "solutions"
    c.CourseDirectory.release_directory = "notebooks"
    c.CourseDirectory.submitted_directory = str(course.submitted)
    c.CourseDirectory.autograded_directory = str(course.autograded)
    c.CourseDirectory.feedback_directory = str(course.feedback)
    c.CourseDirectory.solution_directory = str(course.work / "solution")
    c.CourseDirectory.db_url = course.db_url
    # nbgrader's converters default to course "" and then never create the course row its
    # assignments point to (SQLite ignores the broken foreign key, PostgreSQL refuses it); use
    # the course that nbgrader.api.Gradebook, and so the rest of this package, uses.
    c.CourseDirectory.course_id = "default_course"
    c.Execute.timeout = timeout
    c.GenerateFeedback.preprocessors = [HideHiddenTests, GetGrades, CSSHTMLHeaderPreprocessor]
    if late_penalty in ("none", "zero"):
        c.LateSubmissionPlugin.penalty_method = late_penalty
    else:
        try:
            fraction = float(late_penalty)
        except ValueError:
            raise UsageError(f"late penalty {late_penalty!r}: use none, zero or a fraction per "
                             "day such as 0.1") from None
        if not 0 < fraction <= 1:
            raise UsageError(f"late penalty {fraction} per day must lie in (0, 1]; e.g. --late-penalty 0.1")
        c.AssignLatePenalties.plugin_class = DailyPenalty
        c.DailyPenalty.fraction = fraction
    return c


#: Thread-pool sizes of BLAS/OpenMP libraries, read when a kernel loads them.
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


STOCK_AUTOGRADE_REFUSED = (
    "this course is autograded with `python -m grader autograde ASSIGNMENT`, not with nbgrader's own "
    "autograde (nor formgrader's Autograde button): the stock command runs the hidden checks inside "
    "the student's kernel, where the notebook can defeat them, and its grades would pass for this "
    "course's. Run `python -m grader autograde` (same course, same gradebook)."
)


class RefuseStockAutograde(Preprocessor):
    """The only autograde step of the stock nbgrader configuration (grader/nbgrader_config.py):
    it stops every notebook before anything runs or any grade is saved."""

    def preprocess(self, nb: Any, resources: Any) -> Any:
        raise GraderError(STOCK_AUTOGRADE_REFUSED)


def kernel_env(root: Path) -> dict[str, str]:
    """Environment for grading kernels: the course ``root`` first on PYTHONPATH (so ``course``
    and ``grader.checks`` import from it), this interpreter's bin/ first on PATH (for
    ``alembic`` and the ``python`` of the kernel spec), and one BLAS/OpenMP thread per
    kernel: with N kernels grading side by side on N cores, threaded BLAS would oversubscribe
    them, and graded arrays are small."""
    env = dict(os.environ)
    env.update(dict.fromkeys(BLAS_THREAD_VARS, "1"))
    paths = [str(root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return env


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """Run a block with ``os.environ`` replaced by ``env`` (kernels inherit it); restored after."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
