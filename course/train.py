"""Training loop: seeded minibatches, ``fit`` with validation tracking, early stopping, history.

Data go to the current backend's device once per call of :func:`batches`, :func:`fit` or
:func:`evaluate` (one explicit transfer of X and y, none when they are already there); each
minibatch is then gathered on the device. Host reads are explicit too: :func:`evaluate` sums
the loss and the metrics on the device and reads each total once; :func:`fit` reads nothing
per step (the progress bar shows the last epoch's training loss).

Progress bar (tqdm): ``fit(progress=None)`` decides with :func:`progress_enabled`, by this rule:
off when the environment variable ``CI`` or ``NBGRADER_EXECUTION`` is set (nbgrader sets the
latter while it autogrades or validates a notebook, and it scores a graded cell that writes
to stderr, where tqdm draws, as failed); otherwise on in a Jupyter kernel and in a terminal
(stderr is a TTY), off elsewhere (output piped to a file). ``progress=True``/``False`` overrides.
"""
from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import backend as B
from .autodiff import Parameter, Tensor, no_grad

__all__ = [
    "batches", "train_step", "fit", "evaluate", "accuracy", "History", "EarlyStopping",
    "early_stopping_epoch", "progress_enabled", "trajectory",
]

Seed = int | np.random.Generator | None
Pair = tuple[Any, Any]


def _on_device(a: Any) -> Any:
    """``a`` (host data, a Tensor or an array) as an array of the current backend: the one
    explicit host-to-device transfer, or none when it is already there."""
    a = a.data if isinstance(a, Tensor) else a
    return B.asarray(a if B.is_array(a) else np.asarray(a))


def _check_pair(pair: Any, what: str) -> tuple[Any, Any]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{what} must be a pair (X, y) of arrays, got {type(pair).__name__}")
    X, y = _on_device(pair[0]), _on_device(pair[1])
    if X.shape[:1] != y.shape[:1]:
        raise ValueError(f"{what}: X has {X.shape[0]} samples but y has {y.shape[0]}; they must match")
    return X, y


