"""The student JupyterLab set-up (lab/): what it turns off exists in the installed nbgrader,
applying it merges and is idempotent, the instructor folder wins by Jupyter's own priority
order, kernels get one BLAS thread unless the student chose a number, and the student edition
carries the set-up. The running Lab itself is tested in test_lab_browser.py."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from grader.labsetup import readme_lines, write_student_setup

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "lab"
STUDENT = LAB / "student"
INSTRUCTOR = LAB / "instructor"
PAGE_CONFIG = STUDENT / "etc" / "jupyter" / "labconfig" / "page_config.json"
SERVER_CONFIG = STUDENT / "etc" / "jupyter" / "jupyter_server_config.json"
KERNEL_CONFIG = STUDENT / "etc" / "ipython" / "ipython_kernel_config.py"
VALIDATE_PLUGIN = "@jupyter/nbgrader:validate-assignment"
VALIDATE_EXTENSION = "nbgrader.server_extensions.validate_assignment"
BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def _start_module():
    spec = importlib.util.spec_from_file_location("lab_start", LAB / "start.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _disabled(path: Path) -> dict[str, bool]:
    return json.loads(path.read_text())["disabledExtensions"]


def _server_extensions(path: Path) -> dict[str, bool]:
    return json.loads(path.read_text())["ServerApp"]["jpserver_extensions"]


def _nbgrader_plugin_ids() -> set[str]:
    """The JupyterLab plugin ids in the installed nbgrader labextension's bundle (string
    literals: most are written as ``id:"..."``, formgrader's through a variable)."""
    from jupyter_core.paths import jupyter_path

    for data_dir in jupyter_path("labextensions"):
        static = Path(data_dir, "@jupyter", "nbgrader", "static")
        if static.is_dir():
            return {m for js in static.glob("*.js")
                    for m in re.findall(r'"(@jupyter/nbgrader:[\w-]+)"', js.read_text(errors="replace"))}
    pytest.fail("nbgrader's labextension (@jupyter/nbgrader) is not installed")


def test_the_student_set_up_turns_off_every_nbgrader_plugin_but_validate():
    ids = _nbgrader_plugin_ids()
    disabled = {k for k, v in _disabled(PAGE_CONFIG).items() if v}
    assert VALIDATE_PLUGIN in ids, f"nbgrader's Validate plugin is gone; plugins: {sorted(ids)}"
    assert disabled <= ids, f"page_config.json names plugins nbgrader lacks: {sorted(disabled - ids)}"
    assert ids - disabled == {VALIDATE_PLUGIN}, (
        f"nbgrader plugins neither disabled nor Validate: {sorted(ids - disabled - {VALIDATE_PLUGIN})}"
        " (a new nbgrader release?); disable them in lab/student/ and re-enable them in lab/instructor/")


def test_the_server_extensions_named_exist_and_only_validate_stays_on():
    extensions = _server_extensions(SERVER_CONFIG)
    for module in extensions:
        assert importlib.util.find_spec(module) is not None, f"{module} is not importable"
    assert {m for m, on in extensions.items() if on} == {VALIDATE_EXTENSION}
    # every server extension nbgrader's install turns on is named, so none stays on by omission
    shipped = Path(sys.prefix, "etc", "jupyter", "jupyter_server_config.d", "nbgrader.json")
    if shipped.is_file():
        assert set(_server_extensions(shipped)) <= set(extensions)


def test_the_instructor_set_up_turns_back_on_what_the_student_one_turns_off():
    student_off = {k for k, v in _disabled(PAGE_CONFIG).items() if v}
    instructor = _disabled(INSTRUCTOR / "labconfig" / "page_config.json")
    assert {k for k, v in instructor.items() if v is False} == student_off
    student_ext = {m for m, on in _server_extensions(SERVER_CONFIG).items() if not on} - {"nbgrader"}
    instructor_ext = _server_extensions(INSTRUCTOR / "jupyter_server_config.json")
    assert {m for m, on in instructor_ext.items() if on} >= student_ext
    # "nbgrader" (all four at once) stays off: the four are loaded one by one
    assert "nbgrader" not in instructor_ext


def test_jupyter_reads_the_instructor_folder_first_then_the_environment_then_the_user(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JUPYTER_") or k in ("JUPYTER_PLATFORM_DIRS",)}
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "user")
    env["JUPYTER_CONFIG_PATH"] = str(INSTRUCTOR)
    code = "import json; from jupyter_core.paths import jupyter_config_path; print(json.dumps(jupyter_config_path()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    paths = [os.path.realpath(p) for p in json.loads(out)]
    order = [os.path.realpath(p) for p in (INSTRUCTOR, Path(sys.prefix, "etc", "jupyter"), tmp_path / "user")]
    assert all(p in paths for p in order), paths
    assert [paths.index(p) for p in order] == sorted(paths.index(p) for p in order), paths


