"""The student's JupyterLab, started the way `make lab` starts it (``lab/start.py``, the same
set-up written into this environment) and driven by a real headless Chromium:

1. a release notebook shows the Validate button and none of nbgrader's instructor UI (no
   Nbgrader menu, Formgrader, Create Assignment sidebar, Course/Assignment List) and no
   "official Jupyter news" prompt on a fresh launch;
2. a solution notebook runs to the end with *Run All*, without a traceback, plots rendered,
   and its explorer cell (``course.explore``) shows widgets whose figure changes when a slider
   is moved;
3. *Validate* on a half-done release notebook opens nbgrader's result dialog with fewer failed
   cells than the untouched notebook has;
4. the server answers 404 on ``/formgrader`` and lists the disabled plugins in its page config;
   a kernel the Lab starts has one BLAS thread.

The browser is Debian's ``chromium`` (or $CHROMIUM) driven by the ``playwright`` package; no
browser is downloaded. Without them the browser test is skipped with the reason, and the same
notebook runs over the server's REST and kernel websocket API instead; set
``DEEPTRAIN_REQUIRE_BROWSER=1`` (CI does when it installed Chromium) to fail rather than skip.
The instructor Lab (`make lab-instructor`) is checked to keep formgrader and the plugins.

Screenshots go to ``artifacts/lab/`` (git-ignored; CI keeps them as artifacts). Every server
runs with its own empty user config, data and runtime folders, so a developer's ~/.jupyter
neither helps nor hurts, and each launch is a first launch.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

requests = pytest.importorskip("requests")
websocket = pytest.importorskip("websocket")

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "lab" / "start.py"
ASSIGNMENT = "03_initialization"  # the fastest notebook with plots (4 figures, ~5 s)
SOLUTION = ROOT / "solutions" / ASSIGNMENT / "initialization.ipynb"
RELEASE = ROOT / "notebooks" / ASSIGNMENT / "initialization.ipynb"
ARTIFACTS = ROOT / "artifacts" / "lab"
STUDENT_PAGE_CONFIG = ROOT / "lab" / "student" / "etc" / "jupyter" / "labconfig" / "page_config.json"
NBGRADER_INSTRUCTOR_PLUGINS = sorted(
    k for k, v in json.loads(STUDENT_PAGE_CONFIG.read_text())["disabledExtensions"].items() if v)
VALIDATE_PLUGIN = "@jupyter/nbgrader:validate-assignment"
NBGRADER_COMMANDS = ["nbgrader:open-course-list", "nbgrader:open-assignment-list",
                     "nbgrader:open-formgrader", "nbgrader:open-create-assignment"]
NEWS_PROMPT = "official Jupyter news"
#: Chromium on a machine without a screen, a sandbox or a network (see the env notes).
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

pytestmark = [pytest.mark.slow, pytest.mark.lab]


# -- notebooks served to the Lab ------------------------------------------------------------------

def _source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def _grade_id(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def half_done(release: dict, solution: dict) -> tuple[dict, str]:
    """``release`` with its first answer cell filled in from ``solution`` (the markers dropped).
    Returns the notebook and the grade id filled."""
    answers = {_grade_id(c): c for c in solution["cells"] if _grade_id(c)}
    nb = json.loads(json.dumps(release))
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "code" and meta.get("solution") and not meta.get("grade"):
            lines = _source(answers[meta["grade_id"]]).splitlines(keepends=True)
            cell["source"] = "".join(l for l in lines if "### BEGIN SOLUTION" not in l
                                     and "### END SOLUTION" not in l)
            return nb, meta["grade_id"]
    raise AssertionError(f"{RELEASE} has no answer cell")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    """The folder the student Lab opens: release/ (untouched), half-done/ (one exercise
    solved) and solution/ (the source notebook, whose solution markers are only comments)."""
    root = tmp_path_factory.mktemp("lab-root")
    release = json.loads(RELEASE.read_text(encoding="utf-8"))
    solution = json.loads(SOLUTION.read_text(encoding="utf-8"))
    for name, nb in (("release", release), ("half-done", half_done(release, solution)[0]),
                     ("solution", solution)):
        (root / name).mkdir()
        (root / name / RELEASE.name).write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return root


# -- a JupyterLab server, started as `make lab` starts it -----------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """``python lab/start.py [--instructor] --root ROOT`` on a free port, isolated from the
    user's own Jupyter folders; REST helpers."""

    def __init__(self, home: Path, root: Path, *, instructor: bool = False,
                 extra_env: dict[str, str] | None = None):
        self.port, self.token = _free_port(), uuid.uuid4().hex
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JUPYTER", "JPY_")) and k not in BLAS_VARS}
        env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
                   JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
                   PYTHONUNBUFFERED="1")
        env.update(extra_env or {})
        args = [sys.executable, str(START), *(["--instructor"] if instructor else []),
                "--root", str(root), "--no-browser", f"--port={self.port}",
                "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={self.token}",
                # window.jupyterapp, to read commands and the notebook model from the page
                "--LabApp.expose_app_in_browser=True"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--allow-root")  # CI containers run as root
        self.log_path = home / "server.log"
        self._log = open(self.log_path, "w")
        # the working folder `make lab` runs in: Validate reads nbgrader_config.py from there
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {self.token}"
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.get("/api/status").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"JupyterLab did not answer within 90 s:\n{self.log()}")
            time.sleep(0.25)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def get(self, path: str, **kw) -> requests.Response:
        return self.session.get(self.base + path, timeout=60, allow_redirects=False, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.session.post(self.base + path, timeout=120, allow_redirects=False, **kw)

    def page_config(self) -> dict[str, Any]:
        html = self.get("/lab").text
        match = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                          html, re.S)
        assert match, f"no page config in GET /lab:\n{html[:2000]}"
        return json.loads(match.group(1))

    def url(self, path: str) -> str:
        """Lab opening ``path`` in a fresh workspace (``reset``: no notebooks restored from the
        tab before)."""
        return f"{self.base}/lab/tree/{path}?token={self.token}&reset"

    def validate(self, path: str) -> dict[str, Any]:
        """What the Validate button asks the server (``POST /assignments/validate``)."""
        response = self.post("/assignments/validate", params={"path": path})
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["success"], result
        return json.loads(result["value"]) if isinstance(result["value"], str) else result["value"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # the server shuts its kernels down on SIGTERM
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


class Kernel:
    """A notebook session of the Lab (as opening the notebook creates) and its kernel's
    websocket: ``execute`` sends code the way the notebook does and collects the outputs."""

    def __init__(self, lab: Lab, path: str):
        response = lab.post("/api/sessions", json={"path": path, "name": Path(path).name,
                                                   "type": "notebook", "kernel": {"name": "python3"}})
        assert response.status_code == 201, response.text
        self.lab, self.session_id = lab, response.json()["id"]
        kernel_id = response.json()["kernel"]["id"]
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{lab.port}/api/kernels/{kernel_id}/channels?token={lab.token}",
            timeout=120)
        self.client_session = uuid.uuid4().hex

    def execute(self, code: str, timeout: float = 120) -> tuple[dict, list[dict]]:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": self.client_session,
                       "msg_type": "execute_request", "version": "5.3",
                       "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        reply, outputs, idle = None, [], False
        deadline = time.monotonic() + timeout
        while reply is None or not idle:
            self.ws.settimeout(max(1.0, deadline - time.monotonic()))
            raw = self.ws.recv()
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer within {timeout} s to:\n{code[:500]}")
            if not isinstance(raw, str):
                continue
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if msg.get("channel") == "shell" and kind == "execute_reply":
                reply = msg["content"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
            elif kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append({"output_type": kind, **msg["content"]})
        return reply, outputs

    def close(self) -> None:
        self.ws.close()
        self.lab.session.delete(f"{self.lab.base}/api/sessions/{self.session_id}", timeout=60)


@pytest.fixture(scope="module")
def student_lab(tmp_path_factory, served) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("student-home"), served)
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def instructor_lab(tmp_path_factory, served) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("instructor-home"), served, instructor=True)
    yield lab
    lab.stop()


