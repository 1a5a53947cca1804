"""course.train: minibatches, fit, evaluate, early stopping, history, progress bar, trajectories."""
from __future__ import annotations

import io
import sys

import numpy as np
import pytest

import course
from course import backend as B
from course import data as D
from course import losses, nn, optim, schedules
from course import train as T


def _toy(n=64, d=3):
    X = np.arange(n * d, dtype=np.float32).reshape(n, d)
    return X, np.arange(n)


# -- batches ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, bs", [(10, 3), (12, 4), (5, 8)])
def test_batches_cover_every_sample_once_per_epoch(n, bs):
    X, y = _toy(n)
    seen, sizes = [], []
    for xb, yb in T.batches(X, y, bs, rng=0):
        assert isinstance(xb, course.Tensor) and isinstance(yb, course.Tensor)
        assert not xb.requires_grad
        xh, yh = xb.numpy(), yb.numpy()
        assert np.array_equal(xh, X[yh])  # rows stay paired with their labels
        seen.extend(yh.tolist())
        sizes.append(len(yh))
    assert sorted(seen) == list(range(n))
    assert sizes == [bs] * (n // bs) + ([n % bs] if n % bs else [])


def test_batches_drop_last_and_order():
    X, y = _toy(10)
    dropped = [yb.numpy() for _, yb in T.batches(X, y, 3, drop_last=True, rng=0)]
    assert [len(b) for b in dropped] == [3, 3, 3]
    assert len(set(np.concatenate(dropped).tolist())) == 9
    ordered = np.concatenate([yb.numpy() for _, yb in T.batches(X, y, 4, shuffle=False)])
    assert ordered.tolist() == list(range(10))


def test_batches_shuffles_are_seeded_and_change_each_epoch():
    X, y = _toy(50)

    def epoch(gen):
        return np.concatenate([yb.numpy() for _, yb in T.batches(X, y, 7, rng=gen)])

    a = epoch(np.random.default_rng(5))
    assert np.array_equal(a, epoch(np.random.default_rng(5)))
    assert not np.array_equal(a, np.arange(50))
    gen = np.random.default_rng(5)
    first, second = epoch(gen), epoch(gen)  # one generator across epochs: a new order each time
    assert np.array_equal(first, a) and not np.array_equal(first, second)


def test_batches_reject_bad_input():
    X, y = _toy(10)
    with pytest.raises(ValueError, match="batch_size"):
        next(T.batches(X, y, 0))
    with pytest.raises(ValueError, match="samples"):
        next(T.batches(X, y[:9], 4))


def test_batches_move_minibatches_to_the_current_backend(backend):
    X, y = _toy(10)
    xb, yb = next(T.batches(X, y, 4, rng=0))
    assert type(xb.data).__module__.split(".")[0] == backend.xp.__name__.split(".")[0]
    assert xb.data.device == backend.device or backend.device is None
    assert isinstance(X, np.ndarray)  # the full data set stays on the host


def test_fit_and_evaluate_run_on_every_backend(backend):
    (Xtr, ytr), val, _ = _digits(200)
    model = nn.MLP([64, 16, 10], batch_norm=True, rng=0)
    h = T.fit(model, losses.cross_entropy, optim.SGD(model.parameters(), lr=0.1), (Xtr, ytr), val,
              epochs=3, batch_size=32, rng=0, progress=False, early_stopping=T.EarlyStopping(5))
    assert h.train_loss[-1] < h.train_loss[0]
    assert 0.0 <= h.val_accuracy[-1] <= 1.0
    assert T.evaluate(model, Xtr, ytr, losses.cross_entropy)["loss"] == pytest.approx(h.train_loss[h.best_epoch - 1], rel=1e-5)


# -- accuracy and evaluate -------------------------------------------------------------------

def test_accuracy_for_multiclass_and_binary_outputs():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [9.0, 0.0, 0.0]])
    assert T.accuracy(course.tensor(logits), course.tensor(np.array([0, 1, 1, 0]))) == 0.75
    binary = np.array([[1.5], [-0.5], [0.2]])
    assert T.accuracy(binary, np.array([1, 1, 0])) == pytest.approx(1 / 3)


def _digits(n=None, seed=0):
    X, y = D.load_digits()
    if n is not None:
        X, y = X[:n], y[:n]
    return D.split(X, y, val=0.2, test=0.2, rng=seed, stratify=True)


def test_evaluate_matches_one_full_batch_and_restores_the_mode():
    (Xtr, ytr), _, _ = _digits(300)
    model = nn.MLP([64, 32, 10], dropout=0.3, rng=0)
    model.train()
    full = T.evaluate(model, Xtr, ytr, losses.cross_entropy, batch_size=len(ytr))
    chunked = T.evaluate(model, Xtr, ytr, losses.cross_entropy, batch_size=7)
    assert model.training  # back in training mode
    assert full.keys() == {"loss", "accuracy"}
    assert chunked["loss"] == pytest.approx(full["loss"], rel=1e-5)  # dropout off: deterministic
    assert chunked["accuracy"] == pytest.approx(full["accuracy"])
    model.eval()
    logits = model(course.tensor(Xtr))
    assert full["loss"] == pytest.approx(float(losses.cross_entropy(logits, course.tensor(ytr))), rel=1e-5)
    with pytest.raises(ValueError, match="no samples"):
        T.evaluate(model, Xtr[:0], ytr[:0])


