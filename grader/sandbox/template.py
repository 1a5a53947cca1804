"""Fork servers ("templates"): a process that imported what its forks need once and forks one
child per request. The checker's (:mod:`grader.kernel.checker`) and the kernels'
(``jail.py --template``) speak the same protocol on their stdin, a SOCK_SEQPACKET socket: a
JSON request with descriptors, answered ``{"pid": P}`` (the child forked for it); closing the
socket ends the template, which reaps its children first. This module is the grader's side:
one running template per command line and environment, per process."""
from __future__ import annotations

import atexit
import json
import socket
import subprocess
from collections.abc import Mapping
from typing import Any

__all__ = ["Template", "template", "close_templates"]


class Template:
    """A running template: ``argv`` started in ``env`` and ``cwd``."""

    def __init__(self, argv: list[str], env: Mapping[str, str], cwd: str) -> None:
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdin=theirs.fileno(),
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)  # it writes only if it cannot start
        theirs.close()

    def fork(self, request: Mapping[str, Any], fds: list[int]) -> int | None:
        """A new child for ``request`` holding ``fds``; its pid, or None when the template is gone."""
        try:
            socket.send_fds(self.control, [json.dumps(request).encode()], fds)
            reply = self.control.recv(1 << 10)
            return int(json.loads(reply)["pid"]) if reply else None
        except (OSError, ValueError, KeyError):
            return None

    def last_words(self) -> str:
        """The last line the template wrote before it ended ("" if it is alive or said nothing)."""
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        lines = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def close(self) -> None:
        self.control.close()  # the template reaps its children and exits
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_templates: dict[tuple[Any, ...], Template] = {}


def template(argv: list[str], env: Mapping[str, str], cwd: str) -> Template:
    """This process's template for ``argv`` and ``env`` (started on first use, again if it died)."""
    key = (tuple(argv), tuple(sorted(env.items())), cwd)
    found = _templates.get(key)
    if found is None or found.proc.poll() is not None:
        if found is not None:
            found.close()
        found = _templates[key] = Template(argv, env, cwd)
    return found


def close_templates() -> None:
    """Stop this process's templates (at exit, and before a worker process ends)."""
    while _templates:
        _templates.popitem()[1].close()


atexit.register(close_templates)
