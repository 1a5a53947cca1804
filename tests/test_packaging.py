"""Packaging checks: the dependency lists agree, the lock pins them for every supported Python,
data files ship, and `import course` stays light and free of the instructor-only `grader` package."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from _imports import circles, graph

ROOT = Path(__file__).resolve().parents[1]
# Packages that are part of the interpreter/installer set-up rather than of the project.
TOOLING = {"python", "pip"}
# The extras constraints.txt pins besides the runtime dependencies (gpu's CuPy wheels are
# CUDA-specific and stay out of the lock).
LOCKED_EXTRAS = ("test", "cluster")
# The newest Python the lock was resolved for (uv pip compile --python-version 3.14); README says so.
NEWEST_PYTHON = "3.14"


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of `-`, `_`, `.` become one `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    """Name part of a pip requirement or conda spec ('conda-forge::numpy>=2.1' -> 'numpy')."""
    spec = spec.split("::")[-1].strip()
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)
    if match is None:
        raise ValueError(f"cannot read a package name from {spec!r}")
    return normalize(match.group(0))


def pyproject_packages() -> set[str]:
    """Runtime dependencies plus the `test` extra (the conda environment has no GPU extra)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["test"]
    return {requirement_name(s) for s in specs}


def conda_packages(text: str) -> set[str]:
    """Package names in an environment.yml `dependencies:` list, its `pip:` sub-list included.

    A line parser for the block-style YAML conda files use, so the test needs no PyYAML.
    """
    names: set[str] = set()
    in_dependencies = False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace() and not line.startswith("-"):  # a top-level key
            in_dependencies = line.startswith("dependencies:")
            continue
        item = re.match(r"\s*-\s+(.+)", line)
        if in_dependencies and item and not item.group(1).endswith(":"):  # skip the `- pip:` key
            names.add(requirement_name(item.group(1)))
    return names


def environment_yml() -> str:
    return (ROOT / "environment.yml").read_text()


def test_environment_yml_lists_the_same_packages_as_pyproject():
    conda = conda_packages(environment_yml()) - TOOLING
    pip = pyproject_packages()
    assert "numpy" in conda and "nbgrader" in conda, f"parser found too little: {sorted(conda)}"
    assert not pip - conda, (
        f"environment.yml lacks {sorted(pip - conda)} from pyproject.toml; add them under "
        "`dependencies:` (or under `pip:` when conda-forge lacks them)"
    )
    assert not conda - pip, (
        f"environment.yml has {sorted(conda - pip)} that pyproject.toml does not list; add them "
        "to [project] dependencies or the `test` extra, or drop them from environment.yml"
    )


def test_conda_line_parser_agrees_with_pyyaml():
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed; the line parser is unchecked")
    deps = yaml.safe_load(environment_yml())["dependencies"]
    specs = [d for d in deps if isinstance(d, str)]
    specs += [p for d in deps if isinstance(d, dict) for p in d.get("pip", [])]
    assert conda_packages(environment_yml()) == {requirement_name(s) for s in specs}


def test_conda_line_parser_reads_unindented_lists_and_skips_channels():
    text = (
        "name: x\nchannels:\n- conda-forge\n"
        "dependencies:\n- conda-forge::NumPy>=2\n- pip:\n  - Array_API.strict==1\n"
    )
    assert conda_packages(text) == {"numpy", "array-api-strict"}


def lock_lines() -> list[str]:
    """The requirement lines of constraints.txt, comments dropped."""
    lines = (line.split("#", 1)[0].strip() for line in (ROOT / "constraints.txt").read_text().splitlines())
    return [line for line in lines if line]


def locked_packages() -> set[str]:
    """What the lock must pin: the runtime dependencies and the LOCKED_EXTRAS."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [
        spec for extra in LOCKED_EXTRAS for spec in project["optional-dependencies"][extra]
    ]
    return {requirement_name(s) for s in specs}


def test_constraints_pin_every_dependency_and_not_torch():
    pins: dict[str, list[str]] = {}
    for line in lock_lines():
        pins.setdefault(requirement_name(line), []).append(line)
    unpinned = sorted(n for n in locked_packages() if not any("==" in p for p in pins.get(n, [])))
    assert not unpinned, f"constraints.txt does not pin {unpinned}; run `make lock`"
    assert "torch" not in pins, "constraints.txt pins torch (bench-only); run `make lock`"


def parsed_lock():
    """constraints.txt as packaging Requirements (markers parsed), skipped without packaging."""
    requirements = pytest.importorskip("packaging.requirements")
    return [requirements.Requirement(line) for line in lock_lines()]


def oldest_python():
    """The lowest Python pyproject's `requires-python` admits (">=3.11" -> 3.11.0)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    requires = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    lows = [Version(s.version) for s in requires if s.operator in (">=", "~=", "==")]
    assert len(lows) == 1, f"cannot read one lower bound from requires-python {requires}"
    return Version(".".join(map(str, (lows[0].release + (0, 0))[:3])))


