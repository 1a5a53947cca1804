"""Autodiff overhead on tiny tensors, course vs PyTorch CPU (one thread each), and import time.

Each row times one complete forward + backward on tensors of a few numbers, tensor creation
from a Python list included, e.g. ``x = tensor([...], requires_grad=True);
(x + x).sum().backward()``. At this size the arithmetic is nothing: the row measures what the
framework costs per operation (graph recording, dispatch, gradient bookkeeping).
Targets: every row at most PyTorch's time (issue 2); the tiny op ``add`` at most 10 µs and at
most 0.3x PyTorch's time (issue 10: the backward pass runs on plain arrays, see
``course.autodiff``), with the floor of the same arithmetic in raw NumPy calls shown for
scale. ``import course`` is timed in fresh
subprocesses (target < 0.5 s). Ratios and targets use median process CPU time (steady on a
shared, loaded machine; see ``_common.interleaved``); wall-time ratios are shown too.

    python bench/bench_autodiff.py [--quick] [--no-torch]
"""
from __future__ import annotations

import _common as C  # first: pins the thread pools before NumPy loads

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

import course  # noqa: E402

F32 = np.float32
V4 = [0.5, -1.0, 2.0, 0.25]
M4 = [[0.1 * (i + j) - 0.7 for j in range(4)] for i in range(4)]
N4 = [[0.2 * i - 0.05 * j for j in range(4)] for i in range(4)]


def cases(T, dtype) -> dict[str, object]:
    """The rows, written once for both frameworks: ``T`` is course.tensor or torch.tensor.

    Each returns its leaves so that :func:`check_gradients` can compare the results.
    """

    def add():
        x = T(V4, requires_grad=True, dtype=dtype)
        (x + x).sum().backward()
        return [x]

    def mul():
        x = T(V4, requires_grad=True, dtype=dtype)
        (x * x).sum().backward()
        return [x]

    def exp():
        x = T(V4, requires_grad=True, dtype=dtype)
        x.exp().sum().backward()
        return [x]

    def matmul():
        a = T(M4, requires_grad=True, dtype=dtype)
        b = T(N4, requires_grad=True, dtype=dtype)
        (a @ b).sum().backward()
        return [a, b]

    def chain():  # 10 elementwise ops then a sum: per-op cost with creation a small share
        x = T(V4, requires_grad=True, dtype=dtype)
        y = x
        for _ in range(5):
            y = (y * x).tanh()
        y.sum().backward()
        return [x]

    return {"add": add, "mul": mul, "exp": exp, "matmul": matmul, "chain": chain}


def numpy_floor() -> None:
    """The tiny op's arithmetic as raw NumPy calls, no framework: what no library can beat."""
    x = np.asarray(V4, dtype=F32)
    s = np.add.reduce(x + x)
    g = np.ones_like(s)
    gx = np.empty_like(x)
    gx[...] = g
    _ = gx + gx


ROWS = {
    "add": "x = tensor(4 floats); (x + x).sum().backward()",
    "mul": "(x * x).sum().backward()",
    "exp": "x.exp().sum().backward()",
    "matmul": "(A @ B).sum().backward(), A, B 4x4",
    "chain": "5 x (y * x).tanh() then sum, backward",
}


def check_gradients(ours: dict, theirs: dict) -> str:
    """Both frameworks must compute the same gradients, or the timings compare nothing."""
    for name in ROWS:
        for c, t in zip(ours[name](), theirs[name]()):
            if not np.allclose(c.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-6):
                raise AssertionError(f"{name}: course and torch gradients differ")
    return "check: the gradients of every row agree with PyTorch's (rtol 1e-5)"


IMPORT_SNIPPET = ("import time; t, c = time.perf_counter(), time.process_time(); import {mod}; "
                  "print(time.perf_counter() - t, time.process_time() - c)")
HEAVY = ("matplotlib", "cupy", "nbgrader")


