"""Isolation and resource limits of grading kernels (the grader's side; the launcher itself is
:mod:`grader.sandbox.jail`).

Each notebook of a submission runs in its own kernel, started by :class:`SandboxKernelManager`
inside a :class:`KernelBox`, with the strongest isolation this host allows (:func:`isolation`):

``namespaces`` (root, or a user namespace)
    The kernel gets its own mount, PID, network, IPC and UTS namespaces. Its file system is
    built fresh: the Python installation, /usr and /etc read-only, the kernel's ``course/``
    (the student edition: no reference of any graded exercise) read-only, and size-limited tmpfs for its home (holding the assignment's
    data files), /tmp and /dev/shm; nothing else of the host exists for it: no gradebook, no
    instructor sources, no other submission. No network at all: it talks to the grader
    over Unix sockets the grader reaches through ``/proc/PID/root``. As root it also runs as a
    dedicated unprivileged uid (one per kernel, so RLIMIT_NPROC counts only its processes).
    When it ends, everything it started dies with its PID namespace.
``uid`` (root without namespaces, e.g. a container without CAP_SYS_ADMIN)
    A dedicated uid, no groups, no capabilities; its folder is its own (mode 700) inside a
    root-owned scratch folder (mode 711). It cannot write anything of the grader's; it can read
    world-readable files and reach the network, so keep the course's working area mode 700.
    Its processes are killed by uid when it ends.
``none`` (not root, no user namespaces)
    Resource limits only; the kernel runs as the grader's user.

In every mode the kernel has a clean environment (no variables of the grader's; nbgrader's
``NBGRADER_EXECUTION`` says ``validate``, as when a student validates at home), the limits of
:class:`Limits` as rlimits (address space, CPU time, processes, file size, open files, no core
files), ``no_new_privs``, and BLAS/OpenMP pinned to one thread. ``$GRADER_ISOLATION`` caps the
mode (``uid`` or ``none``) where the probe should not be trusted.
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from traitlets import Any as AnyTrait

from grader.sandbox.jail import kill_uid  # the jail runs stdlib-only; its killer serves both
from grader.config import BLAS_THREAD_VARS
from grader.sandbox.limits import Limits
from grader.sandbox.template import template

__all__ = ["isolation", "KernelBox", "SandboxKernelManager", "MODES"]

JAIL = Path(__file__).resolve().with_name("jail.py")
MODES = ("namespaces", "uid", "none")
ISOLATION_ENV = "GRADER_ISOLATION"
FORK_ENV = "GRADER_FORK_KERNELS"  # "0": every kernel an exec of a fresh Python
HOME = "/home/student"     # the kernel's home in the namespaces mode
BOX = "/box"               # its connection file and sockets there
UID_BASE, UID_SLOTS = 1_600_000_000, 4096


# -- which isolation works here ---------------------------------------------------------------------

_probe_lock = threading.Lock()


def isolation() -> str:
    """The strongest mode of :data:`MODES` that works on this host (probed once per process,
    by starting a Python in it), capped by ``$GRADER_ISOLATION``."""
    cap = os.environ.get(ISOLATION_ENV, "namespaces")
    if cap not in MODES:
        raise ValueError(f"${ISOLATION_ENV}={cap!r}: use one of {', '.join(MODES)}")
    for mode in MODES[MODES.index(cap):]:
        if mode == "none" or _works(mode):
            return mode
    return "none"


@functools.cache
def _works(mode: str) -> bool:
    if mode == "uid" and os.geteuid() != 0:
        return False
    with _probe_lock, tempfile.TemporaryDirectory(prefix="grader-probe-") as tmp:
        box = KernelBox(Path(tmp), "probe", mode, Limits(), library=None, assignment="probe",
                        files={}, env={}, kernel=False)
        try:
            spec = box.write_spec([sys.executable, "-S", "-c", "pass"])
            proc = subprocess.run([sys.executable, "-I", "-S", str(JAIL), str(spec)], capture_output=True,
                                  timeout=60)
            return proc.returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False
        finally:
            box.close()


# -- dedicated uids ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _uid_lease() -> Iterator[int]:
    """A uid no other running kernel uses (an flock per slot, so threads and processes agree)."""
    folder = Path(tempfile.gettempdir()) / "grader-uids"
    folder.mkdir(mode=0o700, exist_ok=True)
    start = (os.getpid() * 7) % UID_SLOTS
    for i in range(UID_SLOTS):
        slot = (start + i) % UID_SLOTS
        fd = os.open(folder / f"{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            yield UID_BASE + slot
        finally:
            os.close(fd)
        return
    raise RuntimeError(f"all {UID_SLOTS} sandbox uids are in use")


# -- one kernel's sandbox --------------------------------------------------------------------------------

def _library_paths(library: Path | None) -> list[str]:
    """Read-only paths a kernel needs: the system, this Python (its prefixes and the package
    folders on its path, never a project folder that happens to be on it) and ``library``
    (the folder of the kernel's ``course/``); nested paths dropped."""
    prefixes = {sys.prefix, sys.base_prefix, os.path.dirname(sys.executable)}
    prefixes |= {os.path.realpath(p) for p in prefixes} | {os.path.dirname(os.path.realpath(sys.executable))}
    packages = {p for p in sys.path if p and os.path.isdir(p)
                and (os.path.basename(p) in ("site-packages", "dist-packages")
                     or any(os.path.realpath(p).startswith(q + os.sep) for q in prefixes))}
    keep = {"/usr", "/etc"} | prefixes | {os.path.realpath(p) for p in packages}
    if library is not None:
        keep.add(str(library))
    keep = {p for p in keep if os.path.exists(p) and p != "/"}
    return sorted(p for p in keep if not any(p.startswith(q + os.sep) for q in keep if q != p))


# A grading kernel's IPython configuration. Jupyter shows a figure cropped to what is drawn
# ("tight" bounding box), which lays the whole figure out once more before drawing it: a third
# of the cells' time when 03_initialization is graded. The graded copy draws each figure once,
# uncropped: the course's figures keep their labels inside their own margins (tests/_figures.py
# and tests/test_notebook_figures.py assert it), so the feedback shows the same picture with the
# margins it was laid out with.
KERNEL_CONFIG = json.dumps({"InlineBackend": {"print_figure_kwargs": {"bbox_inches": None}}}).encode()


@functools.cache
def _matplotlib_cache() -> dict[str, bytes]:
    """Matplotlib's font cache, for each kernel's own config folder (building it costs a
    kernel a second or more)."""
    folder = _matplotlib_folder()
    return {} if folder is None else {p.name: p.read_bytes() for p in folder.glob("fontlist-*.json")}


@functools.cache
def _matplotlib_folder() -> Path | None:
    """A private folder holding matplotlib's font cache (the kernel template's config folder),
    built once per host and matplotlib version; None where it cannot be."""
    try:
        from importlib.metadata import PackageNotFoundError, version
        folder = Path(tempfile.gettempdir()) / f"grader-mpl-{os.geteuid()}-{version('matplotlib')}"
    except PackageNotFoundError:
        return None
    try:
        st = folder.lstat()
        if st.st_uid != os.geteuid() or st.st_mode & 0o077 or not folder.is_dir():
            return None  # not ours: never trust it
    except FileNotFoundError:
        tmp = Path(tempfile.mkdtemp(prefix="grader-mpl-build-"))
        env = {"MPLCONFIGDIR": str(tmp), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        try:
            subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=env,
                           capture_output=True, timeout=120, check=True)
            os.rename(tmp, folder)
        except (OSError, subprocess.SubprocessError):
            shutil.rmtree(tmp, ignore_errors=True)
            if not folder.is_dir():
                return None
    return folder


class KernelBox:
    """The sandbox of one kernel: a folder ``scratch/box-NAME`` (the spec, the connection
    file, in the ``uid``/``none`` modes the kernel's home), its uid, its environment.

    ``library``: the folder holding the kernel's ``course/`` (first on its path); ``files``:
    path relative to the kernel's working folder -> content (the assignment's data files);
    ``env``: extra environment variables for the kernel; ``kernel``: False for a bare Python
    (no font cache).
    """

    def __init__(self, scratch: Path, name: str, mode: str, limits: Limits, *, library: Path | None,
                 assignment: str, files: Mapping[str, bytes], env: Mapping[str, str],
                 kernel: bool = True) -> None:
        self.mode, self.limits, self.library = mode, limits, library
        self.dir = scratch / f"box-{name}"
        self.dir.mkdir(mode=0o700)
        self._lease: contextlib.AbstractContextManager[int] | None = None
        self.uid = self.gid = None
        if os.geteuid() == 0 and mode in ("namespaces", "uid"):
            self._lease = _uid_lease()
            self.uid = self.gid = self._lease.__enter__()
        if mode == "uid":
            os.chmod(scratch, 0o711)  # traversable by the kernel's uid, not listable
        self.home = HOME if mode == "namespaces" else str(self.dir / "home")
        self.connection_path = (f"{BOX}/kernel.json" if mode == "namespaces"
                                else f"{self.home}/.local/share/jupyter/runtime/kernel.json")
        self.cwd = f"{self.home}/{assignment}"
        self.files = {f"{self.cwd}/{rel}": data for rel, data in files.items()}
        if kernel:
            for fname, data in _matplotlib_cache().items():
                self.files[f"{self.home}/.config/matplotlib/{fname}"] = data
            self.files[f"{self.home}/.ipython/profile_default/ipython_kernel_config.json"] = KERNEL_CONFIG
        self.env = self._environment(env)
        self.sandbox_pid: int | None = None  # its launcher, whose /proc/PID/root is the kernel's

    def _environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        home = self.home
        env = {
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": home, "LANG": "C.UTF-8", "TMPDIR": "/tmp" if self.mode == "namespaces" else f"{home}/tmp",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
            "IPYTHONDIR": f"{home}/.ipython", "MPLCONFIGDIR": f"{home}/.config/matplotlib",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "JUPYTER_CONFIG_DIR": f"{home}/.jupyter", "JUPYTER_DATA_DIR": f"{home}/.local/share/jupyter",
            "JUPYTER_RUNTIME_DIR": f"{home}/.local/share/jupyter/runtime", "MALLOC_ARENA_MAX": "2",
            "NBGRADER_EXECUTION": "validate",
        }
        if self.library is not None:
            env["PYTHONPATH"] = str(self.library)
        env.update(dict.fromkeys(BLAS_THREAD_VARS, "1"))
        env.update(extra)
        return env

    def write_spec(self, argv: list[str], connection_file: Path | None = None, *, in_process: bool = False) -> Path:
        """Write the launcher's spec for running ``argv`` (and stage the files it needs);
        ``in_process``: the kernel is a fork of a kernel template, not an exec of ``argv``."""
        spec: dict[str, Any] = {"mode": self.mode, "uid": self.uid, "gid": self.gid, "argv": argv,
                                "env": self.env, "cwd": self.cwd, "rlimits": self.limits.rlimits(self.mode),
                                "log": os.environ.get("GRADER_SANDBOX_LOG"), "in_process": in_process}
        files = dict(self.files)
        if connection_file is not None:
            files[self.connection_path] = connection_file.read_bytes()
        if self.mode == "namespaces":
            staged = self.dir / "files"
            staged.mkdir(mode=0o700, exist_ok=True)
            spec["files"] = []
            for i, (path, data) in enumerate(sorted(files.items())):
                (staged / str(i)).write_bytes(data)
                spec["files"].append([path, str(staged / str(i)), "400" if path == self.connection_path else "644"])
            newroot = self.dir / "root"
            newroot.mkdir(mode=0o700, exist_ok=True)
            mb = max(16, self.limits.disk_mb)
            spec.update(newroot=str(newroot), ro=_library_paths(self.library), userns=os.geteuid() != 0,
                        tmpfs={HOME: [mb, "700"], "/tmp": [mb, "1777"], "/dev/shm": [64, "1777"], BOX: [4, "700"]})
        else:
            self._populate(files)
        path = self.dir / "spec.json"
        path.write_text(json.dumps(spec), encoding="utf-8")
        return path

    def template_env(self) -> dict[str, str] | None:
        """The environment of the kernel template for this box: the kernel's, less what names
        this box's own folders (every forked kernel gets its own whole environment), matplotlib's
        font cache as config folder and home. None where kernels are not forked (no font cache,
        or ``$GRADER_FORK_KERNELS`` is 0)."""
        folder = _matplotlib_folder()
        if folder is None or os.environ.get(FORK_ENV, "1") == "0":
            return None
        env = {k: v for k, v in self.env.items() if not v.startswith(self.home)}
        return {**env, "HOME": str(folder), "MPLCONFIGDIR": str(folder)}

    def _populate(self, files: Mapping[str, bytes]) -> None:
        """The uid/none modes: the kernel's home on the host, owned by its uid."""
        home = Path(self.home)
        for path, data in files.items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
        Path(self.cwd).mkdir(parents=True, exist_ok=True)
        (home / "tmp").mkdir(exist_ok=True)
        if self.uid is not None:
            os.chmod(self.dir, 0o711)  # the scratch folder above is 711 too (grade_submission)
            for root, dirs, names in os.walk(home):
                for name in dirs + names:
                    os.chown(os.path.join(root, name), self.uid, self.gid)
            os.chown(home, self.uid, self.gid)
            os.chmod(home, 0o700)

    def close_later(self, launcher: subprocess.Popen[bytes] | None) -> None:
        """Close the box once the kernel's ``launcher`` (already sent SIGTERM, so it is killing
        the sandbox) has exited, in a background thread: grading goes on meanwhile. A launcher
        that lingers past the grace time is killed; :func:`drain` waits for every such close."""
        thread = threading.Thread(target=self._reap, args=(launcher,), name="grader-reaper", daemon=True)
        with _closing_lock:
            _closing.append(thread)
        thread.start()

    def _reap(self, launcher: subprocess.Popen[bytes] | None) -> None:
        try:
            if launcher is not None:
                try:
                    launcher.wait(timeout=_REAP_GRACE)
                except subprocess.TimeoutExpired:
                    launcher.kill()
                    launcher.wait()
        finally:
            self.close()
            with _closing_lock:
                _closing.remove(threading.current_thread())

    def close(self) -> None:
        """Kill what the kernel left (by uid) and remove the folder."""
        if self.uid is not None and self.mode == "uid":
            kill_uid(self.uid)
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._lease is not None:
            self._lease.__exit__(None, None, None)
            self._lease = None


_REAP_GRACE = 5.0  # seconds a stopped launcher may take to tear its sandbox down
_closing: list[threading.Thread] = []
_closing_lock = threading.Lock()


def drain() -> None:
    """Wait until every box handed to :meth:`KernelBox.close_later` is closed (at exit, and
    before a worker process ends: nothing of a sandbox outlives the grader)."""
    while True:
        with _closing_lock:
            pending = list(_closing)
        if not pending:
            return
        for thread in pending:
            thread.join()


atexit.register(drain)


# -- the kernel manager --------------------------------------------------------------------------------

class SandboxKernelManager(AsyncKernelManager):
    """Starts the kernel through :mod:`grader.sandbox.jail` in ``box``; always this interpreter's
    ipykernel, whatever kernel name the notebook asks for."""

    box = AnyTrait(allow_none=True)
    _life: socket.socket | None = None  # the proxy's end of a forked launcher's life socket

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                          display_name="Python 3 (grader sandbox)", language="python")

    @property
    def ipykernel(self) -> bool:
        return True

    def _prepare(self) -> None:
        box: KernelBox = self.box
        self.connection_file = str(box.dir / "connection.json")
        if box.mode == "namespaces":
            self.transport, self.ip = "ipc", f"{BOX}/k"
            self.shell_port, self.iopub_port, self.stdin_port, self.control_port, self.hb_port = 1, 2, 3, 4, 5
        else:
            self.transport, self.ip = "tcp", "127.0.0.1"

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        self._prepare()
        return await super()._async_pre_start_kernel(**kw)

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        """The launcher's command: a proxy of a launcher forked from this process's kernel
        template (see :mod:`grader.sandbox.jail`), or the launcher itself where none runs."""
        box: KernelBox = self.box
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", box.connection_path, *(extra_arguments or [])]
        env = box.template_env()
        if env is not None:
            spec = box.write_spec(argv, Path(self.connection_file), in_process=True)
            self._life, theirs = socket.socketpair()
            pid = template([sys.executable, str(JAIL), "--template"], env, "/").fork({"spec": str(spec)},
                                                                                  [theirs.fileno()])
            theirs.close()
            if pid is not None:
                box.sandbox_pid = pid
                return [sys.executable, "-I", "-S", str(JAIL), "--proxy", str(pid), str(self._life.fileno())]
            self._life.close()  # no template: a fresh Python, as below
            self._life = None
        spec = box.write_spec(argv, Path(self.connection_file))
        return [sys.executable, "-I", "-S", str(JAIL), str(spec)]

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        kw.update(cwd=str(self.box.dir), env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                  stdout=subprocess.DEVNULL, stderr=None if os.environ.get("GRADER_SANDBOX_LOG") else subprocess.DEVNULL)
        if self._life is not None:
            kw["pass_fds"] = (self._life.fileno(),)
        try:
            await super()._async_launch_kernel(kernel_cmd, **kw)
        finally:
            if self._life is not None:  # the proxy holds it now (or, if it did not start, nobody)
                self._life.close()
                self._life = None
        if self.box.sandbox_pid is None:
            self.box.sandbox_pid = self.provisioner.pid
        if self.box.mode == "namespaces":  # the kernel's sockets, seen from here
            self.ip = f"/proc/{self.box.sandbox_pid}/root{BOX}/k"

    async def _async_kill_kernel(self, restart: bool = False) -> None:
        """SIGTERM to the launcher first: it kills everything the kernel started (its
        namespace, or its descendants and its uid) before it exits; SIGKILL if it lingers."""
        process = getattr(self.provisioner, "process", None)
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                process.terminate()
            for _ in range(100):
                if process.poll() is not None:
                    break
                await asyncio.sleep(0.02)
        await super()._async_kill_kernel(restart)

    def cleanup_connection_file(self) -> None:
        with contextlib.suppress(OSError):
            os.remove(self.connection_file)

    def cleanup_ipc_files(self) -> None:
        """Nothing to remove: the sockets lived in the kernel's own tmpfs."""
