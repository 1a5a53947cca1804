"""How ``pytest -n N`` (pytest-xdist) shares the suite out among its workers (used by conftest.py).

A work unit is a whole module, so a module-scoped fixture (a graded course) is made once, on
one worker; the modules in :data:`SPREAD`, whose tests are independent end-to-end runs, are
split into one unit per test. Units go out heaviest first (:data:`COST`), the rest in
collection order, so the long runs start at once and the workers finish together.
"""
from __future__ import annotations

from collections import OrderedDict

from xdist.scheduler import LoadScopeScheduling

#: Modules without module-scoped fixtures whose tests are each a long nbgrader run.
SPREAD = frozenset({"tests/test_assignments.py", "tests/test_grader_variants.py",
                    "tests/test_notebook_errors.py", "tests/test_explore.py",
                    "tests/test_notebook_figures.py"})

#: Seconds of the heaviest units in a ``-n 2`` run on the 2-core CI machine, by node id prefix
#: (a module, or one case of a test of a SPREAD module). Only the order matters.
COST = {
    "tests/test_real_class.py": 165,
    "tests/test_student_edition.py": 144,
    "tests/test_grader_attacks.py": 88,
    "tests/test_grader_collect.py": 56,
    "tests/test_assignments.py::test_solutions_full_marks": 50,
    "tests/test_grader_audit.py": 35,
    "tests/test_grader_trust.py": 31,
    "tests/test_lab_browser.py": 25,
    "tests/test_grader_broken.py": 24,
    "tests/test_grader_selfcheck.py": 21,
    "tests/test_grader_variants.py::test_one_mistake": 20,
    "tests/test_grader_distributed.py": 19,
    "tests/test_grader_unusual.py": 15,
    "tests/test_grader_report.py": 14,
    "tests/test_grader_export.py": 14,
    "tests/test_grader_parallel.py": 13,
    "tests/test_grader_pipeline.py": 11,
    "tests/test_grader_stock.py": 11,
    "tests/test_grader_variants.py::test_accepted": 10,
    "tests/test_grader_errors.py": 8,
    "tests/test_fast_jit.py": 7,
    "tests/test_notebook_figures.py": 6,
    "tests/test_notebook_errors.py": 4,
    "tests/test_explore.py::test_headless": 3,
}


def unit_of(nodeid: str) -> str:
    """The work unit of a test: its module, or the test itself in a SPREAD module."""
    module = nodeid.split("::", 1)[0]
    return nodeid if module in SPREAD else module


def cost_of(unit: str) -> float:
    """The :data:`COST` of the longest prefix of ``unit`` listed there; 0 if none is."""
    prefixes = [prefix for prefix in COST if unit.startswith(prefix)]
    return COST[max(prefixes, key=len)] if prefixes else 0


class ModuleScheduling(LoadScopeScheduling):
    """``--dist loadscope`` with the units of :func:`unit_of`, handed out heaviest first."""

    _ordered = False

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)

    def _assign_work_unit(self, node) -> None:
        # schedule() fills the queue in collection order before it assigns the first unit
        if not self._ordered:
            self.workqueue = OrderedDict(sorted(self.workqueue.items(), key=lambda item: -cost_of(item[0])))
            self._ordered = True
        super()._assign_work_unit(node)
