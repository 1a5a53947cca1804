"""course.optim: update rules against equations written out here, the classes' paths
(flat buffer, per tensor, fused kernel, standard-only), custom rules, state, clipping, Newton,
and the notes' claims (momentum on an ill-conditioned quadratic, equivalent momentum forms)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import course
from course import autodiff, optim
from course import backend as B
from course.autodiff import Parameter, Tensor

SHAPES = [(3,), (2, 3), ()]  # a vector, a matrix and a scalar parameter
STEPS = 4


def _grads(seed: int = 0, shapes=SHAPES, steps=STEPS, dtype=np.float64) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]


def _start(seed: int = 1, shapes=SHAPES, dtype=np.float64) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


# -- the update equations, written out independently of the library ------------------------------

def hand_sgd(p, grads, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    """PyTorch's SGD: b1 = g1, b_t = μ b_{t-1} + (1-τ) g_t; step along b (or g + μ b)."""
    path, b = [], None
    for g in grads:
        g = g + weight_decay * p
        if momentum:
            b = g if b is None else momentum * b + (1 - dampening) * g
            d = g + momentum * b if nesterov else b
        else:
            d = g
        p = p - lr * d
        path.append(p)
    return path, ({} if b is None else {"momentum_buffer": b})


def hand_adagrad(p, grads, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    path, r = [], np.full_like(p, initial_accumulator_value)
    for t, g in enumerate(grads, 1):
        g = g + weight_decay * p
        r = r + g ** 2
        p = p - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(r) + eps)
        path.append(p)
    return path, {"step": len(grads), "sum": r}


def hand_rmsprop(p, grads, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    path, r, a, b = [], np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        g = g + weight_decay * p
        r = alpha * r + (1 - alpha) * g ** 2
        a = alpha * a + (1 - alpha) * g
        denom = np.sqrt(r - a ** 2 if centered else r) + eps
        if momentum:
            b = momentum * b + g / denom
            p = p - lr * b
        else:
            p = p - lr * g / denom
        path.append(p)
    state = {"step": len(grads), "square_avg": r}
    if centered:
        state["grad_avg"] = a
    if momentum:
        state["momentum_buffer"] = b
    return path, state


def hand_adam(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    b1, b2 = betas
    path, m, v, vmax = [], np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        if decoupled:
            p = p - lr * weight_decay * p
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1 ** t)
        v_hat = (vmax if amsgrad else v) / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        path.append(p)
    state = {"step": len(grads), "exp_avg": m, "exp_avg_sq": v}
    if amsgrad:
        state["max_exp_avg_sq"] = vmax
    return path, state


def hand_adamw(p, grads, lr, weight_decay=1e-2, **kw):
    return hand_adam(p, grads, lr, weight_decay=weight_decay, decoupled=True, **kw)


CASES = [  # (class, rule, keyword arguments, hand-written equations)
    (optim.SGD, optim.sgd_step, dict(lr=0.1), hand_sgd),
    (optim.SGD, optim.sgd_step, dict(lr=0.1, momentum=0.9), hand_sgd),
    (optim.SGD, optim.sgd_step, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01), hand_sgd),
    (optim.SGD, optim.sgd_step, dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.05), hand_sgd),
    (optim.Adagrad, optim.adagrad_step, dict(lr=0.1), hand_adagrad),
    (optim.Adagrad, optim.adagrad_step,
     dict(lr=0.1, lr_decay=0.1, weight_decay=0.01, initial_accumulator_value=0.5), hand_adagrad),
    (optim.RMSprop, optim.rmsprop_step, dict(lr=0.01), hand_rmsprop),
    (optim.RMSprop, optim.rmsprop_step, dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True,
                                             weight_decay=0.01), hand_rmsprop),
    (optim.Adam, optim.adam_step, dict(lr=0.01), hand_adam),
    (optim.Adam, optim.adam_step, dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1, amsgrad=True), hand_adam),
    (optim.AdamW, optim.adamw_step, dict(lr=0.01), hand_adamw),
    (optim.AdamW, optim.adamw_step, dict(lr=0.01, weight_decay=0.1, amsgrad=True), hand_adamw),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for cls, _, kw, _ in CASES]


def _run_class(cls, kwargs, starts, grads, **extra):
    params = [Parameter(x.copy()) for x in starts]
    opt = cls(params, **kwargs, **extra)
    path = []
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = Tensor(g.copy())
        opt.step()
        path.append([p.numpy().copy() for p in params])
    return opt, params, path


