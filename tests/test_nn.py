"""Modules: registration, modes, state (npz round trip), moving between backends, each
layer's forward formula, and a float64 gradient check of every layer."""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

import course
from course import Parameter, Tensor, init, nn
from course.gradcheck import gradcheck


@contextlib.contextmanager
def _bound(module: nn.Module, tensors: Sequence[Tensor]) -> Iterator[None]:
    """Temporarily put ``tensors`` where ``module.parameters()`` are, so a check can
    differentiate the module's output with respect to them."""
    owners = dict(module.named_modules())
    slots = []
    for name, p in module.named_parameters():
        prefix, _, attr = name.rpartition(".")
        slots.append((owners[prefix], attr, p))
    try:
        for (owner, attr, _), t in zip(slots, tensors):
            object.__setattr__(owner, attr, t)
        yield
    finally:
        for owner, attr, p in slots:
            object.__setattr__(owner, attr, p)


def check_module_gradients(module: nn.Module, x: np.ndarray, before_call=None, inert=()) -> None:
    """gradcheck of ``module`` with respect to its input and every parameter (float64).

    ``inert`` names the parameters that cannot change the output; every other one must.
    """
    names, params = zip(*module.named_parameters()) if list(module.parameters()) else ((), ())

    def f(x, *ps):
        if before_call is not None:
            before_call()
        with _bound(module, ps):
            return module(x)

    inputs = [Tensor(x)] + [Tensor(p.data) for p in params]
    with course.no_grad():  # the check is not vacuous: every parameter reaches the output
        base = f(*inputs).numpy()
        for k, name in enumerate(names, start=1):
            moved = inputs[:k] + [Tensor(inputs[k].data + 0.1)] + inputs[k + 1:]
            assert np.allclose(f(*moved).numpy(), base) == (name in inert), name
    report = gradcheck(f, inputs)
    assert report, str(report)


RNG = np.random.default_rng(0)


def _x(n=6, d=4, away_from_zero=False):
    x = RNG.standard_normal((n, d))
    if away_from_zero:  # keep finite differences off the kinks of ReLU-like layers
        x = np.where(np.abs(x) < 0.1, 0.5, x)
    return x


# -- gradient checks, float64 -----------------------------------------------------------------

@pytest.mark.parametrize("layer", [nn.ReLU(), nn.LeakyReLU(0.1), nn.Tanh(), nn.Sigmoid()],
                         ids=lambda m: type(m).__name__)
def test_activation_gradients(layer):
    check_module_gradients(layer, _x(away_from_zero=True))


def test_linear_gradients():
    check_module_gradients(nn.Linear(4, 3, rng=1, dtype=np.float64), _x())
    check_module_gradients(nn.Linear(4, 3, bias=False, rng=1, dtype=np.float64), _x())


def test_dropout_gradient_is_the_mask():
    layer = nn.Dropout(0.3)
    reseed = lambda: setattr(layer, "generator", np.random.default_rng(5))  # noqa: E731
    check_module_gradients(layer, _x(), before_call=reseed)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients(training):
    bn = nn.BatchNorm1d(4, dtype=np.float64)
    bn.weight.data = RNG.uniform(0.5, 2.0, 4)
    bn.bias.data = RNG.standard_normal(4)
    with course.no_grad():  # give it non-trivial running statistics
        for _ in range(3):
            bn(Tensor(_x(8) * 2 + 1))
    bn.train(training)
    check_module_gradients(bn, _x(6))


def test_mlp_gradients_with_batchnorm():
    mlp = nn.MLP([3, 5, 4, 2], activation="tanh", batch_norm=True, rng=2, dtype=np.float64)
    # in training mode a bias just before batch norm is cancelled by the mean subtraction
    check_module_gradients(mlp, _x(7, 3), inert={"0.bias", "3.bias"})


# -- Module mechanics ---------------------------------------------------------------------------

class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 4, rng=0)
        self.scale = Parameter(np.ones(4, np.float32))
        self.second = nn.Sequential(nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 2, rng=1))

    def forward(self, x):
        return self.second(self.first(x) * self.scale)


