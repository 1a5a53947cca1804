"""course.schedules: each schedule's values worked out by hand, its domain, and the scheduler."""
from __future__ import annotations

import math

import numpy as np
import pytest

from course import optim
from course import schedules as S
from course.autodiff import Parameter, Tensor


def values(schedule, ts):
    return [schedule(t) for t in ts]


def test_constant_and_step_decay():
    assert values(S.constant(0.3), [0, 1, 1000]) == [0.3, 0.3, 0.3]
    # halve every 10 steps: t = 0..9 -> 1, 10..19 -> 0.5, 20..29 -> 0.25
    assert values(S.step_decay(1.0, step_size=10, gamma=0.5), [0, 9, 10, 19, 20, 29]) == [
        1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_piecewise_constant():
    s = S.piecewise_constant([5, 8], [0.1, 0.01, 0.001])
    assert values(s, [0, 4, 5, 7, 8, 100]) == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    with pytest.raises(ValueError, match="one more value"):
        S.piecewise_constant([5, 8], [0.1, 0.01])
    with pytest.raises(ValueError, match="increasing"):
        S.piecewise_constant([8, 5], [0.1, 0.01, 0.001])


def test_linear_decay_is_the_notes_formula_then_constant():
    s = S.linear_decay(0.1, tau=100, lr_tau=0.002)
    # ε_k = (1 − k/τ)·ε0 + (k/τ)·ε_τ: k = 25 -> 0.75·0.1 + 0.25·0.002 = 0.0755
    assert s(0) == pytest.approx(0.1)
    assert s(25) == pytest.approx(0.0755)
    assert s(50) == pytest.approx(0.051)
    assert s(100) == pytest.approx(0.002)
    assert s(1000) == pytest.approx(0.002)  # constant after τ
    assert S.linear_decay(0.5, tau=10)(10) == pytest.approx(0.005)  # default ε_τ = ε0/100


def test_inverse_sqrt_and_the_capped_inverse_start_at_one():
    s = S.inverse_sqrt(0.6)
    assert values(s, [1, 4, 9]) == pytest.approx([0.6, 0.3, 0.2])
    c = S.capped_inverse()  # min(0.1, 100/t): flat at 0.1 until t = 1000, then 100/t
    assert values(c, [1, 999, 1000, 2000, 4000]) == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.025])
    assert s.start == c.start == 1
    for sched in (s, c):
        with pytest.raises(ValueError, match="t >= 1"):
            sched(0)


def test_exponential_and_cosine():
    e = S.exponential(2.0, gamma=0.5)
    assert values(e, [0, 1, 3]) == [2.0, 1.0, 0.25]
    c = S.cosine(1.0, t_max=100, lr_min=0.2)
    # ε_min + (ε_max − ε_min)(1 + cos(πt/T))/2: t = 0 -> 1, T/2 -> 0.6, T/4 -> 0.2 + 0.4(1 + √½)
    assert c(0) == pytest.approx(1.0)
    assert c(50) == pytest.approx(0.6)
    assert c(25) == pytest.approx(0.2 + 0.4 * (1 + math.sqrt(0.5)))
    assert c(100) == pytest.approx(0.2) and c(250) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="lr_min"):
        S.cosine(0.1, 10, lr_min=0.5)


def test_warmup_ramps_linearly_from_the_wrapped_schedules_start():
    w = S.warmup(S.constant(1.0), warmup_steps=4)
    assert values(w, [0, 1, 2, 3, 4, 50]) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    wi = S.warmup(S.inverse_sqrt(1.0), warmup_steps=2)
    assert wi.start == 1
    assert values(wi, [1, 2, 4]) == pytest.approx([0.5, 1 / math.sqrt(2), 0.5])


def test_bad_arguments_and_steps():
    for make in (lambda: S.constant(0.0), lambda: S.step_decay(0.1, 0), lambda: S.exponential(0.1, -1.0),
                 lambda: S.linear_decay(0.1, tau=0), lambda: S.warmup(S.constant(0.1), 0)):
        with pytest.raises(ValueError, match="must be > 0"):
            make()
    with pytest.raises(ValueError, match="integer"):
        S.constant(0.1)(1.5)
    with pytest.raises(ValueError, match="t >= 0"):
        S.constant(0.1)(-1)
    assert "min(0.1, 100.0/t)" in repr(S.capped_inverse())


def test_scheduler_sets_the_learning_rate_the_optimizer_uses():
    p = Parameter(np.array([0.0]))
    opt = optim.SGD([p], lr=123.0)
    sched = S.LRScheduler(opt, S.step_decay(0.1, step_size=2, gamma=0.5))
    assert opt.lr == 0.1 and sched.t == 0  # set at construction: the first step uses schedule(0)
    moves = []
    for _ in range(5):
        before = p.numpy()[0]
        p.grad = Tensor(np.array([1.0]))
        opt.step()
        sched.step()
        moves.append(before - p.numpy()[0])
    np.testing.assert_allclose(moves, [0.1, 0.1, 0.05, 0.05, 0.025])
    assert sched.lr == opt.lr == 0.025 and sched.t == 5
    saved = sched.state_dict()
    other = S.LRScheduler(opt, S.step_decay(0.1, step_size=2, gamma=0.5))
    other.load_state_dict(saved)
    assert other.t == 5 and opt.lr == 0.025


def test_scheduler_accepts_plain_functions_and_starts_one_based_schedules_at_one():
    p = Parameter(np.array([0.0]))
    opt = optim.Adam([p])
    S.LRScheduler(opt, lambda t: 0.5 ** t)
    assert opt.lr == 1.0
    sched = S.LRScheduler(opt, S.inverse_sqrt(0.2))
    assert sched.t == 1 and opt.lr == pytest.approx(0.2)
    sched.step()
    assert opt.lr == pytest.approx(0.2 / math.sqrt(2))
    with pytest.raises(ValueError, match="finite"):
        S.LRScheduler(opt, lambda t: float("nan"))
    with pytest.raises(TypeError, match="'lr'"):
        S.LRScheduler(object(), S.constant(0.1))


def test_same_values_as_pytorch_schedulers():
    torch = pytest.importorskip("torch", reason="PyTorch is optional; this comparison runs only where it is installed")
    lr_sched = torch.optim.lr_scheduler
    cases = [
        (S.step_decay(0.1, 3, 0.5), lambda o: lr_sched.StepLR(o, step_size=3, gamma=0.5)),
        (S.exponential(0.1, 0.9), lambda o: lr_sched.ExponentialLR(o, gamma=0.9)),
        (S.cosine(0.1, 10, lr_min=0.01), lambda o: lr_sched.CosineAnnealingLR(o, T_max=10, eta_min=0.01)),
        (S.piecewise_constant([2, 5], [0.1, 0.1 * 0.3, 0.1 * 0.3 ** 2]),
         lambda o: lr_sched.MultiStepLR(o, milestones=[2, 5], gamma=0.3)),
    ]
    for ours, make in cases:
        topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        theirs = make(topt)
        got = []
        for _ in range(11):
            got.append(topt.param_groups[0]["lr"])
            topt.step()
            theirs.step()
        np.testing.assert_allclose(values(ours, range(11)), got, rtol=1e-12, err_msg=repr(ours))
