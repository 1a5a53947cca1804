"""Visible tests that teach (issue 9 C) and judge one exercise each (issue 12 G): each classic
wrong answer fails the visible part of its test cell with a message naming the likely cause;
correct alternatives (float32, looped, another valid formula) pass; a mistake in an earlier
exercise does not fail a later exercise's visible tests."""
from __future__ import annotations

import pytest

from _visible import answered, fails, namespace, run

OPT = "02_optimizers"

# -- 02_optimizers -----------------------------------------------------------------------------

SGD_BUFFER_FROM_ZERO = """
def sgd_step(param, grad, state, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    g = grad + weight_decay * param
    new_state = dict(state)
    if momentum != 0:
        b = state.get("momentum_buffer", np.zeros_like(param))
        b = momentum * b + (1 - dampening) * g
        new_state["momentum_buffer"] = b
        g = g + momentum * b if nesterov else b
    return param - lr * g, new_state
"""

SGD_IN_PLACE = """
def sgd_step(param, grad, state, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    param -= lr * (grad + weight_decay * param)
    return param, dict(state)
"""

NESTEROV_NO_LOOKAHEAD = """
_right_sgd = sgd_step
def sgd_step(param, grad, state, **hyper):
    hyper.pop("nesterov", None)
    return _right_sgd(param, grad, state, **hyper)
"""

NESTEROV_OLD_BUFFER = """
def sgd_step(param, grad, state, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    g = grad + weight_decay * param
    new_state = dict(state)
    if momentum != 0:
        old = state.get("momentum_buffer")
        b = g.copy() if old is None else momentum * old + (1 - dampening) * g
        new_state["momentum_buffer"] = b
        g = g + momentum * (b if old is None else old) if nesterov else b
    return param - lr * g, new_state
"""

SGD_LOOPED_NESTEROV = """
def sgd_step(param, grad, state, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    new_param, new_state = np.empty_like(param), dict(state)
    old = state.get("momentum_buffer")
    b = np.empty_like(param)
    for i in range(param.size):
        g = grad[i] + weight_decay * param[i]
        d = g
        if momentum != 0:
            b[i] = g if old is None else momentum * old[i] + (1 - dampening) * g
            d = g + momentum * b[i] if nesterov else b[i]
        new_param[i] = param[i] - lr * d
    if momentum != 0:
        new_state["momentum_buffer"] = b
    return new_param, new_state
"""

ADAM = """
def adam_step(param, grad, state, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
    beta1, beta2 = betas
    t = state.get("step", 0) + 1
    g = grad + weight_decay * param
    m = beta1 * state.get("exp_avg", np.zeros_like(param)) + (1 - beta1) * g
    v = beta2 * state.get("exp_avg_sq", np.zeros_like(param)) + (1 - beta2) * g * g
    return param - {step}, {{**state, "step": t, "exp_avg": m, "exp_avg_sq": v}}
"""
ADAM_NO_BIAS_CORRECTION = ADAM.format(step="lr * m / (np.sqrt(v) + eps)")
ADAM_TORCH_FORM = ADAM.format(  # torch.optim.Adam's arrangement of the same formula
    step="lr / (1 - beta1 ** t) * m / (np.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps)")


def test_sgd_model_answer_passes():
    ns = namespace(OPT)
    for cell in ("sgd_step", "sgd_nesterov", "adagrad_step", "rmsprop_step", "adam_step", "newton_step"):
        run(OPT, cell, ns)


@pytest.mark.parametrize("value, ok", [(3 + 2 * 2 ** 0.5, True), (1 / (3 + 2 * 2 ** 0.5), False)])
def test_condition_number_upside_down_is_named(value, ok):
    ns = namespace(OPT)
    ns["answer_condition_number"] = value
    if ok:
        run(OPT, "condition_number", ns)
    else:
        fails(OPT, "condition_number", ns, "LARGEST eigenvalue over the smallest")


# -- 03_initialization ------------------------------------------------------------------------

INIT = "03_initialization"
INIT_CELLS = ("fans", "calculate_gain", "xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform")