def test_apply_merges_into_existing_files_and_is_idempotent(tmp_path):
    start = _start_module()
    page = tmp_path / "etc" / "jupyter" / "labconfig" / "page_config.json"
    page.parent.mkdir(parents=True)
    page.write_text(json.dumps({"disabledExtensions": {"some-other:plugin": True,
                                                       "@jupyter/nbgrader:menu": False}}))
    written = start.apply(tmp_path)
    assert page in written and (tmp_path / "etc" / "ipython" / "ipython_kernel_config.py") in written
    merged = _disabled(page)
    assert merged["some-other:plugin"] is True and merged["@jupyter/nbgrader:menu"] is True
    assert (tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json").is_file()
    assert start.apply(tmp_path) == [], "a second apply rewrote files"


def test_lab_command_opens_the_root_and_passes_options_last():
    start = _start_module()
    cmd = start.lab_command(Path("/x/notebooks"), ["--no-browser", "--port=9999"])
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert cmd[3] == "--ServerApp.root_dir=/x/notebooks" and cmd[-2:] == ["--no-browser", "--port=9999"]
    env = start.instructor_env({"JUPYTER_CONFIG_PATH": "/a"})
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep) == [str(INSTRUCTOR), "/a"]


def _kernel_blas(env: dict[str, str]) -> dict:
    """Start a kernel of this environment (as JupyterLab does) and read its BLAS set-up."""
    from jupyter_client.manager import start_new_kernel

    code = "import json, os, sys\npre = 'numpy' in sys.modules\nimport numpy\n" + _BLAS_PROBE
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        km, kc = start_new_kernel(kernel_name="python3")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out: list[str] = []
    try:
        kc.execute_interactive(code, timeout=60, output_hook=lambda m: out.append(
            m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return json.loads("".join(out).strip().splitlines()[-1])


#: Kernel code: the BLAS variables and OpenBLAS's own thread count (None where it is not found).
_BLAS_PROBE = r'''
def _openblas_threads():
    import ctypes, re
    try:
        maps = open("/proc/self/maps").read()
    except OSError:
        return None
    for lib in sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", maps))):
        for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                     "openblas_get_num_threads"):
            fn = getattr(ctypes.CDLL(lib), name, None)
            if fn is not None:
                return fn()
    return None
print(json.dumps({"numpy_before": pre, "threads": _openblas_threads(),
                  "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}))
'''


@pytest.fixture(scope="module")
def applied():
    """The student set-up in this environment (what `make install` and `make lab` write)."""
    start = _start_module()
    start.apply()
    return start


def test_kernels_get_one_blas_thread_by_default(applied, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARS}
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    probe = _kernel_blas(env)
    assert probe["numpy_before"] is False, "the kernel imported NumPy before its config ran"
    assert probe["env"] == dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1")
    if probe["threads"] is not None:
        assert probe["threads"] == 1


def test_a_thread_count_the_student_sets_wins(applied, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in BLAS_VARS}
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    env["OMP_NUM_THREADS"] = "2"
    probe = _kernel_blas(env)
    # only OMP_NUM_THREADS: OpenBLAS falls back to it, so the others must stay unset
    assert probe["env"] == {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": None, "MKL_NUM_THREADS": None}
    if probe["threads"] is not None and (os.cpu_count() or 1) >= 2:
        assert probe["threads"] == 2  # OpenBLAS caps at the number of cores


def test_the_edition_gets_the_student_set_up_and_not_the_instructor_one(tmp_path):
    lines = write_student_setup(tmp_path)
    assert lines == readme_lines() and any("python lab/start.py" in line for line in lines)
    assert (tmp_path / "lab" / "start.py").is_file()
    copied = sorted(p.relative_to(tmp_path / "lab" / "student") for p in (tmp_path / "lab" / "student").rglob("*") if p.is_file())
    source = sorted(p.relative_to(STUDENT) for p in STUDENT.rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts)
    assert copied == source
    assert not (tmp_path / "lab" / "instructor").exists()
    # the edition's script runs without the repository (no grader/, no lab/instructor/)
    result = subprocess.run([sys.executable, str(tmp_path / "lab" / "start.py"), "--instructor"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1 and "only in the course repository" in result.stderr
