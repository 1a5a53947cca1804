"""Packaging checks: the dependency lists agree, the lock pins them, data files ship,
and `import course` stays light and free of the instructor-only `grader` package."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Packages that are part of the interpreter/installer set-up rather than of the project.
TOOLING = {"python", "pip"}


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


def test_constraints_pin_every_dependency_and_not_torch():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pins[requirement_name(line)] = line
    unpinned = sorted(n for n in pyproject_packages() if "==" not in pins.get(n, ""))
    assert not unpinned, f"constraints.txt does not pin {unpinned}; run `make lock`"
    assert "torch" not in pins, "constraints.txt pins torch (bench-only); run `make lock`"


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