WRONG_FANS = """
def fans(shape):
    return shape[0], shape[1]          # swapped, no receptive field
"""
WRONG_GAIN = """
def calculate_gain(nonlinearity, param=None):
    return 1.0                          # no gain at all
"""
GAIN_NO_DEFAULT_SLOPE = """
_right_gain = calculate_gain
def calculate_gain(nonlinearity, param=None):
    return _right_gain(nonlinearity, 0.0 if param is None else param)
"""
GAIN_ONE_PLUS_A = """
_right_gain = calculate_gain
def calculate_gain(nonlinearity, param=None):
    if nonlinearity == "leaky_relu":
        a = 0.01 if param is None else param
        return math.sqrt(2 / (1 + a))
    return _right_gain(nonlinearity, param)
"""
XAVIER_UNIFORM_SQRT3 = """
def xavier_uniform(shape, rng=None, *, gain=1.0, dtype=np.float32):
    fan_in, fan_out = fans(shape)
    bound = gain * math.sqrt(3.0 / (fan_in + fan_out))
    return np.random.default_rng(rng).uniform(-bound, bound, size=tuple(shape)).astype(dtype)
"""
XAVIER_UNIFORM_ONE_SIDED = """
def xavier_uniform(shape, rng=None, *, gain=1.0, dtype=np.float32):
    fan_in, fan_out = fans(shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return np.random.default_rng(rng).uniform(0, bound, size=tuple(shape)).astype(dtype)
"""
KAIMING_NO_MODE_CHECK = """
def he_std(shape, a, mode, nonlinearity):
    fan_in, fan_out = fans(shape)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan_out if mode == "fan_out" else fan_in)
"""
KAIMING_INLINE_FLOAT64_FANS = """
def kaiming_normal(shape, rng=None, *, a=0.0, mode="fan_in", nonlinearity="leaky_relu", dtype=np.float32):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(mode)
    receptive = np.prod(shape[2:], dtype=float)        # fans computed inline, as floats
    fan = shape[1] * receptive if mode == "fan_in" else shape[0] * receptive
    gain = {"relu": math.sqrt(2), "tanh": 5 / 3, "linear": 1.0, "sigmoid": 1.0}.get(
        nonlinearity, math.sqrt(2 / (1 + a * a)))
    gen = np.random.default_rng(rng)
    return (gain / np.sqrt(fan) * gen.normal(size=shape)).astype(dtype)
"""


def test_init_model_answers_pass():
    ns = namespace(INIT, answers=("answer_leaky_he_var_answer",))
    for cell in (*INIT_CELLS, "answer_leaky_he_var"):
        run(INIT, cell, ns)


@pytest.mark.parametrize("wrong", [WRONG_FANS, WRONG_GAIN])
def test_initializers_are_not_charged_for_fans_or_gain(wrong):
    ns = answered(INIT, wrong)
    own = ns["fans"], ns["calculate_gain"]
    for cell in INIT_CELLS[2:]:
        run(INIT, cell, ns)
    assert (ns["fans"], ns["calculate_gain"]) == own, "the stand-ins must be undone after the cell"


def test_leaky_he_variance_with_one_plus_a_is_named():
    ns = namespace(INIT)
    ns["answer_leaky_he_var"] = 2 / ((1 + 0.25) * 400)
    fails(INIT, "answer_leaky_he_var", ns, "1 + a", "enters the gain squared")


def test_uniform_bound_too_small_is_not_called_one_sided():
    ns = answered(INIT, XAVIER_UNIFORM_SQRT3)
    message = fails(INIT, "xavier_uniform", ns, "too small", "3 where 6 belongs")
    assert "from 0 to b" not in message
    ns = answered(INIT, XAVIER_UNIFORM_ONE_SIDED)
    fails(INIT, "xavier_uniform", ns, "from 0 to b")


# -- 01_autodiff ---------------------------------------------------------------------------------

AD = "01_autodiff"
AD_ANSWERS = ("answers_code",)

