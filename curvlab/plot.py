"""Matplotlib figures for curvlab's results.

Every function draws on ``ax`` when given (a new figure otherwise) and returns the Axes it drew
on (``ax.figure`` is the Figure); none calls ``plt.show()``. Inputs are duck-typed on the
result attributes they read, so the functions also accept compatible objects of your own.

==============================  ==========================================================
:func:`density`                 spectral density (``SpectralDensity``), optional log scale
:func:`landscape_1d`            loss (and metrics) along a line (``LandscapeLine``)
:func:`landscape_contour`       contour plot of a surface (``LandscapeSurface``)
:func:`landscape_surface`       3D surface plot of a surface
:func:`spectral_bias_heatmap`   frequency x step heatmap (``SpectralBiasResult``)
:func:`frequency_curves`        per-frequency curves, mean and band over seeds
:func:`training_curves`         metrics over training, mean and band over seeds
:func:`curvature_history`       tracked eigenvalues / trace over training, 2/lr lines
==============================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ._checks import check_positive
from ._public import public_dir

__all__ = [
    "density",
    "landscape_1d",
    "landscape_contour",
    "landscape_surface",
    "spectral_bias_heatmap",
    "frequency_curves",
    "training_curves",
    "curvature_history",
]

__dir__ = public_dir(globals())


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64 if not x.is_complex() else x.dtype).numpy()
    return np.asarray(x, dtype=float)


def _axes(ax, projection=None):
    import matplotlib.pyplot as plt

    if ax is not None:
        if projection == "3d" and getattr(ax, "name", "") != "3d":
            raise ValueError(
                "landscape_surface needs a 3D Axes: create it with "
                "fig.add_subplot(projection='3d'), or pass ax=None."
            )
        return ax
    fig = plt.figure()
    return fig.add_subplot(projection=projection) if projection else fig.add_subplot()


def _require(obj, attrs, what):
    missing = [a for a in attrs if not hasattr(obj, a)]
    if missing:
        raise TypeError(
            f"{what} needs an object with {', '.join(attrs)} (missing {', '.join(missing)}); "
            f"got {type(obj).__name__}."
        )


# -- spectral density ----------------------------------------------------------------------
def density(sd, *, grid=None, sigma: float | None = None, log: bool = False, ax=None, **kwargs):
    """Plot a smoothed spectral density (e.g. :class:`curvlab.SpectralDensity`).

    Parameters
    ----------
    sd
        An object with ``nodes`` and ``weights`` (``(num_probes, m)``) and
        ``evaluate(grid, sigma)``.
    grid
        Points where the density is drawn; default 1000 points covering the nodes with a
        margin of ``5 sigma``.
    sigma
        Gaussian broadening; default 1% of the spread of the nodes.
    log
        Logarithmic density axis (the density is floored at ``1e-12`` of its maximum so that
        empty regions stay drawable).
    ax
        Axes to draw on.
    **kwargs
        Passed to ``ax.plot``.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from curvlab.plot import density
    >>> nodes, weights = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.5]])
    >>> def evaluate(grid, sigma):
    ...     z = (grid[:, None] - nodes[0]) / sigma
    ...     return (torch.exp(-0.5 * z**2) * weights[0]).sum(1)
    >>> ax = density(SimpleNamespace(nodes=nodes, weights=weights, evaluate=evaluate))
    >>> len(ax.lines)
    1
    """
    _require(sd, ("nodes", "weights", "evaluate"), "density")
    nodes = torch.as_tensor(sd.nodes)
    weights = torch.as_tensor(sd.weights)
    keep = weights > 0
    t = nodes[keep] if keep.any() else nodes.reshape(-1)
    if t.numel() == 0:
        raise ValueError("the density has no nodes to plot.")
    lo, hi = float(t.min()), float(t.max())
    spread = hi - lo
    if sigma is None:
        sigma = 0.01 * spread if spread > 0 else 0.01 * max(abs(hi), 1.0)
    sigma = float(check_positive(sigma, "sigma", tensor_ok=True))
    if grid is None:
        grid = torch.linspace(
            lo - 5 * sigma, hi + 5 * sigma, 1000, dtype=nodes.dtype, device=nodes.device
        )
    else:
        grid = torch.as_tensor(grid, dtype=nodes.dtype, device=nodes.device).reshape(-1)
    values = _np(sd.evaluate(grid, sigma))
    g = _np(grid)
    ax = _axes(ax)
    if log:
        floor = max(values.max(), 1e-300) * 1e-12
        values = np.maximum(values, floor)
        ax.set_yscale("log")
    ax.plot(g, values, **kwargs)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log scale)" if log else "density")
    return ax


# -- landscapes ----------------------------------------------------------------------------
def landscape_1d(
    result,
    *,
    metrics: bool | Sequence[str] = False,
    ax=None,
    label=None,
    logy: bool = False,
    **kwargs,
):
    """Plot the loss along a line (:class:`curvlab.landscape.LandscapeLine`).

    Parameters
    ----------
    result
        An object with ``coords`` and ``loss`` (and ``metrics`` for ``metrics=``).
    metrics
        ``True`` for every metric of the result, or a list of names: drawn on a twin y-axis
        (dashed), each in its own colour (the next ones of the colour cycle after the loss's).
        The y-axis labels are coloured like their curves (the right one when it shows one
        metric) and a legend of all curves sits above the Axes, outside the data.
    ax
        Axes to draw on (draw several results on one Axes to compare them).
    label
        Legend label of the loss curve.
    logy
        Logarithmic loss axis.
    **kwargs
        Passed to ``ax.plot`` for the loss.

    Returns
    -------
    matplotlib.axes.Axes
        The loss Axes (the twin Axes, if any, is ``ax.right_ax``).

    Examples
    --------
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from curvlab.plot import landscape_1d
    >>> a = torch.linspace(-1, 1, 11)
    >>> ax = landscape_1d(SimpleNamespace(coords=a, loss=a**2, metrics={}))
    >>> len(ax.lines)
    1
    """
    _require(result, ("coords", "loss"), "landscape_1d")
    x, y = _np(result.coords), _np(result.loss)
    if x.ndim != 1 or y.shape != x.shape:
        raise ValueError(
            f"landscape_1d needs 1-D coords and loss of the same length, got {x.shape} and "
            f"{y.shape}; use landscape_contour for a surface."
        )
    ax = _axes(ax)
    (loss_line,) = ax.plot(x, y, label=label if label is not None else "loss", **kwargs)
    ax.set_xlabel("coordinate along the direction")
    ax.set_ylabel("loss")
    if logy:
        ax.set_yscale("log")
    names = []
    if metrics:
        available = dict(getattr(result, "metrics", {}) or {})
        names = list(available) if metrics is True else list(metrics)
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"metrics {unknown} are not in the result ({list(available)}).")
    if names:
        import matplotlib as mpl
        import matplotlib.colors as mcolors

        right = ax.twinx()
        loss_color = loss_line.get_color()
        cycle = [c["color"] for c in mpl.rcParams["axes.prop_cycle"]]
        others = [c for c in cycle if not _same_color(mcolors, c, loss_color)]
        lines = [loss_line]
        for i, n in enumerate(names):
            color = others[i % len(others)] if others else None
            lines += right.plot(x, _np(available[n]), linestyle="--", color=color, label=n)
        right.set_ylabel(", ".join(names))
        ax.yaxis.label.set_color(loss_color)
        ax.tick_params(axis="y", colors=loss_color)
        if len(names) == 1:
            right.yaxis.label.set_color(lines[1].get_color())
            right.tick_params(axis="y", colors=lines[1].get_color())
        ax.legend(
            lines,
            [ln.get_label() for ln in lines],
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
            ncol=min(len(lines), 4),
            frameon=False,
            fontsize="small",
        )
        ax.right_ax = right
    return ax


def _same_color(mcolors, a, b) -> bool:
    try:
        return mcolors.to_rgba(a) == mcolors.to_rgba(b)
    except ValueError:
        return False


def _surface_arrays(result, log: bool):
    """``(a, b, Z)`` of a surface result, ``Z = log10(loss)`` with ``log``."""
    _require(result, ("coords", "loss"), "a surface plot")
    a, b = (_np(c) for c in result.coords)
    Z = _np(result.loss)
    if Z.shape != (a.size, b.size):
        raise ValueError(
            f"loss has shape {Z.shape} but the coordinates have {a.size} and {b.size} points; "
            "expected loss[i, j] at (a[i], b[j])."
        )
    if log:
        if (Z <= 0).any():
            raise ValueError("log=True needs a positive loss everywhere.")
        Z = np.log10(Z)
    return a, b, Z


def _label_directions(ax) -> None:
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")


def _check_band(band) -> None:
    if band not in ("std", "minmax", None):
        raise ValueError(f"band must be 'std', 'minmax' or None, got {band!r}.")


def _band(runs: np.ndarray, mean: np.ndarray, band: str) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edges of the band over ``runs`` (one row per seed) around ``mean``."""
    if band == "std":
        sd = runs.std(axis=0, ddof=1)
        return mean - sd, mean + sd
    return runs.min(axis=0), runs.max(axis=0)


def landscape_contour(
    result,
    *,
    levels: int | Sequence[float] = 20,
    log: bool = False,
    filled: bool = False,
    colorbar: bool = True,
    ax=None,
    cmap="viridis",
    **kwargs,
):
    """Contour plot of a loss surface (:class:`curvlab.landscape.LandscapeSurface`).

    The first direction runs along the horizontal axis, the second along the vertical one; a
    marker shows the center ``(0, 0)`` when it is inside the grid.

    Parameters
    ----------
    result
        An object with ``coords = (a, b)`` and ``loss[i, j]`` at ``(a[i], b[j])``.
    levels
        Number of contour levels or their values.
    log
        Contour ``log10(loss)`` (the loss must be positive).
    filled
        ``contourf`` instead of ``contour``.
    colorbar
        Add a colorbar.
    ax, cmap, **kwargs
        Axes, colormap, and keywords passed to ``contour``/``contourf``.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from curvlab.plot import landscape_contour
    >>> a = torch.linspace(-1, 1, 9)
    >>> res = SimpleNamespace(coords=(a, a), loss=a[:, None] ** 2 + 2 * a[None, :] ** 2)
    >>> ax = landscape_contour(res, colorbar=False)
    >>> len(ax.collections) >= 1
    True
    """
    a, b, Z = _surface_arrays(result, log)
    ax = _axes(ax)
    fn = ax.contourf if filled else ax.contour
    cs = fn(a, b, Z.T, levels=levels, cmap=cmap, **kwargs)
    if a.min() <= 0 <= a.max() and b.min() <= 0 <= b.max():
        ax.plot([0.0], [0.0], marker="x", color="k", linestyle="none")
    if colorbar:
        ax.figure.colorbar(cs, ax=ax, label="log10 loss" if log else "loss")
    _label_directions(ax)
    ax.set_aspect("auto")
    return ax


def landscape_surface(result, *, log: bool = False, ax=None, cmap="viridis", **kwargs):
    """3D surface plot of a loss surface (:class:`curvlab.landscape.LandscapeSurface`).

    Parameters
    ----------
    result
        An object with ``coords = (a, b)`` and ``loss[i, j]`` at ``(a[i], b[j])``.
    log
        Plot ``log10(loss)``.
    ax
        A 3D Axes (``fig.add_subplot(projection="3d")``); a new one when ``None``.
    cmap, **kwargs
        Passed to ``plot_surface``.

    Returns
    -------
    mpl_toolkits.mplot3d.axes3d.Axes3D

    Examples
    --------
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from curvlab.plot import landscape_surface
    >>> a = torch.linspace(-1, 1, 9)
    >>> ax = landscape_surface(SimpleNamespace(coords=(a, a), loss=a[:, None] ** 2 + a ** 2))
    >>> ax.name
    '3d'
    """
    a, b, Z = _surface_arrays(result, log)
    ax = _axes(ax, projection="3d")
    A, B = np.meshgrid(a, b, indexing="ij")
    ax.plot_surface(A, B, Z, cmap=cmap, linewidth=0, antialiased=True, **kwargs)
    _label_directions(ax)
    ax.set_zlabel("log10 loss" if log else "loss")
    return ax


# -- spectral bias -------------------------------------------------------------------------
def _stack_results(results):
    """``(steps, freqs, values (S, T, K), metric)`` from one result or a list over seeds."""
    if not isinstance(results, Sequence) or isinstance(results, str):
        results = [results]
    if not results:
        raise ValueError("no results to plot.")
    for r in results:
        _require(r, ("steps", "freqs", "values"), "a spectral-bias plot")
    steps, freqs = _np(results[0].steps), _np(results[0].freqs)
    vals = []
    for r in results:
        if not (np.array_equal(_np(r.steps), steps) and np.array_equal(_np(r.freqs), freqs)):
            raise ValueError(
                "results over seeds must share steps and freqs (same every= and frequencies)."
            )
        vals.append(_np(r.values))
    V = np.stack(vals)
    if V.shape[1:] != (steps.size, freqs.size):
        raise ValueError(f"values have shape {V.shape[1:]}, expected ({steps.size}, {freqs.size}).")
    return steps, freqs, V, getattr(results[0], "metric", "")


def _freq_label(f) -> str:
    return f"{int(f)}" if float(f).is_integer() else f"{f:g}"


def spectral_bias_heatmap(
    results,
    *,
    ax=None,
    cmap: str = "viridis",
    vmin: float | None = 0.0,
    vmax: float | None = None,
    colorbar: bool = True,
):
    """Rahaman et al.'s heatmap: frequency (rows) against training step (columns).

    Parameters
    ----------
    results
        A :class:`curvlab.fourier.SpectralBiasResult`, or a list of them over seeds (their mean
        is drawn).
    ax, cmap
        Axes and colormap.
    vmin, vmax
        Color limits; ``vmax`` defaults to 1 for ``"amplitude"`` (learned) and to the data
        maximum otherwise.
    colorbar
        Add a colorbar labeled with the metric.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from curvlab.plot import spectral_bias_heatmap
    >>> res = SimpleNamespace(steps=torch.arange(0, 50, 10), freqs=torch.tensor([5, 10]),
    ...                       values=torch.rand(5, 2), metric="amplitude")
    >>> ax = spectral_bias_heatmap(res)
    >>> len(ax.images)
    1
    """
    steps, freqs, V, metric = _stack_results(results)
    M = V.mean(axis=0).T  # (K, T)
    if vmax is None:
        vmax = 1.0 if metric == "amplitude" else float(np.nanmax(M)) if M.size else 1.0
    ax = _axes(ax)
    t0, t1 = (float(steps[0]), float(steps[-1])) if steps.size else (0.0, 1.0)
    dt = (t1 - t0) / max(steps.size - 1, 1) if steps.size > 1 else 1.0
    im = ax.imshow(
        M,
        aspect="auto",
        origin="lower",
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
        extent=(t0 - dt / 2, t1 + dt / 2, -0.5, freqs.size - 0.5),
    )
    ax.set_yticks(range(freqs.size))
    ax.set_yticklabels([_freq_label(f) for f in freqs])
    ax.set_xlabel("training step")
    ax.set_ylabel("frequency")
    if colorbar:
        label = {
            "amplitude": "normalized amplitude (1 = learned)",
            "relative_error": "relative error (0 = learned)",
            "projection": "relative error (0 = learned)",
        }.get(metric, metric)
        ax.figure.colorbar(im, ax=ax, label=label)
    return ax


def frequency_curves(
    results, *, freqs=None, band: str | None = "std", ax=None, cmap="viridis", legend: bool = True
):
    """One curve per frequency over training: mean over seeds with a shaded band.

    Parameters
    ----------
    results
        A :class:`curvlab.fourier.SpectralBiasResult` or a list of them (one per seed, same
        steps and frequencies).
    freqs
        Subset of frequencies to draw (default all).
    band
        ``"std"`` (mean +- one standard deviation), ``"minmax"``, or ``None``. No band is drawn
        for a single result.
    ax, cmap, legend
        Axes, colormap for the frequencies, and whether to add a legend.

    Returns
    -------
    matplotlib.axes.Axes
        One line per frequency (and one band per frequency when there are several seeds).

    Examples
    --------
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from curvlab.plot import frequency_curves
    >>> runs = [SimpleNamespace(steps=torch.arange(5), freqs=torch.tensor([1, 2, 4]),
    ...                         values=torch.rand(5, 3), metric="amplitude") for _ in range(3)]
    >>> ax = frequency_curves(runs)
    >>> len(ax.lines), len(ax.collections)
    (3, 3)
    """
    import matplotlib

    _check_band(band)
    steps, all_freqs, V, metric = _stack_results(results)
    if freqs is None:
        idx = list(range(all_freqs.size))
    else:
        wanted = _np(torch.as_tensor(freqs).reshape(-1))
        idx = []
        for f in wanted:
            hit = np.nonzero(np.isclose(all_freqs, f))[0]
            if hit.size == 0:
                raise ValueError(f"frequency {f:g} is not in the results ({all_freqs.tolist()}).")
            idx.append(int(hit[0]))
    ax = _axes(ax)
    colors = matplotlib.colormaps[cmap](np.linspace(0.0, 0.9, max(len(idx), 1)))
    mean = V.mean(axis=0)
    for c, i in zip(colors, idx):
        ax.plot(steps, mean[:, i], color=c, label=f"k = {_freq_label(all_freqs[i])}")
        if band is not None and V.shape[0] > 1:
            lo, hi = _band(V[:, :, i], mean[:, i], band)
            ax.fill_between(steps, lo, hi, color=c, alpha=0.2, linewidth=0)
    ax.set_xlabel("training step")
    ax.set_ylabel(
        {
            "amplitude": "normalized amplitude",
            "relative_error": "relative error",
            "projection": "relative error",
        }.get(metric, metric or "value")
    )
    if legend:
        ax.legend(fontsize="small")
    return ax


def training_curves(
    history: Mapping[str, Sequence],
    *,
    steps=None,
    band: str | None = "std",
    logy: bool = False,
    ax=None,
    xlabel: str = "step",
    ylabel: str = "",
):
    """Curves over training (loss, accuracy...), one per key, with a band over seeds.

    Parameters
    ----------
    history
        ``{name: values}`` where ``values`` is a sequence of numbers (one run) or a 2-D array /
        list of equal-length sequences (one row per seed: the mean is drawn with a band).
    steps
        x coordinates (default ``0, 1, 2, ...``).
    band
        ``"std"``, ``"minmax"`` or ``None``.
    logy
        Logarithmic y axis.
    ax, xlabel, ylabel
        Axes and labels.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from curvlab.plot import training_curves
    >>> ax = training_curves({"SGD": [1.0, 0.5, 0.2], "Adam": [[1.0, 0.3, 0.1], [0.9, 0.4, 0.1]]})
    >>> len(ax.lines), len(ax.collections)
    (2, 1)
    """
    if not isinstance(history, Mapping) or not history:
        raise TypeError("history must be a non-empty dict {name: values}.")
    _check_band(band)
    ax = _axes(ax)
    for name, vals in history.items():
        if isinstance(vals, torch.Tensor):
            arr = _np(vals)
        else:
            try:
                arr = np.asarray(
                    [_np(v) if isinstance(v, torch.Tensor) else v for v in vals], dtype=float
                )
            except ValueError as e:
                raise ValueError(
                    f"history[{name!r}]: runs over seeds must have the same length."
                ) from e
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise ValueError(f"history[{name!r}] must be 1-D (one run) or 2-D (seeds x steps).")
        x = np.arange(arr.shape[1]) if steps is None else _np(steps)
        if x.shape != (arr.shape[1],):
            raise ValueError(
                f"steps has {x.size} entries but history[{name!r}] has {arr.shape[1]}."
            )
        mean = arr.mean(axis=0)
        (ln,) = ax.plot(x, mean, label=name)
        if band is not None and arr.shape[0] > 1:
            lo, hi = _band(arr, mean, band)
            ax.fill_between(x, lo, hi, color=ln.get_color(), alpha=0.2, linewidth=0)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    return ax


def curvature_history(
    history,
    *,
    lr=None,
    which: str = "eigenvalues",
    ax=None,
    label: str | None = None,
    **kwargs,
):
    r"""Tracked curvature over training: top eigenvalues (or the trace) against the step.

    Parameters
    ----------
    history
        A list of :class:`curvlab.track.CurvatureRecord` (``tracker.history``), a
        :class:`curvlab.track.CurvatureTracker`, or any sequence of objects with ``step`` and
        ``eigenvalues`` (and ``trace``, ``trace_stderr`` for ``which="trace"``).
    lr
        A learning rate (or a sequence of them): a dashed horizontal line at ``2 / lr`` each,
        the stability threshold of gradient descent on a quadratic (the edge of stability).
    which
        ``"eigenvalues"`` (default): one line per tracked eigenvalue, the largest solid;
        ``"trace"``: the trace estimate with a band of two standard errors.
    ax
        Axes to draw on (a new figure otherwise).
    label
        Prefix of the legend labels (to tell runs apart on one Axes).
    **kwargs
        Passed to ``ax.plot`` for the lines of the records.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from curvlab.plot import curvature_history
    >>> from curvlab.track import CurvatureRecord
    >>> recs = [CurvatureRecord(step=s, eigenvalues=(0.5 * s, s), residuals=(0.0, 0.0),
    ...                         loss=1.0, trace=None, trace_stderr=None, spectral_bias=None,
    ...                         num_matvecs=10, eig_matvecs=10, converged=True, warm=s > 0,
    ...                         seconds=0.0, seed=0) for s in range(4)]
    >>> ax = curvature_history(recs, lr=1.0)
    >>> len(ax.lines)  # two eigenvalues and the 2/lr line
    3
    """
    if hasattr(history, "history") and not isinstance(history, Sequence):
        history = history.history
    if not isinstance(history, Sequence) or not history:
        raise TypeError(
            "history must be a non-empty list of CurvatureRecord (tracker.history) or a "
            "CurvatureTracker with records."
        )
    if which not in ("eigenvalues", "trace"):
        raise ValueError(f"which must be 'eigenvalues' or 'trace', got {which!r}.")
    _require(history[0], ("step", "eigenvalues"), "curvature_history")
    ax = _axes(ax)
    steps = np.asarray([r.step for r in history], dtype=float)
    prefix = f"{label}: " if label else ""
    if which == "eigenvalues":
        k = len(history[0].eigenvalues)
        if any(len(r.eigenvalues) != k for r in history):
            raise ValueError("every record must have the same number of eigenvalues.")
        vals = np.asarray([list(r.eigenvalues)[::-1] for r in history], dtype=float)
        color = kwargs.pop("color", None)
        for i in range(k):
            style = {"linewidth": 1.8 if i == 0 else 0.9, "alpha": 1.0 if i == 0 else 0.6}
            style.update(kwargs)
            (ln,) = ax.plot(
                steps, vals[:, i], color=color, label=f"{prefix}$\\lambda_{{{i + 1}}}$", **style
            )
            color = ln.get_color()
        ax.set_ylabel("top Hessian eigenvalue" if k == 1 else "top Hessian eigenvalues")
    else:
        if any(getattr(r, "trace", None) is None for r in history):
            raise ValueError("which='trace' needs records with a trace (trace=True).")
        tr = np.asarray([r.trace for r in history], dtype=float)
        err = np.asarray([r.trace_stderr for r in history], dtype=float)
        (ln,) = ax.plot(steps, tr, label=f"{prefix}trace", **kwargs)
        ax.fill_between(steps, tr - 2 * err, tr + 2 * err, color=ln.get_color(), alpha=0.2)
        ax.set_ylabel("trace")
        color = ln.get_color()
    if lr is not None:
        lrs = [lr] if np.ndim(lr) == 0 else list(lr)
        for r in lrs:
            r = float(r)
            if not (r > 0 and np.isfinite(r)):
                raise ValueError(f"lr must be positive, got {r}.")
            ax.axhline(
                2.0 / r,
                color=color,
                linestyle="--",
                linewidth=1.0,
                label=f"{prefix}2 / lr = {2.0 / r:.3g}",
            )
    ax.set_xlabel("step")
    ax.legend(fontsize="small")
    return ax