def supported_pythons(requirements) -> list:
    """Python versions to probe, oldest..NEWEST_PYTHON: every minor's x.y.0, every version a marker
    of the lock names and the release after it (where a `>` or `<=` bound flips)."""
    from packaging.version import Version

    oldest, newest = oldest_python(), Version(NEWEST_PYTHON)
    found = {oldest}
    found |= {Version(f"3.{minor}.0") for minor in range(oldest.minor, newest.minor + 1)}
    for req in requirements:
        for literal in re.findall(r"python_(?:full_)?version\s*[<>=!~]+\s*['\"]([\d.]+)['\"]", str(req.marker or "")):
            major, minor, micro = (Version(literal).release + (0, 0))[:3]
            found |= {Version(f"{major}.{minor}.{micro}"), Version(f"{major}.{minor}.{micro + 1}")}
    return sorted(v for v in found if oldest <= v and (v.major, v.minor) <= (newest.major, newest.minor))


def environments(python):
    """Marker environments of CPython `python` on Linux, macOS and Windows."""
    from packaging.markers import default_environment

    for sys_platform, platform_system, os_name in [
        ("linux", "Linux", "posix"), ("darwin", "Darwin", "posix"), ("win32", "Windows", "nt"),
    ]:
        env = default_environment()
        env.update(
            python_version=f"{python.major}.{python.minor}", python_full_version=str(python),
            implementation_name="cpython", implementation_version=str(python),
            platform_python_implementation="CPython",
            sys_platform=sys_platform, platform_system=platform_system, os_name=os_name,
        )
        yield env


def test_lock_pins_exact_versions_with_valid_markers():
    for req in parsed_lock():
        specs = list(req.specifier)
        assert not req.url and not req.extras and len(specs) == 1 and specs[0].operator == "==" \
            and "*" not in specs[0].version, f"constraints.txt: {req} is not one exact pin; run `make lock`"


def test_lock_pins_each_package_once_on_every_supported_python():
    """The universal lock: on each supported Python and OS, every dependency has exactly one pin
    whose marker matches (two matching lines would make pip fail, none would leave it unpinned)."""
    requirements = parsed_lock()
    wanted = locked_packages()
    for python in supported_pythons(requirements):
        for env in environments(python):
            matching: dict[str, list[str]] = {}
            for req in requirements:
                if req.marker is None or req.marker.evaluate(env):
                    matching.setdefault(normalize(req.name), []).append(str(req))
            twice = {n: m for n, m in matching.items() if len(m) > 1}
            assert not twice, f"on Python {python} ({env['sys_platform']}) constraints.txt pins {twice}"
            missing = sorted(wanted - set(matching))
            assert not missing, f"on Python {python} ({env['sys_platform']}) constraints.txt pins no {missing}"