WRONG_VJPS = """
def vjp_add(g, a, b):
    return g, 0 * g
def vjp_mul(g, a, b):
    return g * a, g * b
add.vjp, mul.vjp = vjp_add, vjp_mul
def topological_order(root):
    return [root]
"""
BACKWARD = """
def backward(root):
    order = topological_order(root)
    for node in order:
        node.grad = None
    root.grad = np.ones_like(root.value)
    for node in order:
        if node.fn is not None:
            values = [a.value if isinstance(a, Node) else a for a in node.args]
            for arg, g in zip(node.{pair}, node.fn.vjp(node.grad, *values)):
                if isinstance(arg, Node):
                    arg.grad = g if arg.grad is None else {accumulate}
"""
BACKWARD_IN_PLACE = BACKWARD.format(pair="args", accumulate="arg.grad.__iadd__(g)")    # a.grad += g
BACKWARD_PARENTS = BACKWARD.format(pair="parents", accumulate="arg.grad + g")
BACKWARD_LEAVES_ONLY = """
_right_backward = backward
def backward(root):
    _right_backward(root)
    for node in topological_order(root):
        if node.parents:
            node.grad = None
"""
BACKWARD_RECURSIVE_DICT = """
def backward(root):
    grads = {id(root): np.ones_like(root.value)}
    for node in topological_order(root):
        node.grad = grads.get(id(node))
        if node.fn is None:
            continue
        values = [a.value if isinstance(a, Node) else a for a in node.args]
        for arg, g in zip(node.args, node.fn.vjp(node.grad, *values)):
            if isinstance(arg, Node):
                grads[id(arg)] = grads[id(arg)] + g if id(arg) in grads else g
"""
FORWARD_DIFFERENCES = """
def numerical_gradient(f, x, eps=1e-6):
    x = np.array(x, dtype=np.float64)
    f0, grad = f(x), np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        grad[i] = (f(x) - f0) / eps
        x[i] = old
    return grad
"""


def test_autodiff_model_answers_pass():
    ns = namespace(AD, answers=AD_ANSWERS)
    for cell in ("numerical_gradient", "backward", "answer_fd_evals"):
        run(AD, cell, ns)


def test_backward_is_not_charged_for_vjps_or_order():
    ns = answered(AD, WRONG_VJPS, answers=AD_ANSWERS)
    run(AD, "backward", ns)
    assert ns["topological_order"].__name__ == "topological_order" and ns["topological_order"](1) == [1]


@pytest.mark.parametrize("wrong, needles", [
    (BACKWARD_IN_PLACE, ["one array", "a.grad = a.grad + g"]),
    (BACKWARD_LEAVES_ONLY, ["is None", "intermediate ones too"]),
    (BACKWARD_PARENTS, ["node.args, not node.parents"]),
])
def test_backward_mistakes_are_named(wrong, needles):
    ns = answered(AD, wrong, answers=AD_ANSWERS)
    fails(AD, "backward", ns, *needles)


def test_backward_alternative_passes():
    ns = answered(AD, BACKWARD_RECURSIVE_DICT, answers=AD_ANSWERS)
    run(AD, "backward", ns)


def test_forward_differences_and_d_plus_one_are_named():
    ns = answered(AD, FORWARD_DIFFERENCES, answers=AD_ANSWERS)
    fails(AD, "numerical_gradient", ns, "one-sided (forward)")
    ns = namespace(AD, answers=AD_ANSWERS)
    ns["answer_fd_evals"] = 784 * 100 + 100 + 100 * 10 + 10 + 1
    fails(AD, "answer_fd_evals", ns, "one-sided (forward)")
    ns["answer_fd_evals"] = 2.0 * (784 * 100 + 100 + 100 * 10 + 10)
    run(AD, "answer_fd_evals", ns)


# -- 04_batchnorm -------------------------------------------------------------------------------

BN = "04_batchnorm"
BN_CELLS = ("batchnorm_forward", "batchnorm_backward_graph", "batchnorm_backward", "update_running_stats",
            "fold_batchnorm")

BN_BACKWARD = """
def {{name}}(dy, x, gamma, mean, var, eps=1e-5):
    n = x.shape[0]
    inv_std = 1 / np.sqrt(var + eps)
    xhat = (x - mean) * inv_std
    dbeta, dgamma = dy.sum(axis=0), (dy * xhat).sum(axis=0)
    return (gamma * inv_std / n) * ({inner}), dgamma, dbeta
"""
BN_BACKWARD_NO_MEAN_TERM = BN_BACKWARD.format(inner="n * dy - xhat * dgamma")
BN_BACKWARD_NO_VARIANCE_TERM = BN_BACKWARD.format(inner="n * dy - dbeta")
BN_BACKWARD_IN_PLACE = """
def {name}(dy, x, gamma, mean, var, eps=1e-5):
    n = x.shape[0]
    x -= mean                                    # in place: the caller's x changes
    x *= 1 / np.sqrt(var + eps)
    dbeta, dgamma = dy.sum(axis=0), (dy * x).sum(axis=0)
    return (gamma / np.sqrt(var + eps) / n) * (n * dy - dbeta - x * dgamma), dgamma, dbeta
"""
BN_BACKWARD_LOOPED = """
def {name}(dy, x, gamma, mean, var, eps=1e-5):
    n, d = x.shape
    dx, dgamma, dbeta = np.empty_like(x), np.empty_like(gamma), np.empty_like(gamma)
    for j in range(d):                                        # one feature at a time
        s = np.sqrt(var[j] + eps)
        xhat = (x[:, j] - mean[j]) / s
        dbeta[j], dgamma[j] = dy[:, j].sum(), (dy[:, j] * xhat).sum()
        dx[:, j] = gamma[j] / (n * s) * (n * dy[:, j] - dbeta[j] - xhat * dgamma[j])
    return dx, dgamma, dbeta
"""
RUNNING_KERAS = """
def update_running_stats(running_mean, running_var, mean, var, n, momentum=0.1):
    return (momentum * running_mean + (1 - momentum) * mean,
            momentum * running_var + (1 - momentum) * var * n / (n - 1))
"""
RUNNING_MOMENTUM_ZERO_AS_DEFAULT = """
def update_running_stats(running_mean, running_var, mean, var, n, momentum=0.1):
    momentum = momentum or 0.1
    return ((1 - momentum) * running_mean + momentum * mean,
            (1 - momentum) * running_var + momentum * var * n / (n - 1))
"""


