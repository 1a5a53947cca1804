"""The student edition holds no answers, by construction: built for real from this repository,
every function of its ``course`` package is offered to every hidden check and none passes, and
every library class whose default needs a graded function asks for the student's.

The edition's ``course`` is loaded under another package name next to the real one, so the
hidden checks compute their expected values with the real references while the candidates come
from the edition, and none of the checks' refusal guards (which patch the real ``course``) can
be what makes a candidate fail."""
from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import math
import os
import pkgutil
import signal
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grader.release.build import student_edition
from grader.checks import CheckFailed
from grader.checks._core import resolve
from grader.config import Course

ROOT = Path(__file__).resolve().parents[1]
COURSE = Course.at(ROOT)
FUNCTIONS = COURSE.catalog().functions
EDITION_PACKAGE = "edition_course"
CALL_SECONDS = 10


@pytest.fixture(scope="module")
def edition(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("student-edition")
    student_edition(COURSE, dest, verify=False)
    return dest


def test_the_edition_leaves_out_the_speed_package_and_the_grader(edition):
    assert (ROOT / "course" / "fast").is_dir() and not (edition / "course" / "fast").exists()
    assert not (edition / "grader").exists() and not (edition / "solutions").exists()


# -- the sweep: every edition function against every hidden check ---------------------------------

def _load(folder: Path, name: str) -> types.ModuleType:
    """The ``course`` package in ``folder`` as package ``name``, with all its modules imported."""
    spec = importlib.util.spec_from_file_location(name, folder / "course" / "__init__.py",
                                                  submodule_search_locations=[str(folder / "course")])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    for info in pkgutil.walk_packages(package.__path__, f"{name}."):
        importlib.import_module(info.name)
    return package


def _unload(name: str) -> None:
    for module in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
        del sys.modules[module]


def _candidates(package: str) -> list[tuple[str, Callable[..., Any]]]:
    """Every function of the package: module-level, private ones too, and the static and class
    methods of its classes (plain methods need an instance; their logic is reached through the
    class tests below)."""
    seen: dict[int, tuple[str, Callable[..., Any]]] = {}
    for name, module in sorted(sys.modules.items()):
        if not (name == package or name.startswith(package + ".")):
            continue
        for attr, value in vars(module).items():
            found = [(attr, value)]
            if inspect.isclass(value) and value.__module__ == name:
                found = [(f"{attr}.{k}", v.__func__) for k, v in vars(value).items()
                         if isinstance(v, (staticmethod, classmethod))]
            for label, fn in found:
                if inspect.isfunction(fn) and fn.__module__ == name:
                    seen.setdefault(id(fn), (f"{name.removeprefix(package + '.')}.{label}", fn))
    return sorted(seen.values(), key=lambda item: item[0])


def _hidden_call(ex: Any) -> tuple[Callable[..., None], list[str]]:
    """The check and the argument names of the one-line hidden test of ``ex``'s solution cell."""
    cells = json.loads((COURSE.solutions / ex.assignment / f"{ex.notebook}.ipynb").read_text())["cells"]
    source = next("".join(c["source"]) for c in cells
                  if c["metadata"].get("nbgrader", {}).get("grade_id") == ex.id)
    nodes = list(ast.walk(ast.parse(source)))
    imported = {a.asname or a.name: a.name for n in nodes
                if isinstance(n, ast.ImportFrom) and n.module == "grader.checks" for a in n.names}
    for node in nodes:
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "").startswith("check_"):
            module = importlib.import_module(f"grader.checks.{imported[node.func.value.id]}")
            return getattr(module, node.func.attr), [a.id for a in node.args]
    raise AssertionError(f"no hidden check call in {ex.key}")


def _given_names(ex: Any) -> dict[str, Any]:
    """The notebook's given classes the hidden call passes besides the answer (``Node``)."""
    cells = json.loads((COURSE.solutions / ex.assignment / f"{ex.notebook}.ipynb").read_text())["cells"]
    namespace: dict[str, Any] = {"np": np, "math": math}
    for cell in cells:
        if cell["metadata"].get("nbgrader", {}).get("grade_id", "").endswith("_class"):
            exec("".join(cell["source"]), namespace)
    return namespace


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