# -- the browser ----------------------------------------------------------------------------------

def _chromium() -> str | None:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return found if found and os.access(found, os.X_OK) else None


class Browser:
    """A launched Chromium (``context``), or the ``reason`` it could not be launched."""

    def __init__(self, context=None, reason: str = ""):
        self.context, self.reason = context, reason

    def require(self) -> None:
        if self.context is None:
            if os.environ.get("DEEPTRAIN_REQUIRE_BROWSER") == "1":
                pytest.fail(f"DEEPTRAIN_REQUIRE_BROWSER=1 but {self.reason}")
            pytest.skip(f"{self.reason}; the same checks run over the REST API "
                        "(test_solution_notebook_runs_over_the_rest_api and the REST tests)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Browser]:
    executable = _chromium()
    if executable is None:
        yield Browser(reason="no Chromium (apt-get install chromium, or set $CHROMIUM)")
        return
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        yield Browser(reason=f"the playwright package is not installed ({exc})")
        return
    manager = sync_playwright()
    try:
        pw = manager.start()
    except Exception as exc:  # noqa: BLE001  (its driver cannot start here)
        yield Browser(reason=f"playwright cannot start: {exc}")
        return
    try:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=executable,
            headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1440, "height": 900},
            timeout=60_000)
    except Exception as exc:  # noqa: BLE001
        manager.__exit__(None, None, None)
        yield Browser(reason=f"{executable} did not launch: {str(exc).splitlines()[0]}")
        return
    context.set_default_timeout(60_000)
    try:
        yield Browser(context)
    finally:
        context.close()
        manager.__exit__(None, None, None)


