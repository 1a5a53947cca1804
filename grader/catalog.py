"""The course catalog: every graded cell of every assignment, in one table.

Each assignment has a catalog file next to its check module, ``grader/checks/<module>.toml``::

    assignment = "02_optimizers"      # folder name under solutions/ and notebooks/

    [[exercise]]
    id = "adam"                       # grade_id of the graded cell
    notebook = "optimizers"           # notebook file name without .ipynb
    kind = "function"                 # function | value | written
    points = 3
    summary = "one Adam step with bias-corrected moments"
    function = "adam_step"            # kind = function only, from here on
    signature = "adam_step(w, g, m, v, t, *, lr, beta1, beta2, eps) -> (w, m, v)"
    replaces = "course.optim.adam_step"   # the library's version: stubbed in the student
                                          # edition, refused while the check runs
    also_replaces = []                    # other library functions computing the same thing:
                                          # stubbed in the edition with the same message
    plug = "optim.Adam(params, update=adam_step)"   # how the student's function drives the
                                                    # library (said by the edition's stubs)
    dtypes = ["float64", "float32"]       # dtypes the check feeds and accepts back
    tolerance = { float64 = [1e-10, 1e-12], float32 = [1e-4, 1e-6] }   # [rtol, atol]
    variants = ["eps added after the square root", "eps inside the square root"]

``python -m grader check`` verifies that the catalog and the notebooks agree (same graded
cells, same points); the checks read their tolerances from here. Only the standard library is
imported: check modules load this inside grading kernels.
"""
from __future__ import annotations

import functools
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Exercise", "Catalog", "CatalogError", "load_catalog", "load_module_specs", "KINDS", "DEFAULT_TOL"]

#: (rtol, atol) per dtype when the catalog entry gives none; float32 keeps ~6 digits.
#: Check authors read it as ``grader.checks._core.DEFAULT_TOL`` (the same dict).
DEFAULT_TOL: dict[str, tuple[float, float]] = {
    "float64": (1e-9, 1e-12),
    "float32": (1e-4, 1e-6),
}

KINDS = ("function", "value", "written")
_FIELDS = {"id", "notebook", "kind", "points", "summary", "function", "signature", "replaces",
           "also_replaces", "plug", "dtypes", "tolerance", "variants"}
_FUNCTION_ONLY = {"function", "signature", "replaces", "also_replaces", "plug", "dtypes", "tolerance"}