@pytest.mark.parametrize("mode", ["flat", "per-tensor", "standard", "pure"])
@pytest.mark.parametrize("cls, rule, kwargs, hand", CASES, ids=IDS)
def test_steps_match_the_equations(cls, rule, kwargs, hand, mode):
    starts, grads = _start(), _grads()
    expected = [hand(x, [gs[j] for gs in grads], **kwargs) for j, x in enumerate(starts)]
    if mode == "pure":  # the rule itself, carrying its state by hand
        for j, x in enumerate(starts):
            state, p = {}, x
            for t, gs in enumerate(grads):
                p, state = rule(p, gs[j], state, **kwargs)
                np.testing.assert_allclose(p, expected[j][0][t], rtol=1e-12, atol=1e-14)
            assert state.keys() == expected[j][1].keys()
            for k, v in expected[j][1].items():
                np.testing.assert_allclose(state[k], v, rtol=1e-12, atol=1e-14)
        return
    extra = {"flat": mode != "per-tensor"}
    if mode == "standard":
        with B.standard_only():
            opt, params, path = _run_class(cls, kwargs, starts, grads, **extra)
    else:
        opt, params, path = _run_class(cls, kwargs, starts, grads, **extra)
    for t in range(STEPS):
        for j in range(len(starts)):
            np.testing.assert_allclose(path[t][j], expected[j][0][t], rtol=1e-12, atol=1e-14,
                                       err_msg=f"step {t + 1}, parameter {j}")
    for j in range(len(starts)):
        assert opt.state[j].keys() == expected[j][1].keys()
        for k, v in expected[j][1].items():
            np.testing.assert_allclose(opt.state[j][k], v, rtol=1e-12, atol=1e-14, err_msg=k)
            if k != "step":
                assert opt.state[j][k].shape == params[j].shape


def test_sgd_momentum_and_nesterov_by_numbers():
    # p = 1, g = 2 then 3, lr = 0.1, μ = 0.9.  Heavy ball: b = 2, p = 0.8; b = 0.9·2 + 3 = 4.8, p = 0.32.
    # Nesterov: p = 1 − 0.1·(2 + 0.9·2) = 0.62; then b = 4.8, p = 0.62 − 0.1·(3 + 0.9·4.8) = −0.112.
    for nesterov, expected in [(False, [0.8, 0.32]), (True, [0.62, -0.112])]:
        p = Parameter(np.array([1.0]))
        opt = optim.SGD([p], lr=0.1, momentum=0.9, nesterov=nesterov)
        for g, want in zip([2.0, 3.0], expected):
            p.grad = Tensor(np.array([g]))
            opt.step()
            assert p.numpy()[0] == pytest.approx(want, abs=1e-15)


def test_adam_first_step_is_lr_times_sign_and_bias_correction_matters():
    # m̂₁ = g and v̂₁ = g², so the first step is lr·g/(|g| + eps) ≈ lr·sign(g) whatever |g| is.
    g = np.array([1e-4, -3.0, 250.0])
    p, state = optim.adam_step(np.zeros(3), g, {}, lr=0.01)
    np.testing.assert_allclose(p, -0.01 * np.sign(g), rtol=1e-3)
    np.testing.assert_allclose(state["exp_avg"], 0.1 * g)  # the stored moments are not corrected
    np.testing.assert_allclose(state["exp_avg_sq"], 0.001 * g * g)
    # without the correction the first step would be lr·0.1·g/(√0.001·|g|) ≈ 3.16·lr: the notes'
    # version (correction inside the recursion, step along g) does not give lr·sign(g) either
    uncorrected = -0.01 * state["exp_avg"] / (np.sqrt(state["exp_avg_sq"]) + 1e-8)
    assert not np.allclose(uncorrected, p, rtol=0.5)


