"""Learning-rate schedules: callables ``schedule(t) -> lr`` and a scheduler that applies them.

``t`` is the index of the optimizer step about to be taken. Each schedule states where its
count begins (``schedule.start``): 0 for most, 1 for the 1/t-type schedules, which are
undefined at 0. :class:`LRScheduler` starts there and follows PyTorch's order of calls::

    sched = LRScheduler(opt, cosine(0.1, t_max=1000))   # sets opt.lr = schedule(start)
    for batch in data:
        ...; opt.step(); sched.step()                    # t ← t + 1, opt.lr = schedule(t)

Any function of ``t`` works as a schedule; these carry their formula in their ``repr``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "Schedule", "constant", "step_decay", "piecewise_constant", "linear_decay", "inverse_sqrt",
    "capped_inverse", "exponential", "cosine", "warmup", "LRScheduler",
]


class Schedule:
    """A learning rate as a function of the step index ``t`` (an integer, ``t >= start``)."""

    def __init__(self, fn: Callable[[int], float], start: int, formula: str) -> None:
        self.fn, self.start, self.formula = fn, start, formula

    def __call__(self, t: int) -> float:
        if int(t) != t or t < self.start:
            raise ValueError(f"{self.formula} is defined for integer t >= {self.start}, got t={t}")
        return float(self.fn(int(t)))

    def __repr__(self) -> str:
        return f"<schedule {self.formula}, t >= {self.start}>"


def _positive(**values: float) -> None:
    for name, v in values.items():
        if not v > 0:
            raise ValueError(f"{name} must be > 0, got {v}")


def constant(lr: float) -> Schedule:
    """ε_t = lr for all t >= 0."""
    _positive(lr=lr)
    return Schedule(lambda t: lr, 0, f"ε_t = {lr}")


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """ε_t = lr · γ^⌊t / step_size⌋, t >= 0 (PyTorch's StepLR): multiply by γ every step_size steps."""
    _positive(lr=lr, step_size=step_size, gamma=gamma)
    return Schedule(lambda t: lr * gamma ** (t // step_size), 0, f"ε_t = {lr}·{gamma}^⌊t/{step_size}⌋")


def piecewise_constant(milestones: Sequence[int], values: Sequence[float]) -> Schedule:
    """ε_t = values[i] for milestones[i−1] <= t < milestones[i], t >= 0 (one more value than milestones).

    PyTorch's MultiStepLR(lr, milestones, γ) is ``values = [lr·γ^i for i in range(len(milestones) + 1)]``.
    """
    milestones, values = list(milestones), list(values)
    if len(values) != len(milestones) + 1:
        raise ValueError(f"piecewise_constant needs one more value than milestones, got "
                         f"{len(values)} values for {len(milestones)} milestones")
    if any(b <= a for a, b in zip(milestones, milestones[1:])) or (milestones and milestones[0] <= 0):
        raise ValueError(f"milestones must be positive and strictly increasing, got {milestones}")
    _positive(**{f"values[{i}]": v for i, v in enumerate(values)})
    return Schedule(lambda t: values[sum(m <= t for m in milestones)], 0,
                    f"ε_t = {values} switching at t = {milestones}")


def linear_decay(lr0: float, tau: int, lr_tau: float | None = None) -> Schedule:
    """The notes' linear decay: ε_t = (1 − α)·ε0 + α·ε_τ with α = t/τ for t <= τ, ε_t = ε_τ after.

    t >= 0. ``lr_tau`` defaults to ε0/100 (the notes' rule of thumb: about 1% of ε0).
    """
    lr_tau = lr0 / 100 if lr_tau is None else lr_tau
    _positive(lr0=lr0, tau=tau, lr_tau=lr_tau)

    def fn(t: int) -> float:
        alpha = min(t / tau, 1.0)
        return (1 - alpha) * lr0 + alpha * lr_tau

    return Schedule(fn, 0, f"ε_t = (1 − α)·{lr0} + α·{lr_tau}, α = min(t/{tau}, 1)")


def inverse_sqrt(lr0: float) -> Schedule:
    """ε_t = lr0 / √t, t >= 1."""
    _positive(lr0=lr0)
    return Schedule(lambda t: lr0 / math.sqrt(t), 1, f"ε_t = {lr0}/√t")


def capped_inverse(eta_max: float = 0.1, c: float = 100.0) -> Schedule:
    """ε_t = min(η_max, c/t), t >= 1: constant η_max until t = c/η_max, then 1/t decay.

    The defaults are the notes' example min(0.1, 100/t). A 1/t decay meets the classical
    conditions for SGD to converge, Σ ε_t = ∞ and Σ ε_t² < ∞.
    """
    _positive(eta_max=eta_max, c=c)
    return Schedule(lambda t: min(eta_max, c / t), 1, f"ε_t = min({eta_max}, {c}/t)")


def exponential(lr0: float, gamma: float) -> Schedule:
    """ε_t = lr0 · γ^t, t >= 0 (PyTorch's ExponentialLR)."""
    _positive(lr0=lr0, gamma=gamma)
    return Schedule(lambda t: lr0 * gamma ** t, 0, f"ε_t = {lr0}·{gamma}^t")


def cosine(lr_max: float, t_max: int, lr_min: float = 0.0) -> Schedule:
    """Cosine annealing: ε_t = ε_min + (ε_max − ε_min)·(1 + cos(π t / T))/2 for t <= T, ε_min after.

    t >= 0. PyTorch's CosineAnnealingLR has the same values for t <= T (it then rises again;
    here the rate stays at ε_min).
    """
    _positive(lr_max=lr_max, t_max=t_max)
    if not 0 <= lr_min <= lr_max:
        raise ValueError(f"need 0 <= lr_min <= lr_max, got lr_min={lr_min}, lr_max={lr_max}")

    def fn(t: int) -> float:
        return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * min(t, t_max) / t_max)) / 2

    return Schedule(fn, 0, f"ε_t = {lr_min} + ({lr_max} − {lr_min})·(1 + cos(π·min(t, {t_max})/{t_max}))/2")


def warmup(schedule: Callable[[int], float], warmup_steps: int) -> Schedule:
    """Linear warm-up in front of any schedule: ε_t = s(t) · min(1, (k + 1)/W), k = t − start.

    The first step uses s(start)/W, the rate grows linearly and reaches s(t) at k = W − 1;
    the wrapped schedule keeps its own clock (it is not shifted by W). t >= start of ``schedule``.
    """
    _positive(warmup_steps=warmup_steps)
    start = getattr(schedule, "start", 0)
    return Schedule(lambda t: schedule(t) * min(1.0, (t - start + 1) / warmup_steps), start,
                    f"{schedule!r} with linear warm-up over {warmup_steps} steps")


class LRScheduler:
    """Sets ``optimizer.lr = schedule(t)``: at construction for t = start, then at every :meth:`step`.

    ``t`` counts the calls to :meth:`step` from ``schedule.start`` (0 for a plain function).
    """

    def __init__(self, optimizer: Any, schedule: Callable[[int], float]) -> None:
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"LRScheduler needs an optimizer with an 'lr' attribute, got {type(optimizer).__name__}")
        self.optimizer, self.schedule = optimizer, schedule
        self.t = getattr(schedule, "start", 0)
        self._apply()

    def _apply(self) -> None:
        lr = self.schedule(self.t)
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"the schedule gave lr = {lr} at t = {self.t}; a learning rate must be finite and >= 0")
        self.optimizer.lr = lr

    @property
    def lr(self) -> float:
        """The learning rate currently set on the optimizer."""
        return self.optimizer.lr

    def step(self) -> None:
        """Advance t by one and set the optimizer's learning rate for the next step."""
        self.t += 1
        self._apply()

    def state_dict(self) -> dict[str, int]:
        return {"t": self.t}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.t = state["t"]
        self._apply()
