"""The checker: the clean process where hidden checks run while a grading kernel answers their
calls (the kernel's side is :mod:`grader.kernel.agent`).

One checker per notebook, forked (:func:`main`, the template) from a process that has imported
the course's checks and full library (the course root first on its path) and never runs student
code, so each notebook gets a fresh one at no import cost. The executor
(:mod:`grader.autograde.execute`) drives it over a socket, one JSON line per command:

``{"op": "connect", "address": A}``
    connect to the kernel's agent at ``A`` (retrying while the kernel starts);
``{"op": "open", "expect": [names]}``
    a graded test cell is about to run; it may run each named check (``grader.checks.M.check_X``)
    once. Any other check request, or one outside an open cell, is refused and reported;
``{"op": "close"}``
    the cell ended: the reply lists its verdicts;
``{"op": "quit"}``.

The template runs as ``python -m grader.kernel.checker [MODULE...]``: the check modules named are
imported once, before any fork.

Every reply is ``{"ok": bool, "verdicts": [...], "stray": [...], "error": str}``: ``stray``
lists protocol violations outside any check since the last reply (the notebook tampered with
the agent). A check the notebook calls from its own code (an answer cell, inside a student's
function: an oracle) is refused with a message and checks nothing. A verdict is
``{"check": name, "ok": bool, "message": str, "problem": str, "tampered": bool, "seconds": float}``;
``problem``
says why a check could not finish (the kernel died, interrupted it, or broke the protocol).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import selectors
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grader.kernel.agent import Broken, Link, Peer, socket_path
from grader.checks import CheckFailed
from grader.sandbox.jail import serve_forks
from grader.sandbox.template import Template, template

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


def serve(fd: int) -> int:
    """The checker's loop: commands on ``fd`` (a socket to the executor), the kernel's
    requests on the kernel's socket; returns when the executor closes ``fd`` or says quit."""
    state = _State()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ, "control")
    pending = b""

    def answer(ok: bool = True, **fields: Any) -> None:
        reply = {"ok": ok, "verdicts": [], "stray": state.stray, **fields}
        state.stray = []
        data = (json.dumps(reply) + "\n").encode()
        while data:
            data = data[os.write(fd, data):]

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
            chunk = os.read(fd, 1 << 16)
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


def main(preload: list[str]) -> int:
    """The template: import the check modules in ``preload`` once, then for each request on
    stdin (a SOCK_SEQPACKET socket: ``{"cwd": folder}`` with two descriptors, the command
    socket and the stderr pipe) fork one checker that :func:`serve` s that notebook. A fork of
    a template that never ran a check or any student code: every notebook gets a fresh state,
    without paying the imports again. Ends (reaping its checkers) when stdin closes."""
    for name in preload:
        importlib.import_module(f"grader.checks.{name}")
    serve_forks(2, _checker)
    return 0


def _checker(request: dict[str, Any], fds: list[int]) -> None:
    """The checker of one notebook (a fork of the template): it never returns."""
    code = 1
    try:
        conn, err = fds
        os.dup2(err, 2)
        os.close(err)
        os.chdir(request["cwd"])
        code = serve(conn)
    except BaseException:  # noqa: BLE001 - said on its stderr, which the executor reads
        import traceback
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


# -- the executor's side -----------------------------------------------------------------------------

def _template(env: Mapping[str, str], modules: list[str]) -> Template:
    """This process's checker template for ``env`` and ``modules``."""
    return template([sys.executable, "-m", "grader.kernel.checker", *modules], env,
                    env.get("PYTHONPATH", "/").split(os.pathsep)[0])


class Checker:
    """The checker of one notebook, forked from this process's template for its ``env`` and
    ``modules`` (so it is ready before the kernel is); it runs in ``cwd``."""

    def __init__(self, env: Mapping[str, str], cwd: Path, modules: list[str]) -> None:
        self.sock, theirs = socket.socketpair()
        self.err, err = os.pipe()
        self.pid, self.why = None, ""
        for _ in range(2):  # a template that died meanwhile is started again
            found = _template(env, modules)
            self.pid = found.fork({"cwd": str(cwd)}, [theirs.fileno(), err])
            if self.pid is not None:
                break
            found.proc.wait()
            self.why = found.last_words()
        theirs.close()
        os.close(err)
        self.buffer = b""

    def command(self, op: str, timeout: float = 120.0, **fields: Any) -> dict[str, Any]:
        """Send a command and wait for its reply; a checker that died or does not answer gives
        ``{"ok": False, "error": why}``."""
        try:
            self.sock.sendall((json.dumps({"op": op, **fields}) + "\n").encode())
        except OSError:
            return self._dead()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.sock, selectors.EVENT_READ)
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    self._kill()
                    return {"ok": False, "verdicts": [], "stray": [], "error": f"the checker did not answer in {timeout:.0f} s"}
                try:
                    chunk = self.sock.recv(1 << 16)
                except OSError:
                    chunk = b""
                if not chunk:
                    return self._dead()
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def _kill(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)

    def _dead(self) -> dict[str, Any]:
        self._kill()
        err = b""
        with selectors.DefaultSelector() as selector:  # its last words, until its stderr closes
            selector.register(self.err, selectors.EVENT_READ)
            while selector.select(5) and (chunk := os.read(self.err, 1 << 16)):
                err += chunk
        lines = err.decode(errors="replace").strip().splitlines() or [self.why] * bool(self.why)
        return {"ok": False, "verdicts": [], "stray": [],
                "error": "the checker stopped" + (f" ({lines[-1]})" if lines else "")}

    def close(self) -> None:
        """Let it go: it exits when its command socket closes, and its template reaps it."""
        self.sock.close()
        if self.err >= 0:  # closed once
            os.close(self.err)
            self.err = -1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