def test_adamw_decays_the_weights_not_the_gradient():
    # with g = 0 Adam's L2 term reaches the step through m̂/√v̂ (≈ lr·sign(p)); AdamW just shrinks p
    p0 = np.array([2.0, -4.0])
    p_w, _ = optim.adamw_step(p0, np.zeros(2), {}, lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(p_w, p0 * (1 - 0.1 * 0.5))
    p_l2, _ = optim.adam_step(p0, np.zeros(2), {}, lr=0.1, weight_decay=0.5)
    np.testing.assert_allclose(p_l2, p0 - 0.1 * np.sign(p0), rtol=1e-6)


# -- pure functions ------------------------------------------------------------------------------------

RULES = [(rule, kw) for _, rule, kw, _ in CASES] + [
    (optim.rmsprop_nesterov_step, dict(lr=0.01, momentum=0.9)),
]


@pytest.mark.parametrize("rule, kwargs", RULES, ids=[r.__name__ + str(i) for i, (r, _) in enumerate(RULES)])
def test_rules_do_not_modify_their_inputs(rule, kwargs):
    rng = np.random.default_rng(3)
    p, g = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    _, state = rule(p, g, {}, **kwargs)  # a non-empty state, as at every later step
    frozen = (p.copy(), g.copy(), copy.deepcopy(state))
    new_p, new_state = rule(p, g, state, **kwargs)
    np.testing.assert_array_equal(p, frozen[0])
    np.testing.assert_array_equal(g, frozen[1])
    assert state.keys() == frozen[2].keys()
    for k, v in frozen[2].items():
        np.testing.assert_array_equal(state[k], v)
    assert new_state is not state and new_p is not p
    # and what they return shares no memory with the inputs (a later in-place update is safe)
    outs = [new_p, *(v for v in new_state.values() if isinstance(v, np.ndarray))]
    for i, out in enumerate(outs):
        assert not np.shares_memory(out, g) and not np.shares_memory(out, p)
        assert not any(np.shares_memory(out, other) for other in outs[i + 1:])
    _, first_state = rule(p, g, {}, **kwargs)  # the first step too (buffers start as copies)
    arrays = [v for v in first_state.values() if isinstance(v, np.ndarray)]
    for i, out in enumerate(arrays):
        assert not np.shares_memory(out, g) and not any(np.shares_memory(out, o) for o in arrays[i + 1:])


def test_rules_run_on_the_strict_array_api():
    p0 = np.array([[0.5, -1.0], [2.0, 0.0]])
    g0 = np.array([[1.0, 2.0], [-3.0, 0.5]])
    results = []
    course.use("array_api_strict")  # standard functions only, arrays on its fake device
    try:
        for rule, kwargs in RULES:
            new, state = B.asarray(p0), {}
            for _ in range(2):
                new, state = rule(new, B.asarray(g0), state, **kwargs)
            results.append(B.to_numpy(new))
    finally:
        course.use("numpy")
    for (rule, kwargs), got in zip(RULES, results):
        ref, state = p0, {}
        for _ in range(2):
            ref, state = rule(ref, g0, state, **kwargs)
        np.testing.assert_allclose(got, ref, rtol=1e-12, err_msg=rule.__name__)


def test_classes_update_in_place_on_the_strict_array_api(backend):
    p = Parameter(backend.asarray(np.array([1.0, -2.0])))
    buffer = p.data
    opt = optim.Adam([p], lr=0.1)
    p.grad = Tensor(backend.asarray(np.array([0.5, 0.5])))
    opt.step()
    assert p.data is buffer  # written into the parameter's own buffer
    np.testing.assert_allclose(backend.to_numpy(p.data), [0.9, -2.1], rtol=1e-6)


# -- classes: custom rules, in-place writes, kernels, flat buffers, state -------------------------------

def test_a_students_rule_drives_the_class_in_place():
    seen = []

    def my_sgd(param, grad, state, *, lr, momentum, dampening, nesterov, weight_decay):
        seen.append(param.shape)
        velocity = momentum * state.get("v", 0.0) - lr * grad  # the notes' form
        return param + velocity, {"v": velocity}

    starts, grads = _start(), _grads()
    params = [Parameter(x.copy()) for x in starts]
    buffers = [p.data for p in params]
    opt = optim.SGD(params, lr=0.1, momentum=0.9, update=my_sgd)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = Tensor(g)
        opt.step()
    assert all(p.data is b for p, b in zip(params, buffers))  # in place, parameter by parameter
    assert seen[:3] == SHAPES  # it sees each parameter with its own shape, never a flat vector
    for j, x in enumerate(starts):  # and it reproduces PyTorch's heavy ball (constant lr)
        want, _ = hand_sgd(x, [gs[j] for gs in grads], lr=0.1, momentum=0.9)
        np.testing.assert_allclose(params[j].numpy(), want[-1], rtol=1e-12)
    assert "update=my_sgd" in repr(opt)


def test_flat_true_calls_a_custom_elementwise_rule_once_on_the_concatenation():
    calls = []

    def heavy_ball(param, grad, state, *, lr, momentum, dampening, nesterov, weight_decay):
        calls.append(param.shape)
        b = grad if "b" not in state else momentum * state["b"] + grad
        return param - lr * b, {"b": b}

    starts, grads = _start(), _grads()
    path = {}
    for flat in (True, False):
        calls.clear()
        opt, params, path[flat] = _run_class(optim.SGD, dict(lr=0.1, momentum=0.9), starts, grads,
                                             update=heavy_ball, flat=flat)
        if flat:
            assert calls == [(3 + 6 + 1,)] * STEPS  # one call per step on all 10 numbers
            assert opt.state[1]["b"].shape == (2, 3)  # per-parameter view of the flat state
    for t in range(STEPS):
        for a, b in zip(path[True][t], path[False][t]):
            np.testing.assert_allclose(a, b, rtol=1e-13)


def test_the_base_class_takes_any_rule_and_reports_bad_ones():
    def sign_descent(param, grad, state, *, lr):
        return param - lr * np.sign(grad), state

    p = Parameter(np.array([1.0, 1.0]))
    opt = optim.Optimizer([p], sign_descent, lr=0.25)
    p.grad = Tensor(np.array([3.0, -0.1]))
    opt.step()
    np.testing.assert_array_equal(p.numpy(), [0.75, 1.25])

    bad = optim.Optimizer([p], lambda param, grad, state, *, lr: (float(param.sum()), state), lr=0.1)
    with pytest.raises(ValueError, match="shaped like param"):
        bad.step()
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="Tensors"):
        optim.SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="lr=-1"):
        optim.Adam([p], lr=-1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="flat=True"):
        course.use("array_api_strict")
        try:
            optim.Adam([p], flat=True)
        finally:
            course.use("numpy")
    p.grad = Tensor(np.zeros(3))
    with pytest.raises(ValueError, match="gradient has shape"):
        optim.SGD([p], lr=0.1).step()


