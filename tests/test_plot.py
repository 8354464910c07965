"""Tests for curvlab.plot: every figure runs headless and draws the expected artists."""

from __future__ import annotations

import math
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from torch import nn  # noqa: E402

import curvlab.fourier as fr  # noqa: E402
import curvlab.landscape as ls  # noqa: E402
import curvlab.plot as cp  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def fake_density(nodes, weights):
    nodes = torch.as_tensor(nodes, dtype=torch.float64)
    weights = torch.as_tensor(weights, dtype=torch.float64)

    def evaluate(grid, sigma):
        z = (torch.as_tensor(grid)[:, None] - nodes.reshape(-1)[None]) / sigma
        w = weights.reshape(-1) / nodes.shape[0]
        return (torch.exp(-0.5 * z**2) @ w) / (sigma * math.sqrt(2 * math.pi))

    return SimpleNamespace(nodes=nodes, weights=weights, evaluate=evaluate)


def small_problem():
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(3, 2)
    data = [(torch.randn(10, 3, generator=g), torch.randn(10, 2, generator=g))]
    return model, data


# -- density ------------------------------------------------------------------------------
def test_density_default_grid_covers_nodes_and_integrates_to_one():
    sd = fake_density([[-1.0, 0.5, 4.0], [0.0, 1.0, 2.0]], [[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]])
    ax = cp.density(sd)
    assert len(ax.lines) == 1
    x, y = ax.lines[0].get_data()
    assert len(x) == 1000
    assert x.min() < -1.0 and x.max() > 4.0  # zero-weight node 2.0 does not set the range...
    assert np.trapezoid(y, x) == pytest.approx(1.0, abs=1e-3)  # the margin holds the mass
    assert ax.get_yscale() == "linear"


def test_density_log_scale_grid_and_sigma():
    sd = fake_density([[0.0, 10.0]], [[0.5, 0.5]])
    fig, ax = plt.subplots()
    out = cp.density(sd, grid=np.linspace(-1, 11, 50), sigma=0.1, log=True, ax=ax, color="r")
    assert out is ax
    x, y = ax.lines[0].get_data()
    assert len(x) == 50 and ax.get_yscale() == "log"
    assert (y > 0).all()  # floored, so the log axis can draw empty regions
    with pytest.raises(ValueError, match="sigma"):
        cp.density(sd, sigma=-1.0)
    with pytest.raises(TypeError, match="nodes"):
        cp.density(object())


def test_density_accepts_spectral_density_result():
    from curvlab.linalg.results import SpectralDensity

    sd = SpectralDensity(
        nodes=torch.tensor([[0.0, 2.0]], dtype=torch.float64),
        weights=torch.tensor([[0.25, 0.75]], dtype=torch.float64),
        num_matvecs=2,
        seed=0,
    )
    ax = cp.density(sd)
    x, y = ax.lines[0].get_data()
    # the two peaks hold 1/4 and 3/4 of the mass
    assert np.trapezoid(y[x < 1.0], x[x < 1.0]) == pytest.approx(0.25, abs=1e-3)


# -- landscapes ---------------------------------------------------------------------------
def test_landscape_1d_with_metrics():
    model, data = small_problem()
    (d,) = ls.random_directions(model, num=1, seed=0)

    def mae(out, y):
        return (out - y).abs().mean()

    res = ls.line(model, nn.MSELoss(), data, d, steps=7, metrics={"mae": mae}, progress=False)
    ax = cp.landscape_1d(res)
    assert len(ax.lines) == 1
    np.testing.assert_allclose(ax.lines[0].get_ydata(), res.loss.numpy())
    ax2 = cp.landscape_1d(res, metrics=True, logy=True)
    assert len(ax2.lines) == 1 and len(ax2.right_ax.lines) == 1
    # two axes, two colours, each axis label in its curve's colour, and a legend of both
    loss_c, mae_c = ax2.lines[0].get_color(), ax2.right_ax.lines[0].get_color()
    assert to_rgba(loss_c) != to_rgba(mae_c)
    assert to_rgba(ax2.yaxis.label.get_color()) == to_rgba(loss_c)
    assert to_rgba(ax2.right_ax.yaxis.label.get_color()) == to_rgba(mae_c)
    legend = ax2.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["loss", "mae"]
    two = {"mae": res.metrics["mae"], "max": res.metrics["mae"] * 2}
    ax3 = cp.landscape_1d(
        SimpleNamespace(coords=res.coords, loss=res.loss, metrics=two), metrics=True, color="C1"
    )
    colors = [to_rgba(ln.get_color()) for ln in ax3.lines + ax3.right_ax.lines]
    assert len(set(colors)) == 3  # the loss's C1 is not reused by a metric
    cp.landscape_1d(res, ax=ax, label="again")
    assert len(ax.lines) == 2
    with pytest.raises(ValueError, match="not in the result"):
        cp.landscape_1d(res, metrics=["accuracy"])


