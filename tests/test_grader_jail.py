"""The kernel's limits without Jupyter: parsing them (grader/sandbox/limits.py), the jail
applying them to a child it starts (grader/sandbox/jail.py in its unprivileged ``none`` mode,
which every mode shares for the rlimits), and the reasons an exit status is reported with."""
from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from grader.sandbox.box import JAIL
from grader.sandbox.limits import Limits, exit_reason

#: The child: reports (to its log, its only output) and exits 0 when it sees what it expects.
PROBE = """
import json, os, resource, sys
expected = json.loads(sys.argv[1])
seen = {name: list(resource.getrlimit(getattr(resource, "RLIMIT_" + name))) for name in expected}
status = open("/proc/self/status").read()
seen_nnp = "NoNewPrivs:\\t1" in status
env = sorted(os.environ)
print(json.dumps({"rlimits": seen, "no_new_privs": seen_nnp, "env": env, "cwd": os.getcwd(),
                  "stdin": os.readlink("/proc/self/fd/0"), "stdout": os.readlink("/proc/self/fd/1")}),
      file=sys.stderr)
sys.exit(0 if seen == expected and seen_nnp else 3)
"""


def _jail(tmp_path: Path, argv: list[str], rlimits: dict[str, int], timeout: float = 60) -> tuple[int, str]:
    """Run ``argv`` through the jail (mode ``none``); its exit status and the child's stderr."""
    log = tmp_path / "kernel.log"
    spec = {"mode": "none", "argv": argv, "env": {"ONLY": "this", "LANG": "C.UTF-8"}, "cwd": str(tmp_path),
            "rlimits": rlimits, "log": str(log)}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, "-I", "-S", str(JAIL), str(tmp_path / "spec.json")],
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, (log.read_text() if log.exists() else "") + done.stderr


@pytest.mark.parametrize("overrides, problem", [
    ({"memroy_mb": 512}, "unknown limits ['memroy_mb']; known: "),
    ({"memory_mb": 100}, "too small to run a kernel"),
    ({"notebook_seconds": 0}, "too small to run a kernel"),
])
def test_bad_limits_are_refused_with_the_reason(overrides, problem):
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        Limits.for_job(30, overrides)


def test_limits_from_a_job():
    limits = Limits.for_job(5, {"memory_mb": 512, "notebook_seconds": 100})
    assert (limits.cell_seconds, limits.memory_mb, limits.cpu) == (5, 512, 160)   # CPU: wall clock + 60 s
    assert Limits.for_job(5, {"cpu_seconds": 7}).cpu == 7
    assert Limits.for_job(5).memory_mb == Limits().memory_mb
    assert limits.rlimits("none") == {"AS": 512 << 20, "CPU": 160, "FSIZE": 64 << 20, "NOFILE": 1024, "CORE": 0}
    assert limits.rlimits("uid")["NPROC"] == 64   # a process count only where the uid is the kernel's own


def test_the_jail_applies_the_rlimits_and_a_clean_environment(tmp_path):
    rlimits = Limits.for_job(5, {"memory_mb": 1024}).rlimits("none")
    expected = {name: [value, value + 5 if name == "CPU" else value] for name, value in rlimits.items()}
    code, log = _jail(tmp_path, [sys.executable, "-c", PROBE, json.dumps(expected)], rlimits)
    seen = json.loads(log.strip().splitlines()[-1])
    assert code == 0, seen
    assert seen["env"] == ["LANG", "ONLY"] and seen["cwd"] == str(tmp_path)
    assert seen["stdin"] == seen["stdout"] == "/dev/null"


def test_the_probe_fails_when_a_limit_is_not_applied(tmp_path):
    """The probe above can fail: ask it for a limit the jail was not given."""
    rlimits = Limits().rlimits("none")
    expected = {name: [value, value] for name, value in rlimits.items()}   # CPU's hard limit is +5 s
    code, _ = _jail(tmp_path, [sys.executable, "-c", PROBE, json.dumps(expected)], rlimits)
    assert code == 3


def test_memory_beyond_the_limit_is_refused(tmp_path):
    rlimits = {"AS": 512 << 20, "CORE": 0}
    grab = "try:\n    b = bytearray(1024 << 20)\nexcept MemoryError:\n    raise SystemExit(4)\n"
    assert _jail(tmp_path, [sys.executable, "-c", grab], rlimits)[0] == 4
    assert _jail(tmp_path, [sys.executable, "-c", grab.replace("1024 << 20", "16 << 20")], rlimits)[0] == 0


def test_a_file_beyond_the_limit_is_refused(tmp_path):
    # Python ignores SIGXFSZ, so the write fails with EFBIG (a non-Python child is killed by it)
    write = ("import errno\ntry:\n    open('big', 'wb').write(bytes(3 << 20))\nexcept OSError as e:\n"
             "    raise SystemExit(5 if e.errno == errno.EFBIG else 6)\n")
    assert _jail(tmp_path, [sys.executable, "-c", write], {"FSIZE": 1 << 20, "CORE": 0})[0] == 5
    assert _jail(tmp_path, [sys.executable, "-c", write], {"FSIZE": 8 << 20, "CORE": 0})[0] == 0


def test_cpu_time_beyond_the_limit_stops_the_child(tmp_path):
    if resource.getrlimit(resource.RLIMIT_CPU)[1] not in (resource.RLIM_INFINITY,) and \
            resource.getrlimit(resource.RLIMIT_CPU)[1] < 7:
        pytest.skip("this host's CPU limit is below the test's")
    code, _ = _jail(tmp_path, [sys.executable, "-c", "while True: pass"], {"CPU": 1, "CORE": 0}, timeout=30)
    assert code == 128 + signal.SIGXCPU
    assert exit_reason(code, Limits(cpu_seconds=1)) == "the kernel used up its CPU-time limit (1 s)"


def test_a_kernel_that_cannot_start_is_reported(tmp_path):
    code, log = _jail(tmp_path, [str(tmp_path / "no-such-python")], {"CORE": 0})
    assert code == 127
    assert "grader sandbox: cannot start the kernel: FileNotFoundError" in log


def test_the_child_exit_status_comes_through(tmp_path):
    code, _ = _jail(tmp_path, [sys.executable, "-c", "raise SystemExit(9)"], {"CORE": 0})
    assert code == 9
    assert exit_reason(code, Limits()).startswith("the kernel exited with status 9 (the notebook called sys.exit")


@pytest.mark.parametrize("code, reason", [
    (None, "the kernel stopped responding"),
    (126, "the sandbox could not start the kernel"),
    (128 + signal.SIGKILL, "the kernel was killed (out of memory, limit 2048 MB, or a kill signal)"),
    (128 + signal.SIGSEGV, "the kernel crashed (SIGSEGV)"),
    (128 + signal.SIGXFSZ, "the kernel wrote a file larger than the limit (64 MB)"),
    (128 + signal.SIGTERM, "the kernel was killed by SIGTERM"),
])
def test_exit_reasons(code, reason):
    assert exit_reason(code, Limits()) == reason