def import_times(repeats: int, mods: list[str]) -> C.Times:
    """Wall and CPU seconds to import each module in a fresh interpreter (interleaved rounds,
    the same pinned environment, run from the repository root so the working tree's course loads)."""
    times = C.Times(mods)
    for _ in range(repeats):
        for m in mods:
            res = subprocess.run([sys.executable, "-c", IMPORT_SNIPPET.format(mod=m)], cwd=C.ROOT,
                                 env=os.environ, capture_output=True, text=True, check=True)
            wall, cpu = map(float, res.stdout.split())
            times.wall[m].append(wall)
            times.cpu[m].append(cpu)
    return times


def heavy_imports() -> str:
    """Which of the modules ``import course`` must not load it loaded anyway."""
    check = f"import sys, course; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    return subprocess.run([sys.executable, "-c", check], cwd=C.ROOT, env=os.environ, capture_output=True,
                          text=True, check=True).stdout.strip()


def main() -> None:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    torch = C.load_torch(blocked=args.no_torch)
    repeats = args.repeats or (3 if args.quick else 9)
    target = 0.02 if args.quick else 0.1

    print("## Autodiff overhead on tiny tensors\n")
    print(C.machine_report(torch), "\n")
    ours = cases(course.tensor, F32)
    timed = {f"course/{k}": v for k, v in ours.items()}
    timed["numpy/floor"] = numpy_floor
    if torch is not None:
        theirs = cases(torch.tensor, torch.float32)
        print(check_gradients(ours, theirs), "\n")
        timed.update({f"torch/{k}": v for k, v in theirs.items()})
    times = C.interleaved(timed, repeats, target)

    rows = []
    for name, what in ROWS.items():
        c, cw = C.cpu(times, f"course/{name}"), C.median(times.wall[f"course/{name}"])
        if torch is None:
            rows.append([what, C.fmt_time(c), C.TORCH_SKIPPED, "", "", ""])
            continue
        t, tw = C.cpu(times, f"torch/{name}"), C.median(times.wall[f"torch/{name}"])
        rows.append([what, C.fmt_time(c), C.fmt_time(t), f"{c / t:.2f}", f"{cw / tw:.2f}", C.verdict(c <= t)])
    print(f"forward + backward per call, CPU time, median of {repeats} interleaved rounds (float32, 1 thread):\n")
    print(C.table(["case (tensor creation included)", "course", "PyTorch CPU", "course/PyTorch",
                   "same, wall time", "target <= 1.0"], rows))
    tiny = C.cpu(times, "course/add")
    floor = C.cpu(times, "numpy/floor")
    line = f"\ntiny op (issue 10): course {C.fmt_time(tiny)}, raw NumPy floor {C.fmt_time(floor)}"
    if torch is not None:
        ratio = tiny / C.cpu(times, "torch/add")
        line += f", course/PyTorch {ratio:.2f}; target <= 10 µs and <= 0.30x: {C.verdict(tiny <= 10e-6 and ratio <= 0.3)}"
    else:
        line += f"; target <= 10 µs: {C.verdict(tiny <= 10e-6)}"
    print(line)
    best = ", ".join(f"{k} {C.fmt_time(min(v))}" for k, v in times.cpu.items())
    print(f"\nbest round per case (CPU time): {best}")

    n_imp = 3 if args.quick else 7
    mods = ["course", "numpy"] + (["torch"] if torch is not None else [])
    imp = import_times(n_imp, mods)
    heavy = heavy_imports()
    print(f"\nimport time in a fresh interpreter, {n_imp} interleaved rounds (course's includes NumPy's "
          f"own import); import course loads {heavy or 'none'} of {', '.join(HEAVY)}:\n")
    rows = []
    for m in mods:
        cpu = C.cpu(imp, m)
        rows.append([f"import {m}" + ("" if m == "course" else " (for reference)"), C.fmt_time(cpu),
                     C.fmt_time(min(imp.cpu[m])), C.fmt_time(C.median(imp.wall[m])),
                     C.verdict(cpu < 0.5) if m == "course" else ""])
    print(C.table(["import", *C.TIME_COLUMNS, "target < 0.5 s (CPU median)"], rows))
    print(f"\n{C.load_note()}")


if __name__ == "__main__":
    main()