@pytest.mark.parametrize("cls, kwargs", [
    (optim.Adam, dict(lr=0.01)),
    (optim.Adam, dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    (optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
])
def test_the_fused_kernel_equals_the_reference_rule(cls, kwargs):
    assert B.kernel("adam") is not None  # NumPy registers one
    with B.standard_only():
        assert B.kernel("adam") is None
    rng = np.random.default_rng(5)
    # many small tensors (flat path), one tensor larger than a kernel block, a non-contiguous one
    shapes = [(5,)] * 6 + [(300, 400)]
    starts = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    starts.append(np.asfortranarray(rng.standard_normal((7, 9)).astype(np.float32)))
    grads = [[rng.standard_normal(x.shape).astype(np.float32) for x in starts] for _ in range(3)]
    results = {}
    for flat in (True, False):
        for standard in (True, False):
            if standard:
                with B.standard_only():
                    opt, params, _ = _run_class(cls, kwargs, starts, grads, flat=flat)
            else:
                opt, params, _ = _run_class(cls, kwargs, starts, grads, flat=flat)
            results[flat, standard] = ([p.numpy() for p in params], opt.state_dict()["state"])
    ref_params, ref_state = results[False, True]  # per tensor, pure rule
    for key, (ps, state) in results.items():
        for j, (a, b) in enumerate(zip(ps, ref_params)):
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{key}, parameter {j}")
        for j in ref_state:
            for k in ref_state[j]:
                np.testing.assert_allclose(state[j][k], ref_state[j][k], rtol=1e-5, atol=1e-6)


def test_flat_buffer_views_follow_reassignment_and_missing_gradients():
    starts, grads = _start(), _grads()
    kwargs = dict(lr=0.01, betas=(0.8, 0.9))
    a = [Parameter(x.copy()) for x in starts]
    b = [Parameter(x.copy()) for x in starts]
    flat, per = optim.Adam(a, **kwargs), optim.Adam(b, **kwargs, flat=False)
    assert a[0].data.base is not None and all(p.data.base is a[0].data.base for p in a)  # one buffer
    flat.step()  # no gradients at all: nothing moves, the group stays flat
    assert flat._flat.groups[0].active and all(np.array_equal(p.numpy(), x) for p, x in zip(a, starts))
    for t, gs in enumerate(grads):
        for j, (pa, pb, g) in enumerate(zip(a, b, gs)):
            # step 2: the matrix gets no gradient (its state must not advance); step 3: someone
            # assigns a new array to a parameter (the optimizer must pick it up)
            pa.grad = pb.grad = None if (t == 1 and j == 1) else Tensor(g)
        if t == 2:
            a[0].data = np.full(3, 0.5)
            b[0].data = np.full(3, 0.5)
        flat.step()
        per.step()
        for pa, pb in zip(a, b):
            np.testing.assert_allclose(pa.numpy(), pb.numpy(), rtol=1e-12)
    assert flat.state[1]["step"] == STEPS - 1 and flat.state[0]["step"] == STEPS
    fresh = optim.Adam(b)
    fresh.step()
    b[0].data = np.zeros(4)  # a new shape: the flat state no longer fits
    b[0].grad = Tensor(np.zeros(4))
    with pytest.raises(ValueError, match="create the optimizer after"):
        fresh.step()


def test_a_flat_optimizer_follows_a_model_converted_before_its_first_step():
    starts, grads = _start(), _grads(steps=2)
    params = [Parameter(x.copy()) for x in starts]
    opt = optim.Adam(params, lr=0.1)
    for p in params:  # e.g. Module.to() or a dtype change: new arrays, same Parameter objects
        p.data = p.data.astype(np.float32)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = Tensor(g.astype(np.float32))
        opt.step()
    per = _run_class(optim.Adam, dict(lr=0.1), [x.astype(np.float32) for x in starts],
                     [[g.astype(np.float32) for g in gs] for gs in grads], flat=False)[1]
    for p, q in zip(params, per):
        assert p.dtype == np.float32
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-6)


def test_one_flat_buffer_per_dtype_and_single_parameters_stay_as_they_are():
    rng = np.random.default_rng(7)
    starts = [rng.standard_normal(4).astype(np.float32), rng.standard_normal(3),
              rng.standard_normal((2, 2)).astype(np.float32)]
    grads = [[rng.standard_normal(x.shape).astype(x.dtype) for x in starts] for _ in range(3)]
    params = [Parameter(x.copy()) for x in starts]
    lone = params[1].data
    opt = optim.Adam(params, lr=0.1)
    assert params[0].data.base is params[2].data.base is not None  # the two float32 tensors
    assert params[1].data is lone  # the only float64 tensor keeps its own array
    per = _run_class(optim.Adam, dict(lr=0.1), starts, grads, flat=False)[1]
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = Tensor(g)
        opt.step()
    for p, q in zip(params, per):
        assert p.dtype == q.dtype
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-6)