# -- fit -------------------------------------------------------------------------------------------

def test_fit_records_history_and_learns():
    train, val, _ = _digits(600)
    model = nn.MLP([64, 32, 10], rng=0)
    seen = []
    h = T.fit(model, losses.cross_entropy, optim.SGD(model.parameters(), lr=0.1, momentum=0.9), train, val,
              epochs=4, batch_size=32, rng=0, progress=False, callback=lambda hist: seen.append(len(hist)))
    assert seen == [1, 2, 3, 4] and h.epoch == [1, 2, 3, 4]
    assert set(h.keys()) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "time"}
    assert h.val_loss is h["val_loss"] and len(h.val_loss) == 4
    assert h.train_loss[-1] < h.train_loss[0] and h.val_accuracy[-1] > 0.8
    assert h.best_epoch == int(np.argmin(h.val_loss)) + 1 and h.stopped_epoch is None
    assert h.lr == [0.1] * 4
    assert len(h.table().splitlines()) == 5 and "val_accuracy" in h.header()
    with pytest.raises(AttributeError, match="records"):
        h.test_loss


def test_fit_is_reproducible_with_a_seed():
    train, val, _ = _digits(300)

    def run(seed):
        model = nn.MLP([64, 16, 10], rng=0)
        h = T.fit(model, losses.cross_entropy, optim.SGD(model.parameters(), lr=0.05), train, val,
                  epochs=2, batch_size=16, rng=seed, progress=False)
        return h.val_loss

    assert run(1) == run(1)
    assert run(1) != run(2)  # the seed drives the minibatch order