def test_bn_model_answers_pass():
    ns = namespace(BN)
    for cell in BN_CELLS:
        run(BN, cell, ns)


@pytest.mark.parametrize("name", ["batchnorm_backward_graph", "batchnorm_backward"])
@pytest.mark.parametrize("wrong, needles", [
    (BN_BACKWARD_NO_MEAN_TERM, ["dy = 1", "term through the mean"]),
    (BN_BACKWARD_NO_VARIANCE_TERM, ["dy = xhat", "term through the variance"]),
    (BN_BACKWARD_IN_PLACE, ["changed its argument 2 in place"]),
])
def test_bn_backward_mistakes_name_the_term(name, wrong, needles):
    """The assert that names the missing term runs before the one that only counts wrong values."""
    ns = answered(BN, wrong.format(name=name))
    fails(BN, name, ns, *needles)


@pytest.mark.parametrize("name", ["batchnorm_backward_graph", "batchnorm_backward"])
def test_bn_backward_looped_and_float32_pass(name):
    ns = answered(BN, BN_BACKWARD_LOOPED.format(name=name))
    run(BN, name, ns)


# -- 05_regularization ---------------------------------------------------------------------------

REG = "05_regularization"

WRONG_MASK = """
def dropout_mask(u, p, *, mode="inverted"):
    return (u < p).astype(u.dtype)               # keeps with probability p, no rescaling
"""
L2_HALF = """
def l2_penalty(w, lam):
    return lam * float(np.sum(w * w)), lam * w
"""
L2_FROBENIUS_FLOAT32 = """
def l2_penalty(w, lam):
    return lam * float(np.linalg.norm(w) ** 2), (2 * lam) * w
"""


def test_reg_model_answers_pass():
    ns = namespace(REG, answers=("weight_decay_answer",))
    for cell in ("dropout_mask", "dropout", "l2_penalty", "weight_decay"):
        run(REG, cell, ns)


def test_dropout_is_not_charged_for_the_mask():
    ns = answered(REG, WRONG_MASK)
    fails(REG, "dropout_mask", ns)
    own = ns["dropout_mask"]
    run(REG, "dropout", ns)
    assert ns["dropout_mask"] is own, "the stand-in must be undone after the cell"


def test_weight_decay_equal_to_lambda_is_named():
    ns = namespace(REG)
    ns["answer_weight_decay"] = 5e-4
    fails(REG, "weight_decay", ns, "weight_decay = lam")


# -- 06_training_in_practice ---------------------------------------------------------------------

PRACTICE = "06_training_in_practice"
PRACTICE_CELLS = ("perceptron_loss", "multi_margin_loss", "capped_inverse", "piecewise_constant", "inverse_sqrt",
                  "rmsprop_nesterov_step", "clip_grad_norm", "gradient_step_change", "best_step", "mlp_backward",
                  "standard_error", "terminal_velocity", "equivalent_weights")