@pytest.mark.parametrize("flat", [True, False])
def test_state_dict_round_trip(flat):
    starts, grads = _start(), _grads(steps=5)
    kwargs = dict(lr=0.01, amsgrad=True)
    a = [Parameter(x.copy()) for x in starts]
    opt = optim.Adam(a, **kwargs, flat=flat)
    for gs in grads[:3]:
        for p, g in zip(a, gs):
            p.grad = Tensor(g)
        opt.step()
    saved = opt.state_dict()
    assert saved["param_groups"][0]["lr"] == 0.01 and saved["param_groups"][0]["params"] == [0, 1, 2]
    assert saved["state"][0]["step"] == 3 and set(saved["state"][0]) == {
        "step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    snapshot = copy.deepcopy(saved)
    b = [Parameter(p.numpy().copy()) for p in a]
    restored = optim.Adam(b, lr=0.5, flat=not flat)  # other lr and layout: the dict wins
    restored.load_state_dict(saved)
    assert restored.lr == 0.01
    for gs in grads[3:]:
        for p, q, g in zip(a, b, gs):
            p.grad, q.grad = Tensor(g), Tensor(g)
        opt.step()
        restored.step()
    for p, q in zip(a, b):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-12)
    for j in saved["state"]:  # the saved copy did not move with the optimizers
        for k, v in snapshot["state"][j].items():
            np.testing.assert_array_equal(saved["state"][j][k], v)
    with pytest.raises(ValueError, match="3 parameters"):
        optim.Adam(a[:2]).load_state_dict(saved)


# -- gradient clipping ------------------------------------------------------------------------------