def _adapted(candidate: Callable[..., Any], reference: Callable[..., Any] | None) -> Callable[..., Any]:
    """``candidate`` called the way the check calls the student's function: each parameter gets
    the argument of its name (through the reference's signature, whose defaults fill what the
    check leaves out), else the argument in its position, else its own default, else False."""
    try:
        cand = list(inspect.signature(candidate).parameters.values())
    except (TypeError, ValueError):
        return candidate
    ref = inspect.signature(reference) if reference is not None else None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)

    def call(*args: Any, **kwargs: Any) -> Any:
        values = dict(kwargs)
        if ref is not None:
            try:
                bound = ref.bind(*args, **kwargs)
                bound.apply_defaults()
                values = dict(bound.arguments)
            except TypeError:
                pass
        positional: list[Any] = []
        named: dict[str, Any] = {}
        for i, p in enumerate(cand):
            if p.kind is p.VAR_POSITIONAL:
                positional += args[len(positional):]
                continue
            if p.kind is p.VAR_KEYWORD:
                named.update({k: v for k, v in values.items() if k not in {q.name for q in cand}})
                continue
            if p.name in values:
                value = values[p.name]
            elif i < len(args) and p.kind in kinds:
                value = args[i]
            elif p.default is not p.empty:
                continue
            else:
                value = False
            if p.kind in kinds and len(positional) == i:
                positional.append(value)
            else:
                named[p.name] = value
        return candidate(*positional, **named)

    return call


def _from_package(package: str, value: Any) -> Any:
    """A given object of the real ``course`` (the ``Tensor`` class the loss checks take), taken
    from the loaded copy ``package`` instead, so the copy's functions meet their own types."""
    module = getattr(value, "__module__", "") or ""
    if module == "course" or module.startswith("course."):
        return getattr(importlib.import_module(package + module.removeprefix("course")), value.__name__)
    return value


class _state_kept:
    """Give back the loaded ``package``'s module state after each candidate: a candidate called
    with another function's arguments can rebind a module global (``backend.use(input)`` makes
    the backend's name a Tensor, after which every Tensor op recurses) or fill a module-level
    dict (``register_kernel``), and every later candidate would fail for that reason alone."""

    def __init__(self, package: str) -> None:
        self._modules = [m for n, m in sys.modules.items() if n == package or n.startswith(package + ".")]

    def __enter__(self) -> None:
        self._saved = [(vars(m), dict(vars(m))) for m in self._modules]
        self._contents = [(v, v.copy()) for _, saved in self._saved for v in saved.values()
                          if type(v) in (dict, list, set)]

    def __exit__(self, *exc: Any) -> None:
        for namespace, saved in self._saved:
            namespace.clear()
            namespace.update(saved)
        for container, contents in self._contents:
            if isinstance(container, list):
                container[:] = contents
            else:
                container.clear()
                container.update(contents)


def _passing(candidates: list[tuple[str, Callable[..., Any]]], ex: Any, package: str) -> list[str]:
    """The candidates (functions of the loaded ``package``) that pass ``ex``'s hidden check,
    called as its hidden test calls it, each on the package's state as loaded."""
    check, names = _hidden_call(ex)
    given = {name: _from_package(package, value) for name, value in _given_names(ex).items()}
    reference = resolve(ex.replaces) if ex.replaces else None
    passed = []
    kept = _state_kept(package)
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for label, fn in candidates:
            args = [_adapted(fn, reference) if n == ex.function else given[n] for n in names]
            with kept:  # entered first, left last: the alarm never cuts a restore short
                signal.alarm(CALL_SECONDS)
                try:
                    with np.errstate(all="ignore"), _silent():
                        check(*args)
                except (CheckFailed, _Timeout, Exception):  # noqa: BLE001 - any failure is not a pass
                    continue
                finally:
                    signal.alarm(0)
            passed.append(label)
    finally:
        signal.signal(signal.SIGALRM, old)
    return passed


@pytest.fixture(scope="module")
def edition_functions(edition) -> Iterator[list[tuple[str, Callable[..., Any]]]]:
    _load(edition, EDITION_PACKAGE)
    yield _candidates(EDITION_PACKAGE)
    _unload(EDITION_PACKAGE)


@pytest.fixture(scope="module")
def library_functions() -> Iterator[list[tuple[str, Callable[..., Any]]]]:
    """The full library (with course.fast), loaded the same way: the sweep's control. The
    compiled kernels of course.fast.jit are left out: they trust their callers' shapes (no
    bounds checks in nopython code), so garbage arguments crash the process instead of raising;
    their NumPy twins in course.fast.numpy are offered."""
    _load(ROOT, "full_course")
    yield [(label, fn) for label, fn in _candidates("full_course") if not label.startswith("fast.jit.")]
    _unload("full_course")


