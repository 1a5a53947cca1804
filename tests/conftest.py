"""Shared test fixtures and the hypothesis profile.

``backend``: runs a test once on NumPy and once on ``array_api_strict`` (its fake ``device1``,
where any NumPy-only call or hidden host transfer fails), and restores NumPy afterwards.

Hypothesis: the ``course`` profile is deterministic (``derandomize=True``, no example database)
and small, so the suite stays fast and reproducible in CI. ``HYPOTHESIS_PROFILE=thorough``
runs many more examples for a local hunt.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

import course
from _postgres import postgres_url  # noqa: F401 - a fixture of the gradebook tests (a server per module)
from course import backend as B

_COMMON = dict(
    derandomize=True,
    database=None,
    deadline=None,
    # the backend fixture is function-scoped on purpose: it only selects the namespace
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile("course", max_examples=8, **_COMMON)
settings.register_profile("thorough", max_examples=200, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "course"))

BACKENDS = ["numpy", "array_api_strict"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """``course.backend`` switched to the parametrized backend (``backend.name``, ``.xp``, ...)."""
    course.use(request.param)
    try:
        yield B
    finally:
        course.use("numpy")


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``-n N`` (``--dist load``, the default, ``loadscope`` or ``loadfile``): whole modules per
    worker, heaviest first (tests/_schedule.py). xdist's own ``loadgroup`` cannot do it: it
    marks groups by renaming ``item._nodeid``, which pytest 9 ignores."""
    if config.getvalue("dist") not in ("load", "loadscope", "loadfile"):
        return None
    from _schedule import ModuleScheduling  # xdist is imported only by a parallel run

    return ModuleScheduling(config, log)