class CatalogError(ValueError):
    """A catalog file is malformed; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class Exercise:
    """One graded cell: where it is, what it is worth, and how its check judges answers."""

    assignment: str
    module: str
    id: str
    notebook: str
    kind: str
    points: float
    summary: str = ""
    function: str | None = None
    signature: str | None = None
    replaces: str | None = None
    also_replaces: tuple[str, ...] = ()
    plug: str | None = None
    dtypes: tuple[str, ...] = ()
    tolerance: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    variants: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """``assignment/notebook/id``: unique across the course."""
        return f"{self.assignment}/{self.notebook}/{self.id}"

    def tol(self, dtype: Any) -> tuple[float, float]:
        """(rtol, atol) for results of ``dtype``: the catalog's, else the checks' default."""
        name = getattr(dtype, "name", None) or str(dtype)
        if name in self.tolerance:
            return self.tolerance[name]
        return DEFAULT_TOL.get(name, DEFAULT_TOL["float64"])


def _exercise(raw: Mapping[str, Any], assignment: str, module: str, where: str) -> Exercise:
    unknown = set(raw) - _FIELDS
    if unknown:
        raise CatalogError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
    for name in ("id", "notebook", "kind", "points"):
        if name not in raw:
            raise CatalogError(f"{where}: missing required field {name!r}")
    kind = raw["kind"]
    if kind not in KINDS:
        raise CatalogError(f"{where}: kind {kind!r} is not one of {KINDS}")
    if kind == "function":
        for name in ("function", "signature", "dtypes"):
            if name not in raw:
                raise CatalogError(f"{where}: a function exercise needs {name!r}")
    elif _FUNCTION_ONLY & set(raw):
        raise CatalogError(f"{where}: {sorted(_FUNCTION_ONLY & set(raw))} apply to kind = "
                           "'function' only")
    points = raw["points"]
    if isinstance(points, bool) or not isinstance(points, (int, float)) or points <= 0:
        raise CatalogError(f"{where}: points must be a positive number, got {points!r}")
    tolerance = {}
    for dtype, pair in raw.get("tolerance", {}).items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair)):
            raise CatalogError(f"{where}: tolerance.{dtype} must be [rtol, atol], got {pair!r}")
        tolerance[dtype] = (float(pair[0]), float(pair[1]))
    return Exercise(
        assignment=assignment, module=module, id=raw["id"], notebook=raw["notebook"], kind=kind,
        points=float(points), summary=raw.get("summary", ""), function=raw.get("function"),
        signature=raw.get("signature"), replaces=raw.get("replaces"),
        also_replaces=tuple(raw.get("also_replaces", ())), plug=raw.get("plug"),
        dtypes=tuple(raw.get("dtypes", ())), tolerance=tolerance,
        variants=tuple(raw.get("variants", ())),
    )


@functools.lru_cache(maxsize=None)
def _load_file(path: Path) -> tuple[Exercise, ...]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: not valid TOML: {exc}") from None
    if "assignment" not in data:
        raise CatalogError(f"{path}: missing top-level 'assignment = \"NN_name\"'")
    entries = data.get("exercise", [])
    exercises = tuple(_exercise(raw, data["assignment"], path.stem, f"{path} [[exercise]] #{i + 1}")
                      for i, raw in enumerate(entries))
    ids = [ex.id for ex in exercises]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:  # ids key the check module's entries, so they must be unique per file
        raise CatalogError(f"{path}: exercise id(s) {dupes} listed twice")
    return exercises


@dataclass(frozen=True)
class Catalog:
    """All exercises of a course root, in file order."""

    exercises: tuple[Exercise, ...]

    def for_assignment(self, assignment: str) -> list[Exercise]:
        """Exercises of one assignment."""
        return [ex for ex in self.exercises if ex.assignment == assignment]

    def get(self, assignment: str, notebook: str, exercise_id: str) -> Exercise:
        """The entry for one graded cell; KeyError naming the catalog file to edit otherwise."""
        for ex in self.exercises:
            if (ex.assignment, ex.notebook, ex.id) == (assignment, notebook, exercise_id):
                return ex
        raise KeyError(f"no catalog entry {assignment}/{notebook}/{exercise_id}; add it to "
                       f"grader/checks/<module>.toml")

    @property
    def functions(self) -> list[Exercise]:
        """The graded functions (kind = function)."""
        return [ex for ex in self.exercises if ex.kind == "function"]


def load_catalog(checks_dirs: Iterable[Path | str]) -> Catalog:
    """Read every ``*.toml`` in the given ``grader/checks`` folders (sorted by file name)."""
    paths = sorted(p for d in checks_dirs for p in Path(d).glob("*.toml"))
    exercises = tuple(ex for p in paths for ex in _load_file(p.resolve()))
    keys = [ex.key for ex in exercises]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise CatalogError(f"exercises listed in more than one catalog file: {dupes}")
    return Catalog(exercises)


def load_module_specs(module_name: str) -> dict[str, Exercise]:
    """Entries of the catalog file next to an imported check module, keyed by exercise id."""
    module_file = getattr(sys.modules[module_name], "__file__", None)
    if module_file is None:
        raise CatalogError(f"{module_name} has no file to find its catalog next to")
    path = Path(module_file).with_suffix(".toml")
    if not path.exists():
        raise CatalogError(f"{module_name}: no catalog file {path}; create it (see grader.catalog)")
    return {ex.id: ex for ex in _load_file(path.resolve())}