def test_fit_uses_a_custom_step_and_the_scheduler():
    train, _, _ = _digits(200)
    model = nn.MLP([64, 10], rng=0)
    calls = []

    def my_step(model, loss_fn, optimizer, x, y):
        calls.append(len(y))
        return T.train_step(model, loss_fn, optimizer, x, y)

    class Halve:  # any object with step() works as a scheduler
        def __init__(self, opt):
            self.opt = opt

        def step(self):
            self.opt.lr /= 2

    opt = optim.SGD(model.parameters(), lr=0.4)
    h = T.fit(model, losses.cross_entropy, opt, train, epochs=3, batch_size=50, step=my_step,
              scheduler=Halve(opt), scheduler_interval="epoch", progress=False, rng=0)
    assert sum(calls) == 3 * len(train[1]) and max(calls) == 50
    assert h.lr == [0.4, 0.2, 0.1] and opt.lr == 0.05
    assert "val_loss" not in h.keys()
    # the default steps a course.schedules scheduler after every optimizer step
    sched = schedules.LRScheduler(opt, schedules.exponential(1.0, gamma=0.5))
    h = T.fit(model, losses.cross_entropy, opt, train, epochs=2, batch_size=50, progress=False, rng=0,
              scheduler=sched)
    n_steps = -(-len(train[1]) // 50)
    assert h.lr == [1.0, 0.5 ** n_steps] and opt.lr == 0.5 ** (2 * n_steps)
    with pytest.raises(ValueError, match="scheduler_interval"):
        T.fit(model, losses.cross_entropy, opt, train, epochs=1, scheduler=sched, scheduler_interval="batch")


def test_fit_rejects_bad_arguments():
    train, _, _ = _digits(50)
    model = nn.MLP([64, 10], rng=0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epochs"):
        T.fit(model, losses.cross_entropy, opt, train, epochs=0)
    with pytest.raises(TypeError, match="pair"):
        T.fit(model, losses.cross_entropy, opt, train[0], epochs=1)
    with pytest.raises(ValueError, match="val"):
        T.fit(model, losses.cross_entropy, opt, train, epochs=1, early_stopping=T.EarlyStopping(2))


# -- early stopping ----------------------------------------------------------------------------------

def test_early_stopping_counts_patience_and_min_delta():
    class Dummy:
        def state_dict(self):
            return {}

    es = T.EarlyStopping(patience=2, min_delta=0.1)
    stops = [es.step(v, Dummy(), epoch) for epoch, v in enumerate([1.0, 0.95, 0.85, 0.8, 0.79, 0.5], 1)]
    # 0.95 is not 0.1 better than 1.0; 0.85 is; 0.8 and 0.79 are not -> stop at epoch 5
    assert stops == [False, False, False, False, True, False]
    assert es.best == 0.5 and es.best_epoch == 6
    es = T.EarlyStopping(patience=1, mode="max")
    assert [es.step(v, Dummy(), e) for e, v in enumerate([0.5, float("nan"), 0.6], 1)] == [False, True, False]
    with pytest.raises(ValueError, match="patience"):
        T.EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="mode"):
        T.EarlyStopping(mode="lowest")


def test_early_stopping_restores_the_best_weights():
    # a tiny train set and a large learning rate: the validation loss rises after a few epochs
    (Xtr, ytr), (Xva, yva), _ = _digits(150, seed=1)
    model = nn.MLP([64, 64, 10], rng=0)
    es = T.EarlyStopping(patience=3)
    snapshots = {}

    def remember(history):  # the weights as they were after each epoch
        snapshots[history.epoch[-1]] = {k: B.to_numpy(getattr(v, "data", v)).copy()
                                        for k, v in model.state_dict().items()}

    h = T.fit(model, losses.cross_entropy, optim.SGD(model.parameters(), lr=0.3, momentum=0.9),
              (Xtr, ytr), (Xva, yva), epochs=40, batch_size=16, early_stopping=es, rng=0,
              progress=False, callback=remember)
    assert h.stopped_epoch is not None and h.stopped_epoch < 40
    assert h.stopped_epoch - h.best_epoch == 3
    assert h.best_epoch == int(np.nanargmin(h.val_loss)) + 1
    best = snapshots[h.best_epoch]
    now = {k: B.to_numpy(getattr(v, "data", v)) for k, v in model.state_dict().items()}
    assert all(np.array_equal(now[k], best[k]) for k in best)
    assert not all(np.array_equal(snapshots[h.stopped_epoch][k], best[k]) for k in best)
    assert T.evaluate(model, Xva, yva, losses.cross_entropy)["loss"] == pytest.approx(min(h.val_loss), rel=1e-6)


# -- progress bar --------------------------------------------------------------------------------------

class _TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("env", ["CI", "NBGRADER_EXECUTION"])
def test_progress_is_off_under_ci_and_nbgrader(monkeypatch, env):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setattr(sys, "stderr", _TTY())
    assert T.progress_enabled()  # a terminal: on
    monkeypatch.setenv(env, "autograde" if env.startswith("NB") else "true")
    assert not T.progress_enabled()


def test_progress_is_off_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not T.progress_enabled()


def _small_fit(**kw):
    train, val, _ = _digits(100)
    model = nn.MLP([64, 10], rng=0)
    return T.fit(model, losses.cross_entropy, optim.SGD(model.parameters(), lr=0.1), train, val,
                 epochs=2, batch_size=20, rng=0, **kw)


@pytest.mark.parametrize("env", ["CI", "NBGRADER_EXECUTION"])
def test_fit_writes_nothing_to_stderr_under_ci_and_nbgrader(monkeypatch, capfd, env):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setattr(T.sys.stderr, "isatty", lambda: True, raising=False)
    assert T.progress_enabled()  # as in a terminal: a bar would be drawn ...
    monkeypatch.setenv(env, "1")
    _small_fit()  # ... but not with the variable set
    out, err = capfd.readouterr()
    assert err == "" and out == ""


def test_fit_progress_true_draws_a_bar_on_stderr(capfd):
    _small_fit(progress=True)
    out, err = capfd.readouterr()
    total = 2 * 3  # 2 epochs x 3 batches of 20 (60 training samples)
    assert out == "" and "batch" in err and f"{total}/{total}" in err


# -- trajectory -------------------------------------------------------------------------------------------

def test_trajectory_records_each_gradient_descent_iterate():
    land = D.quadratic(kappa=10.0)
    path = T.trajectory(land, lambda ps: optim.SGD(ps, lr=0.05), land.start, steps=20)
    assert path.shape == (21, 2) and path.dtype == np.float64
    assert np.allclose(path[0], land.start)
    # GD on ½(x² + κy²) scales each coordinate by (1 − lr·λ) per step
    factors = np.array([1 - 0.05 * 1.0, 1 - 0.05 * 10.0])
    assert np.allclose(path[20], np.asarray(land.start) * factors ** 20)
    with np.errstate(over="ignore", invalid="ignore"):  # lr·κ = 10: each step multiplies y by −9
        diverging = T.trajectory(land, lambda ps: optim.SGD(ps, lr=1.0), land.start, steps=2000)
    assert len(diverging) < 2001 and not np.isfinite(diverging[-1]).all()


# -- the demo ----------------------------------------------------------------------------------------

def test_demo_trains_prints_a_table_and_saves_the_plot_quietly(tmp_path, capfd):
    from course import demo

    result = demo.main(["--epochs", "2", "--out", str(tmp_path)])
    out, err = capfd.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[1].split()[:3] == ["epoch", "train_loss", "train_accuracy"]
    assert [line.split()[0] for line in lines[2:4]] == ["1", "2"]
    assert f"test accuracy {result['accuracy']:.2%}" in out
    assert 0.5 < result["accuracy"] <= 1.0
    assert (tmp_path / "digits-history.png").read_bytes().startswith(b"\x89PNG")