def test_clip_grad_norm_scales_all_gradients_together():
    p, q, r = Parameter(np.zeros(2)), Parameter(np.zeros((2, 2))), Parameter(np.zeros(1))
    p.grad, q.grad = Tensor(np.array([3.0, 0.0])), Tensor(np.array([[0.0, 4.0], [0.0, 0.0]]))
    total = optim.clip_grad_norm_([p, q, r], max_norm=1.0)  # r has no gradient: skipped
    assert total == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(q.grad.numpy(), [[0.0, 0.8], [0.0, 0.0]], rtol=1e-6)
    assert optim.clip_grad_norm_([p, q], max_norm=10.0) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.0], rtol=1e-6)  # below the bound: unchanged
    assert optim.clip_grad_norm_([p, q], max_norm=0.4, norm_type=math.inf) == pytest.approx(0.8, rel=1e-5)
    np.testing.assert_allclose(q.grad.numpy(), [[0.0, 0.4], [0.0, 0.0]], rtol=1e-5)
    p.grad = Tensor(np.array([np.inf, 0.0]))
    with pytest.raises(RuntimeError, match="overflow"):
        optim.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)


def test_clipping_is_safe_when_parameters_share_a_gradient_array():
    x, y = Parameter(np.array([3.0, 4.0])), Parameter(np.array([1.0, 1.0]))
    (x + y).sum().backward()  # the engine hands both leaves the same gradient array
    optim.clip_grad_norm_([x, y], max_norm=1.0)  # joint norm 2 -> factor 0.5 for each, once
    np.testing.assert_allclose(x.grad.numpy(), [0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(y.grad.numpy(), [0.5, 0.5], rtol=1e-6)


def test_clip_grad_value():
    p = Parameter(np.zeros(4))
    p.grad = Tensor(np.array([-3.0, -0.5, 0.2, 7.0]))
    optim.clip_grad_value_([p], 1.0)
    np.testing.assert_array_equal(p.grad.numpy(), [-1.0, -0.5, 0.2, 1.0])
    with pytest.raises(ValueError, match="clip_value"):
        optim.clip_grad_value_([p], -1.0)


# -- Newton ------------------------------------------------------------------------------------------

def _spd(n: int, seed: int) -> np.ndarray:
    m = np.random.default_rng(seed).standard_normal((n, n))
    return m @ m.T + n * np.eye(n)


def test_newton_reaches_the_minimum_of_a_quadratic_in_one_step():
    A, b = _spd(6, 0), np.random.default_rng(1).standard_normal(6)
    x = Parameter(np.random.default_rng(2).standard_normal(6))
    f = lambda v: 0.5 * (v @ (Tensor(A) @ v)) - (Tensor(b) * v).sum()  # noqa: E731
    opt = optim.Newton([x])
    opt.step(lambda: f(x))
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(A, b), rtol=1e-10)
    assert opt.state["joint"]["step"] == 1


def test_newton_on_several_tensors_solves_least_squares_in_one_step():
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((20, 3)), rng.standard_normal((20, 2))
    W, c = Parameter(rng.standard_normal((2, 3))), Parameter(rng.standard_normal(2))
    Xt, yt = Tensor(X), Tensor(y)

    def closure():  # PyTorch's convention (zero_grad, backward, return) works too
        opt.zero_grad()
        loss = ((Xt @ W.T + c - yt) ** 2).sum()
        loss.backward()
        return loss

    opt = optim.Newton([W, c])
    loss0 = opt.step(closure)
    coef, *_ = np.linalg.lstsq(np.hstack([X, np.ones((20, 1))]), y, rcond=None)
    np.testing.assert_allclose(W.numpy(), coef[:3].T, rtol=1e-9)
    np.testing.assert_allclose(c.numpy(), coef[3], rtol=1e-9)
    assert float(closure()) < float(loss0)


def test_newton_uses_the_exact_hessian_of_autodiff():
    f = lambda v: (course.ops.exp(v) * v).sum() + (v[0] * v[1]) ** 2  # noqa: E731 - not quadratic
    x0 = np.array([0.3, -0.2, 0.5])
    seen = {}

    def recording_step(param, grad, hessian, state, *, lr, damping):
        seen["H"] = hessian
        return optim.newton_step(param, grad, hessian, state, lr=lr, damping=damping)

    x = Parameter(x0.copy())
    optim.Newton([x], update=recording_step).step(lambda: f(x))
    np.testing.assert_allclose(seen["H"], autodiff.hessian(f, Tensor(x0)).numpy(), rtol=1e-13)
    # exact to rounding (finite differences would be off around 1e-6): the analytic Hessian
    analytic = np.diag(np.exp(x0) * (x0 + 2))
    analytic[0, 0] += 2 * x0[1] ** 2
    analytic[1, 1] += 2 * x0[0] ** 2
    analytic[0, 1] = analytic[1, 0] = 4 * x0[0] * x0[1]
    np.testing.assert_allclose(seen["H"], analytic, rtol=1e-13, atol=1e-14)


def test_newton_on_each_backend(backend):
    A, b = _spd(3, 5), np.array([1.0, -2.0, 0.5])
    x = Parameter(backend.asarray(np.zeros(3)))
    At, bt = Tensor(backend.asarray(A)), Tensor(backend.asarray(b))
    optim.Newton([x], damping=0.5).step(lambda: 0.5 * (x @ (At @ x)) - (bt * x).sum())
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(A + 0.5 * np.eye(3), b), rtol=1e-12)