def _screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def _open_lab(context, lab: Lab, path: str):
    """A new tab on ``path`` in Lab, once the app is restored and the notebook's kernel idle."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(lab.url(path))
    page.wait_for_function("() => window.jupyterapp !== undefined")
    page.evaluate("async () => { await window.jupyterapp.restored; }")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    page.evaluate(_PANEL_JS)
    page.wait_for_function(
        "(path) => window.panelOf(path)?.sessionContext?.session?.kernel?.status === 'idle'",
        arg=path, timeout=90_000)
    page.js_errors = errors
    return page


#: ``window.panelOf(path)``: the notebook panel showing ``path`` in the page's Lab.
_PANEL_JS = """() => { window.panelOf = (path) => {
    for (const w of window.jupyterapp.shell.widgets('main'))
        if (w.context && w.context.path === path) return w;
    return null; }; }"""


def _visible_student_ui(page) -> dict[str, Any]:
    return page.evaluate(
        """(commands) => {
            const app = window.jupyterapp;
            const labels = s => [...document.querySelectorAll(s)].map(e => (e.innerText || '').trim());
            return {
              menus: labels('#jp-MainMenu .lm-MenuBar-itemLabel'),
              right_tabs: [...document.querySelectorAll('#jp-right-stack .lm-TabBar-tab, .jp-SideBar.jp-mod-right .lm-TabBar-tab')]
                          .map(e => e.getAttribute('title') || e.innerText || ''),
              create_assignment: !!document.getElementById('nbgrader-create_assignemnt'),
              commands: commands.filter(c => app.commands.hasCommand(c)),
              validate_plugin: app.isPluginActivated('@jupyter/nbgrader:validate-assignment'),
              validate_buttons: labels('.jp-NotebookPanel:not(.lm-mod-hidden) .validate-button'),
            }; }""", NBGRADER_COMMANDS)


# -- the student's Lab ----------------------------------------------------------------------------

def test_student_server_has_no_formgrader_and_disables_the_instructor_plugins(student_lab):
    for path in ("/formgrader", "/formgrader/api/assignments", "/formgraders", "/courses",
                 "/assignments"):
        assert student_lab.get(path).status_code == 404, f"GET {path} should be 404 for students"
    assert student_lab.get("/nbgrader_version", params={"version": "0"}).status_code == 200
    config = student_lab.page_config()
    assert set(NBGRADER_INSTRUCTOR_PLUGINS) <= set(config["disabledExtensions"])
    assert VALIDATE_PLUGIN not in config["disabledExtensions"]
    assert "@jupyter/nbgrader" in {e["name"] for e in config["federated_extensions"]}
    notification = student_lab.get("/lab/api/settings/@jupyterlab/apputils-extension:notification").json()
    assert notification["schema"]["properties"]["fetchNews"]["default"] == "false"
    assert notification["schema"]["properties"]["checkForUpdates"]["default"] is False


def test_a_kernel_the_lab_starts_has_one_blas_thread(student_lab):
    from test_lab_setup import _BLAS_PROBE

    kernel = Kernel(student_lab, "release/probe.ipynb")
    try:
        reply, outputs = kernel.execute(
            "import json, os, sys\npre = 'numpy' in sys.modules\nimport numpy\n" + _BLAS_PROBE)
    finally:
        kernel.close()
    assert reply["status"] == "ok", outputs
    probe = json.loads("".join(o.get("text", "") for o in outputs).strip().splitlines()[-1])
    assert probe["env"]["OMP_NUM_THREADS"] == "1" and probe["env"]["OPENBLAS_NUM_THREADS"] == "1"
    assert probe["threads"] in (1, None)


def _failed_cells(result: dict) -> int:
    return len(result.get("failed", []))


@pytest.fixture(scope="module")
def failed_cells(student_lab) -> dict[str, int]:
    """Failed cells per folder as the Validate button's server handler reports them."""
    return {name: _failed_cells(student_lab.validate(f"{name}/{RELEASE.name}"))
            for name in ("release", "half-done")}