@pytest.mark.slow
@pytest.mark.parametrize("ex", FUNCTIONS, ids=[ex.id for ex in FUNCTIONS])
def test_no_edition_function_passes_a_hidden_check(edition_functions, ex):
    assert len(edition_functions) > 150, f"only {len(edition_functions)} functions found: modules missed"
    passed = _passing(edition_functions, ex, EDITION_PACKAGE)
    assert not passed, f"{ex.key}: the student edition's {passed} pass the hidden check"


@pytest.mark.slow
@pytest.mark.parametrize("ex", [ex for ex in FUNCTIONS if ex.replaces], ids=lambda ex: ex.id)
def test_the_sweep_finds_the_full_librarys_reference(library_functions, ex):
    """The same sweep over the full library finds the reference (so a formula left in the
    edition would be found too), and names everything else that passes."""
    passed = _passing(library_functions, ex, "full_course")
    assert ex.replaces.removeprefix("course.") in passed, f"{ex.key}: the reference did not pass; passing: {passed}"


class _silent:
    """Swallow what candidates print (some are plotting or progress helpers) and close the
    pyplot figures they open (left open, they would fail test_plots in the same process)."""

    def __enter__(self) -> None:
        self._out, self._err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = open(os.devnull, "w")
        self._figures = set(_pyplot_figures())

    def __exit__(self, *exc: Any) -> None:
        sys.stdout.close()
        sys.stdout, sys.stderr = self._out, self._err
        for num in set(_pyplot_figures()) - self._figures:
            sys.modules["matplotlib.pyplot"].close(num)


def _pyplot_figures() -> list[int]:
    """Numbers of the open pyplot figures; none when no candidate imported pyplot yet."""
    plt = sys.modules.get("matplotlib.pyplot")
    return plt.get_fignums() if plt else []


# -- the classes: their defaults ask for the student's function -----------------------------------

CLASS_DEFAULTS = textwrap.dedent('''
    import json, numpy as np
    import course
    from course import backend as B, init, nn, optim, schedules

    def params():
        ps = [course.Parameter(np.ones(3)), course.Parameter(np.ones((2, 2)))]
        for p in ps:
            p.grad = course.Tensor(np.full(p.shape, 0.5))
        return ps

    def bn_train(**fns):
        layer = nn.BatchNorm1d(3, **fns)
        y = layer(course.Tensor(np.arange(12.0, dtype=np.float32).reshape(4, 3), requires_grad=True))
        y.sum().backward()

    def bn_eval(**fns):
        nn.BatchNorm1d(3, **fns).eval()(course.Tensor(np.ones((2, 3), dtype=np.float32)))

    def dropout():
        nn.Dropout(0.5, rng=0)(course.Tensor(np.ones((4, 3), dtype=np.float32)))

    def newton():
        p = course.Parameter(np.ones(2))
        optim.Newton([p]).step(lambda: (p * p).sum())

    cases = {
        "SGD": lambda: optim.SGD(params(), lr=0.1).step(),
        "SGD momentum": lambda: optim.SGD(params(), lr=0.1, momentum=0.9).step(),
        "SGD Nesterov": lambda: optim.SGD(params(), lr=0.1, momentum=0.9, nesterov=True).step(),
        "Adagrad": lambda: optim.Adagrad(params()).step(),
        "RMSprop": lambda: optim.RMSprop(params()).step(),
        "RMSprop Nesterov": lambda: optim.RMSprop(params(), momentum=0.9, nesterov=True).step(),
        "Adam": lambda: optim.Adam(params()).step(),
        "AdamW": lambda: optim.AdamW(params()).step(),
        "Newton": newton,
        "BatchNorm1d train": bn_train,
        "BatchNorm1d running stats": lambda: bn_train(forward_fn=FORWARD, backward_fn=BACKWARD),
        "BatchNorm1d eval": bn_eval,
        "Dropout": dropout,
        "Linear kaiming_uniform": lambda: nn.Linear(3, 2, init="kaiming_uniform"),
        "Linear xavier_normal": lambda: nn.Linear(3, 2, init="xavier_normal"),
        "lecun_normal": lambda: init.lecun_normal((2, 3)),
        "linear_decay": lambda: schedules.linear_decay(0.1, 10),
    }

    def FORWARD(x, gamma, beta, eps=1e-5):  # a student's batchnorm_forward
        mean = x.mean(axis=0)
        var = ((x - mean) ** 2).mean(axis=0)
        return gamma * (x - mean) / np.sqrt(var + eps) + beta, mean, var

    def BACKWARD(dy, x, gamma, mean, var, eps=1e-5):  # a student's closed-form backward
        n, inv = x.shape[0], 1 / np.sqrt(var + eps)
        xhat = (x - mean) * inv
        db, dg = dy.sum(axis=0), (dy * xhat).sum(axis=0)
        return gamma * inv / n * (n * dy - db - xhat * dg), dg, db

    out = {"kernels": [B.kernel(k) is not None for k in ("adam", "sgd", "batchnorm_forward", "scatter_add")]}
    for name, run in cases.items():
        try:
            run()
            out[name] = "ran"
        except NotImplementedError as exc:
            out[name] = str(exc)
    # with the student's functions passed in, the classes train
    ps = params()
    optim.SGD(ps, lr=0.1, update=lambda p, g, s, *, lr, **h: (p - lr * g, s)).step()
    bn_train(forward_fn=FORWARD, backward_fn=BACKWARD,
             running_stats_fn=lambda rm, rv, m, v, n, momentum=0.1: (rm, rv))
    out["student functions"] = float(ps[0].data[0])
    print(json.dumps(out))
''')