def test_newton_errors_and_damping():
    with pytest.raises(ValueError, match="max_params"):
        optim.Newton([Parameter(np.zeros(2001))])
    x = Parameter(np.array([1.0, 2.0]))
    f = lambda: (x[0] - 1.0) ** 2 + 0.0 * x[1]  # noqa: E731 - Hessian [[2, 0], [0, 0]] is singular
    with pytest.raises(ValueError, match="damping"):
        optim.Newton([x]).step(f)
    optim.Newton([x], damping=1.0).step(f)  # (H + I)Δ = g: x0 stays 1 (g0 = 0), x1 unchanged
    np.testing.assert_allclose(x.numpy(), [1.0, 2.0])
    with pytest.raises(TypeError, match="closure"):
        optim.Newton([x]).step()
    with pytest.raises(ValueError, match="shape"):
        optim.newton_step(np.zeros(2), np.zeros(2), np.zeros((3, 3)), {})
    p, g, H = np.array([1.0, 2.0]), np.array([0.5, -1.0]), _spd(2, 4)
    new, state = optim.newton_step(p, g, H, {"step": 3}, damping=0.5)
    np.testing.assert_array_equal(p, [1.0, 2.0])  # inputs untouched
    np.testing.assert_allclose((H + 0.5 * np.eye(2)) @ (p - new), g, rtol=1e-12)
    assert state == {"step": 4}


# -- the notes' claims ----------------------------------------------------------------------------

def _quadratic(kappa: float):
    """f(x) = ½ xᵀ Q x with Q = R diag(1, κ) Rᵀ (R a rotation): condition number λ_max/λ_min = κ."""
    c, s = math.cos(0.5), math.sin(0.5)
    R = np.array([[c, -s], [s, c]])
    Q = R @ np.diag([1.0, kappa]) @ R.T
    return Q, (lambda v: 0.5 * (v @ (Tensor(Q) @ v)))


def _steps_to_converge(Q, f, make_opt, tol=1e-6, limit=5000):
    x = Parameter(np.array([1.0, 1.0]))
    opt = make_opt([x])
    start = np.linalg.norm(x.numpy())
    for k in range(1, limit + 1):
        opt.zero_grad()
        f(x).backward()
        opt.step()
        if np.linalg.norm(x.numpy()) < tol * start:
            return k
    return limit


def test_momentum_needs_far_fewer_steps_on_an_ill_conditioned_quadratic():
    Q, f = _quadratic(100.0)
    lam = np.linalg.eigvalsh(Q)
    assert lam.max() / lam.min() == pytest.approx(100.0)  # κ = largest / smallest eigenvalue
    L, mu = lam.max(), lam.min()
    # each method with its best constant parameters for this quadratic
    gd = _steps_to_converge(Q, f, lambda ps: optim.SGD(ps, lr=2 / (L + mu)))
    rate = (math.sqrt(L) - math.sqrt(mu)) / (math.sqrt(L) + math.sqrt(mu))
    heavy = _steps_to_converge(
        Q, f, lambda ps: optim.SGD(ps, lr=4 / (math.sqrt(L) + math.sqrt(mu)) ** 2, momentum=rate ** 2))
    print(f"steps to 1e-6: gradient descent {gd}, heavy ball {heavy}")
    assert gd >= 5 * heavy, (gd, heavy)
    # and the common default μ = 0.9 still beats the best plain step clearly
    assert _steps_to_converge(Q, f, lambda ps: optim.SGD(ps, lr=1 / L, momentum=0.9)) * 2 < gd


