"""How long the explorers of course.explore take: one live redraw (compute, draw, render the PNG
the widget shows) per setting, and each static grid (build + PNG). Budgets: ~0.3 s a redraw,
~2 s a grid. Best of ``--repeat`` runs, so other load on the machine counts as little as possible."""
import _common  # noqa: F401  (pins BLAS threads before numpy)

import argparse
import io
import os
import time

import matplotlib

matplotlib.use("Agg")

from course import explore  # noqa: E402
from course.plots import _subplots  # noqa: E402

REDRAWS = {
    "initialization": (explore.functools.partial(explore._paint_depth, schemes=explore._schemes(
        explore.weight_init.xavier_normal, explore.weight_init.xavier_uniform,
        explore.weight_init.kaiming_normal, explore.weight_init.kaiming_uniform), width=128),
        dict(scheme="He normal", gain=1.41, depth=40, nonlinearity="relu")),
    "optimizers": (explore.functools.partial(explore._paint_race, rules={}),
                   dict(landscape="Rosenbrock", lr=1e-3, momentum=0.9, steps=300)),
    "batch_norm": (explore.functools.partial(explore._paint_bn, options={"norm_layer": None, "init": "kaiming_uniform"}),
                   dict(lr=1.0, show="both")),
}


def best(fn, repeat):
    """(wall, CPU) seconds of the fastest run; CPU time is what a loaded machine inflates least."""
    times = []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return min(times)


def redraw(paint, setting):
    fig, axes = _subplots(figsize=explore._LIVE_SIZE)
    paint(axes[0], **setting)
    fig.savefig(io.BytesIO(), format="png")


def grid(name):
    getattr(explore, name)(live=False).savefig(io.BytesIO(), format="png")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; best of {args.repeat}")
    print(f"{'explorer':16s} {'redraw, largest setting: wall / CPU':>36s} {'static grid: wall / CPU':>25s}")
    for name, (paint, setting) in REDRAWS.items():
        r = best(lambda: redraw(paint, setting), args.repeat)
        g = best(lambda: grid(name), max(1, args.repeat // 2))
        print(f"{name:16s} {r[0]:28.2f} / {r[1]:.2f} s {g[0]:16.2f} / {g[1]:.2f} s")


if __name__ == "__main__":
    main()