#: case -> the graded function its default needs
NEEDS = {
    "SGD": "sgd_step", "SGD momentum": "sgd_step", "SGD Nesterov": "sgd_step",
    "Adagrad": "adagrad_step", "RMSprop": "rmsprop_step", "RMSprop Nesterov": "rmsprop_nesterov_step",
    "Adam": "adam_step", "AdamW": "adam_step", "Newton": "newton_step",
    "BatchNorm1d train": "batchnorm_forward", "BatchNorm1d running stats": "update_running_stats",
    "BatchNorm1d eval": "fold_batchnorm", "Dropout": "dropout",
    "Linear kaiming_uniform": "kaiming_uniform", "Linear xavier_normal": "xavier_normal",
    "lecun_normal": "kaiming_normal", "linear_decay": "linear_decay",
}


def test_class_defaults_ask_for_the_students_function(edition):
    """Run as a student does: only the edition on the path, no course.fast."""
    env = {**os.environ, "PYTHONPATH": str(edition), "MPLBACKEND": "Agg"}
    env.pop("COURSE_BACKEND", None)
    run = subprocess.run([sys.executable, "-c", CLASS_DEFAULTS], cwd=edition, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out.pop("kernels") == [False] * 4, "the edition found fast kernels"
    assert out.pop("student functions") == pytest.approx(0.95)
    plugs = {ex.function: ex.plug for ex in FUNCTIONS if ex.replaces}
    for case, function in NEEDS.items():
        message = out[case]
        assert message.startswith(f"{function} is exercise "), f"{case}: {message}"
        assert "write it there and pass your function in" in message
        if plugs.get(function):
            assert plugs[function] in message, f"{case}: {message}"


# -- the edition as a student who finished gets it ---------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("assignment", COURSE.assignments())
def test_finished_notebooks_run_top_to_bottom_on_the_edition(edition, assignment, tmp_path):
    """The edition's release notebook with every answer filled in runs without an error in a
    kernel that sees only the edition's ``course`` (no course.fast, no grader)."""
    import nbformat
    from nbclient import NotebookClient

    from grader.release.fabricate import fill_submission

    for release in sorted((edition / "notebooks" / assignment).glob("*.ipynb")):
        solution = nbformat.read(COURSE.solutions / assignment / release.name, as_version=4)
        nb = fill_submission(nbformat.read(release, as_version=4), solution)
        # last, in the same kernel: which course the notebook ran on, and no fast kernel
        nb.cells.append(nbformat.v4.new_code_cell("import course, course.backend as B; "
                                                  "print(course.__file__, B.kernel('adam'))"))
        env = {**os.environ, "PYTHONPATH": str(edition), "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1"}
        env.pop("COURSE_BACKEND", None)
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(release.parent)}}).execute(env=env)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{release.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
        assert nb.cells[-1].outputs[-1]["text"].split() == [str(edition / "course" / "__init__.py"), "None"]


def test_the_edition_installs_the_student_lab(edition):
    """The edition carries the student's JupyterLab set-up (not the instructor's) and says how
    to start it."""
    assert (edition / "lab" / "start.py").is_file() and (edition / "lab" / "student").is_dir()
    assert not (edition / "lab" / "instructor").exists()
    readme = (edition / "README.md").read_text(encoding="utf-8")
    assert "pip install -e ." in readme and "python lab/start.py" in readme
