"""Launcher of one grading kernel in a sandbox (standard library only; run as a script).

``python -I -S grader/sandbox/jail.py SPEC.json`` starts ``spec["argv"]`` (the kernel) with the
isolation ``spec["mode"]`` names and exits with the kernel's status (128 + signal if it was
killed). :mod:`grader.sandbox.box` writes the spec and documents the modes; this file only acts:

- ``namespaces``: new mount, PID, network, IPC and UTS namespaces (and a user namespace when
  not root). The kernel sees a fresh root file system: the paths in ``ro`` bound read-only,
  size-limited tmpfs for the writable ``tmpfs`` folders, a minimal /dev and a private /proc;
  nothing else of the host exists for it. This process stays outside as the handle
  jupyter_client holds; its child is PID 1 of the namespace and reaps; when the kernel ends,
  PID 1 ends and the kernel kills every process left in the namespace.
- ``uid``: the kernel runs as ``uid``/``gid`` (no groups, no capabilities); when it ends,
  every process of that uid is killed.
- ``none``: resource limits only.

Every mode sets the rlimits of ``spec["rlimits"]`` and ``PR_SET_NO_NEW_PRIVS`` on the kernel,
gives it ``spec["env"]`` as its whole environment, /dev/null as stdin/stdout/stderr (its
notebook output travels over the kernel protocol), and dies with its parent: a launcher whose
parent (the grader) goes away kills the sandbox.

Forked kernels (``spec["in_process"]``): ``python jail.py --template`` is a kernel template,
started in the kernels' clean environment. It imports :data:`PRELOAD` (ipykernel, IPython, zmq,
NumPy, matplotlib with the inline backend, the student-edition ``course`` first on its path)
once, stays single-threaded, never runs a cell, and for each request (a spec and the
``life`` socket) forks a launcher that does all of the above, except that the kernel is a fork
that runs ``IPKernelApp`` in-process instead of exec'ing a fresh Python. jupyter_client holds
``python -I -S jail.py --proxy PID FD`` instead: it passes SIGINT to the launcher's process
group and SIGTERM to the launcher, and exits with the status the launcher writes on the life
socket. The proxy dies with the grader; when the proxy dies (SIGKILL included) the life socket
closes and the launcher kills the sandbox.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from collections.abc import Callable

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 24, 36, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
# statvfs flags a bind remount must keep (the kernel refuses to clear locked ones)
_KEEP = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC}
DEVICES = ("null", "zero", "full", "random", "urandom")
RLIMITS = {"AS": resource.RLIMIT_AS, "CPU": resource.RLIMIT_CPU, "NPROC": resource.RLIMIT_NPROC,
           "FSIZE": resource.RLIMIT_FSIZE, "NOFILE": resource.RLIMIT_NOFILE, "CORE": resource.RLIMIT_CORE}

#: What a kernel template imports before any fork (a module that fails is the kernel's to import),
#: then every module of the ``course`` it finds on its path (:func:`_preload`).
PRELOAD = ("numpy", "matplotlib", "matplotlib.pyplot", "matplotlib_inline.backend_inline", "zmq", "IPython",
           "ipykernel.kernelapp", "ipykernel.ipkernel", "course")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {source} on {target}")


def _prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


def _mkdirs(path: str, mode: int = 0o755) -> None:
    os.makedirs(path, mode=mode, exist_ok=True)


def _bind(source: str, target: str, *, readonly: bool) -> None:
    if os.path.isdir(source):
        _mkdirs(target)
    else:
        _mkdirs(os.path.dirname(target))
        open(target, "a").close()
    _mount(source, target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (MS_RDONLY if readonly else 0)
    flags |= sum(ms for st, ms in _KEEP.items() if os.statvfs(target).f_flag & st)
    _mount(None, target, None, flags)


def _tmpfs(target: str, mb: int, mode: int, owner: tuple[int, int]) -> None:
    _mkdirs(target)
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={mb}m,mode={mode:o},nr_inodes=65536")
    os.chown(target, *owner)


def _build_root(spec: dict, owner: tuple[int, int]) -> None:
    """Mount the kernel's file system under spec['newroot'] and make it the root."""
    new = spec["newroot"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=755")
    for name in os.listdir("/"):  # merged /usr: /bin -> usr/bin and friends
        if os.path.islink("/" + name) and not os.path.lexists(new + "/" + name):
            os.symlink(os.readlink("/" + name), new + "/" + name)
    _tmpfs(new + "/dev", 1, 0o755, (0, 0))
    for dev in DEVICES:
        _bind("/dev/" + dev, new + "/dev/" + dev, readonly=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, new + "/dev/" + name)
    for path, (mb, mode) in spec["tmpfs"].items():
        _tmpfs(new + path, mb, int(mode, 8), owner if mode != "1777" else (0, 0))
    for path in spec["ro"]:  # after the tmpfs: a course under /tmp stays visible
        _bind(path, new + path, readonly=True)
    for path, data_path, mode in spec["files"]:
        with open(data_path, "rb") as src:
            data = src.read()
        _mkdirs(os.path.dirname(new + path))
        fd = os.open(new + path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, int(mode, 8))
        with os.fdopen(fd, "wb") as dst:
            dst.write(data)
    _mkdirs(new + spec["cwd"])
    for path, (mb, mode) in spec["tmpfs"].items():
        if mode != "1777":  # the kernel's own folders: everything staged in them is its
            for root, dirs, names in os.walk(new + path):
                for name in dirs + names:
                    os.chown(os.path.join(root, name), *owner)
    _mkdirs(new + "/proc")
    os.chdir(new)
    os.mkdir(".old", 0o700)
    machine = os.uname().machine
    _check(_libc.syscall(SYS_PIVOT_ROOT[machine], b".", b".old"), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", MNT_DETACH), "umount old root")
    os.rmdir("/.old")
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except PermissionError:
        if not spec.get("userns"):
            raise
        # A user namespace may not mount proc where the host's is partly hidden (containers);
        # the host's /proc must not be shown instead (same uid: /proc/PID/root escapes).
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _drop_capabilities() -> None:
    """No capabilities left, none to regain (a user namespace's root keeps them otherwise)."""
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) != 0:
            break  # past the last capability this kernel knows

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    data = (ctypes.c_uint32 * 6)()  # two zeroed __user_cap_data_struct
    _check(_libc.capset(ctypes.byref(Header(0x20080522, 0)), data), "capset")


def _open_log(spec: dict) -> int | None:
    """The kernel's own stderr when debugging the sandbox (a host file), else None."""
    if not spec.get("log"):
        return None
    return os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)


