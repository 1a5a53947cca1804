"""Dropout: masks, the two conventions (inverted vs. scale at test time) and their equal
expectations, evaluation mode, p = 0 and p = 1, errors, and the backend-neutral path."""
from __future__ import annotations

import math

import numpy as np
import pytest

import course
from course import Tensor, nn
from course import backend as B
from course import functional as F

P = 0.3  # keep (0.7) and drop (0.3) probabilities differ, so a swapped convention shows


def test_masks_keep_with_probability_one_minus_p():
    u = np.random.default_rng(0).random((400, 500), dtype=np.float32)
    inverted = F.dropout_mask(u, P)
    plain = F.dropout_mask(u, P, mode="scale_at_test")
    assert inverted.dtype == plain.dtype == np.float32
    assert set(np.unique(plain)) == {0.0, 1.0}
    np.testing.assert_array_equal(inverted, plain * np.float32(1 / (1 - P)))
    kept, n = plain.mean(), plain.size
    assert abs(kept - (1 - P)) < 5 * math.sqrt(P * (1 - P) / n), f"kept fraction {kept}"


def _mean_outputs(mode: str, x: np.ndarray, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    layer = nn.Dropout(P, mode, rng=seed)
    xt = Tensor(np.broadcast_to(x, (draws, x.size)).copy())
    train = layer(xt).numpy().mean(axis=0)
    evaluation = layer.eval()(Tensor(x[None, :])).numpy()[0]
    return train, evaluation


@pytest.mark.parametrize("mode", F.DROPOUT_MODES)
def test_training_output_has_the_evaluation_output_as_expectation(mode):
    x = np.linspace(0.5, 3.0, 40)
    draws = 4000
    train, evaluation = _mean_outputs(mode, x, draws, seed=1)
    # per unit, y = x·m with m ∈ {0, s} kept w.p. 1 − p: Var(y) = x²·s²·p(1 − p)
    s = 1 / (1 - P) if mode == "inverted" else 1.0
    stderr = x * s * math.sqrt(P * (1 - P) / draws)
    z = np.abs(train - evaluation) / stderr
    assert z.max() < 4.5, f"{mode}: worst unit {z.max():.2f} standard errors from its expectation"


def test_the_expectation_test_detects_a_missing_rescale():
    # same statistic as above, applied to a wrong convention (0/1 mask, identity at test time)
    x = np.linspace(0.5, 3.0, 40)
    draws = 4000
    train, _ = _mean_outputs("scale_at_test", x, draws, seed=1)
    stderr = x * math.sqrt(P * (1 - P) / draws)
    assert (np.abs(train - x) / stderr).max() > 4.5


def test_both_modes_have_the_same_expected_output():
    x = np.linspace(0.5, 3.0, 40)
    inv_train, inv_eval = _mean_outputs("inverted", x, 4000, seed=2)
    sat_train, sat_eval = _mean_outputs("scale_at_test", x, 4000, seed=3)
    np.testing.assert_array_equal(inv_eval, x)
    np.testing.assert_allclose(sat_eval, (1 - P) * x, rtol=1e-15)
    # inverted's expectation is x; scale_at_test's is (1 − p)·x, rescaled it must match
    stderr = x * math.sqrt(P / (1 - P) / 4000) * math.sqrt(2)
    assert (np.abs(inv_train - sat_train / (1 - P)) / stderr).max() < 4.5


def test_eval_mode_and_p_zero_are_the_identity():
    x = Tensor(np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32))
    np.testing.assert_array_equal(nn.Dropout(0.5).eval()(x).numpy(), x.numpy())
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), x.numpy())
    np.testing.assert_array_equal(nn.Dropout(0.0, "scale_at_test")(x).numpy(), x.numpy())


def test_p_one_drops_everything_without_nans():
    x = Tensor(np.ones((4, 6), np.float32))
    for mode in F.DROPOUT_MODES:
        out = nn.Dropout(1.0, mode, rng=0)(x).numpy()
        assert np.all(out == 0) and not np.any(np.isnan(out))
    np.testing.assert_array_equal(nn.Dropout(1.0).eval()(x).numpy(), x.numpy())
    assert np.all(nn.Dropout(1.0, "scale_at_test").eval()(x).numpy() == 0)


def test_masks_are_seeded_and_fresh_each_call():
    x = Tensor(np.ones((8, 8), np.float32))
    a, b = nn.Dropout(P, rng=4), nn.Dropout(P, rng=4)
    first = a(x).numpy()
    np.testing.assert_array_equal(first, b(x).numpy())
    assert not np.array_equal(first, a(x).numpy())  # a new mask per step


def test_gradient_is_masked_like_the_output():
    x = Tensor(np.random.default_rng(0).standard_normal((6, 9)), requires_grad=True)
    y = nn.Dropout(P, rng=0)(x)
    y.backward(Tensor(np.ones((6, 9))))
    mask = F.dropout_mask(np.random.default_rng(0).random((6, 9)), P)  # the layer's draw, replayed
    np.testing.assert_array_equal(y.numpy(), x.numpy() * mask)
    np.testing.assert_array_equal(x.grad.numpy(), mask)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="p must be in \\[0, 1\\].*DROPPING"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="mode must be one of"):
        nn.Dropout(0.5, mode="keep")
    with pytest.raises(ValueError, match="needs u, uniform samples"):
        F.dropout(np.ones(3), 0.5)


def test_runs_on_every_backend(backend):
    layer = nn.Dropout(P, rng=0)
    x = course.tensor(np.ones((50, 40), np.float32))
    out = layer(x)
    assert type(out.data).__module__.split(".")[0] == backend.name  # drawn and kept on that backend
    values = B.to_numpy(out.data)
    assert values.dtype == np.float32
    np.testing.assert_allclose(np.unique(values), [0.0, 1 / (1 - P)], rtol=1e-6)
    assert abs((values == 0).mean() - P) < 0.05
    np.testing.assert_array_equal(layer.eval()(x).numpy(), B.to_numpy(x.data))