TERMINAL_ONE_PLUS = """
def terminal_velocity(lr, grad, momentum):
    return lr * float(np.linalg.norm(grad)) / (1 + momentum)
"""
TERMINAL_ONE_SHORT = """
def terminal_velocity(lr, grad, momentum):
    return momentum * lr * float(np.linalg.norm(grad)) / (1 - momentum)
"""
BEST_STEP = """
def best_step(grad, hessian):
    return {ratio}
"""
BEST_UPSIDE_DOWN = BEST_STEP.format(ratio="float(grad @ hessian @ grad) / float(grad @ grad)")
BEST_TWICE = BEST_STEP.format(ratio="2 * float(grad @ grad) / float(grad @ hessian @ grad)")
BEST_EINSUM = BEST_STEP.format(ratio="float(np.sum(grad * grad)) / float(np.einsum('i,ij,j', grad, hessian, grad))")
STANDARD_ERROR = """
def standard_error(per_example, batch_size):
    x = np.asarray(per_example)
    return {se}
"""
SE_OVER_N = STANDARD_ERROR.format(se="x.std(axis=0) / batch_size")
SE_DDOF1 = STANDARD_ERROR.format(se="x.std(axis=0, ddof=1) / math.sqrt(batch_size)")
SE_BY_HAND = STANDARD_ERROR.format(se="np.sqrt(((x - x.mean(axis=0)) ** 2).mean(axis=0) / batch_size).astype(x.dtype)")
CAPPED_MAX = """
def capped_inverse(eta_max=0.1, c=100.0):
    return lambda t: max(eta_max, c / t)
"""
STEP_CHANGE_SIGN = """
def gradient_step_change(grad, hessian, lr):
    return lr * float(grad @ grad) - 0.5 * lr ** 2 * float(grad @ hessian @ grad)
"""


def test_practice_model_answers_pass():
    ns = namespace(PRACTICE)
    for cell in PRACTICE_CELLS:
        run(PRACTICE, cell, ns)


# -- course.testing: the shared helpers --------------------------------------------------------------

def test_none_is_reported_as_none():
    from course.testing import assert_close, assert_shape
    for check in (lambda: assert_close(None, 1.0, what="b.grad"), lambda: assert_shape(None, (2,), what="b.grad")):
        with pytest.raises(AssertionError, match=r"b.grad: got None, expected numbers") as info:
            check()
        assert "dtype object" not in str(info.value)


def test_assert_pure_returns_the_result_and_names_what_was_written():
    import numpy as np

    from course.testing import assert_pure
    p, state = np.ones(3), {"m": np.zeros(3)}
    assert assert_pure(lambda p, s: (p + 1, dict(s)), p, state)[0].tolist() == [2.0, 2.0, 2.0]

    def writes_state(p, s):
        s["m"] += 1
        return p, s
    with pytest.raises(AssertionError, match=r"changed state\['m'\] in place"):
        assert_pure(writes_state, p, state)
    with pytest.raises(AssertionError, match="added or removed keys"):
        assert_pure(lambda p, s: s.update(t=1), p, {})


def test_stand_in_restores_and_answering_refuses_unknown_calls():
    from course.testing import answering, stand_in
    ns = {"fans": "own"}
    table = answering("fans", {(2, 3): (3, 2)}, key=lambda shape: tuple(shape))
    with pytest.raises(RuntimeError), stand_in(ns, fans=table, calculate_gain=abs):
        assert ns["fans"]([2, 3]) == (3, 2)
        with pytest.raises(AssertionError, match=r"stand-in for fans knows the answers for \[\(2, 3\)\] only"):
            ns["fans"]((4, 5))
        raise RuntimeError("the block fails: the names are restored all the same")
    assert ns == {"fans": "own"}


def test_assert_uniform_bound_tells_the_mistakes_apart():
    import numpy as np

    from course.testing import assert_uniform_bound
    gen = np.random.default_rng(0)
    assert_uniform_bound(gen.uniform(-2, 2, 10_000), 2.0, what="w")
    for draws, needle in ((gen.uniform(0, 2, 10_000), "from 0 to b"), (gen.uniform(-3, 3, 10_000), "outside"),
                          (gen.uniform(-2 / 2 ** 0.5, 2 / 2 ** 0.5, 10_000), "3 where 6 belongs"),
                          (gen.uniform(-1, 1, 10_000), "too small")):
        with pytest.raises(AssertionError, match=needle):
            assert_uniform_bound(draws, 2.0, what="w")


# -- one answer, one cell: named mistakes (needles) and correct alternatives (None) -------------