def _exec_kernel(spec: dict, log: int | None) -> None:
    """In the forked child: limits, identity, descriptors, then exec the kernel."""
    for name, value in spec["rlimits"].items():
        # CPU: SIGXCPU at the limit (a clear cause), SIGKILL 5 s later if it is ignored
        resource.setrlimit(RLIMITS[name], (value, value + 5 if name == "CPU" else value))
    if spec["mode"] in ("uid", "namespaces") and spec.get("uid") is not None and os.getuid() == 0 \
            and not spec.get("userns"):
        os.setgroups([])
        os.setresgid(spec["gid"], spec["gid"], spec["gid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    elif spec.get("userns"):
        _drop_capabilities()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the kernel does not outlive its launcher
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    os.chdir(spec["cwd"])
    report = os.dup(2)  # close-on-exec: where to say why the exec failed
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(null if log is None else log, 2)
    os.closerange(3, report)
    os.closerange(report + 1, 65536)
    if spec.get("in_process"):
        os.close(report)
        _run_kernel(spec)
    try:
        os.execve(spec["argv"][0], spec["argv"], spec["env"])
    except OSError:
        os.dup2(report, 2)
        raise


def _run_kernel(spec: dict) -> None:
    """In a fork of the template: become what ``exec(spec["argv"])`` (``python -m
    ipykernel_launcher -f FILE``) would be, with what the template imported, and exit."""
    os.environ.clear()
    os.environ.update(spec["env"])
    sys.argv = [spec["argv"][0], *spec["argv"][3:]]  # [python, -m, ipykernel_launcher, -f, FILE]
    sys.path.insert(0, os.getcwd())  # what -m puts first
    import tempfile
    tempfile.tempdir = None  # chosen again from $TMPDIR
    for name in ("get_configdir", "get_cachedir"):  # again from $MPLCONFIGDIR
        getattr(getattr(sys.modules.get("matplotlib"), name, None), "cache_clear", lambda: None)()
    if "numpy" in sys.modules:  # a fresh global generator, as a new process has (random reseeds itself)
        sys.modules["numpy"].random.seed()
    # No debugger: a grading kernel has no frontend to debug from, and ipykernel imports debugpy
    # (0.1 s of CPU, and a thread) when a kernel starts, if it can. The template cannot import it
    # for the kernels: that thread would be in every fork.
    sys.modules["debugpy"] = None
    code = 0
    try:
        from ipykernel import kernelapp
        kernelapp.launch_new_instance()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:  # noqa: BLE001 - as an uncaught exception ends a Python
        import traceback
        traceback.print_exc()
        code = 1
    try:
        import atexit
        atexit._run_exitfuncs()
    finally:
        os._exit(code)


def _start(spec: dict, log: int | None) -> None:
    """The forked child: exec the kernel, or say why not and exit 127."""
    try:
        _exec_kernel(spec, log)
    except BaseException as exc:  # noqa: BLE001 - reported, then the child ends
        os.write(2, f"grader sandbox: cannot start the kernel: {type(exc).__name__}: {exc}\n".encode())
    os._exit(127)


def _status(status: int) -> int:
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` until none is left (they may fork meanwhile)."""
    for _ in range(100):
        found = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    found = True
                    os.kill(int(pid), signal.SIGKILL)
            except OSError:
                continue
        if not found:
            return
        time.sleep(0.01)


def _kill_descendants() -> None:
    """SIGKILL every process descended from this one (as a subreaper, orphans that left their
    session became our children too) until none is left, and reap them."""
    me = os.getpid()
    for _ in range(100):
        parents: dict[int, list[int]] = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat", "rb") as fh:
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(pid))
        found, todo = [], list(parents.get(me, []))
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += parents.get(pid, [])
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        if not found:
            return
        time.sleep(0.01)


def _guard_parent(parent: int, child: int, life: int | None = None) -> None:
    """Block until ``child`` exits; kill it if our own parent goes away first, or the proxy
    holding the other end of ``life`` does."""
    while True:
        try:
            pid, status = os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == child:
            raise SystemExit(_status(status))
        if os.getppid() != parent:
            os.kill(child, signal.SIGKILL)
        if life is None:
            time.sleep(0.05)
        elif select.select([life], [], [], 0.05)[0] and not os.read(life, 64):
            os.kill(child, signal.SIGKILL)
            life = None


def _pid1(spec: dict, owner: tuple[int, int]) -> None:
    """PID 1 of the new namespaces: build the root, start the kernel, reap, then end all."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    log = _open_log(spec)
    _build_root(spec, owner)
    kernel = os.fork()
    if kernel == 0:
        _start(spec, log)
    code = 1
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid == kernel:
            code = _status(status)
            try:
                os.kill(-1, signal.SIGKILL)  # everything else in the namespace
            except ProcessLookupError:
                pass
    os._exit(code)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (the grader stopping the kernel): leave through the clean-up below."""
    raise SystemExit(128 + signum)


def main(spec_path: str, life: int | None = None) -> None:
    """The launcher: start the sandbox of ``spec_path``, exit with the kernel's status."""
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    parent = os.getppid()
    if os.getsid(0) != os.getpid():
        os.setsid()  # our own process group: killing "our group" never reaches the grader
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the kernel (same group)
    signal.signal(signal.SIGTERM, _terminate)
    mode = spec["mode"]
    if mode == "namespaces":
        uid, gid = os.getuid(), os.getgid()
        flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
        if spec.get("userns"):
            flags |= CLONE_NEWUSER
        _check(_libc.unshare(flags), "unshare")
        if spec.get("userns"):
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{name}", "w") as fh:
                    fh.write(text)
            owner = (0, 0)
        else:
            owner = (spec["uid"], spec["gid"])
        child = os.fork()
        if child == 0:
            try:
                _pid1(spec, owner)
            except BaseException as exc:  # noqa: BLE001 - report why the sandbox could not start
                print(f"grader sandbox: {type(exc).__name__}: {exc}", file=sys.stderr)
            os._exit(126)
        try:
            _guard_parent(parent, child, life)
        finally:  # PID 1 gone: the kernel ends every process of the namespace
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
            with contextlib.suppress(OSError):  # reaped, so its CPU time counts as ours
                os.waitpid(child, 0)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    child = os.fork()
    if child == 0:
        _start(spec, _open_log(spec))
    try:
        _guard_parent(parent, child, life)
    finally:
        _kill_descendants()
        if mode == "uid":
            kill_uid(spec["uid"])


# -- forked kernels: the template and the proxy -----------------------------------------------------

def template() -> int:
    """The kernel template (see the module docstring): on stdin (a SOCK_SEQPACKET socket),
    requests ``{"spec": path}`` with one descriptor, the life socket; replies ``{"pid": P}``,
    the launcher forked for it. Ends, reaping its launchers, when stdin closes."""
    del sys.path[0]  # this folder: nothing of the grader is importable
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the grader's Ctrl-C is the grader's
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _preload()
    if len(os.listdir("/proc/self/task")) != 1:  # a fork of a threaded process may deadlock
        print("grader kernel template: a preloaded module started a thread", file=sys.stderr)
        return 1
    serve_forks(1, lambda request, fds: _launcher(request["spec"], fds[0]))
    return 0


def _preload() -> None:
    """Import :data:`PRELOAD`, then the course's own modules (read from the package, so a new
    one is preloaded too; ``course.demo`` is a script, not something notebooks import)."""
    import importlib
    import pkgutil

    def load(name: str) -> None:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the kernel meets the same error when it imports it
            pass

    for name in PRELOAD:
        load(name)
    course = sys.modules.get("course")
    for info in pkgutil.iter_modules(getattr(course, "__path__", []), "course."):
        if info.name != "course.demo":
            load(info.name)


def serve_forks(nfds: int, child: Callable[[dict, list[int]], None]) -> None:
    """A template's loop (the protocol of :mod:`grader.sandbox.template`): for each request on
    stdin with ``nfds`` descriptors, fork ``child(request, fds)`` (which must not return) and
    reply its pid. Returns, having reaped every child, when stdin closes."""
    control = socket.socket(fileno=0)
    children: set[int] = set()
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(control, 1 << 16, nfds)
        except OSError:
            break
        if not msg or len(fds) != nfds:
            break
        children -= {pid for pid in children if os.waitpid(pid, os.WNOHANG)[0]}
        pid = os.fork()
        if pid == 0:
            control.close()
            child(json.loads(msg), fds)
            os._exit(1)
        for fd in fds:
            os.close(fd)
        children.add(pid)
        control.send(json.dumps({"pid": pid}).encode())
    for pid in children:
        os.waitpid(pid, 0)


def _launcher(spec_path: str, life: int) -> None:
    """A template's fork: :func:`main` for ``spec_path``, its status written on ``life``."""
    with open(spec_path, encoding="utf-8") as fh:
        log = json.load(fh).get("log")
    os.dup2(os.open(log or os.devnull, os.O_WRONLY | os.O_APPEND | (os.O_CREAT if log else 0), 0o600), 2)
    code = 1
    try:
        main(spec_path, life)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - reported, then the launcher ends
        print(f"grader sandbox: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        with contextlib.suppress(OSError):
            os.write(life, f"{code}\n".encode())
        os._exit(code)


def proxy(pid: int, life: int) -> int:
    """What jupyter_client holds for a forked launcher ``pid``: signals passed on, its status."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the life socket closes: the launcher kills the sandbox
    if os.getppid() == 1:
        return 128 + signal.SIGKILL
    signal.signal(signal.SIGINT, lambda *_: os.killpg(pid, signal.SIGINT))  # interrupts: the kernel's
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(life, 64)
        if not chunk:
            return 128 + signal.SIGKILL  # the launcher was killed before it could say
        data += chunk
    return int(data)


if __name__ == "__main__":
    if sys.argv[1] == "--template":
        sys.exit(template())
    if sys.argv[1] == "--proxy":
        sys.exit(proxy(int(sys.argv[2]), int(sys.argv[3])))
    main(sys.argv[1])
