"""The limits a grading kernel runs under, as rlimits for the jail, and what an exit status
says about which one it hit."""
from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

__all__ = ["Limits", "exit_reason"]


@dataclass(frozen=True)
class Limits:
    """Resource limits of one notebook's kernel (``cpu_seconds`` 0: the notebook's wall-clock
    limit plus a minute)."""

    cell_seconds: float = 60
    notebook_seconds: float = 600
    memory_mb: int = 2048
    cpu_seconds: int = 0
    processes: int = 64
    file_mb: int = 64
    disk_mb: int = 256
    output_mb: float = 4

    @classmethod
    def for_job(cls, cell_seconds: float, overrides: Mapping[str, float] | None = None) -> Limits:
        """Defaults with ``cell_seconds`` and ``overrides`` (names of these fields)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides or {}) - known)
        if unknown:
            raise ValueError(f"unknown limits {unknown}; known: {sorted(known)}")
        limits = replace(cls(cell_seconds=cell_seconds), **dict(overrides or {}))
        if limits.cell_seconds <= 0 or limits.notebook_seconds <= 0 or limits.memory_mb < 256:
            raise ValueError(f"limits {limits} are too small to run a kernel")
        return limits

    @property
    def cpu(self) -> int:
        return self.cpu_seconds or int(self.notebook_seconds) + 60

    def rlimits(self, mode: str) -> dict[str, int]:
        limits = {"AS": self.memory_mb << 20, "CPU": self.cpu, "FSIZE": self.file_mb << 20,
                  "NOFILE": 1024, "CORE": 0}
        if mode != "none":  # a dedicated uid (or a user namespace): the count is the kernel's own
            limits["NPROC"] = self.processes
        return limits


def exit_reason(code: int | None, limits: Limits) -> str:
    """Why a kernel ended, from the launcher's exit status (128 + signal when killed)."""
    if code is None:
        return "the kernel stopped responding"
    if code == 126:
        return "the sandbox could not start the kernel"
    if code > 128:
        sig = code - 128
        if sig == signal.SIGXCPU:
            return f"the kernel used up its CPU-time limit ({limits.cpu} s)"
        if sig == signal.SIGKILL:
            return f"the kernel was killed (out of memory, limit {limits.memory_mb} MB, or a kill signal)"
        if sig == signal.SIGXFSZ:
            return f"the kernel wrote a file larger than the limit ({limits.file_mb} MB)"
        if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE):
            return f"the kernel crashed ({signal.Signals(sig).name})"
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return f"the kernel was killed by {name}"
    return (f"the kernel exited with status {code} (the notebook called sys.exit, os._exit, exit() "
            "or quit(), or the kernel failed)")
