"""Short, honest errors in the course notebooks while an exercise is unfinished.

The setup cell of every notebook calls :func:`explain_unfinished`. From then on, in that
kernel, a cell that runs into an exercise still holding its ``raise NotImplementedError()``
stops with one line instead of a traceback through the library, for example::

    NotImplementedError: this cell needs `adam_step` from “5. Adam”: finish it and run its cell first.

and a later cell that fails only because such a cell stopped early (a name it never set, a
key it never filled) says so in one line too, naming that cell and the unfinished exercise::

    NameError: `histories` is not set: cell [17], which sets it, stopped because `dropout` from “1. Dropout” is not finished yet.

Every other error shows IPython's usual traceback. The short errors are real error outputs:
the cell is marked failed, *Run All* stops there, and ``%tb`` still prints the full traceback.

Where an exercise is, is read from the notebook file itself: the heading above the cell that
defines the function (or, for an answer variable, above the first cell that uses it).

Nothing is installed outside IPython, or while nbgrader executes the notebook (it sets
``NBGRADER_EXECUTION`` for validating and autograding): graded runs see IPython unchanged.
"""
from __future__ import annotations

import ast
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["explain_unfinished"]

#: The start of a message of a library reference stubbed in the student edition
#: (``grader.release.build.stub_message``): "adam_step is exercise 'adam_step' of 02_optimizers (...".
_LIBRARY_STUB = re.compile(r"^(?P<fn>[\w.]+) is exercise '[^']+' of ")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_RED, _RESET = "\x1b[0;31m", "\x1b[0m"


def explain_unfinished(shell: Any = None) -> None:
    """Install the one-line errors in this IPython kernel (``shell``: the running one).

    Does nothing outside IPython and while nbgrader validates or autogrades
    (``NBGRADER_EXECUTION`` set). Calling it again replaces the earlier installation.
    """
    if os.environ.get("NBGRADER_EXECUTION"):
        return
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return
    old = getattr(shell, "_course_unfinished", None)
    if old is not None:
        old.remove()
    helper = _Explainer(shell)
    shell._course_unfinished = helper
    shell.set_custom_exc((NotImplementedError, NameError, KeyError), helper.handle)
    shell.events.register("pre_run_cell", helper.pre_run_cell)
    shell.events.register("post_run_cell", helper.post_run_cell)


# -- what stopped a cell ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Why:
    """Why a cell stopped: an unfinished notebook function, or the cell itself unfinished."""

    function: str | None   # None: the cell itself holds the stub (an answer cell)
    section: str | None

    def text(self) -> str:
        """What happened to a cell stopped for this reason, e.g. 'is not finished yet'."""
        if self.function is None:
            return "is not finished yet"
        return f"stopped because `{self.function}`{_from(self.section)} is not finished yet"


@dataclass(frozen=True)
class _Stopped:
    """A cell that stopped because of an unfinished exercise."""

    number: int | None      # its execution count
    why: _Why
    sets: frozenset[str]    # names it assigns (or fills) at top level
    mentions: frozenset[str]


def _from(section: str | None) -> str:
    return f" from “{section}”" if section else ""


def _cell(number: int | None) -> str:
    return f"cell [{number}]" if number is not None else "an earlier cell"


# -- the kernel side --------------------------------------------------------------------------------

