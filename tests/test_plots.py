"""course.plots: figures have the expected panels and lines (Agg backend, no image diffs)."""
from __future__ import annotations

import functools
import io
import math
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402

from _figures import assert_laid_out  # noqa: E402
from course import data as D  # noqa: E402
from course import init, losses, nn, plots  # noqa: E402
from course.train import History  # noqa: E402


def test_importing_course_does_not_import_matplotlib():
    code = ("import sys, course, course.data, course.train, course.plots, course.demo; "
            "course.nn, course.optim; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'; "
            "assert 'tqdm' not in sys.modules, 'tqdm was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _history(nan_from: int | None = None) -> History:
    h = History()
    for e in range(1, 6):
        bad = nan_from is not None and e >= nan_from
        h.append(e, {"train_loss": float("inf") if bad else 1.0 / e, "train_accuracy": 0.5 + e / 20,
                     "val_loss": float("nan") if bad else 1.2 / e, "val_accuracy": 0.45 + e / 20})
    h.best_epoch = 5
    return h


def _no_open_figures():
    assert plt.get_fignums() == []  # returned figures are not left open in pyplot


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def test_plot_history_draws_train_and_val_per_metric():
    h = _history()
    fig = plots.plot_history(h)
    _no_open_figures()
    assert len(fig.axes) == 2
    for ax, metric in zip(fig.axes, ("loss", "accuracy")):
        assert ax.get_ylabel() == metric
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert np.allclose(lines["train"].get_ydata(), h[f"train_{metric}"])
        assert np.allclose(lines["val"].get_ydata(), h[f"val_{metric}"])
        assert list(lines["train"].get_xdata()) == h.epoch
        assert list(lines["best epoch (5)"].get_xdata()) == [5, 5]
    assert _png(fig).startswith(b"\x89PNG")
    only_loss = plots.plot_history(h, metrics=("loss",))
    assert len(only_loss.axes) == 1
    with pytest.raises(ValueError, match="records"):
        plots.plot_history(h, metrics=("f1",))


def test_plot_comparison_marks_a_diverged_run():
    fig = plots.plot_comparison({"plain": _history(nan_from=3), "batch norm": _history()})
    _no_open_figures()
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and acc_ax.get_yscale() == "linear"
    labels = [line.get_label() for line in loss_ax.get_lines()]
    assert labels == ["plain (diverged)", "batch norm"]
    plain = loss_ax.get_lines()[0].get_ydata()
    assert np.isfinite(plain[:2]).all() and np.isnan(plain[2:]).all()  # inf is drawn as a gap
    assert [line.get_label() for line in acc_ax.get_lines()] == ["plain", "batch norm"]


def test_plot_trajectories_draws_contours_and_every_path():
    land = D.rosenbrock()
    paths = {"a": np.array([land.start, (0.0, 0.5), (0.9, 0.8)]), "b": np.array([land.start, (-1.0, 1.0)])}
    fig = plots.plot_trajectories(land, paths)
    _no_open_figures()
    (ax,) = fig.axes
    (contours,) = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert len(contours.levels) == 30 and np.all(np.diff(np.log(contours.levels)) > 0)  # log-spaced
    named = {line.get_label(): line for line in ax.get_lines()}
    assert np.allclose(named["a (2 steps)"].get_xdata(), paths["a"][:, 0])
    assert np.allclose(named["b (1 steps)"].get_ydata(), paths["b"][:, 1])
    assert list(named["critical point"].get_xdata()) == [1.0]
    assert ax.get_xlim() == land.xlim and ax.get_ylim() == land.ylim
    saddle = plots.plot_trajectories(D.saddle(), {"gd": np.array([[1.5, 0.001], [0.0, 0.01]])})
    assert len(saddle.axes) == 1  # negative values: evenly spaced levels
    with pytest.raises(ValueError, match="shape"):
        plots.plot_trajectories(land, {"bad": np.zeros((3, 3))})


def _mlp():
    return nn.MLP([4, 6, 5, 3], rng=0)


def test_layer_stats_records_activations_and_their_gradients():
    model = _mlp()
    x = np.random.default_rng(0).standard_normal((7, 4)).astype(np.float32)
    stats = plots.layer_stats(model, x)
    assert [s.name for s in stats] == ["1: ReLU", "3: ReLU"]
    first = np.maximum(x @ model[0].weight.numpy().T + model[0].bias.numpy(), 0)
    assert np.allclose(stats[0].activations, first.ravel(), atol=1e-6)
    # with L = sum of the outputs, ∂L/∂h = 1ᵀ W_out for every sample
    expected = np.tile(model[4].weight.numpy().sum(0), 7)
    assert np.allclose(stats[1].gradients, expected, atol=1e-6)
    assert stats[0].activation_std == pytest.approx(first.std(), rel=1e-5)
    all_layers = plots.layer_stats(model, x, np.array([0, 1, 2, 0, 1, 2, 0]), losses.cross_entropy, layers="all")
    assert len(all_layers) == len(model) == 5
    assert all(s.gradients.shape == s.activations.shape for s in all_layers)
    with pytest.raises(TypeError, match="Sequential"):
        plots.layer_stats(model[0], x)


def test_layer_plots_have_one_column_per_kept_layer():
    x = np.random.default_rng(1).standard_normal((32, 4)).astype(np.float32)
    deep = nn.MLP([4] + [8] * 12 + [2], rng=0)
    stats = plots.layer_stats(deep, x)
    assert len(stats) == 12
    fig = plots.plot_layer_stats(stats, max_layers=5)
    _no_open_figures()
    assert len(fig.axes) == 10  # 2 rows x 5 picked layers
    assert fig.axes[0].get_title().startswith("1: ReLU") and "23: ReLU" in fig.axes[4].get_title()
    std = plots.plot_layer_std({"He": stats, "N(0, 1)": plots.layer_stats(nn.MLP([4] + [8] * 12 + [2], init="normal", rng=0), x)})
    act_ax, grad_ax = std.axes
    assert act_ax.get_yscale() == "log"
    assert [line.get_label() for line in act_ax.get_lines()] == ["He", "N(0, 1)"]
    assert np.allclose(act_ax.get_lines()[0].get_ydata(), [s.activation_std for s in stats])
    assert np.allclose(grad_ax.get_lines()[0].get_ydata(), [s.gradient_std for s in stats])
    assert _png(std).startswith(b"\x89PNG")
    assert_laid_out(std)


@pytest.mark.parametrize("title", [None, "ReLU, 12 hidden layers of width 8"])
def test_layer_std_is_laid_out_with_plain_text_powers_of_ten(title):
    """Fixed margins instead of tight_layout; the log axes' labels are 10ᵏ in Unicode
    superscripts, not mathtext (``$...$``), and name the same values."""
    x = np.random.default_rng(1).standard_normal((32, 4)).astype(np.float32)
    runs = {f"N(0, {s}²)": plots.layer_stats(nn.MLP([4] + [8] * 12 + [2], init=functools.partial(init.normal, std=s),
                                                      rng=0), x) for s in (1.0, 0.3)}
    fig = plots.plot_layer_std(runs, title=title)
    assert_laid_out(fig)
    ax = fig.axes[0]
    shown = [(t.get_position()[1], t.get_text()) for t in ax.yaxis.get_majorticklabels() if t.get_text()]
    assert shown and not any("$" in text for _, text in shown)
    for value, text in shown:
        assert text == "10" + str(round(math.log10(value))).translate(plots._SUPERSCRIPT)


def _every_plot(title):
    x = np.random.default_rng(1).standard_normal((32, 4)).astype(np.float32)
    stats = plots.layer_stats(nn.MLP([4] + [8] * 12 + [2], rng=0), x)
    land = D.rosenbrock()
    return {
        "history": plots.plot_history(_history(), title=title),
        "comparison": plots.plot_comparison({"plain": _history(nan_from=3), "batch norm": _history()}, title=title),
        "trajectories": plots.plot_trajectories(land, {"a": np.array([land.start, (0.0, 0.5)])}, title=title),
        "layer stats": plots.plot_layer_stats(stats, max_layers=5, title=title),
        "layer std": plots.plot_layer_std({"He": stats}, title=title),
    }


@pytest.mark.parametrize("title", [None, "a title for the whole figure"])
def test_every_plot_keeps_its_labels_inside_and_apart(title):
    """The plots are placed with fixed margins (no tight_layout): nothing leaves the figure and
    no panel's labels run into another panel or the title."""
    for name, fig in _every_plot(title).items():
        try:
            assert_laid_out(fig)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def test_power_labels():
    assert [plots._power_label(v) for v in (1e-3, 1.0, 10.0, 1e14, 2e-5, 3e14, 0.2, 5e2)] == [
        "10⁻³", "10⁰", "10¹", "10¹⁴", "2×10⁻⁵", "3×10¹⁴", "2×10⁻¹", "5×10²"]