@pytest.mark.parametrize("assignment, answer, cell, needles", [
    pytest.param(OPT, SGD_BUFFER_FROM_ZERO, "sgd_step", ("started at 0", "first gradient"), id="sgd_buffer_started_at_zero_is_named"),
    pytest.param(OPT, SGD_IN_PLACE, "sgd_step", ("in place", "argument 1"), id="in_place_update_is_named_in_place"),
    pytest.param(OPT, NESTEROV_NO_LOOKAHEAD, "sgd_nesterov", ("plain momentum",), id="nesterov_without_look_ahead"),
    pytest.param(OPT, NESTEROV_OLD_BUFFER, "sgd_nesterov", ("from before the update",), id="nesterov_old_buffer"),
    pytest.param(OPT, SGD_BUFFER_FROM_ZERO, "sgd_nesterov", None, id="nesterov_is_not_charged_for_the_buffer_rule"),
    pytest.param(OPT, SGD_LOOPED_NESTEROV, "sgd_step", None, id="looped_sgd"),
    pytest.param(OPT, SGD_LOOPED_NESTEROV, "sgd_nesterov", None, id="looped_sgd_nesterov"),
    pytest.param(OPT, ADAM_NO_BIAS_CORRECTION, "adam_step", ("without bias correction",), id="adam_without_bias_correction_is_named"),
    pytest.param(OPT, ADAM_TORCH_FORM, "adam_step", None, id="adam_in_torch_arrangement_passes"),
    pytest.param(INIT, GAIN_NO_DEFAULT_SLOPE, "calculate_gain", ("default negative slope is 0.01",), id="gain_default_slope_is_named"),
    pytest.param(INIT, GAIN_ONE_PLUS_A, "calculate_gain", ("1 + a", "enters squared"), id="one_plus_a_is_named"),
    pytest.param(INIT, KAIMING_NO_MODE_CHECK, "kaiming_normal", ("should raise ValueError",), id="unknown_mode_must_raise"),
    pytest.param(INIT, KAIMING_INLINE_FLOAT64_FANS, "kaiming_normal", None, id="inline_float_fans_pass"),
    pytest.param(BN, RUNNING_KERAS, "update_running_stats", ("weight of the NEW batch", "Keras"), id="running_stats_keras"),
    pytest.param(BN, RUNNING_MOMENTUM_ZERO_AS_DEFAULT, "update_running_stats", ("momentum=0.0",), id="running_stats_zero_momentum"),

    pytest.param(REG, L2_HALF, "l2_penalty", ("lam * w", "factor 1/2"), id="l2_penalty_without_factor_2"),
    pytest.param(REG, L2_FROBENIUS_FLOAT32, "l2_penalty", None, id="l2_penalty_frobenius"),
    pytest.param(PRACTICE, TERMINAL_ONE_PLUS, "terminal_velocity", ("1/(1 + momentum)",), id="terminal_velocity_one_plus"),
    pytest.param(PRACTICE, TERMINAL_ONE_SHORT, "terminal_velocity", ("one term short",), id="terminal_velocity_one_term_short"),
    pytest.param(PRACTICE, BEST_UPSIDE_DOWN, "best_step", ("upside down",), id="best_step_upside_down"),
    pytest.param(PRACTICE, BEST_TWICE, "best_step", ("back to 0",), id="best_step_where_the_change_is_0"),
    pytest.param(PRACTICE, BEST_EINSUM, "best_step", None, id="best_step_einsum"),
    pytest.param(PRACTICE, SE_OVER_N, "standard_error", ("divided by n",), id="standard_error_over_n"),
    pytest.param(PRACTICE, SE_DDOF1, "standard_error", ("ddof=1",), id="standard_error_ddof1"),
    pytest.param(PRACTICE, SE_BY_HAND, "standard_error", None, id="standard_error_by_hand"),
    pytest.param(PRACTICE, CAPPED_MAX, "capped_inverse", ("cap",), id="capped_inverse_max"),
    pytest.param(PRACTICE, STEP_CHANGE_SIGN, "gradient_step_change", ("the sign",), id="gradient_step_change_sign"),
])
def test_one_answer_in_one_cell(assignment, answer, cell, needles):
    ns = answered(assignment, answer)
    if needles is None:
        run(assignment, cell, ns)
    else:
        fails(assignment, cell, ns, *needles)


def test_unary_vjps_may_return_a_list():
    """The catalog accepts a list for a tuple; so do the visible tests."""
    ns = namespace(AD, answers=AD_ANSWERS)
    for name in ("exp", "log", "relu"):
        right = ns[f"vjp_{name}"]
        ns[f"vjp_{name}"] = lambda g, a, right=right: list(right(g, a))
        run(AD, f"vjp_{name}", ns)
