"""Shared benchmark helpers: thread pinning, machine report, interleaved timing, tables.

Import this module FIRST in every benchmark script: it pins every BLAS/OpenMP pool to one
thread through the environment, which the libraries read only when they are loaded, so it
must happen before NumPy (or PyTorch) is imported. ``BENCH_THREADS=N`` changes the count
for all libraries alike.
"""
from __future__ import annotations

import os
import sys

THREADS = os.environ.get("BENCH_THREADS", "1")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
             "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = THREADS
if "numpy" in sys.modules:  # someone imported NumPy first: its BLAS pool is already sized
    raise RuntimeError("bench/_common.py must be imported before numpy so the thread pins take effect")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # measure the working tree's course, installed or not
    sys.path.insert(0, ROOT)

import argparse  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

TORCH_SKIPPED = "torch not installed: skipped"


def load_torch(blocked: bool = False) -> Any:
    """PyTorch pinned to the same thread count, or None when it is not installed (or ``blocked``:
    ``--no-torch`` measures course as a process without PyTorch runs it; importing torch
    changes process-wide state such as glibc's malloc thresholds, which moves NumPy timings)."""
    if blocked:
        sys.modules["torch"] = None  # type: ignore[assignment]  # makes ``import torch`` fail
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(THREADS))
    try:
        torch.set_num_interop_threads(int(THREADS))
    except RuntimeError:  # only settable before the first parallel work; harmless if already 1
        pass
    return torch


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick`` and ``--repeats``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a fast smoke run: fewer, shorter repeats")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds per case")
    p.add_argument("--no-torch", action="store_true",
                   help="run as if PyTorch were not installed (its rows are skipped)")
    return p


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _numpy_blas() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy without mode="dicts"
        return "unknown"


def machine_report(torch: Any) -> str:
    """One Markdown block: CPU, cores, load, versions, BLAS libraries and thread pins."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores ({cores} usable)",
        f"- load average at start (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
        f"- Python {platform.python_version()}, NumPy {np.__version__} (BLAS: {_numpy_blas()})",
    ]
    if torch is None:
        lines.append(f"- PyTorch: {TORCH_SKIPPED}")
    else:
        blas = "MKL" if torch.backends.mkl.is_available() else "no MKL"
        lines.append(f"- PyTorch {torch.__version__} ({blas}), torch.get_num_threads() = {torch.get_num_threads()}")
    lines.append(f"- course.fast compiled kernels: {_jit_report()}")
    lines.append(f"- threads pinned: OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS = {THREADS}")
    return "\n".join(lines)


def _jit_report() -> str:
    from course.fast import jit

    if not jit.available:
        return "off (numba not installed, or COURSE_JIT=0): the NumPy kernels run"
    import numba

    return f"numba {numba.__version__}, single-threaded loops, for arrays of >= {jit.MIN_SIZE} elements"


def load_note() -> str:
    load = os.getloadavg()
    return f"load average now: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"


# -- timing ---------------------------------------------------------------------------------

def _calibrate(fn: Callable[[], Any], target: float) -> int:
    """Calls per measurement so one measurement lasts about ``target`` seconds."""
    fn()  # warm-up: first-call costs (allocation, lazy imports) stay out of the numbers
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= target / 4 or n >= 1 << 20:
            return max(1, int(n * target / max(dt, 1e-9)))
        n *= 4


class Times:
    """Seconds per call of each case: ``cpu`` (process CPU time) and ``wall`` (elapsed)."""

    def __init__(self, names: list[str]) -> None:
        self.cpu: dict[str, list[float]] = {k: [] for k in names}
        self.wall: dict[str, list[float]] = {k: [] for k in names}

    def __contains__(self, name: str) -> bool:
        return name in self.cpu


def interleaved(cases: dict[str, Callable[[], Any]], repeats: int, target: float) -> Times:
    """Time each case in ``repeats`` rounds that visit every case in turn.

    Interleaving (and rotating the order each round) spreads the load of a shared machine
    evenly over the cases. Both clocks are kept: with every library pinned to one thread,
    process CPU time leaves out the time the process waits for a core while other jobs
    run, so it is the steadier measure of what each implementation costs on a loaded
    machine; wall time is what a user waits. Garbage is collected before each measurement
    and the collector stays on during it (as in real use).
    """
    names = list(cases)
    numbers = {k: _calibrate(cases[k], target) for k in names}
    times = Times(names)
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            fn, n = cases[k], numbers[k]
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                fn()
            times.wall[k].append((time.perf_counter() - t0) / n)
            times.cpu[k].append((time.process_time() - c0) / n)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def cpu(times: Times, name: str) -> float:
    """The median CPU seconds per call of one case: the figure ratios and targets use."""
    return statistics.median(times.cpu[name])


def compare_rows(times: Times, ref: str | None, labels: dict[str, str], *, batch: int = 0) -> list[list[str]]:
    """Rows of a comparison table, one per case of ``labels`` that was timed.

    Columns: median and best CPU time per call, median wall time, and the ratio of the median
    CPU times to case ``ref``. With ``batch`` (samples per call) the times are shown as
    throughput, samples/s, and the ratio is ref time / case time (higher is faster).
    """
    out = []
    r = cpu(times, ref) if ref is not None and ref in times else None
    for key, label in labels.items():
        if key not in times:
            continue
        m, best, wall = cpu(times, key), min(times.cpu[key]), statistics.median(times.wall[key])
        if batch:
            cells = [f"{batch / m:,.0f}", f"{batch / best:,.0f}", f"{batch / wall:,.0f}", fmt_time(m)]
            ratio = f"{r / m:.2f}x" if r else ""
        else:
            cells = [fmt_time(m), fmt_time(best), fmt_time(wall)]
            ratio = f"{m / r:.2f}" if r else ""
        out.append([label, *cells, ratio])
    return out


TIME_COLUMNS = ["CPU time, median", "CPU time, best", "wall time, median"]
RATE_COLUMNS = ["samples/s (median)", "samples/s (best)", "samples/s (wall)", "CPU time per step"]


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown pipe table (readable in a terminal, pasteable into README)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")