class _Explainer:
    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.source = ""
        self.why: _Why | None = None            # set by handle() for the running cell
        self.stopped: dict[str, _Stopped] = {}  # by cell source: a rerun replaces or clears it

    def remove(self) -> None:
        for event, callback in (("pre_run_cell", self.pre_run_cell), ("post_run_cell", self.post_run_cell)):
            try:
                self.shell.events.unregister(event, callback)
            except ValueError:
                pass
        self.shell.set_custom_exc((), None)

    def pre_run_cell(self, info: Any) -> None:
        self.why = None
        try:
            self.source = self.shell.transform_cell(info.raw_cell or "")
        except Exception:
            self.source = ""

    def post_run_cell(self, result: Any) -> None:
        """Keep the record of stopped cells current: a cell that (re)sets a name takes over
        that name, one that defines a blamed function without an error ends that blame."""
        why, self.why = self.why, None
        if not self.source.strip():
            return
        sets, mentions = _names(self.source)
        ok = result.success
        kept = {}
        for source, stopped in self.stopped.items():
            blamed = stopped.why.function
            if source == self.source or (ok and blamed and blamed.split(".")[0] in sets):
                continue
            kept[source] = replace(stopped, sets=stopped.sets - sets)
        if why is not None and result.error_in_exec is not None:
            kept[self.source] = _Stopped(result.execution_count, why, sets, mentions)
        self.stopped = kept

    # IPython calls this as a method of the shell: handle(shell, etype, value, tb, tb_offset)
    def handle(self, shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> None:
        try:
            line = self.explain(value, tb)
        except Exception:
            line = None
        if line is None:
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
            return
        sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb  # for %tb and %debug
        if sys.version_info >= (3, 12):
            sys.last_exc = value
        shell._showtraceback(etype, value, [f"{_RED}{etype.__name__}{_RESET}: {line}"])

    def explain(self, value: BaseException, tb: Any) -> str | None:
        """The one-line message for this error, or None for IPython's usual traceback."""
        if isinstance(value, NotImplementedError):
            return self._unfinished(value, tb)
        if isinstance(value, NameError):
            return self._missing_name(value)
        if isinstance(value, KeyError):
            return self._missing_key(value)
        return None

    def _unfinished(self, value: NotImplementedError, tb: Any) -> str | None:
        while tb.tb_next is not None:
            tb = tb.tb_next
        frame = tb.tb_frame
        if frame.f_globals is self.shell.user_ns and not value.args:  # a stub in a notebook cell
            name = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
            if name == "<module>":
                self.why = _Why(None, None)
                return "this cell is not finished yet: replace `raise NotImplementedError()` with your answer."
            if "<" in name:  # a lambda or comprehension: no name to give
                return None
            self.why = _Why(name, _locate(self.shell, name))
            return f"this cell needs `{name}`{_from(self.why.section)}: finish it and run its cell first."
        message = " ".join(str(value).split())
        match = _LIBRARY_STUB.match(message)
        if match is None:
            return None
        name = match["fn"]
        section = _locate(self.shell, name)
        self.why = _Why(name, section)
        return message.rstrip(".") + (f" (yours is in “{section}”)." if section else ".")

    def _latest(self, wanted: Any) -> _Stopped | None:
        found = [s for s in self.stopped.values() if wanted(s)]
        return max(found, key=lambda s: s.number or 0) if found else None

    def _missing_name(self, value: NameError) -> str | None:
        name = getattr(value, "name", None)
        if isinstance(value, UnboundLocalError) or not name or name in self.shell.user_ns:
            return None
        stopped = self._latest(lambda s: name in s.mentions)
        if stopped is not None:
            self.why = stopped.why
            return f"`{name}` is not set: {_cell(stopped.number)}, which sets it, {stopped.why.text()}."
        where = _find(self.shell, name)
        if where is None:
            return None
        section, defined = where
        if defined:
            return f"`{name}` is not set: the cell in “{section}” that sets it has not run to the end yet."
        return f"`{name}` is not set yet: it is asked for in “{section}”; finish the cell there that sets it."

    def _missing_key(self, value: KeyError) -> str | None:
        if len(value.args) != 1:
            return None
        key = value.args[0]
        _, used = _names(self.source)
        ns = self.shell.user_ns

        def filled_there(s: _Stopped) -> bool:
            return any(n in used and isinstance(ns.get(n), Mapping) and _lacks(ns[n], key) for n in s.sets)

        stopped = self._latest(filled_there)
        if stopped is None:
            return None
        name = next(n for n in sorted(stopped.sets) if n in used and isinstance(ns.get(n), Mapping)
                    and _lacks(ns[n], key))
        self.why = stopped.why
        return f"{key!r} is not in `{name}`: {_cell(stopped.number)}, which fills it, {stopped.why.text()}."


def _lacks(mapping: Mapping, key: Any) -> bool:
    try:
        return key not in mapping
    except TypeError:
        return False


# -- names a cell sets and mentions -----------------------------------------------------------------

def _names(source: str, *, filled: bool = True) -> tuple[frozenset[str], frozenset[str]]:
    """(names the cell assigns at top level, every name it mentions). With ``filled`` the
    first set also holds the objects it changes: ``d`` for ``d[k] = v``, ``d.a = v``, ``d.f(...)``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return frozenset(), frozenset()
    mentions = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    sets: set[str] = set()

    def target(node: ast.AST) -> None:
        if isinstance(node, ast.Starred):
            node = node.value
        if isinstance(node, (ast.Subscript, ast.Attribute)):
            if not filled:
                return
            while isinstance(node, (ast.Subscript, ast.Attribute)):
                node = node.value
        if isinstance(node, ast.Name):
            sets.add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                target(element)

    def visit(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                sets.add(stmt.name)
                continue
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                sets.update((a.asname or a.name).split(".")[0] for a in stmt.names)
            elif isinstance(stmt, ast.Assign):
                for t in stmt.targets:
                    target(t)
            elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
                target(stmt.target)
            elif isinstance(stmt, (ast.For, ast.AsyncFor)):
                target(stmt.target)
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                for item in stmt.items:
                    if item.optional_vars is not None:
                        target(item.optional_vars)
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) \
                    and isinstance(stmt.value.func, ast.Attribute):
                target(stmt.value.func)   # d.update(...) fills d
            for node in ast.walk(stmt):
                if isinstance(node, ast.NamedExpr):
                    target(node.target)
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(stmt, field, None)
                if isinstance(inner, list):
                    visit([s for s in inner if isinstance(s, ast.stmt)] +
                          [s for h in inner if isinstance(h, ast.ExceptHandler) for s in h.body])

    visit(tree.body)
    return frozenset(sets), frozenset(mentions | sets)


# -- where something is in the notebook -------------------------------------------------------------

def _notebooks(shell: Any) -> list[Path]:
    """The notebook files this kernel may be running: the session's, then those in its folder."""
    here = Path.cwd()
    found: list[Path] = []
    for hint in (shell.user_ns.get("__session__"), os.environ.get("JPY_SESSION_NAME"),
                 shell.user_ns.get("__vsc_ipynb_file__")):
        if isinstance(hint, str) and hint.endswith(".ipynb"):
            found += [Path(hint), here / Path(hint).name]
    found += sorted(here.glob("*.ipynb"))
    unique = []
    for path in found:
        if path.is_file() and path.resolve() not in [p.resolve() for p in unique]:
            unique.append(path)
    return unique


def _cells(path: Path) -> list[tuple[str, str]]:
    """(cell type, source) of every cell of the notebook at ``path`` ([] if unreadable)."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return [(c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
                for c in cells]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _code(source: str) -> str:
    """A code cell's source without its magics and shell escapes."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def _find(shell: Any, name: str) -> tuple[str, bool] | None:
    """(heading of the section, True) for the first code cell of the notebook that defines
    ``name``, else (heading, False) for the first that uses it (an answer's test, whose answer
    cell is still a stub); None if no cell does."""
    head = name.split(".")[0]
    for path in _notebooks(shell):
        cells = _cells(path)
        names = [_names(_code(source), filled=False) if kind == "code" else (frozenset(), frozenset())
                 for kind, source in cells]
        for defined in (True, False):
            for i, (sets, mentions) in enumerate(names):
                if head in (sets if defined else mentions):
                    section = _heading(cells, i)
                    if section:
                        return section, defined
    return None


def _locate(shell: Any, name: str) -> str | None:
    where = _find(shell, name)
    return where[0] if where is not None and where[1] else None


def _heading(cells: list[tuple[str, str]], index: int) -> str | None:
    """The last markdown heading above cell ``index``, as plain text."""
    for i in range(index, -1, -1):
        kind, source = cells[i]
        if kind != "markdown":
            continue
        headings = _HEADING.findall(source)
        if headings:
            return _clean(headings[-1])
    return None


def _clean(heading: str) -> str:
    """A heading as plain text: no markup, no '(graded)' or '(3 points)'."""
    text = re.sub(r"[*`]", "", heading)
    text = re.sub(r"\s*\((?:[^()]*\bpoints?\b|graded[^()]*|[^()]*graded)\)", "", text)
    return re.sub(r"\s+", " ", text).strip(" :")