def _check_batch_size(batch_size: Any) -> None:
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def batches(X: Any, y: Any, batch_size: int, *, shuffle: bool = True, drop_last: bool = False,
            rng: Seed = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield minibatches ``(x, y)`` as Tensors on the current device, one at a time.

    One pass visits every sample once: in a random order drawn from ``rng`` when ``shuffle``
    (same seed, same order on every backend: the permutation is drawn on the host and moved
    once), in the stored order otherwise. The last batch may be smaller than ``batch_size``;
    ``drop_last=True`` leaves it out. Pass one Generator to several calls (as :func:`fit`
    does) to get a new order every epoch. X and y move to the device once, up front.
    """
    _check_batch_size(batch_size)
    X, y = _check_pair((X, y), "batches")
    n = y.shape[0]
    order = B.asarray(B.rng(rng).permutation(n)) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    xp = B.xp
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, n)  # the standard leaves slices past the end unspecified
        if order is None:
            yield Tensor(X[start:end, ...]), Tensor(y[start:end, ...])
        else:
            idx = order[start:end]
            yield Tensor(xp.take(X, idx, axis=0)), Tensor(xp.take(y, idx, axis=0))


def train_step(model: Any, loss_fn: Callable[[Tensor, Tensor], Tensor], optimizer: Any,
               x: Tensor, y: Tensor) -> Tensor:
    """One step of minibatch gradient descent; returns the minibatch loss.

    Clear old gradients, forward, loss L(model(x), y), backward (∂L/∂θ into each ``.grad``),
    update θ with the optimizer. :func:`fit` takes any function with this signature as ``step``.
    """
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def _hits(output: Tensor | Any, target: Tensor | Any) -> Any:
    """The number of correct predictions, a 0-d array on the device (see :func:`accuracy`)."""
    xp = B.xp
    out = output.data if isinstance(output, Tensor) else output
    t = target.data if isinstance(target, Tensor) else target
    if out.ndim == 1 or out.shape[-1] == 1:
        pred = xp.reshape(out, (-1,)) > 0
    else:
        pred = xp.argmax(out, axis=-1)
    return xp.sum(xp.astype(xp.astype(pred, t.dtype) == xp.reshape(t, pred.shape), xp.int64))


def accuracy(output: Tensor | Any, target: Tensor | Any) -> float:
    """Fraction of correct predictions: mean over samples of [argmax_k output_k = target].

    A single output column (or a 1-D output) is read as one binary logit: class 1 when > 0.
    Returns a Python float: one host read (``evaluate`` counts on the device instead).
    """
    return int(B.to_numpy(_hits(output, target))) / int(output.shape[0])


_METRICS: dict[str, Callable[[Any, Any], float]] = {"accuracy": accuracy}
#: Built-in metrics as device-side sums over a batch, so evaluate reads each total once.
_DEVICE_SUMS: dict[Callable[[Any, Any], float], Callable[[Any, Any], Any]] = {accuracy: _hits}


def _metric_fns(metrics: Sequence[str | Callable[[Any, Any], float]]) -> dict[str, Callable]:
    fns = {}
    for m in metrics:
        if callable(m):
            fns[m.__name__] = m
        elif m in _METRICS:
            fns[m] = _METRICS[m]
        else:
            raise ValueError(f"unknown metric {m!r}: use one of {sorted(_METRICS)} or pass a "
                             "function (output, target) -> float")
    return fns


def evaluate(model: Any, X: Any, y: Any, loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
             *, metrics: Sequence[str | Callable] = ("accuracy",), batch_size: int = 1024) -> dict[str, float]:
    """Loss and metrics of ``model`` on (X, y) in eval mode, without recording a graph.

    Each value is the sample-weighted mean over batches of ``batch_size`` (exact for a loss
    with mean reduction). The model's train/eval mode is restored afterwards. The sums stay on
    the device (a metric function may return a float or a 0-d array); each total is read on
    the host once, at the end.
    """
    X, y = _check_pair((X, y), "evaluate")
    n_total = y.shape[0]
    if n_total == 0:
        raise ValueError("evaluate got no samples: pass a non-empty (X, y)")
    fns = _metric_fns(metrics)
    totals: dict[str, Any] = dict.fromkeys((["loss"] if loss_fn is not None else []) + list(fns), 0)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for xb, yb in batches(X, y, batch_size, shuffle=False):
                out, n = model(xb), yb.shape[0]
                if loss_fn is not None:
                    totals["loss"] = totals["loss"] + loss_fn(out, yb).data * n
                for name, fn in fns.items():
                    count = _DEVICE_SUMS.get(fn)
                    totals[name] = totals[name] + (count(out, yb) if count else fn(out, yb) * n)
    finally:
        model.train() if was_training else model.eval()
    return {k: float(B.to_numpy(v)) / n_total for k, v in totals.items()}


class History:
    """What :func:`fit` recorded, one entry per epoch (epochs are numbered from 1).

    ``history["val_loss"]`` or ``history.val_loss`` is a list with one value per epoch; keys
    are ``train_<m>`` and ``val_<m>`` for the loss and each metric ``m`` (both measured in
    eval mode after the epoch, so dropout does not inflate the training loss), ``lr`` (the
    learning rate used during the epoch) and ``time`` (seconds). ``best_epoch`` is the epoch
    with the best monitored value; ``stopped_epoch`` the last epoch run when early stopping
    ended training (else None).
    """

    def __init__(self) -> None:
        self.epoch: list[int] = []
        self.records: dict[str, list[float]] = {}
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None

    def append(self, epoch: int, values: Mapping[str, float]) -> None:
        self.epoch.append(epoch)
        for k, v in values.items():
            self.records.setdefault(k, []).append(v)

    def keys(self) -> list[str]:
        return list(self.records)

    def __getitem__(self, key: str) -> list[float]:
        try:
            return self.records[key]
        except KeyError:
            raise KeyError(f"history has no {key!r}; it has {self.keys()}") from None

    def __getattr__(self, name: str) -> list[float]:
        records = self.__dict__.get("records", {})
        if name in records:
            return records[name]
        raise AttributeError(f"History has no attribute {name!r}; its records are {list(records)}")

    def __len__(self) -> int:
        return len(self.epoch)

    def _widths(self) -> dict[str, int]:
        return {k: max(10, len(k)) for k in self.records}

    def header(self) -> str:
        return "  ".join([f"{'epoch':>5}"] + [f"{k:>{w}}" for k, w in self._widths().items()])

    def format_row(self, i: int = -1) -> str:
        """One epoch's values as a table row (the last epoch by default)."""
        cells = [f"{self.epoch[i]:>5}"]
        for k, w in self._widths().items():
            v = self.records[k][i]
            fmt = ".3f" if k == "time" else ".4g" if k == "lr" else ".4f"
            cells.append(f"{'-':>{w}}" if v is None else f"{v:>{w}{fmt}}")
        return "  ".join(cells)

    def table(self) -> str:
        return "\n".join([self.header()] + [self.format_row(i) for i in range(len(self))])

    def __repr__(self) -> str:
        return f"History(epochs={len(self)}, keys={self.keys()}, best_epoch={self.best_epoch})"


class EarlyStopping:
    """Stop when the monitored value has not improved for ``patience`` epochs in a row.

    Improvement means value < best − ``min_delta`` (``mode="min"``, for losses) or
    value > best + ``min_delta`` (``mode="max"``, for accuracies); NaN never improves. With
    ``restore_best`` (the default) a copy of ``model.state_dict()`` is kept at each new best
    and loaded back when training ends, so the model returned is the best one seen.
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0, restore_best: bool = True,
                 monitor: str = "val_loss", mode: str = "min") -> None:
        if not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' (losses) or 'max' (accuracies), got {mode!r}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.patience, self.min_delta, self.restore_best = int(patience), float(min_delta), restore_best
        self.monitor, self.mode = monitor, mode
        self.reset()

    def reset(self) -> None:
        """Forget the best value seen (``fit`` calls this before training)."""
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.wait = 0
        self.best_state: dict[str, Any] | None = None

    def step(self, value: float, model: Any, epoch: int) -> bool:
        """Record this epoch's value; True when training should stop."""
        value = float(value)
        if self.mode == "min":
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        if improved:  # comparisons with NaN are False
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = _snapshot(model.state_dict())
        else:
            self.wait += 1
        return not improved and self.wait >= self.patience

    def restore(self, model: Any) -> None:
        """Load the best weights seen back into ``model`` (when ``restore_best``)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def early_stopping_epoch(val_losses: Sequence[float], patience: int) -> tuple[int | None, int | None]:
    """(best epoch, epoch training stops at, or None) for a whole validation-loss curve.

    Epochs count from 1. The rule of :class:`EarlyStopping` (lower is better, no
    ``min_delta``): stop once ``patience`` epochs in a row bring no new best.
    """
    stopper = EarlyStopping(patience=patience, restore_best=False)
    for epoch, value in enumerate(val_losses, start=1):
        if stopper.step(value, None, epoch):
            return stopper.best_epoch, epoch
    return stopper.best_epoch, None


def _snapshot(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Host copies of a state dict's arrays: a ``state_dict()`` may hand out live references
    (PyTorch's does), which later in-place parameter updates would change."""
    return {k: B.to_numpy(v).copy() for k, v in state.items()}


def progress_enabled() -> bool:
    """Whether :func:`fit` draws a progress bar by default (the rule is in the module docstring)."""
    if os.environ.get("CI") or os.environ.get("NBGRADER_EXECUTION"):
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":  # a Jupyter kernel
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # stderr replaced or closed
        return False


def fit(model: Any, loss_fn: Callable[[Tensor, Tensor], Tensor], optimizer: Any, train: Pair,
        val: Pair | None = None, *, epochs: int, batch_size: int = 32, scheduler: Any = None,
        scheduler_interval: str = "step", early_stopping: EarlyStopping | None = None,
        metrics: Sequence[str | Callable] = ("accuracy",),
        step: Callable[..., Tensor] = train_step, shuffle: bool = True, drop_last: bool = False,
        progress: bool | None = None, callback: Callable[[History], None] | None = None,
        rng: Seed = None) -> History:
    """Train ``model`` for ``epochs`` passes over ``train = (X, y)``; return the :class:`History`.

    Each epoch: minibatches from :func:`batches` (reshuffled every epoch from one generator
    seeded by ``rng``), one ``step(model, loss_fn, optimizer, x, y)`` per batch (default
    :func:`train_step`; plug in your own with the same signature), each followed by
    ``scheduler.step()`` if given (``scheduler_interval="step"``, as :mod:`course.schedules`
    counts optimizer steps; ``"epoch"`` steps it once per epoch instead); then the loss and
    ``metrics`` on the training and validation sets in eval mode, ``callback(history)``, and
    the ``early_stopping`` check. Training ends after ``epochs`` or when early stopping says
    so; with ``restore_best`` the best weights are loaded back. ``progress``: see the module
    docstring.
    """
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if scheduler_interval not in ("step", "epoch"):
        raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}")
    _check_batch_size(batch_size)
    X, y = _check_pair(train, "train")
    val = _check_pair(val, "val") if val is not None else None
    if early_stopping is not None:
        if early_stopping.monitor.startswith("val_") and val is None:
            raise ValueError(f"early stopping monitors {early_stopping.monitor!r} but fit got no "
                             "val=(X, y): pass validation data or monitor a 'train_...' value")
        early_stopping.reset()
    gen = B.rng(rng)
    n_batches = y.shape[0] // batch_size if drop_last else math.ceil(y.shape[0] / batch_size)
    bar = _progress_bar(epochs * n_batches) if (progress_enabled() if progress is None else progress) else None
    history = History()
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            lr = getattr(optimizer, "lr", None)
            model.train()
            for xb, yb in batches(X, y, batch_size, shuffle=shuffle, drop_last=drop_last, rng=gen):
                step(model, loss_fn, optimizer, xb, yb)
                if scheduler is not None and scheduler_interval == "step":
                    scheduler.step()
                if bar is not None:  # no float(loss) here: a host read per step would stall a GPU
                    bar.update(1)
            if scheduler is not None and scheduler_interval == "epoch":
                scheduler.step()
            row = {f"train_{k}": v for k, v in evaluate(model, X, y, loss_fn, metrics=metrics).items()}
            if val is not None:
                row.update({f"val_{k}": v for k, v in evaluate(model, *val, loss_fn, metrics=metrics).items()})
            row["lr"] = lr
            row["time"] = time.perf_counter() - t0
            history.append(epoch, row)
            if bar is not None:
                bar.set_postfix(epoch=epoch, train_loss=f"{row['train_loss']:.4f}", refresh=False)
            if callback is not None:
                callback(history)
            if early_stopping is not None and early_stopping.step(history[early_stopping.monitor][-1], model, epoch):
                history.stopped_epoch = epoch
                break
    finally:
        if bar is not None:
            bar.close()
    if early_stopping is not None:
        history.best_epoch = early_stopping.best_epoch
        early_stopping.restore(model)
    else:
        key = "val_loss" if val is not None else "train_loss"
        vals = np.asarray(history[key], dtype=float)
        history.best_epoch = int(np.nanargmin(vals)) + 1 if np.isfinite(vals).any() else None
    return history


def _progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm  # lazily: importing course.train stays light

    return tqdm(total=total, unit="batch", file=sys.stderr)


def trajectory(f: Callable[[Tensor], Tensor], make_optimizer: Callable[[list[Parameter]], Any],
               start: Sequence[float], steps: int) -> np.ndarray:
    """The path of an optimizer minimizing ``f`` from ``start``: an array (steps + 1, len(start)).

    ``make_optimizer(params)`` builds the optimizer, e.g.
    ``lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9)``; each step is ``step(closure)``, so
    :class:`course.optim.Newton` works too. Float64 throughout. The path stops
    early (and is shorter) if the iterate becomes non-finite.
    """
    p = Parameter(B.asarray(np.asarray(start, dtype=np.float64)))
    opt = make_optimizer([p])
    path = [p.numpy().copy()]
    def closure() -> Tensor:  # PyTorch's convention; Newton needs it to build the Hessian
        opt.zero_grad()
        loss = f(p)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
        path.append(p.numpy().copy())
        if not np.isfinite(path[-1]).all():
            break
    return np.stack(path)