def test_landscape_contour_and_surface():
    model, data = small_problem()
    dirs = ls.random_directions(model, seed=0)
    res = ls.surface(model, nn.MSELoss(), data, dirs, steps=(5, 4), progress=False)
    ax = cp.landscape_contour(res, levels=6)
    assert len(ax.collections) >= 1 and len(ax.figure.axes) == 2  # plot + colorbar
    assert len(ax.lines) == 1  # the center marker
    ax = cp.landscape_contour(res, filled=True, log=True, colorbar=False)
    assert len(ax.figure.axes) == 1
    ax3 = cp.landscape_surface(res)
    assert ax3.name == "3d" and len(ax3.collections) == 1
    # the z axis spans the loss values
    lo, hi = ax3.get_zlim()
    zmin, zmax = res.loss.min().item(), res.loss.max().item()
    assert lo <= zmin and hi >= zmax and (hi - lo) < 1.5 * (zmax - zmin)
    with pytest.raises(ValueError, match="3D"):
        cp.landscape_surface(res, ax=plt.subplots()[1])
    bad = SimpleNamespace(coords=res.coords, loss=res.loss.T)
    with pytest.raises(ValueError, match="expected loss"):
        cp.landscape_contour(bad)


# -- spectral bias ------------------------------------------------------------------------
def bias_results(seeds=3, T=6, freqs=(5, 10, 20)):
    out = []
    for s in range(seeds):
        g = torch.Generator().manual_seed(s)
        vals = torch.rand(T, len(freqs), generator=g, dtype=torch.float64)
        out.append(
            fr.SpectralBiasResult(
                steps=torch.arange(0, 10 * T, 10),
                freqs=torch.tensor(freqs),
                values=vals,
                metric="amplitude",
                mse=torch.zeros(T),
                every=10,
            )
        )
    return out


def test_spectral_bias_heatmap_labels_and_mean():
    runs = bias_results()
    ax = cp.spectral_bias_heatmap(runs)
    assert len(ax.images) == 1
    img = ax.images[0].get_array()
    mean = np.mean([r.values.numpy() for r in runs], axis=0).T
    np.testing.assert_allclose(img, mean)  # rows = frequencies, columns = steps
    assert [t.get_text() for t in ax.get_yticklabels()] == ["5", "10", "20"]
    assert ax.images[0].get_clim() == (0.0, 1.0)
    single = cp.spectral_bias_heatmap(runs[0], colorbar=False)
    np.testing.assert_allclose(single.images[0].get_array(), runs[0].values.numpy().T)


def test_frequency_curves_mean_and_band():
    runs = bias_results(seeds=4)
    ax = cp.frequency_curves(runs)
    assert len(ax.lines) == 3 and len(ax.collections) == 3
    V = np.stack([r.values.numpy() for r in runs])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), V[:, :, 1].mean(0))
    ax = cp.frequency_curves(runs, freqs=[20], band="minmax")
    assert len(ax.lines) == 1 and len(ax.collections) == 1
    ax = cp.frequency_curves(runs[0])
    assert len(ax.lines) == 3 and len(ax.collections) == 0  # no band for one seed
    with pytest.raises(ValueError, match="not in the results"):
        cp.frequency_curves(runs, freqs=[7])
    with pytest.raises(ValueError, match="share steps"):
        cp.frequency_curves([runs[0], bias_results(seeds=1, T=5)[0]])
    with pytest.raises(ValueError, match="band"):
        cp.frequency_curves(runs, band="iqr")


def test_training_curves():
    ax = cp.training_curves(
        {"SGD": [1.0, 0.5, 0.25], "Adam": np.array([[1, 0.4, 0.2], [0.8, 0.3, 0.1]])},
        steps=[0, 10, 20],
        logy=True,
    )
    assert len(ax.lines) == 2 and len(ax.collections) == 1
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.9, 0.35, 0.15])
    np.testing.assert_allclose(ax.lines[1].get_xdata(), [0, 10, 20])
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="same length"):
        cp.training_curves({"a": [[1, 2], [1]]})
    with pytest.raises(TypeError, match="dict"):
        cp.training_curves([1, 2])
    with pytest.raises(ValueError, match="steps"):
        cp.training_curves({"a": [1, 2]}, steps=[0, 1, 2])


def test_no_show_called(monkeypatch):
    called = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: called.append(1))
    sd = fake_density([[0.0, 1.0]], [[0.5, 0.5]])
    cp.density(sd)
    cp.spectral_bias_heatmap(bias_results(1))
    cp.training_curves({"a": [1, 2]})
    assert called == []