def test_validate_over_rest_fails_fewer_cells_when_an_exercise_is_done(failed_cells):
    assert 0 < failed_cells["half-done"] < failed_cells["release"], failed_cells


def test_student_lab_in_chromium(student_lab, browser, failed_cells):
    browser.require()
    t0 = time.monotonic()
    # 1. a release notebook (one exercise done): Validate, and nothing of the instructor's
    page = _open_lab(browser.context, student_lab, f"half-done/{RELEASE.name}")
    page.wait_for_timeout(2000)  # the news prompt would come right after the app is restored
    ui = _visible_student_ui(page)
    assert "File" in ui["menus"] and "Run" in ui["menus"], ui  # the menu bar was read
    assert "Nbgrader" not in ui["menus"], ui
    assert not ui["create_assignment"] and not any("Assignment" in t for t in ui["right_tabs"]), ui
    assert ui["commands"] == [], f"instructor commands registered: {ui['commands']}"
    assert ui["validate_plugin"] and ui["validate_buttons"] == ["Validate"], ui
    assert page.get_by_text(NEWS_PROMPT).count() == 0, "the Jupyter news prompt is shown"
    _screenshot(page, "student-release")

    # 3. Validate: nbgrader saves, validates on the server, shows its result dialog
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .validate-button").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(state="visible", timeout=120_000)
    assert "Validation Results" in dialog.locator(".jp-Dialog-header").inner_text()
    message = dialog.locator("#validation-message")
    failed_in_dialog = message.get_by_text("The following cell failed:").count()
    assert failed_in_dialog == failed_cells["half-done"] < failed_cells["release"], (
        failed_in_dialog, failed_cells, message.inner_text()[:2000])
    _screenshot(page, "student-validate")
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    page.close()

    # 2. a solution notebook with Run All (the Run menu), to the end, plots rendered
    page = _open_lab(browser.context, student_lab, f"solution/{RELEASE.name}")
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    state = page.wait_for_function(
        """(path) => {
            const w = window.panelOf(path), cells = w.content.model.cells;
            let code = 0, done = 0, errors = 0, images = 0;
            for (let i = 0; i < cells.length; i++) {
              const c = cells.get(i);
              if (c.type !== 'code') continue;
              code++;
              const outs = c.outputs.toJSON();
              errors += outs.filter(o => o.output_type === 'error').length;
              images += outs.filter(o => o.data && o.data['image/png']).length;
              if (c.executionCount) done++;
            }
            if (errors) return {errors, code, done, images};
            const idle = w.sessionContext?.session?.kernel?.status === 'idle';
            return code > 0 && done === code && idle && {errors, code, done, images};
          }""", arg=f"solution/{RELEASE.name}", timeout=180_000, polling=500).json_value()
    assert state["errors"] == 0, f"a cell raised: {state}"
    dom = page.evaluate(
        """() => {
            const outs = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output')];
            const imgs = outs.flatMap(o => [...o.querySelectorAll('img')])
                             .filter(i => !i.closest('.jupyter-widgets'));  // the explorer's figure: step 4
            return {traceback: outs.some(o => /Traceback|Error:/.test(o.innerText || '')),
                    images: imgs.length, decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length}; }""")
    assert not dom["traceback"], "an output shows a traceback"
    assert state["images"] >= 1 and dom["images"] == state["images"], (state, dom)
    assert dom["decoded"] == dom["images"], dom
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output img").last.scroll_into_view_if_needed()
    _screenshot(page, "student-solution-run")

    # 4. the explorer cell (course.explore) is live here: move its depth slider, the figure changes
    _move_explorer_slider(page)
    assert not page.js_errors, page.js_errors
    page.close()
    print(f"\nbrowser checks: {time.monotonic() - t0:.1f} s; screenshots in {ARTIFACTS}")