def test_installed_pins_admit_every_python_their_markers_admit():
    """Each pinned release installed here declares (Requires-Python) every supported Python its
    line's marker lets pip install it on: soupsieve 4.1.2 (>= 3.11.5) pinned without a marker made
    the lock uninstallable on Debian 12's 3.11.2. CI's oldest-Python run checks the other lines."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    requirements = parsed_lock()
    pythons = supported_pythons(requirements)
    checked, wrong = [], []
    for req in requirements:
        pinned = Version(next(iter(req.specifier)).version)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # another platform's or another Python's line
        if Version(dist.version) != pinned:
            continue
        checked.append(normalize(req.name))
        requires = SpecifierSet(dist.metadata.get("Requires-Python") or "")
        excluded = [
            str(python) for python in pythons
            if not requires.contains(python, prereleases=True)
            and any(req.marker is None or req.marker.evaluate(env) for env in environments(python))
        ]
        if excluded:
            wrong.append(f"{req} (Requires-Python {requires}) on Python {', '.join(excluded)}")
    if len(checked) < len(requirements) // 2:
        pytest.skip(f"only {len(checked)} of {len(requirements)} pins are installed here; "
                    "this environment was not installed from constraints.txt")
    assert not wrong, (
        f"constraints.txt pins releases for Pythons they do not support: {wrong}; run `make lock` "
        "(a universal lock gives them markers)"
    )


def test_lock_bound_is_the_oldest_python_pyproject_admits():
    """`make lock` resolves from LOCK_PYTHON up; it must be requires-python's lower bound, and the
    committed lock must say it was made for it."""
    from packaging.version import Version

    bound = re.search(r"^LOCK_PYTHON\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert bound, "the Makefile sets no LOCK_PYTHON for `make lock`"
    assert Version(bound.group(1)) == oldest_python(), (
        f"Makefile LOCK_PYTHON {bound.group(1)} is not requires-python's lower bound {oldest_python()}"
    )
    header = "".join(l for l in (ROOT / "constraints.txt").read_text().splitlines(True) if l.startswith("#"))
    assert f"CPython {bound.group(1)} and newer" in header, "constraints.txt was not made by `make lock`"


def test_every_data_file_is_shipped_as_package_data():
    course_dir = ROOT / "course"
    data_dir = course_dir / "data"
    assert (data_dir / "digits.npz").is_file(), "course/data/digits.npz (see NOTICE) is missing"
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["course"]
    shipped = {p for pattern in patterns for p in course_dir.glob(pattern) if p.is_file()}
    data_files = {
        p for p in data_dir.rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    }
    missing = sorted(str(p.relative_to(ROOT)) for p in data_files - shipped)
    assert not missing, (
        f"{missing} would be left out of the wheel; add a matching glob to "
        "[tool.setuptools.package-data] course in pyproject.toml"
    )


def test_import_course_loads_no_heavy_or_instructor_modules():
    forbidden = ["matplotlib", "cupy", "nbgrader", "torch", "grader"]
    code = (
        "import sys, course\n"
        "print(course.__file__)\n"  # None for a namespace package: no course/__init__.py ran
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & {set(forbidden)!r})))"
    )
    env = {k: v for k, v in os.environ.items() if k != "COURSE_BACKEND"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"`import course` failed:\n{result.stderr}"
    init_file, loaded = result.stdout.split("\n", 1)
    assert init_file != "None", "course/__init__.py is missing, so `import course` tested nothing"
    loaded = loaded.split()
    assert not loaded, f"`import course` imported {loaded}; import them lazily where they are used"


def test_course_source_never_imports_grader():
    offenders = []
    for path in sorted((ROOT / "course").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            if any(n == "grader" or n.startswith("grader.") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, (
        f"course/ imports the instructor-only grader package at {offenders}; the student "
        "edition ships without grader/, so move that code into grader/"
    )


def test_only_the_kernel_registry_reaches_the_speed_package():
    """course/fast is optional (the student edition leaves it out): the readable modules never
    import it; backend.kernel() loads it on the first lookup, if it is there."""
    offenders = []
    for path in sorted((ROOT / "course").rglob("*.py")):
        if "fast" in path.relative_to(ROOT / "course").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [f"{'.' * node.level}{node.module or ''}"] + [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(n.split(".")[-1] == "fast" or ".fast." in n or n.startswith("course.fast") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"{offenders} import course.fast; register a kernel there instead"


# -- no import circles inside course/ ----------------------------------------------------------------

def _course_import_graph() -> dict[str, set[str]]:
    return graph(ROOT / "course")


def test_the_import_graph_reader_sees_circles():
    """The finder itself: a two-module circle, one through a package, and a function-local import."""
    assert circles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert circles({"p": {"p.x"}, "p.x": {"p.y"}, "p.y": {"p"}}) == [["p", "p.x", "p.y"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    graph = _course_import_graph()
    assert "course.autodiff" in graph["course.ops"]  # a module-level `from .autodiff import ...`
    assert "course.nn" in graph["course.plots"]  # a function-local `from . import nn`
    assert "course.backend" in graph["course.fast.numpy"]  # `from .. import backend`


def test_course_modules_import_each_other_without_circles():
    """A circle makes the import order matter (a name used before its module finished loading)
    and keeps the modules from being read, tested or stubbed one at a time."""
    found = circles(_course_import_graph())
    assert not found, (
        f"import circles in course/: {found}; move the shared piece into a module both can "
        "import, or pass it in as an argument"
    )
