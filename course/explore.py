"""Interactive explorers for three experiments, with a static fallback.

* :func:`initialization` (assignment 03): the spread of the activations and of the gradients
  ∂L/∂h layer by layer, as the initializer, its gain, the depth and the nonlinearity change.
* :func:`optimizers` (02): the optimizer race on the course's 2-D landscapes, as the learning
  rate and the momentum change.
* :func:`batch_norm` (04): a deep ReLU network trained with and without batch norm at a
  chosen learning rate.

The computations are plain functions (:func:`depth_stats`, :func:`race`, :func:`bn_losses`).
Every graded function they need can be passed in, so the student's own code runs; a library
reference is used only when none is given (the student edition stubs those), and a function
that raises ``NotImplementedError`` (an unfinished exercise) is named in the figure instead of
stopping the explorer.

**Live or static.** With a front-end that renders widgets the explorer is a row of ipywidgets
controls above a figure that is redrawn when a control is released. Otherwise it is one
matplotlib figure: a grid of panels for a few fixed settings. A kernel cannot ask its
front-end whether it renders widgets, so :func:`live_frontend` decides from how the kernel was
started, in this order:

1. the ``live`` argument (True/False), then ``DEEPTRAIN_EXPLORE=live`` or ``static``;
2. static while nbgrader validates or autogrades (it sets ``NBGRADER_EXECUTION``);
3. static without ipywidgets, or outside an IPython kernel (a script, terminal IPython);
4. live in a kernel that a Jupyter server started for a notebook (JupyterLab, Notebook 7: the
   server sets ``JPY_SESSION_NAME``), in VS Code (``__vsc_ipynb_file__``) and in Colab;
5. static in every other kernel: nbclient, ``jupyter nbconvert --execute``, papermill, CI.

A kernel that a notebook's kernel starts in turn inherits ``JPY_SESSION_NAME``; set
``DEEPTRAIN_EXPLORE=static`` there.
"""
from __future__ import annotations

import functools
import importlib.util
import io
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from . import data, losses, nn, optim, train
from . import init as weight_init
from .testing import gd_step  # plain GD: no exercise, assignment 2 starts from it

__all__ = ["live_frontend", "initialization", "depth_stats", "optimizers", "race", "LANDSCAPES",
           "batch_norm", "bn_losses", "NONLINEARITIES"]

Rule = Callable[..., Any]
#: scheme(shape, rng, gain) -> weights: an initializer whose standard deviation scales with gain
Scheme = Callable[[tuple[int, int], np.random.Generator, float], np.ndarray]
NONLINEARITIES = ("relu", "tanh", "leaky_relu", "sigmoid")
LANDSCAPES: dict[str, Callable[[], data.Landscape]] = {
    "quadratic (κ = 50)": lambda: data.quadratic(50.0, math.pi / 6),
    "saddle": data.saddle,
    "Rosenbrock": data.rosenbrock,
}
_LIVE_SIZE = (7.0, 4.2)
_MODES = ("live", "static")


# -- live or static ---------------------------------------------------------------------------------

def live_frontend() -> bool:
    """Whether this kernel's front-end renders widgets: the rules of the module docstring."""
    mode = os.environ.get("DEEPTRAIN_EXPLORE", "").strip().lower()
    if mode:
        if mode not in _MODES:
            raise ValueError(f"DEEPTRAIN_EXPLORE={mode!r} is not understood: set it to 'live' "
                             "(widgets) or 'static' (a grid of figures), or unset it to decide "
                             "from how the kernel was started")
        return mode == "live" and _widgets_installed()
    if os.environ.get("NBGRADER_EXECUTION") or not _widgets_installed():
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    return bool(os.environ.get("JPY_SESSION_NAME") or "__vsc_ipynb_file__" in shell.user_ns
                or "google.colab" in sys.modules)


def _widgets_installed() -> bool:
    return importlib.util.find_spec("ipywidgets") is not None


def _explorer(paint: Callable[..., None], controls: Callable[[Any], dict[str, Any]],
              settings: Sequence[Mapping[str, Any]], *, live: bool | None, title: str) -> Any:
    """The widget (live) or the static grid of ``paint(ax, **setting)`` for each setting.

    ``controls(ipywidgets)`` builds one control per keyword of ``paint``.
    """
    if live is None:
        live = live_frontend()
    elif live and not _widgets_installed():
        raise ImportError("live=True needs ipywidgets (pip install ipywidgets), which is not "
                          "installed here; pass live=False for the static grid of figures")
    return _widget(paint, controls) if live else _grid(paint, settings, title)


