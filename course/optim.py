"""Optimizers: each update rule is a pure function on arrays, the classes apply it in place.

A rule has the signature ``rule(param, grad, state, *, <hyperparameters>) -> (new_param,
new_state)``. ``state`` is a dict, empty ``{}`` at the first step, that the rule fills (PyTorch's
names: ``"step"``, ``"momentum_buffer"``, ``"exp_avg"``, ``"exp_avg_sq"``, ``"sum"``,
``"square_avg"``...). A rule never modifies its inputs: it returns new arrays and a new dict.
The classes (:class:`SGD`, :class:`Adam`, ...) call the rule for every parameter that has a
gradient and write the result into the parameter's buffer in place, so any function with the
same signature (a student's) can drive them: ``Adam(model.parameters(), update=my_adam_step)``.

Conventions are PyTorch's (``torch.optim``) where the lecture notes differ:

* Momentum is written ``b ← μ b + g``, ``p ← p − lr·b``. The notes' form ``v ← α v − ε g``,
  ``θ ← θ + v`` gives the same iterates when the learning rate is constant: put ``v = −lr·b``,
  ``α = μ``, ``ε = lr`` (see :func:`sgd_step`).
* RMSProp adds ``eps`` outside the square root, ``g / (√r + eps)``; one version in the notes has
  ``√(δ + r)``.
* Adam keeps the moments unscaled and corrects them only where they are used:
  ``m̂ = m/(1−β1ᵗ)``, ``v̂ = v/(1−β2ᵗ)``, ``p ← p − lr·m̂/(√v̂ + eps)``. (One version in the notes
  divides inside the recursion, so corrections pile up, puts the learning rate inside the first
  moment, and then steps along ``g`` instead of the first moment.)
* Ill-conditioning is measured by the condition number ``κ = λ_max/λ_min`` of the Hessian
  (largest over smallest eigenvalue; the notes state the ratio the other way round).

The rules below are the only implementation of their formulas in this module. Speed lives in
the optional package :mod:`course.fast` (left out of the student edition): when a class runs
its own reference rule on NumPy or CuPy, it keeps all parameters of one dtype in one contiguous
buffer and updates them with one call, and SGD, Adam and AdamW run fused in-place kernels
(:func:`course.backend.kernel`; compiled with Numba for large tensors when it is installed),
which read each parameter's gradient where it lies. ``course.backend.standard_only()`` turns the kernels off, so
the rules run instead; both paths give the same numbers up to rounding.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from . import backend as B
from . import ops
from .autodiff import Tensor, enable_grad, grad as _grad

__all__ = [
    "sgd_step", "adagrad_step", "rmsprop_step", "rmsprop_nesterov_step", "adam_step", "adamw_step",
    "newton_step", "Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Newton",
    "clip_grad_norm", "clip_grad_norm_", "clip_grad_value_",
]

Array = Any
State = dict[str, Any]


# -- update rules (pure functions) --------------------------------------------------------------

def sgd_step(param: Array, grad: Array, state: State, *, lr: float, momentum: float = 0.0,
             dampening: float = 0.0, nesterov: bool = False,
             weight_decay: float = 0.0) -> tuple[Array, State]:
    """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

    g ← g + λ·p                       (weight decay λ, an L2 penalty λ/2·‖p‖² added to the loss)
    b ← g at the first step, else b ← μ·b + (1 − τ)·g     (μ momentum, τ dampening)
    d ← g + μ·b if nesterov else b    (d ← g without momentum)
    p ← p − lr·d

    State: ``"momentum_buffer"`` (b), only when μ > 0.

    The notes' heavy-ball form ``v ← α v − ε g; θ ← θ + v`` is this rule with τ = 0 and a
    constant learning rate: ``v = −lr·b`` turns ``b ← μ b + g`` into ``v ← μ v − lr·g`` and
    ``p ← p − lr·b`` into ``p ← p + v``. Their Nesterov form evaluates g at the look-ahead point
    ``θ + α v``; keeping that point as the parameter, ``p = θ + μ v``, and eliminating θ gives
    exactly ``p ← p − lr·(g + μ b)`` with b updated first: the nesterov branch above.
    """
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0 (as in PyTorch)")
    g = grad + weight_decay * param if weight_decay else grad
    new_state = dict(state)
    if momentum:
        buf = state.get("momentum_buffer")
        buf = B.copy_array(g) if buf is None else momentum * buf + (1 - dampening) * g
        new_state["momentum_buffer"] = buf
        g = g + momentum * buf if nesterov else buf
    return param - lr * g, new_state


def adagrad_step(param: Array, grad: Array, state: State, *, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10) -> tuple[Array, State]:
    """AdaGrad, as ``torch.optim.Adagrad``: a per-coordinate step shrinking with the gradient history.

    t ← t + 1;  g ← g + λ·p
    r ← r + g ⊙ g                     (r starts at ``initial_accumulator_value``)
    p ← p − lr_t · g / (√r + eps),    lr_t = lr / (1 + (t − 1)·lr_decay)

    State: ``"step"`` (t), ``"sum"`` (r). The notes write δ for eps, also outside the root.
    """
    step = state.get("step", 0) + 1
    g = grad + weight_decay * param if weight_decay else grad
    r = state.get("sum")
    if r is None:
        r = B.xp.full_like(param, initial_accumulator_value)
    r = r + g * g
    clr = lr / (1 + (step - 1) * lr_decay)
    return param - clr * g / (B.xp.sqrt(r) + eps), {**state, "step": step, "sum": r}


def rmsprop_step(param: Array, grad: Array, state: State, *, lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False) -> tuple[Array, State]:
    """RMSProp, as ``torch.optim.RMSprop``: AdaGrad with a decaying average instead of a sum.

    t ← t + 1;  g ← g + λ·p
    r ← α·r + (1 − α)·g ⊙ g           (α is the decay rate, the notes' ρ)
    centered: a ← α·a + (1 − α)·g and r − a ⊙ a replaces r below (a variance estimate)
    s = g / (√r + eps)                (eps OUTSIDE the root; the notes have √(δ + r) in one version)
    p ← p − lr·s                      without momentum
    b ← μ·b + s;  p ← p − lr·b        with momentum μ > 0 (b starts at 0)

    State: ``"step"``, ``"square_avg"`` (r), ``"grad_avg"`` (a, centered only),
    ``"momentum_buffer"`` (b, momentum only).
    """
    xp = B.xp
    g = grad + weight_decay * param if weight_decay else grad
    new_state = {**state, "step": state.get("step", 0) + 1}
    r = state.get("square_avg")
    r = (1 - alpha) * g * g if r is None else alpha * r + (1 - alpha) * g * g
    new_state["square_avg"] = r
    if centered:
        a = state.get("grad_avg")
        a = (1 - alpha) * g if a is None else alpha * a + (1 - alpha) * g
        new_state["grad_avg"] = a
        r = r - a * a
    s = g / (xp.sqrt(r) + eps)
    if momentum > 0:
        buf = state.get("momentum_buffer")
        s = s if buf is None else momentum * buf + s
        new_state["momentum_buffer"] = s
    return param - lr * s, new_state


def rmsprop_nesterov_step(param: Array, grad: Array, state: State, *, lr: float = 1e-2,
                          alpha: float = 0.99, eps: float = 1e-8,
                          momentum: float = 0.9) -> tuple[Array, State]:
    """RMSProp with Nesterov momentum (the notes' algorithm), in PyTorch's buffer form.

    The notes take the gradient at the look-ahead point θ̃ = θ + α_m·v (α_m the momentum, v the
    velocity), then  r ← ρ r + (1−ρ) g⊙g,  v ← α_m v − ε g/√r,  θ ← θ + v.
    Here the parameter IS the look-ahead point, p = θ + μ·v, so the gradient an ordinary backward
    pass computes at p is the look-ahead gradient; no second evaluation is needed. With
    b = −v/lr (constant lr), eliminating θ gives the rule applied here:

    t ← t + 1
    r ← α·r + (1 − α)·g ⊙ g           (α the decay rate ρ; μ the momentum α_m of the notes)
    s = g / (√r + eps)                (eps added so a coordinate with no gradient yet gives 0, not 0/0)
    b ← μ·b + s                       (b starts at 0)
    p ← p − lr·(s + μ·b)

    The notes' θ is recovered as ``p + μ·lr·b``. Computed through :func:`rmsprop_step` with
    momentum, which steps by lr·b; the look-ahead adds lr·(s + μ·b − b) = lr·μ·(b − b_old). State: ``"step"``,
    ``"square_avg"``, ``"momentum_buffer"``.
    """
    new, new_state = rmsprop_step(param, grad, state, lr=lr, alpha=alpha, eps=eps, momentum=momentum)
    b, b_old = new_state["momentum_buffer"], state.get("momentum_buffer")
    # rmsprop_step stepped by lr·b; the look-ahead needs lr·(s + μ·b), i.e. lr·μ·(b − b_old) more
    return new - lr * momentum * (b if b_old is None else b - b_old), new_state


def adam_step(param: Array, grad: Array, state: State, *, lr: float = 1e-3,
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
              amsgrad: bool = False) -> tuple[Array, State]:
    """Adam, as ``torch.optim.Adam``: momentum on g and RMSProp scaling, both bias-corrected.

    t ← t + 1;  g ← g + λ·p           (λ: L2 penalty folded into the gradient)
    m ← β1·m + (1 − β1)·g             (m, v start at 0)
    v ← β2·v + (1 − β2)·g ⊙ g
    v ← max(v_max, v) with AMSGrad    (the running maximum is what the step uses)
    m̂ = m / (1 − β1ᵗ),  v̂ = v / (1 − β2ᵗ)
    p ← p − lr·m̂ / (√v̂ + eps)

    The moments in the state stay uncorrected; the correction is applied only to form the step.
    State: ``"step"``, ``"exp_avg"`` (m), ``"exp_avg_sq"`` (v), ``"max_exp_avg_sq"`` (AMSGrad).
    """
    xp = B.xp
    beta1, beta2 = betas
    step = state.get("step", 0) + 1
    g = grad + weight_decay * param if weight_decay else grad
    m, v = state.get("exp_avg"), state.get("exp_avg_sq")
    m = (1 - beta1) * g if m is None else beta1 * m + (1 - beta1) * g
    v = (1 - beta2) * g * g if v is None else beta2 * v + (1 - beta2) * g * g
    new_state = {**state, "step": step, "exp_avg": m, "exp_avg_sq": v}
    if amsgrad:
        vmax = state.get("max_exp_avg_sq")
        v = B.copy_array(v) if vmax is None else xp.maximum(vmax, v)  # never alias exp_avg_sq
        new_state["max_exp_avg_sq"] = v
    m_hat = m / (1 - beta1 ** step)
    v_hat = v / (1 - beta2 ** step)
    return param - lr * m_hat / (xp.sqrt(v_hat) + eps), new_state


def adamw_step(param: Array, grad: Array, state: State, *, lr: float = 1e-3,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
               amsgrad: bool = False) -> tuple[Array, State]:
    """AdamW, as ``torch.optim.AdamW``: Adam with decoupled weight decay.

    p ← p − lr·λ·p                    (decay applied to the weights, NOT added to g)
    then the Adam step of :func:`adam_step` with λ = 0 (this function calls it).

    With Adam's L2 form the decay term is divided by √v̂ like the gradient; decoupling keeps it
    a plain shrinkage of every weight by the factor (1 − lr·λ). Same state as Adam.
    """
    return adam_step(param * (1 - lr * weight_decay), grad, state, lr=lr, betas=betas, eps=eps,
                     amsgrad=amsgrad)


def newton_step(param: Array, grad: Array, hessian: Array, state: State, *, lr: float = 1.0,
                damping: float = 0.0) -> tuple[Array, State]:
    """Newton's method on a 1-D parameter vector of length n, with Hessian H (n × n).

    Δ solves (H + damping·I)·Δ = g    (a linear solve; H⁻¹ is never formed)
    p ← p − lr·Δ

    On a quadratic with positive definite H, lr = 1 and no damping land on the minimum in one
    step. ``damping`` > 0 keeps the solve well posed when H is singular or not positive definite.
    State: ``"step"``.
    """
    xp = B.xp
    n = param.shape[0] if param.ndim == 1 else -1
    if n < 0 or tuple(grad.shape) != (n,) or tuple(hessian.shape) != (n, n):
        raise ValueError(
            f"newton_step expects param and grad of shape (n,) and hessian (n, n); got "
            f"{tuple(param.shape)}, {tuple(grad.shape)}, {tuple(hessian.shape)}: flatten the parameters first"
        )
    h = hessian + damping * xp.eye(n, dtype=hessian.dtype, device=hessian.device) if damping else hessian
    try:
        delta = xp.linalg.solve(h, xp.reshape(grad, (n, 1)))
    except np.linalg.LinAlgError as exc:
        raise ValueError(
            "the Hessian is singular, so the Newton system has no unique solution: "
            "pass damping > 0 (solves (H + damping·I)Δ = g)"
        ) from exc
    return param - lr * xp.reshape(delta, (n,)), {**state, "step": state.get("step", 0) + 1}


# -- optimizer classes ---------------------------------------------------------------------------

class Optimizer:
    """Applies a pure update rule to every parameter with a gradient, in place.

    ``update(param, grad, state, *, lr, **hyperparams) -> (new_param, new_state)`` is called with
    the raw arrays ``param.data`` and ``param.grad.data``; ``new_param`` is written into
    ``param.data`` in place (``param.data[...] = new_param``), so views and references to the
    parameter stay valid. ``state[i]`` is the state dict of the i-th parameter (PyTorch's
    ``state[p]``, keyed by position). ``lr`` is an attribute: a schedule may change it between
    steps. Any rule can drive this class: ``Optimizer(params, my_rule, lr=0.1, momentum=0.9)``.

    ``flat`` (needs the optional speed package ``course.fast``, NumPy/CuPy only): True keeps the
    parameters of each dtype in one contiguous buffer (every ``param.data`` becomes a view of it;
    read parameters through ``param.data``) and calls the rule once on the concatenated arrays,
    which is much faster for many small tensors but right only for elementwise rules. None
    (default) turns it on, where available, for the class's own reference rule and off for any
    other ``update=``, so a student's rule always sees parameter-shaped arrays and
    per-parameter state.
    """

    _reference: Callable[..., Any] | None = None  # the class's own rule, known to be elementwise
    _kernel: tuple[str, dict[str, Any]] | None = None  # backend kernel name and its extra kwargs

    def __init__(self, params: Iterable[Tensor] | Tensor, update: Callable[..., Any], *, lr: float,
                 flat: bool | None = None, **hyperparams: Any) -> None:
        self.params = _param_list(params)
        if not callable(update):
            raise TypeError(f"update must be a function (param, grad, state, **hyper) -> (param, state), "
                            f"got {update!r}")
        _check(lr >= 0, f"learning rate must be >= 0, got lr={lr}")
        self.update = update
        self.lr = lr
        self.hyperparams = hyperparams
        self._state: dict[Any, State] = {}
        groups = B.kernel("flat_buffers", layout=True) if flat or flat is None else None
        if flat and groups is None:
            raise ValueError(f"flat=True needs the speed package course.fast and the numpy or cupy "
                             f"backend (views of one buffer); here the backend is {B.name!r}")
        if flat is None and update is not self._reference:
            groups = None
        self._flat = groups(self) if groups is not None else None  # course.fast.flat.FlatGroups

    def __repr__(self) -> str:
        hyper = "".join(f", {k}={v!r}" for k, v in self.hyperparams.items())
        rule = "" if self.update is self._reference else f", update={getattr(self.update, '__name__', self.update)}"
        return f"{type(self).__name__}(lr={self.lr!r}{hyper}{rule})"

    @property
    def state(self) -> dict[Any, State]:
        """Per-parameter state by index (for flattened groups: views of the flat state arrays)."""
        if self._flat is not None:
            self._flat.publish()
        return self._state

    def zero_grad(self) -> None:
        """Forget all gradients (``grad = None``, PyTorch's default)."""
        for p in self.params:
            p.grad = None

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One update of every parameter that has a gradient. ``closure`` (optional) recomputes
        the loss and its gradients first; its loss is returned."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        kern = self._fast()
        if self._flat is not None:
            self._flat.step(kern)
        for i in range(len(self.params)) if self._flat is None else self._flat.loose:
            self._param_step(i, kern)
        return loss

    def _fast(self) -> Callable[..., None] | None:
        """The in-place kernel of ``course.fast`` for this rule, when the reference rule is in use."""
        if self._kernel is None or self.update is not self._reference:
            return None
        fn = B.kernel(self._kernel[0])
        if fn is None:
            return None
        extra = self._kernel[1]
        return lambda p, g, state: fn(p, g, state, lr=self.lr, **self.hyperparams, **extra)

    def _param_step(self, i: int, kern: Callable[..., None] | None) -> None:
        p = self.params[i]
        if p.grad is None:
            return
        g = p.grad.data
        if tuple(g.shape) != tuple(p.data.shape):
            raise ValueError(f"parameter {i} has shape {p.shape} but its gradient has shape {tuple(g.shape)}")
        state = self._state.setdefault(i, {})  # flat groups publish their states before coming here
        if kern is not None:
            kern(p.data, g, state)
            return
        new, self._state[i] = self.update(p.data, g, state, lr=self.lr, **self.hyperparams)
        self._write(p.data, new, f"parameter {i}")

    def _write(self, target: Array, new: Array, what: str) -> None:
        if tuple(getattr(new, "shape", ())) != tuple(target.shape):
            raise ValueError(
                f"{getattr(self.update, '__name__', 'update')} returned an array of shape "
                f"{tuple(getattr(new, 'shape', ()))} for {what} of shape {tuple(target.shape)}: "
                "it must return (new_param, new_state) with new_param shaped like param"
            )
        target[...] = new

    def state_dict(self) -> dict[str, Any]:
        """A copy of the state and hyperparameters, laid out like PyTorch's:
        ``{"state": {i: {...}}, "param_groups": [{"lr": ..., <hyperparameters>, "params": [0, ...]}]}``."""
        return {
            "state": {i: {k: B.copy_array(v) for k, v in s.items()} for i, s in self.state.items()},
            "param_groups": [{"lr": self.lr, **self.hyperparams, "params": list(range(len(self.params)))}],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (arrays are copied onto the current backend)."""
        (group,) = state_dict["param_groups"]
        hyper = {k: v for k, v in group.items() if k not in ("lr", "params")}
        if len(group["params"]) != len(self.params) or hyper.keys() != self.hyperparams.keys():
            raise ValueError(
                f"state_dict is for {len(group['params'])} parameters with hyperparameters "
                f"{sorted(hyper)}, this optimizer has {len(self.params)} with {sorted(self.hyperparams)}"
            )
        self.lr, self.hyperparams = group["lr"], hyper
        self._state = {}
        for i, s in state_dict["state"].items():
            self._state[i] = {k: B.asarray(np.array(B.to_numpy(v))) if B.is_array(v) else v for k, v in s.items()}
        if self._flat is not None:
            self._flat.repack()


def _param_list(params: Iterable[Tensor] | Tensor) -> list[Tensor]:
    params = [params] if isinstance(params, Tensor) else list(params)
    if not params:
        raise ValueError("the optimizer got an empty parameter list: pass model.parameters() or a list of Tensors")
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"optimizer parameters must be Tensors (e.g. course.Parameter), got {type(p).__name__}")
    if len({id(p) for p in params}) != len(params):
        raise ValueError("a parameter appears more than once in the optimizer's list")
    return params


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_betas(betas: tuple[float, float]) -> None:
    _check(len(betas) == 2 and all(0 <= b < 1 for b in betas), f"betas must be two numbers in [0, 1), got {betas}")


class SGD(Optimizer):
    """SGD with momentum, dampening, Nesterov and weight decay: the rule :func:`sgd_step`."""

    _reference = staticmethod(sgd_step)
    _kernel = ("sgd", {})

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, *,
                 update: Callable[..., Any] = sgd_step, flat: bool | None = None) -> None:
        _check(momentum >= 0, f"momentum must be >= 0, got {momentum}")
        _check(weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay}")
        _check(not nesterov or (momentum > 0 and dampening == 0),
               "Nesterov momentum needs momentum > 0 and dampening = 0 (as in PyTorch)")
        super().__init__(params, update, lr=lr, flat=flat, momentum=momentum, dampening=dampening,
                         nesterov=nesterov, weight_decay=weight_decay)


class Adagrad(Optimizer):
    """AdaGrad: the rule :func:`adagrad_step`."""

    _reference = staticmethod(adagrad_step)

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10, *,
                 update: Callable[..., Any] = adagrad_step, flat: bool | None = None) -> None:
        _check(lr_decay >= 0 and weight_decay >= 0 and initial_accumulator_value >= 0 and eps >= 0,
               "lr_decay, weight_decay, initial_accumulator_value and eps must be >= 0")
        super().__init__(params, update, lr=lr, flat=flat, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps)


class RMSprop(Optimizer):
    """RMSProp: the rule :func:`rmsprop_step`, or with ``nesterov=True`` the notes' Nesterov
    variant :func:`rmsprop_nesterov_step` (then weight_decay and centered are not available)."""

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
                 nesterov: bool = False, update: Callable[..., Any] | None = None,
                 flat: bool | None = None) -> None:
        _check(0 <= alpha < 1, f"alpha (the decay rate of the squared-gradient average) must be in [0, 1), got {alpha}")
        _check(eps >= 0 and weight_decay >= 0 and momentum >= 0, "eps, weight_decay and momentum must be >= 0")
        if nesterov:
            _check(momentum > 0 and not centered and not weight_decay,
                   "RMSprop(nesterov=True) needs momentum > 0 and supports neither centered nor weight_decay")
            self._reference = rmsprop_nesterov_step
            super().__init__(params, update or rmsprop_nesterov_step, lr=lr, flat=flat, alpha=alpha, eps=eps,
                             momentum=momentum)
        else:
            self._reference = rmsprop_step
            super().__init__(params, update or rmsprop_step, lr=lr, flat=flat, alpha=alpha, eps=eps,
                             weight_decay=weight_decay, momentum=momentum, centered=centered)


class Adam(Optimizer):
    """Adam (bias-corrected, optional AMSGrad): the rule :func:`adam_step`."""

    _reference = staticmethod(adam_step)
    _kernel = ("adam", {"decoupled": False})

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
                 update: Callable[..., Any] = adam_step, flat: bool | None = None) -> None:
        _check_betas(betas)
        _check(eps >= 0 and weight_decay >= 0, "eps and weight_decay must be >= 0")
        super().__init__(params, update, lr=lr, flat=flat, betas=tuple(betas), eps=eps,
                         weight_decay=weight_decay, amsgrad=amsgrad)


class AdamW(Adam):
    """AdamW (decoupled weight decay, default 0.01 as in PyTorch): the rule :func:`adamw_step`."""

    _reference = staticmethod(adamw_step)
    _kernel = ("adam", {"decoupled": True})

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 update: Callable[..., Any] = adamw_step, flat: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, update=update, flat=flat)


class Newton(Optimizer):
    """Newton's method over all parameters as one vector, with the exact Hessian from autodiff.

    ``step(closure)``: ``closure()`` recomputes the loss from the parameters and returns it.
    The gradient g and Hessian H of the loss with respect to the concatenated parameters come
    from double backward (the mechanism of :func:`course.autodiff.hessian`, one backward pass
    per row, so n passes and n² memory); then ``update(p, g, H, state, lr=, damping=)``
    (:func:`newton_step`) gives the new vector, written back into the parameters in place.
    The state of that one vector is ``state["joint"]``.
    """

    _reference = staticmethod(newton_step)

    def __init__(self, params: Iterable[Tensor], lr: float = 1.0, damping: float = 0.0, *,
                 max_params: int = 2000, update: Callable[..., Any] = newton_step) -> None:
        _check(damping >= 0, f"damping must be >= 0, got {damping}")
        super().__init__(params, update, lr=lr, flat=False, damping=damping)
        self.max_params = max_params
        self.numel = sum(p.size for p in self.params)
        _check(self.numel <= max_params,
               f"Newton builds the full {self.numel} x {self.numel} Hessian with {self.numel} backward passes; "
               f"that is more than max_params={max_params}: use a first-order optimizer (SGD, Adam) "
               "or raise max_params if you really mean it")

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """One Newton step; returns the loss ``closure()`` computed before the step."""
        if closure is None:
            raise TypeError("Newton.step needs a closure: a function that recomputes the loss from the parameters")
        xp = B.xp
        with enable_grad():
            loss = closure()
            if not isinstance(loss, Tensor) or loss.size != 1 or not loss.requires_grad:
                raise ValueError("the closure must return the scalar loss Tensor computed from the parameters")
            grads = _grad(loss, self.params, create_graph=True)
            g = ops.concat([ops.reshape(gi, (-1,)) for gi in grads])
            rows = [ops.concat([ops.reshape(r, (-1,)) for r in _grad(g[i], self.params)]).data
                    for i in range(self.numel)]
        hess = xp.stack(rows)
        flat = xp.concat([xp.reshape(p.data, (-1,)) for p in self.params])
        new, self._state["joint"] = self.update(flat, g.data, hess, self._state.get("joint", {}),
                                                lr=self.lr, **self.hyperparams)
        self._write(flat, new, "the concatenated parameters")
        start = 0
        for p in self.params:
            p.data[...] = xp.reshape(flat[start:start + p.size], p.shape)
            start += p.size
        return loss


# -- gradient clipping ---------------------------------------------------------------------------

def _with_grads(parameters: Iterable[Tensor] | Tensor) -> list[Tensor]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p for p in params if p.grad is not None]


def clip_grad_norm(grads: Iterable[Array], max_norm: float,
                   norm_type: float = 2.0) -> tuple[list[Array], float]:
    """The functional form of :func:`clip_grad_norm_`: ``(clipped, N)`` for a list of gradient
    arrays, with PyTorch's rule (one norm over ALL the arrays, so their directions are kept)::

        N = (Σ_p Σ_i |g_pi|^q)^(1/q)      (q = norm_type; q = inf: N = max |g_pi|)
        g ← g · min(1, max_norm / (N + 1e-6))

    New arrays; N is the norm before clipping. This is how training survives a cliff: a step
    that would be huge keeps its direction but is shortened to ``lr·max_norm``.
    """
    xp = B.xp
    grads = list(grads)
    if not grads:
        return [], 0.0
    if norm_type == math.inf:
        total = xp.max(xp.stack([xp.max(xp.abs(g)) for g in grads]))
    else:
        _check(norm_type > 0, f"norm_type must be > 0 or math.inf, got {norm_type}")
        total = sum(xp.sum(xp.abs(g) ** norm_type) for g in grads) ** (1 / norm_type)
    coef = xp.clip(max_norm / (total + 1e-6), max=1.0)  # on the device: no sync
    return [g * coef for g in grads], float(B.to_numpy(total))  # the one host transfer


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Rescale all gradients together so their joint norm is at most ``max_norm``; returns that
    norm (before clipping), as ``torch.nn.utils.clip_grad_norm_`` (the rule: :func:`clip_grad_norm`).

    Gradients are replaced by new arrays, not scaled in place: two parameters may share one
    gradient array (``x + y`` sends the same array to both). The norm and the factor stay on the
    device; the one host transfer is the returned norm.
    """
    params = _with_grads(parameters)
    clipped, total = clip_grad_norm([p.grad.data for p in params], max_norm, norm_type)
    if not math.isfinite(total) and error_if_nonfinite:
        raise RuntimeError(f"the total gradient norm is {total}: the loss or its gradient overflowed "
                           "(lower the learning rate), or pass error_if_nonfinite=False")
    for p, g in zip(params, clipped):
        p.grad = Tensor(g)
    return total


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float) -> None:
    """Clip every gradient entry to [−clip_value, clip_value] (new arrays, see :func:`clip_grad_norm_`)."""
    _check(clip_value >= 0, f"clip_value must be >= 0, got {clip_value}")
    for p in _with_grads(parameters):
        p.grad = Tensor(B.xp.clip(p.grad.data, -clip_value, clip_value))