def _explorer_image(page) -> str:
    """The src of the figure in the explorer widget (a data: URL of the PNG), once drawn."""
    image = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jupyter-widgets .widget-output img").first
    image.wait_for(state="visible", timeout=60_000)
    return image.get_attribute("src")


def _move_explorer_slider(page) -> None:
    """Press → on the explorer's depth slider (it redraws on release, as after a mouse drag) and
    wait for another figure; the readout must show the new depth."""
    widget = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jupyter-widgets.widget-vbox").first
    widget.scroll_into_view_if_needed()
    before = _explorer_image(page)
    slider = widget.locator(".widget-slider", has=page.get_by_text("depth", exact=True)).first
    readout = slider.locator(".widget-readout")
    start = int(readout.inner_text())
    handle = slider.locator(".noUi-handle")
    handle.focus()
    handle.press("ArrowRight")
    page.wait_for_function(
        """(before) => { const i = document.querySelector(
              '.jp-NotebookPanel:not(.lm-mod-hidden) .jupyter-widgets .widget-output img');
            return i && i.complete && i.naturalWidth > 0 && i.getAttribute('src') !== before; }""",
        arg=before, timeout=60_000, polling=250)
    assert int(readout.inner_text()) == start + 1
    widget.scroll_into_view_if_needed()
    _screenshot(page, "student-explorer")


def test_solution_notebook_runs_over_the_rest_api(student_lab, browser):
    """Without a browser: the solution notebook's cells through the Lab's own kernel, as
    Run All sends them, with no error and its figures as image/png."""
    if browser.context is not None:
        pytest.skip("the browser test ran this notebook with Run All")
    nb = json.loads(SOLUTION.read_text(encoding="utf-8"))
    kernel = Kernel(student_lab, f"solution/{RELEASE.name}")
    images = 0
    try:
        for cell in nb["cells"]:
            if cell["cell_type"] != "code":
                continue
            reply, outputs = kernel.execute(_source(cell))
            errors = [o for o in outputs if o["output_type"] == "error"]
            assert reply["status"] == "ok" and not errors, (_source(cell)[:300], errors)
            images += sum("image/png" in o.get("data", {}) for o in outputs)
    finally:
        kernel.close()
    assert images >= 1


# -- the instructor's Lab -------------------------------------------------------------------------

def test_instructor_lab_keeps_formgrader_and_the_plugins(instructor_lab, browser):
    assert instructor_lab.get("/formgrader").status_code != 404
    assert instructor_lab.get("/formgraders").status_code == 200
    disabled = set(instructor_lab.page_config()["disabledExtensions"])
    assert not disabled & set(NBGRADER_INSTRUCTOR_PLUGINS + [VALIDATE_PLUGIN]), disabled
    if browser.context is None:
        return
    page = _open_lab(browser.context, instructor_lab, f"release/{RELEASE.name}")
    ui = _visible_student_ui(page)
    # the same probes find the instructor UI, so their silence in the student Lab means something
    assert "Nbgrader" in ui["menus"] and ui["create_assignment"], ui
    assert any("Create Assignment" in t for t in ui["right_tabs"]), ui
    assert set(ui["commands"]) == set(NBGRADER_COMMANDS) and ui["validate_buttons"] == ["Validate"], ui
    _screenshot(page, "instructor-release")
    page.close()