def _widget(paint: Callable[..., None], controls: Callable[[Any], dict[str, Any]]) -> Any:
    import ipywidgets as widgets
    from IPython.display import Image, display

    from .plots import _subplots

    def redraw(**setting: Any) -> None:
        fig, axes = _subplots(figsize=_LIVE_SIZE)
        paint(axes[0], **setting)
        fig.subplots_adjust(left=0.1, right=0.97, bottom=0.12, top=0.9)  # tight_layout is slower
        png = io.BytesIO()
        fig.savefig(png, format="png")  # one rendering; displaying the Figure would render it twice
        display(Image(png.getvalue()))

    made = controls(widgets)
    out = widgets.interactive_output(redraw, made)
    box = widgets.HBox(list(made.values()), layout=widgets.Layout(flex_flow="row wrap"))
    return widgets.VBox([box, out])


def _grid(paint: Callable[..., None], settings: Sequence[Mapping[str, Any]], title: str,
          ncols: int = 2) -> Any:
    from .plots import _margins, _subplots

    rows = math.ceil(len(settings) / ncols)
    fig, axes = _subplots(rows, ncols, figsize=(5.6 * ncols, 3.9 * rows + 0.5))
    for ax, setting in zip(axes, settings):
        paint(ax, **setting)
    for ax in axes[len(settings):]:
        ax.set_visible(False)
    fig.suptitle(f"{title}\n(static view: in JupyterLab this cell shows sliders)", fontsize="medium")
    _margins(fig, top=0.85, hgap=0.8)
    return fig


def _unfinished(exc: NotImplementedError, name: str) -> str:
    """One line for a panel: which function is an unfinished exercise."""
    said = str(exc).split(" (")[0]  # the edition's stub: "f is exercise 'f' of 02_optimizers (...)"
    return f"{said or name + ' is not finished yet'}: finish it to see this"


def _note(ax: Any, lines: Sequence[str]) -> None:
    if lines:
        ax.text(0.02, 0.02, "\n".join(lines), transform=ax.transAxes, fontsize="small",
                color="tab:red", va="bottom")


def _finite(values: np.ndarray) -> np.ndarray:
    """Values with ±inf as NaN: matplotlib leaves a gap."""
    return np.where(np.isfinite(values), values, np.nan)


def _slider(widgets: Any, kind: str, description: str, **kw: Any) -> Any:
    """A slider that redraws on release, not while dragged (a redraw takes ~0.2 s)."""
    return getattr(widgets, kind)(description=description, continuous_update=False,
                                  style={"description_width": "initial"}, **kw)


# -- 03: activations and gradients through depth ----------------------------------------------------

def _schemes(xavier_normal: Callable[..., Any], xavier_uniform: Callable[..., Any],
             kaiming_normal: Callable[..., Any], kaiming_uniform: Callable[..., Any]) -> dict[str, Scheme]:
    """Initializers whose standard deviation is proportional to the gain g: N(0, g²); Xavier with
    ``gain=g``; He (mode fan_in) drawn with the linear gain 1 and multiplied by g."""
    return {
        "N(0, 1)": lambda shape, rng, g: weight_init.normal(shape, rng, std=g),
        "Xavier normal": lambda shape, rng, g: xavier_normal(shape, rng, gain=g),
        "Xavier uniform": lambda shape, rng, g: xavier_uniform(shape, rng, gain=g),
        "He normal": lambda shape, rng, g: g * kaiming_normal(shape, rng, nonlinearity="linear"),
        "He uniform": lambda shape, rng, g: g * kaiming_uniform(shape, rng, nonlinearity="linear"),
    }