def test_parameters_in_a_stable_order_and_shared_once():
    model = _Two()
    # a module's own parameters first, then each child's, in assignment order (as PyTorch)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["scale", "first.weight", "first.bias", "second.2.weight", "second.2.bias"]
    assert names == [n for n, _ in _Two().named_parameters()]
    assert [id(p) for p in model.parameters()] == [id(p) for p in model.parameters()]
    assert [type(c).__name__ for c in model.children()] == ["Linear", "Sequential"]
    seq = nn.Sequential(model.first, model.first)
    assert len(list(seq.parameters())) == 2  # a shared layer's parameters count once


def test_assignment_errors_are_clear():
    model = _Two()
    with pytest.raises(TypeError, match="cannot assign a Tensor to parameter 'scale'"):
        model.scale = Tensor(np.zeros(4, np.float32))

    class Forgot(nn.Module):
        def __init__(self):
            self.w = Parameter(np.zeros(2))

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Forgot()
    with pytest.raises(NotImplementedError, match="must define forward"):
        nn.Module()(1)


def test_train_eval_propagate_to_every_submodule():
    model = _Two()
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_zero_grad_and_backward_reach_all_parameters():
    model = _Two()
    model.eval()
    model(Tensor(np.ones((2, 3), np.float32))).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_state_dict_round_trip_through_npz(tmp_path):
    model = nn.MLP([3, 8, 2], batch_norm=True, rng=0)
    x = Tensor(RNG.standard_normal((16, 3)).astype(np.float32))
    model(x)  # training step: moves the running statistics away from (0, 1)
    state = model.state_dict()
    assert set(state) == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                          "1.running_var", "1.num_batches_tracked", "3.weight", "3.bias"}
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert [name for name, _ in model.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    path = tmp_path / "model"  # save adds the .npz suffix, load finds it
    model.save(path)
    assert (tmp_path / "model.npz").exists()
    other = nn.MLP([3, 8, 2], batch_norm=True, rng=1)
    assert not np.allclose(other.eval()(x).numpy(), model.eval()(x).numpy())
    other.load(path)
    assert np.array_equal(other(x).numpy(), model(x).numpy())
    for key, value in other.state_dict().items():
        assert np.array_equal(value, state[key]) and value.dtype == state[key].dtype, key


def test_load_state_dict_rejects_mismatches():
    model = nn.MLP([3, 8, 2], rng=0)
    state = model.state_dict()
    with pytest.raises(KeyError, match=r"missing keys \['2.bias'\]"):
        model.load_state_dict({k: v for k, v in state.items() if k != "2.bias"})
    with pytest.raises(KeyError, match=r"unexpected keys \['extra'\]"):
        model.load_state_dict({**state, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"'0.weight': the state has shape \(8, 4\) but the model has \(8, 3\)"):
        model.load_state_dict({**state, "0.weight": np.zeros((8, 4))})


def test_to_moves_parameters_and_buffers_keeping_identity():
    model = nn.MLP([3, 4, 2], batch_norm=True, rng=0, dtype=np.float64)
    x = RNG.standard_normal((5, 3))
    model.eval()
    expected = model(Tensor(x)).numpy()
    params = list(model.parameters())
    try:
        model.to("array_api_strict")
        assert [id(p) for p in model.parameters()] == [id(p) for p in params]
        assert all(type(p.data).__module__.startswith("array_api_strict") for p in params)
        assert type(model[1].running_var).__module__.startswith("array_api_strict")
        got = model(course.tensor(x)).numpy()
    finally:
        model.to("numpy")
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    assert isinstance(model[0].weight.data, np.ndarray)


def test_repr_shows_the_structure():
    text = repr(nn.MLP([2, 3, 1], batch_norm=True, dropout=0.1))
    assert text.splitlines()[0] == "MLP("
    assert "(0): Linear(in_features=2, out_features=3, bias=True)" in text
    assert "(3): Dropout(p=0.1, mode='inverted')" in text
    assert "(1): BatchNorm1d(3, eps=1e-05, momentum=0.1" in text


# -- layers ---------------------------------------------------------------------------------------

def test_linear_is_x_wT_plus_b_with_weight_out_by_in():
    layer = nn.Linear(4, 3, rng=0, dtype=np.float64)
    assert layer.weight.shape == (3, 4) and layer.bias.shape == (3,)
    layer.bias.data = np.array([1.0, -2.0, 0.5])
    x = RNG.standard_normal((5, 4))
    np.testing.assert_allclose(layer(Tensor(x)).numpy(), x @ layer.weight.numpy().T + layer.bias.numpy())
    assert not np.any(nn.Linear(4, 3).bias.numpy())  # biases start at zero


def test_linear_default_init_is_seeded_and_equals_kaiming_uniform_with_pytorchs_slope():
    w = nn.Linear(200, 100, rng=3).weight.numpy()
    assert w.dtype == np.float32
    # PyTorch's documented identity: U[±1/√fan_in] is kaiming_uniform with a = √5
    np.testing.assert_allclose(w, init.kaiming_uniform((100, 200), 3, a=np.sqrt(5)), rtol=1e-6)
    assert np.abs(w).max() <= 1 / np.sqrt(200)


def test_linear_init_by_name_or_callable():
    assert np.array_equal(nn.Linear(5, 2, init="xavier_normal", rng=1).weight.numpy(),
                          init.xavier_normal((2, 5), 1))
    const = nn.Linear(5, 2, init=functools.partial(init.constant, value=0.5))
    assert np.all(const.weight.numpy() == 0.5)
    with pytest.raises(ValueError, match="unknown initializer 'glorot'"):
        nn.Linear(5, 2, init="glorot")


def test_linear_input_errors_name_the_fix():
    layer = nn.Linear(4, 3)
    with pytest.raises(ValueError, match="last dimension is 4, got shape \\(2, 5\\)"):
        layer(Tensor(np.zeros((2, 5), np.float32)))
    with pytest.raises(TypeError, match="float32 parameters but got a float64 input"):
        layer(Tensor(np.zeros((2, 4))))


def test_activation_formulas():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    out = lambda m: m(Tensor(x)).numpy()  # noqa: E731
    np.testing.assert_array_equal(out(nn.ReLU()), np.maximum(x, 0))
    np.testing.assert_allclose(out(nn.LeakyReLU(0.2)), np.where(x > 0, x, 0.2 * x))
    np.testing.assert_allclose(out(nn.LeakyReLU()), np.where(x > 0, x, 0.01 * x))
    np.testing.assert_allclose(out(nn.Tanh()), np.tanh(x))
    np.testing.assert_allclose(out(nn.Sigmoid()), 1 / (1 + np.exp(-x)))


def test_sequential_indexing_iteration_and_order():
    a, b, c = nn.Linear(2, 3, rng=0), nn.ReLU(), nn.Linear(3, 1, rng=1)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is c and list(seq) == [a, b, c]
    assert isinstance(seq[1:], nn.Sequential) and list(seq[1:]) == [b, c]
    x = Tensor(RNG.standard_normal((4, 2)).astype(np.float32))
    np.testing.assert_array_equal(seq(x).numpy(), c(b(a(x))).numpy())
    with pytest.raises(TypeError, match="Sequential holds Modules"):
        seq.append(lambda t: t)


def test_mlp_structure_and_default_inits():
    plain = nn.MLP([4, 8, 8, 2], rng=0)
    assert [type(m).__name__ for m in plain] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    full = nn.MLP([4, 8, 2], batch_norm=True, dropout=0.2, activation="tanh", rng=0)
    assert [type(m).__name__ for m in full] == ["Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear"]
    # one generator draws the layers in order: same seed, same network
    assert np.array_equal(nn.MLP([4, 8, 2], rng=5)[2].weight.numpy(), nn.MLP([4, 8, 2], rng=5)[2].weight.numpy())
    # Linear's default (PyTorch's) unless init= is given, whatever the activation
    g = np.random.default_rng(9)
    assert np.array_equal(nn.MLP([4, 8], activation="tanh", rng=9)[0].weight.numpy(), nn.default_init((8, 4), g))
    g = np.random.default_rng(9)
    assert np.array_equal(nn.MLP([4, 8], activation="tanh", init="xavier_uniform", rng=9)[0].weight.numpy(),
                          init.xavier_uniform((8, 4), g))
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        nn.MLP([2, 2], activation="gelu")
    with pytest.raises(ValueError, match="at least \\[in_features, out_features\\]"):
        nn.MLP([2])


def test_mlp_dtype_float64_end_to_end():
    mlp = nn.MLP([3, 4, 2], batch_norm=True, dropout=0.5, rng=0, dtype=np.float64)
    y = mlp(Tensor(RNG.standard_normal((5, 3))))
    assert y.dtype == np.float64
    assert all(p.dtype == np.float64 for p in mlp.parameters())