def test_pytorch_momentum_and_the_notes_velocity_form_give_the_same_iterates():
    Q, f = _quadratic(30.0)
    lr, alpha = 0.02, 0.9
    x = Parameter(np.array([1.0, -2.0]))
    opt = optim.SGD([x], lr=lr, momentum=alpha)
    theta, v = np.array([1.0, -2.0]), np.zeros(2)
    for _ in range(25):
        opt.zero_grad()
        f(x).backward()
        opt.step()
        v = alpha * v - lr * (Q @ theta)  # the notes: v ← αv − εg, θ ← θ + v
        theta = theta + v
        np.testing.assert_allclose(x.numpy(), theta, rtol=1e-12, atol=1e-15)


def test_nesterov_look_ahead_form_equals_pytorch_form():
    Q, f = _quadratic(30.0)
    lr, alpha = 0.02, 0.9
    x = Parameter(np.array([1.0, -2.0]))
    opt = optim.SGD([x], lr=lr, momentum=alpha, nesterov=True)
    theta, v = np.array([1.0, -2.0]), np.zeros(2)
    for _ in range(25):
        opt.zero_grad()
        f(x).backward()
        opt.step()
        g = Q @ (theta + alpha * v)  # the notes: gradient at the interim point θ + αv
        v = alpha * v - lr * g
        theta = theta + v
        # PyTorch's parameter is the look-ahead point of the notes' iterate
        np.testing.assert_allclose(x.numpy(), theta + alpha * v, rtol=1e-12, atol=1e-15)


def test_rmsprop_nesterov_is_the_notes_algorithm():
    Q, f = _quadratic(10.0)
    lr, rho, alpha = 0.01, 0.9, 0.5
    x = Parameter(np.array([1.0, -2.0]))
    opt = optim.RMSprop([x], lr=lr, alpha=rho, eps=0.0, momentum=alpha, nesterov=True)
    theta, v, r = np.array([1.0, -2.0]), np.zeros(2), np.zeros(2)
    for _ in range(20):
        opt.zero_grad()
        f(x).backward()
        opt.step()
        g = Q @ (theta + alpha * v)  # interim point, accumulate, velocity, apply
        r = rho * r + (1 - rho) * g * g
        v = alpha * v - lr / np.sqrt(r) * g
        theta = theta + v
        np.testing.assert_allclose(x.numpy(), theta + alpha * v, rtol=1e-10)
        # the notes' θ is recovered from the parameter and the buffer: θ = p + μ·lr·b
        np.testing.assert_allclose(x.numpy() + alpha * lr * opt.state[0]["momentum_buffer"], theta, rtol=1e-10)


# -- against PyTorch, when it is installed ------------------------------------------------------------

TORCH_NAMES = {optim.SGD: "SGD", optim.Adagrad: "Adagrad", optim.RMSprop: "RMSprop",
               optim.Adam: "Adam", optim.AdamW: "AdamW"}


@pytest.mark.parametrize("cls, rule, kwargs, hand", CASES, ids=IDS)
def test_same_iterates_and_state_as_pytorch(cls, rule, kwargs, hand):
    torch = pytest.importorskip("torch", reason="PyTorch is optional; this comparison runs only where it is installed")
    starts, grads = _start(), _grads(steps=5)
    opt, params, path = _run_class(cls, kwargs, starts, grads)
    tparams = [torch.nn.Parameter(torch.tensor(x)) for x in starts]
    topt = getattr(torch.optim, TORCH_NAMES[cls])(tparams, **kwargs)
    for t, gs in enumerate(grads):
        for tp, g in zip(tparams, gs):
            tp.grad = torch.tensor(g)
        topt.step()
        for j, tp in enumerate(tparams):
            np.testing.assert_allclose(path[t][j], tp.detach().numpy(), rtol=1e-10, atol=1e-13)
    for j, tp in enumerate(tparams):
        tstate = topt.state[tp]
        for k, v in opt.state[j].items():
            np.testing.assert_allclose(np.asarray(v), np.asarray(tstate[k]), rtol=1e-10, atol=1e-13, err_msg=k)