def depth_stats(scheme: Scheme, *, gain: float, depth: int, nonlinearity: str = "relu",
                width: int = 128, batch: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per hidden layer l = 1..depth: std of its activations h_l and of ∂L/∂h_l.

    The network is ``nn.MLP([width] * (depth + 1) + [10])`` with weights ``scheme(shape, rng,
    gain)`` and zero biases, fed a standard normal batch; L is the sum of the outputs (a unit
    gradient from every output). With Var(w) = g²/fan_in and ReLU, Var(h) changes by the factor
    g²/2 per layer, so the std stays put for g = √2 and shrinks geometrically below it.
    """
    from .plots import layer_stats

    if depth < 1 or gain <= 0 or width < 1 or batch < 2:
        raise ValueError(f"depth_stats needs depth >= 1, gain > 0, width >= 1 and batch >= 2; "
                         f"got depth={depth}, gain={gain}, width={width}, batch={batch}")

    def draw(shape: tuple[int, int], rng: np.random.Generator, dtype: Any = np.float32) -> np.ndarray:
        return np.asarray(scheme(shape, rng, gain), dtype=dtype)

    model = nn.MLP([width] * (depth + 1) + [10], activation=nonlinearity, init=draw, rng=seed)
    x = np.random.default_rng(seed).standard_normal((batch, width)).astype(np.float32)
    with np.errstate(all="ignore"):  # an exploding setting overflows: shown as a gap, not a warning
        stats = layer_stats(model, x)
    return (np.array([s.activation_std for s in stats]), np.array([s.gradient_std for s in stats]))


def _paint_depth(ax: Any, *, schemes: Mapping[str, Scheme], scheme: str, gain: float, depth: int,
                 nonlinearity: str, width: int) -> None:
    from .plots import _log_y

    ax.set_title(f"{scheme}, gain {gain:.3g}, {nonlinearity}, width {width}", fontsize="medium")
    ax.set_xlabel("hidden layer")
    ax.set_ylabel("standard deviation")
    try:
        acts, grads = depth_stats(schemes[scheme], gain=gain, depth=depth, nonlinearity=nonlinearity,
                                  width=width)
    except NotImplementedError as exc:
        return _note(ax, [_unfinished(exc, _SCHEME_FUNCTIONS.get(scheme, scheme))])
    layers = np.arange(1, depth + 1)
    ax.plot(layers, _finite(acts), marker=".", label="activations h")
    ax.plot(layers, _finite(grads), marker=".", label="gradients ∂L/∂h")
    _log_y(ax)
    shown = np.concatenate([acts, grads])
    shown = shown[np.isfinite(shown) & (shown > 0)]
    if shown.size and shown.max() < 100 * shown.min():  # at least two decades: noise looks flat
        mid = math.sqrt(shown.max() * shown.min())
        ax.set_ylim(mid / 10, mid * 10)
    ax.legend(fontsize="small")


_SCHEME_FUNCTIONS = {"Xavier normal": "xavier_normal", "Xavier uniform": "xavier_uniform",
                     "He normal": "kaiming_normal", "He uniform": "kaiming_uniform"}


def initialization(*, xavier_normal: Callable[..., Any] | None = None,
                   xavier_uniform: Callable[..., Any] | None = None,
                   kaiming_normal: Callable[..., Any] | None = None,
                   kaiming_uniform: Callable[..., Any] | None = None, width: int = 128,
                   live: bool | None = None) -> Any:
    """Explore how the spread of activations and gradients travels through a deep MLP.

    Controls: the initializer (N(0, 1), Xavier or He, normal or uniform), its gain g (the
    factor on its standard deviation), the depth and the nonlinearity. Pass your own
    initializers (same signatures as in ``course.init``); those left out are the library's.
    """
    schemes = _schemes(xavier_normal or weight_init.xavier_normal, xavier_uniform or weight_init.xavier_uniform,
                       kaiming_normal or weight_init.kaiming_normal, kaiming_uniform or weight_init.kaiming_uniform)
    paint = functools.partial(_paint_depth, schemes=schemes, width=width)

    def controls(w: Any) -> dict[str, Any]:
        return {"scheme": w.Dropdown(options=list(schemes), value="He normal", description="initializer"),
                "gain": _slider(w, "FloatSlider", "gain g", value=round(math.sqrt(2), 2), min=0.1,
                                max=3.0, step=0.01),
                "depth": _slider(w, "IntSlider", "depth", value=15, min=1, max=40),
                "nonlinearity": w.Dropdown(options=NONLINEARITIES, value="relu", description="nonlinearity")}

    settings = [dict(scheme="N(0, 1)", gain=1.0, depth=15, nonlinearity="relu"),
                dict(scheme="He normal", gain=math.sqrt(2), depth=15, nonlinearity="relu"),
                dict(scheme="He normal", gain=1.0, depth=15, nonlinearity="relu"),
                dict(scheme="Xavier normal", gain=5 / 3, depth=15, nonlinearity="tanh")]
    return _explorer(paint, controls, settings, live=live,
                     title="std of activations and gradients through depth")


# -- 02: the optimizer race -------------------------------------------------------------------------

def race(landscape: data.Landscape, *, lr: float, momentum: float, steps: int,
         sgd_step: Rule | None = None, rmsprop_step: Rule | None = None,
         adam_step: Rule | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Paths (steps + 1, 2) of five optimizers from ``landscape.start``, all at learning rate ``lr``.

    GD; SGD with momentum μ and with Nesterov momentum μ (``sgd_step``); RMSProp with decay
    0.9 (``rmsprop_step``); Adam with β1 = μ, its momentum, and β2 = 0.999 (``adam_step``).
    Rules not given are the library's. Returns the paths and one line for each optimizer left
    out because its rule is unfinished. A path that overflows stops early.
    """
    if not (lr > 0 and 0 < momentum < 1 and steps >= 1):
        raise ValueError(f"race needs lr > 0, 0 < momentum < 1 and steps >= 1; got lr={lr}, "
                         f"momentum={momentum}, steps={steps}")
    sgd, rms, adam = sgd_step or optim.sgd_step, rmsprop_step or optim.rmsprop_step, adam_step or optim.adam_step
    racers: dict[str, tuple[str, Callable[[list[Any]], Any]]] = {
        "GD": ("", lambda ps: optim.Optimizer(ps, gd_step, lr=lr)),
        f"momentum {momentum:.2g}": ("sgd_step", lambda ps: optim.SGD(ps, lr=lr, momentum=momentum, update=sgd)),
        f"Nesterov {momentum:.2g}": ("sgd_step", lambda ps: optim.SGD(ps, lr=lr, momentum=momentum,
                                                                       nesterov=True, update=sgd)),
        "RMSProp": ("rmsprop_step", lambda ps: optim.RMSprop(ps, lr=lr, alpha=0.9, update=rms)),
        f"Adam β1 = {momentum:.2g}": ("adam_step", lambda ps: optim.Adam(ps, lr=lr, betas=(momentum, 0.999),
                                                                          update=adam)),
    }
    paths, notes = {}, []
    for name, (rule, make) in racers.items():
        try:
            with np.errstate(all="ignore"):
                paths[name] = train.trajectory(landscape.f, make, landscape.start, steps)
        except NotImplementedError as exc:
            if _unfinished(exc, rule) not in notes:
                notes.append(_unfinished(exc, rule))
    return paths, notes


def _paint_race(ax: Any, *, rules: Mapping[str, Rule | None], landscape: str, lr: float, momentum: float,
                steps: int) -> None:
    land = LANDSCAPES[landscape]()
    paths, notes = race(land, lr=lr, momentum=momentum, steps=steps, **rules)
    labelled = {}
    for name, path in paths.items():
        with np.errstate(all="ignore"):  # a path about to overflow gives f = inf: "diverged"
            end = float(land.f(path[-1])) if np.isfinite(path[-1]).all() else math.nan
        labelled[f"{name}: f = {end:.1e}" if math.isfinite(end) else f"{name}: diverged"] = path
    from .plots import draw_trajectories

    draw_trajectories(ax, land, labelled, levels=20, grid=80, title=f"{land.name}, lr = {lr:.2g}")
    _note(ax, notes)


def optimizers(*, sgd_step: Rule | None = None, rmsprop_step: Rule | None = None,
               adam_step: Rule | None = None, live: bool | None = None) -> Any:
    """Explore the optimizer race (:func:`race`) on the quadratic, the saddle and Rosenbrock.

    Controls: the landscape, one learning rate for all, the momentum μ (SGD's μ, Adam's β1)
    and the number of steps. Pass your own update rules; those left out are the library's.
    """
    rules = {"sgd_step": sgd_step, "rmsprop_step": rmsprop_step, "adam_step": adam_step}
    paint = functools.partial(_paint_race, rules=rules)

    def controls(w: Any) -> dict[str, Any]:
        return {"landscape": w.Dropdown(options=list(LANDSCAPES), description="landscape"),
                "lr": _slider(w, "FloatLogSlider", "learning rate", value=0.03, base=10, min=-4, max=0,
                              step=0.05, readout_format=".2g"),
                "momentum": _slider(w, "FloatSlider", "momentum μ", value=0.6, min=0.05, max=0.99, step=0.01),
                "steps": _slider(w, "IntSlider", "steps", value=60, min=5, max=300, step=5)}

    quad, rosen = list(LANDSCAPES)[0], list(LANDSCAPES)[2]
    settings = [dict(landscape=quad, lr=0.02, momentum=0.6, steps=60),
                dict(landscape=quad, lr=0.02, momentum=0.9, steps=60),
                dict(landscape="saddle", lr=0.05, momentum=0.6, steps=40),
                dict(landscape=rosen, lr=1e-3, momentum=0.9, steps=200)]
    return _explorer(paint, controls, settings, live=live, title="the optimizer race")


# -- 04: batch norm on or off -----------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _digits(samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``samples`` training digits of a stratified split, standardized (read-only)."""
    X, y = data.load_digits()
    (X_train, y_train), _, _ = data.split(X, y, val=0.2, test=0.2, rng=0, stratify=True)
    X_train = data.Standardizer().fit(X_train).transform(X_train)[:samples]
    y_train = y_train[:samples]
    for a in (X_train, y_train):
        a.setflags(write=False)
    return X_train, y_train


def bn_losses(lr: float, *, batch_norm: bool, norm_layer: Callable[[int], nn.Module] | None = None,
              init: Any = "kaiming_uniform", depth: int = 8, width: int = 32, samples: int = 512,
              epochs: int = 4, batch_size: int = 64, seed: int = 0) -> np.ndarray:
    """Minibatch losses, one per step, of plain gradient descent at ``lr`` on digits.

    The network is 64 → ``depth`` × [Linear(width) → (``norm_layer(width)``) → ReLU] →
    Linear(10), drawn with ``init`` (a ``course.init`` name or ``f(shape, rng, dtype=...)``),
    the same weights with and without batch norm. ``norm_layer`` defaults to
    :class:`course.nn.BatchNorm1d`. A run that overflows gives NaN from there on.
    """
    if not (lr > 0 and depth >= 1 and epochs >= 1 and 2 <= batch_size <= samples):
        raise ValueError(f"bn_losses needs lr > 0, depth >= 1, epochs >= 1 and 2 <= batch_size <= samples; "
                         f"got lr={lr}, depth={depth}, epochs={epochs}, batch_size={batch_size}, samples={samples}")
    X, y = _digits(samples)
    gen, layers, fan_in = np.random.default_rng(seed), [], X.shape[1]
    for _ in range(depth):
        layers.append(nn.Linear(fan_in, width, init=init, rng=gen))
        if batch_norm:
            layers.append((norm_layer or nn.BatchNorm1d)(width))
        layers.append(nn.ReLU())
        fan_in = width
    layers.append(nn.Linear(fan_in, 10, init=init, rng=gen))
    model = nn.Sequential(*layers)
    opt = optim.Optimizer(model.parameters(), gd_step, lr=lr)
    order, out = np.random.default_rng(seed + 1), []
    with np.errstate(all="ignore"):  # a diverging run is drawn, not warned about
        for _ in range(epochs):
            for xb, yb in train.batches(X, y, batch_size, rng=order):
                out.append(float(train.train_step(model, losses.cross_entropy, opt, xb, yb)))
    return np.array(out)


_SHOW = {"both": (False, True), "without": (False,), "with": (True,)}


def _paint_bn(ax: Any, *, options: Mapping[str, Any], lr: float, show: str) -> None:
    notes = []
    for use in _SHOW[show]:
        label = "with batch norm" if use else "without"
        try:
            values = bn_losses(lr, batch_norm=use, **options)
        except NotImplementedError as exc:
            notes.append(_unfinished(exc, "the batch-norm layer" if use else "the initializer"))
            continue
        finite = np.isfinite(values)
        ax.plot(np.arange(1, len(values) + 1), _finite(values), marker=".", markersize=3,
                label=label + ("" if finite.all() else " (diverged)"))
    ax.axhline(math.log(10), color="gray", linestyle=":", label="ln 10 (guessing)")
    ax.set_ylim(0, 4)
    ax.set_xlabel("training step (minibatch of 64)")
    ax.set_ylabel("training loss")
    ax.set_title(f"plain gradient descent, lr = {lr:.2g}", fontsize="medium")
    ax.legend(fontsize="small", loc="upper right")
    _note(ax, notes)


def batch_norm(*, norm_layer: Callable[[int], nn.Module] | None = None, init: Any = "kaiming_uniform",
               live: bool | None = None) -> Any:
    """Explore batch norm at a learning rate of your choice (:func:`bn_losses`).

    Controls: the learning rate and which runs to show (with, without or both). Pass your
    own layer class as ``norm_layer`` and initializer as ``init``; else the library's.
    """
    paint = functools.partial(_paint_bn, options={"norm_layer": norm_layer, "init": init})

    def controls(w: Any) -> dict[str, Any]:
        return {"lr": _slider(w, "FloatLogSlider", "learning rate", value=1.0, base=10, min=-2, max=0.5,
                              step=0.05, readout_format=".2g"),
                "show": w.ToggleButtons(options=list(_SHOW), description="batch norm")}

    settings = [dict(lr=lr, show="both") for lr in (0.03, 0.3, 1.0, 2.0)]
    return _explorer(paint, controls, settings, live=live, title="a deep ReLU network with and without batch norm")
