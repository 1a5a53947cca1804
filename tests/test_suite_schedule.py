"""tests/_schedule.py names real tests: a renamed or removed module or test would otherwise
lose its place in the heaviest-first order without a word."""
from __future__ import annotations

from pathlib import Path

from _schedule import COST, SPREAD, cost_of, unit_of

ROOT = Path(__file__).resolve().parents[1]


def test_every_cost_and_spread_entry_names_a_test_module_or_function():
    for module in SPREAD:
        assert (ROOT / module).is_file(), module
    for prefix in COST:
        module, _, test = prefix.partition("::")
        assert (ROOT / module).is_file(), prefix
        assert not test or f"def {test}" in (ROOT / module).read_text(encoding="utf-8"), prefix
        assert not test or module in SPREAD, f"{prefix}: only a SPREAD module's tests are units of their own"


def test_units_are_modules_except_in_spread_modules_and_take_the_longest_prefix():
    spread = next(iter(sorted(SPREAD)))
    assert unit_of("tests/test_ops.py::test_add[float32]") == "tests/test_ops.py"
    assert unit_of(f"{spread}::test_x[a]") == f"{spread}::test_x[a]"
    assert cost_of("tests/test_assignments.py::test_solutions_full_marks_releases_zero_and_notebooks_in_sync") \
        == COST["tests/test_assignments.py::test_solutions_full_marks"]
    assert cost_of("tests/test_no_such_module.py") == 0
