"""Grading kernels forked from a kernel template (grader/sandbox/jail.py --template): each one
still gets its own sandbox, limits, clean environment and fresh process state, the template
never ran a cell, and stopping, interrupting and killing work through the proxy."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from grader.autograde.pipeline import kernel_library
from grader.sandbox.box import KernelBox, SandboxKernelManager, isolation
from grader.sandbox.limits import Limits

ROOT = Path(__file__).resolve().parents[1]

#: What a kernel reports about itself (one JSON line).
REPORT = """
import base64, json, os, resource, struct, sys, course, matplotlib.figure
get_ipython().run_line_magic("matplotlib", "inline")  # as the course's notebooks start
fig = matplotlib.figure.Figure(figsize=(3, 2))
fig.add_subplot().plot([0, 1])
png = base64.b64decode(get_ipython().display_formatter.format(fig)[0]["image/png"])  # as a cell's value
print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "env": sorted(os.environ),
    "png": struct.unpack(">II", png[16:24]), "dpi": fig.dpi,
    "as": resource.getrlimit(resource.RLIMIT_AS)[0], "nnp": "NoNewPrivs:\\t1" in open("/proc/self/status").read(),
    "course": course.__file__, "grader": sorted(m for m in sys.modules if m.split(".")[0] == "grader"),
    "tainted": getattr(course, "tainted", None), "file": os.path.exists("/tmp/left-by-the-last")}))
course.tainted = True
open("/tmp/left-by-the-last", "w").write("x")
"""


def _box(tmp_path: Path, name: str) -> KernelBox:
    return KernelBox(tmp_path, name, isolation(), Limits.for_job(30, {"memory_mb": 1536}),
                     library=kernel_library(ROOT), assignment="a", files={}, env={})


async def _kernel(box: KernelBox, code: str, interrupt: bool = False) -> tuple[dict, SandboxKernelManager]:
    km = SandboxKernelManager(box=box)
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        if interrupt:  # a cell that would run for a minute, interrupted as nbclient does on a timeout
            # stop_on_error=False, as nbgrader's allow_errors sends it: with the default, the kernel
            # aborts requests that reach it before its "stop aborting" message, so under load the
            # next cell could come back aborted, with no output
            msg_id = kc.execute("import time; time.sleep(60)", stop_on_error=False)
            await asyncio.sleep(1.0)
            await km.interrupt_kernel()
            reply = await kc.get_shell_msg(timeout=20)
            assert reply["parent_header"]["msg_id"] == msg_id
            assert reply["content"]["ename"] == "KeyboardInterrupt"
        lines: list[str] = []
        reply = await kc.execute_interactive(code, timeout=60, output_hook=lambda m: lines.append(
            m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
        assert reply["content"]["status"] == "ok", reply["content"]
        return json.loads("".join(lines).strip().splitlines()[-1]), km
    finally:
        kc.stop_channels()


def _gone(pid: int) -> bool:
    """``pid`` ended within 10 s (a zombie its template has not reaped yet counts as ended)."""
    for _ in range(200):
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(autouse=True)
def forked(monkeypatch):
    monkeypatch.setenv("GRADER_FORK_KERNELS", "1")


def test_each_forked_kernel_is_fresh_limited_and_clean(tmp_path):
    async def run() -> list[dict]:
        seen = []
        for name in ("one", "two"):
            box = _box(tmp_path, name)
            report, km = await _kernel(box, REPORT, interrupt=name == "two")
            assert km.provisioner.pid != box.sandbox_pid  # a proxy holds the forked launcher
            await km.shutdown_kernel(now=True)
            assert _gone(box.sandbox_pid), "the forked launcher outlived its proxy"
            box.close()
            seen.append(report)
        return seen

    one, two = asyncio.run(run())
    for report in (one, two):
        assert report["grader"] == [], "the template imported the grader"
        assert report["course"].startswith(str(kernel_library(ROOT)))  # the student edition
        assert report["as"] == 1536 << 20 and report["nnp"]
        assert "GRADER_FORK_KERNELS" not in report["env"] and "HOME" in report["env"]
        # drawn once, uncropped (box.KERNEL_CONFIG): the whole 3 x 2 in canvas, no tight crop
        assert report["png"] == [round(3 * report["dpi"]), round(2 * report["dpi"])]
    assert one["tainted"] is None and two["tainted"] is None, "a module attribute crossed notebooks"
    if isolation() != "none":  # /tmp is the host's in the none mode
        assert not two["file"], "a file of the last notebook was seen"


def test_a_killed_proxy_takes_the_sandbox_with_it(tmp_path):
    async def run() -> int:
        box = _box(tmp_path, "k")
        _, km = await _kernel(box, REPORT)
        os.kill(km.provisioner.pid, signal.SIGKILL)
        km.provisioner.process.wait()
        pid = box.sandbox_pid
        await km.cleanup_resources()
        box.close()
        return pid

    assert _gone(asyncio.run(run())), "the sandbox survived its proxy"
