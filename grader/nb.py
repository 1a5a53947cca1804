"""Running nbgrader's converters in-process, and small notebook helpers shared by the commands."""
from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import nbformat
from nbgrader.converters.base import BaseConverter
from nbgrader.coursedir import CourseDirectory
from nbgrader.nbgraderformat import common as nbgrader_format
from nbgrader.preprocessors import CheckCellMetadata, ClearHiddenTests
from traitlets.config import Config

from grader.errors import GraderError

__all__ = ["run_converter", "read_notebook", "write_notebook", "hidden_test_lines", "split_hidden",
           "without_solution_markers", "HideHiddenTests", "CompiledCheckCellMetadata",
           "HIDDEN_BEGIN", "HIDDEN_END"]

HIDDEN_BEGIN = "BEGIN HIDDEN TESTS"  # nbgrader's delimiters (matched as substrings)
HIDDEN_END = "END HIDDEN TESTS"


def run_converter(converter: type[BaseConverter], config: Config, *, assignment: str,
                  student: str = "*", notebook: str = "*", **attrs: Any) -> str:
    """Run an nbgrader converter (GenerateAssignment, Autograde, GenerateFeedback...) and
    return its log. ``attrs`` are set on the converter (e.g. ``force=True``).

    The log goes to a private logger, not to stderr; when the converter fails, GraderError
    carries the end of the log.
    """
    logger = logging.getLogger(f"grader.nbgrader.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logger.addHandler(handler)
    try:
        coursedir = CourseDirectory(config=config, log=logger)
        coursedir.assignment_id, coursedir.student_id, coursedir.notebook_id = assignment, student, notebook
        app = converter(coursedir=coursedir, config=config, log=logger)
        for name, value in attrs.items():
            setattr(app, name, value)
        try:
            app.start()
        except Exception as exc:
            log = buffer.getvalue()
            # nbgrader logs the real cause as a traceback and raises a generic exception
            causes = re.findall(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception): .*)$", log, re.MULTILINE)
            cause = causes[-1] if causes else f"{type(exc).__name__}: {exc}"
            tail = "\n".join(log.splitlines()[-25:])
            raise GraderError(f"nbgrader {converter.__name__.lstrip('_')} failed for {assignment} "
                              f"({student}): {cause}\n{tail}") from exc
        return buffer.getvalue()
    finally:
        logger.removeHandler(handler)
        logging.Logger.manager.loggerDict.pop(logger.name, None)


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a notebook as nbformat v4."""
    return nbformat.read(str(path), as_version=4)


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write a notebook the way nbformat does (sorted keys, indent 1, final newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


def split_hidden(source: str) -> tuple[list[str], list[str]]:
    """A cell's lines outside and inside its hidden-test regions (the delimiter lines in
    neither): the one parser of nbgrader's ``### BEGIN/END HIDDEN TESTS``."""
    visible: list[str] = []
    hidden: list[str] = []
    inside = False
    for line in source.splitlines():
        if HIDDEN_BEGIN in line:
            inside = True
        elif HIDDEN_END in line:
            inside = False
        else:
            (hidden if inside else visible).append(line)
    return visible, hidden


def without_solution_markers(source: str) -> str:
    """``source`` without nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines
    (matched as substrings, as nbgrader does): the model answer itself."""
    return "\n".join(line for line in source.splitlines()
                     if "BEGIN SOLUTION" not in line and "END SOLUTION" not in line)


def hidden_test_lines(nb: nbformat.NotebookNode) -> list[str]:
    """The non-blank lines inside hidden-test regions of a source notebook."""
    return [line.strip() for cell in nb.cells for line in split_hidden(cell.source)[1] if line.strip()]


class HideHiddenTests(ClearHiddenTests):
    """Feedback's preprocessor: drop a cell's hidden-test regions (by :func:`split_hidden`) and
    shorten the tracebacks of the cells that had one to ``ExceptionName: message``."""

    enforce_metadata = False  # feedback only reads; the source was validated at build time

    def preprocess_cell(self, cell: nbformat.NotebookNode, resources: Any,
                        index: int) -> tuple[nbformat.NotebookNode, Any]:
        visible, _ = split_hidden(cell.source)
        if len(visible) < len(cell.source.splitlines()):  # a marker or hidden line was dropped
            cell.source = "\n".join(visible)
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources


class CompiledCheckCellMetadata(CheckCellMetadata):
    """nbgrader's CheckCellMetadata with its JSON schema compiled once per process.

    nbgrader validates each cell's metadata with ``jsonschema.validate``, which checks the schema
    against its meta-schema and compiles it again on every call: 20 ms a notebook, and autograde
    validates each notebook three times. Here the same schema is checked and compiled once and
    the same errors are raised (``best_match`` of the cell's errors, as ``jsonschema.validate``).
    """

    def preprocess(self, nb: nbformat.NotebookNode, resources: Any) -> tuple[nbformat.NotebookNode, Any]:
        with _compiled_schemas():
            return super().preprocess(nb, resources)


@functools.cache
def _schema_validator(schema: str) -> Any:
    loaded = json.loads(schema)
    cls = jsonschema.validators.validator_for(loaded)
    cls.check_schema(loaded)
    return cls(loaded)


def _validate(instance: Any, schema: dict[str, Any]) -> None:
    error = jsonschema.exceptions.best_match(_schema_validator(json.dumps(schema, sort_keys=True)).iter_errors(instance))
    if error is not None:
        raise error


@contextlib.contextmanager
def _compiled_schemas() -> Iterator[None]:
    """nbgrader's metadata validators see a ``jsonschema`` whose ``validate`` is :func:`_validate`."""
    real = nbgrader_format.jsonschema
    nbgrader_format.jsonschema = SimpleNamespace(validate=_validate)
    try:
        yield
    finally:
        nbgrader_format.jsonschema = real
