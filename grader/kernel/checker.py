"""The checker: the clean process where hidden checks run while a grading kernel answers their
calls (the kernel's side is :mod:`grader.kernel.agent`).

One checker per notebook, started next to its kernel with the course root first on its path,
so it imports that course's checks and full library; it never runs student code. The
executor (:mod:`grader.autograde.execute`) drives it over stdin/stdout, one JSON line per command:

``{"op": "connect", "address": A}``
    connect to the kernel's agent at ``A`` (retrying while the kernel starts);
``{"op": "open", "expect": [names]}``
    a graded test cell is about to run; it may run each named check (``grader.checks.M.check_X``)
    once. Any other check request, or one outside an open cell, is refused and reported;
``{"op": "close"}``
    the cell ended: the reply lists its verdicts;
``{"op": "quit"}``.

Run as ``python -m grader.kernel.checker [MODULE...]``; the check modules named are imported first.

Every reply is ``{"ok": bool, "verdicts": [...], "stray": [...], "error": str}``: ``stray``
lists protocol violations outside any check since the last reply (the notebook tampered with
the agent). A check the notebook calls from its own code (an answer cell, inside a student's
function: an oracle) is refused with a message and checks nothing. A verdict is
``{"check": name, "ok": bool, "message": str, "problem": str, "tampered": bool, "seconds": float}``;
``problem``
says why a check could not finish (the kernel died, interrupted it, or broke the protocol).
"""
from __future__ import annotations

import importlib
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grader.kernel.agent import Broken, Link, Peer, socket_path
from grader.checks import CheckFailed

__all__ = ["Checker", "main"]

_NAME = re.compile(r"grader\.checks\.([A-Za-z]\w*)\.(check_\w+)")


class _State:
    """The checker's state: the kernel connection, the open cell's allowance, the findings."""

    def __init__(self) -> None:
        self.peer: Peer | None = None
        self.allowed: list[str] | None = None   # None: no test cell is running
        self.verdicts: list[dict[str, Any]] = []
        self.stray: list[str] = []
        self.running = False

    def connect(self, address: str, timeout: float = 30.0) -> socket.socket:  # the agent waits as long
        path = socket_path(address)
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.peer = Peer(Link(sock), exports="callables", serves=("call",), check_failed=CheckFailed,
                         handlers={"check": self.check})
        return sock

    def serve(self) -> None:
        """Handle one message of the kernel at the top level: a check request."""
        peer = self.peer
        assert peer is not None
        msg, buffers = peer.link.recv()
        if msg.get("op") in ("abort", "return", "raise"):
            return  # the tail of a check the kernel interrupted
        if msg.get("op") != "check" or type(msg.get("s")) is not int:
            raise Broken("a message outside any hidden test", tampered=True)
        peer.begin(msg["s"])
        try:
            peer.serve(msg, buffers)
        finally:
            peer.end()

    def check(self, msg: dict[str, Any], buffers: list[bytes]) -> None:
        """A ``check`` request: run it if the open cell allows it, else refuse and report it."""
        peer = self.peer
        assert peer is not None
        if self.running:
            raise Broken("a hidden test was started inside another one", tampered=True)
        try:
            module, name, args, kwargs = peer.decode(msg.get("a"), buffers)
            full = f"grader.checks.{module}.{name}"
            if not (isinstance(args, tuple) and isinstance(kwargs, dict) and _NAME.fullmatch(full)):
                raise ValueError
        except (ValueError, TypeError):
            raise Broken("a malformed hidden-test request", tampered=True) from None
        if self.allowed is None or full not in self.allowed:
            # a call from the notebook's own code (an answer cell, a student's function): it
            # learns nothing and costs nothing; only the test cell's own call is a verdict
            peer.reply({"ok": False, "message": f"{name} runs only as the hidden test of its own "
                                                "test cell, once; it checked nothing here."})
            return
        self.allowed.remove(full)
        verdict = {"check": full, "ok": False, "message": "", "problem": "", "tampered": False, "seconds": 0.0}
        self.verdicts.append(verdict)
        self.running = True
        start = time.perf_counter()
        try:
            fn = getattr(importlib.import_module(f"grader.checks.{module}"), name)
            fn(*args, **kwargs)
            verdict["ok"] = True
        except CheckFailed as exc:
            verdict["message"] = str(exc)
        except (ImportError, AttributeError) as exc:
            verdict["problem"] = f"no such hidden check ({exc})"
        except Broken as exc:
            verdict.update(problem=exc.why, tampered=exc.tampered)
            exc.reported = True
            raise
        finally:
            self.running = False
            verdict["seconds"] = round(time.perf_counter() - start, 4)
        peer.reply({"ok": verdict["ok"], "message": verdict["message"] or verdict["problem"]})


def main(preload: list[str]) -> int:
    """The checker's loop: commands on stdin, the kernel's requests on the socket; first the
    check modules in ``preload`` are imported (while the kernel starts)."""
    for name in preload:
        importlib.import_module(f"grader.checks.{name}")
    state = _State()
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "control")
    pending = b""

    def answer(ok: bool = True, **fields: Any) -> None:
        reply = {"ok": ok, "verdicts": [], "stray": state.stray, **fields}
        state.stray = []
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()

    while True:
        for key, _ in selector.select():
            if key.data == "kernel":
                try:
                    state.serve()
                except Broken as exc:
                    if exc.tampered and not getattr(exc, "reported", False):
                        state.stray.append(f"the notebook broke the hidden tests' protocol ({exc.why})")
                    if exc.kind != "abort":  # the kernel is gone, or its messages cannot be trusted
                        selector.unregister(key.fileobj)
                        key.fileobj.close()
                        state.peer = None
                continue
            chunk = os.read(key.fileobj, 1 << 16)
            if not chunk:
                return 0
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                command = json.loads(line)
                op = command.get("op")
                if op == "quit":
                    return 0
                if op == "connect":
                    try:
                        sock = state.connect(command["address"])
                    except OSError as exc:
                        answer(False, error=f"could not reach the kernel's agent ({exc})")
                        continue
                    selector.register(sock, selectors.EVENT_READ, "kernel")
                    answer()
                elif op == "open":
                    state.allowed, state.verdicts = list(command.get("expect", [])), []
                    answer()
                elif op == "close":
                    verdicts, state.allowed, state.verdicts = state.verdicts, None, []
                    answer(verdicts=verdicts)


# -- the executor's side -----------------------------------------------------------------------------

class Checker:
    """A running checker (started at once, so it loads while the kernel starts)."""

    def __init__(self, env: Mapping[str, str], cwd: Path, modules: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "grader.kernel.checker", *modules], cwd=cwd, env=dict(env),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buffer = b""

    def command(self, op: str, timeout: float = 120.0, **fields: Any) -> dict[str, Any]:
        """Send a command and wait for its reply; a checker that died or does not answer gives
        ``{"ok": False, "error": why}``."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):
            return self._dead()
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    self.proc.kill()
                    return {"ok": False, "verdicts": [], "stray": [], "error": f"the checker did not answer in {timeout:.0f} s"}
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return self._dead()
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def _dead(self) -> dict[str, Any]:
        self.proc.kill()
        err = self.proc.stderr.read().decode(errors="replace").strip().splitlines() if self.proc.stderr else []
        return {"ok": False, "verdicts": [], "stray": [],
                "error": "the checker stopped" + (f" ({err[-1]})" if err else "")}

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
