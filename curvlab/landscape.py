r"""Loss landscapes: directions in parameter space, 1D and 2D slices, interpolation.

A *direction* is a perturbation of the selected parameters, given either as

* a flat tensor of shape ``(n,)`` in the order of
  :func:`curvlab.params.select_params` (the order of ``model.named_parameters()``
  restricted to the selected parameters; ``params=None`` selects every trainable parameter), or
* a list of tensors shaped like the selected parameters.

Functions that take several directions (:func:`surface`) accept a list of such directions or a
matrix ``(n, k)`` whose columns are the directions (the layout of curvlab's estimators, such as
``EigenResult.eigenvectors``). The functions that build directions
(:func:`random_directions`, :func:`eigen_directions`) return a list of flat tensors.

A slice evaluates the empirical risk ``L(theta + a d1 + b d2)`` over ``data`` (any re-iterable
of ``(X, y)`` batches; the batch-size-weighted mean of ``loss_fn`` for mean-reduced losses, the
sum for ``reduction="sum"``), without gradients, through :class:`curvlab.EmpiricalRisk`: the
same data contract as the operators, so that a slice along a Hessian eigenvector is a slice of
the function whose Hessian gave it. The model is evaluated in the train/eval mode it is in
(curvlab never switches it; call ``model.eval()`` first for the inference function of a model
with BatchNorm or dropout). The model is left exactly as it was: the moved parameters (and, for
:func:`interpolate`, buffers) are restored bit for bit from saved copies, also when ``loss_fn``
raises, and buffers that a forward pass in train mode updates (BatchNorm running statistics)
are restored after every pass.

References
----------
Li, Xu, Taylor, Studer, Goldstein (2018), *Visualizing the loss landscape of neural nets*
(filter normalization). Goodfellow, Vinyals, Saxe (2015), *Qualitatively characterizing neural
network optimization problems* (linear interpolation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ._checks import check_int
from ._params import flatten, select_params, unflatten
from ._progress import Callback, Progress, check_callback, notify, progress_bar
from ._public import public_dir
from ._random import Seed, make_generator
from .risk import EVALUATION_ONLY, EmpiricalRisk, Output, check_metrics

__all__ = [
    "random_directions",
    "eigen_directions",
    "line",
    "surface",
    "interpolate",
    "LandscapeLine",
    "LandscapeSurface",
]

__dir__ = public_dir(globals())

Direction = Tensor | Sequence[Tensor]


# -- results -------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LandscapeLine:
    """The loss along a line ``theta + a d`` (or along an interpolation path).

    Attributes
    ----------
    coords : Tensor
        ``(steps,)`` coordinates ``a`` (float64, CPU).
    loss : Tensor
        ``(steps,)`` loss at each coordinate (float64, CPU).
    metrics : dict of str to Tensor
        ``(steps,)`` value of each metric passed in ``metrics=`` (same weighting as the loss).
    direction_norm : float
        Euclidean norm of the direction (for :func:`interpolate`, of ``theta_b - theta_a``).
    num_data : int
        Number of samples every point averages over.
    stopped : bool
        ``True`` when a ``callback=`` stopped the sweep: the points not evaluated are NaN.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from curvlab.landscape import line
    >>> model = nn.Linear(1, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = model.weight.fill_(1.0)  # y = x exactly: the minimum
    >>> x = torch.tensor([[1.0], [2.0]])
    >>> mae = {"mae": lambda out, y: (out - y).abs().mean()}
    >>> res = line(model, nn.MSELoss(), [(x, x)], torch.tensor([1.0]), steps=3, metrics=mae,
    ...            progress=False)
    >>> res.coords.tolist(), res.loss.tolist(), res.metrics["mae"].tolist()
    ([-1.0, 0.0, 1.0], [2.5, 0.0, 2.5], [1.5, 0.0, 1.5])
    >>> res.direction_norm, res.num_data, res.alphas is res.coords
    (1.0, 2, True)
    """

    coords: Tensor
    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)
    direction_norm: float = float("nan")
    num_data: int = 0
    stopped: bool = False

    @property
    def alphas(self) -> Tensor:
        """Alias of ``coords``."""
        return self.coords

    def __repr__(self) -> str:
        finite = torch.isfinite(self.loss)
        i = int(torch.argmin(self.loss.masked_fill(~finite, math.inf))) if finite.any() else 0
        mets = f", metrics={list(self.metrics)}" if self.metrics else ""
        span = (
            f"[{float(self.coords[0]):.4g}, {float(self.coords[-1]):.4g}]"
            if self.coords.numel()
            else "[]"
        )
        best = (
            f", min loss {float(self.loss[i]):.4g} at {float(self.coords[i]):.4g}"
            if finite.any()
            else ""
        )
        return (
            f"LandscapeLine({self.coords.numel()} points on {span}{best}{mets}, "
            f"direction_norm={self.direction_norm:.4g}, num_data={self.num_data}"
            + (", stopped=True)" if self.stopped else ")")
        )

    def curvature(self, at: float = 0.0) -> float:
        r"""The second difference of the loss at the grid point nearest ``at``, per unit length.

        :math:`(L_{i+1} - 2 L_i + L_{i-1}) / (h^2 \|d\|^2)` with ``h`` the grid step: for a
        twice-differentiable loss and a small ``span`` it tends to the Rayleigh quotient
        :math:`d^	op H d / \|d\|^2` (the eigenvalue along a unit eigenvector). It is not the
        eigenvalue over a wide span, where the loss is not quadratic, nor for ReLU networks,
        whose loss is only piecewise twice differentiable (see the user guide's "Curvature of
        real models").

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from curvlab.landscape import line
        >>> model = nn.Linear(1, 1, bias=False).double()
        >>> x = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
        >>> d = torch.tensor([2.0], dtype=torch.float64)
        >>> res = line(model, nn.MSELoss(), [(x, x)], d, steps=5, progress=False)
        >>> round(res.curvature(), 9)  # d^2/dw^2 of mean((w x - x)^2) = mean(2 x^2) = 5
        5.0
        """
        n = self.coords.numel()
        if n < 3:
            raise ValueError("curvature() needs a line of at least 3 steps.")
        i = int(torch.argmin((self.coords - at).abs()))
        i = min(max(i, 1), n - 2)
        h1 = float(self.coords[i + 1] - self.coords[i])
        h0 = float(self.coords[i] - self.coords[i - 1])
        if not math.isclose(h0, h1, rel_tol=1e-9, abs_tol=0.0):
            raise ValueError("curvature() needs a uniform grid (a line, not an interpolation).")
        second = float(self.loss[i + 1] - 2 * self.loss[i] + self.loss[i - 1]) / h1**2
        return second / self.direction_norm**2


@dataclass(frozen=True, eq=False)
class LandscapeSurface:
    """The loss on a grid ``theta + a d1 + b d2``.

    Attributes
    ----------
    coords : tuple of Tensor
        ``(a, b)``, the ``(steps_a,)`` and ``(steps_b,)`` coordinates along ``d1`` and ``d2``.
    loss : Tensor
        ``(steps_a, steps_b)``: ``loss[i, j]`` is the loss at ``theta + a[i] d1 + b[j] d2``
        (``"ij"`` indexing, as ``torch.meshgrid(a, b, indexing="ij")``).
    metrics : dict of str to Tensor
        Metric values on the same grid.
    direction_norms : tuple of float
        Norms of ``d1`` and ``d2``.
    num_data : int
        Number of samples every point averages over.
    stopped : bool
        ``True`` when a ``callback=`` stopped the sweep: the points not evaluated are NaN.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from curvlab.landscape import surface
    >>> model = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = model.weight.zero_()
    >>> data = [(torch.eye(2), torch.zeros(2, 1))]  # loss (w1^2 + w2^2) / 2
    >>> dirs = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])]
    >>> res = surface(model, nn.MSELoss(), data, dirs, span=((-1, 1), (0, 1)), steps=(3, 2),
    ...               progress=False)
    >>> [c.tolist() for c in res.coords]
    [[-1.0, 0.0, 1.0], [0.0, 1.0]]
    >>> res.loss.tolist()  # loss[i, j] at a[i] d1 + b[j] d2
    [[0.5, 2.5], [0.0, 2.0], [0.5, 2.5]]
    >>> A, B = res.meshgrid()
    >>> A.shape, res.direction_norms, res.num_data
    (torch.Size([3, 2]), (1.0, 2.0), 2)
    """

    coords: tuple[Tensor, Tensor]
    loss: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)
    direction_norms: tuple[float, float] = (float("nan"), float("nan"))
    num_data: int = 0
    stopped: bool = False

    def __repr__(self) -> str:
        a, b = self.coords
        mets = f", metrics={list(self.metrics)}" if self.metrics else ""
        fin = self.loss[torch.isfinite(self.loss)]
        lo = f", loss in [{float(fin.min()):.4g}, {float(fin.max()):.4g}]" if fin.numel() else ""
        norms = ", ".join(f"{n:.4g}" for n in self.direction_norms)
        return (
            f"LandscapeSurface({a.numel()} x {b.numel()} grid{lo}{mets}, "
            f"direction_norms=({norms}), num_data={self.num_data}"
            + (", stopped=True)" if self.stopped else ")")
        )

    def meshgrid(self) -> tuple[Tensor, Tensor]:
        """``(A, B)`` with ``A[i, j] = a[i]`` and ``B[i, j] = b[j]``, the shape of ``loss``."""
        return torch.meshgrid(self.coords[0], self.coords[1], indexing="ij")


# -- directions ----------------------------------------------------------------------------
_NORMALIZATIONS = ("filter", "layer", None)
_IGNORES = ("biasbn", None)


def random_directions(
    model: nn.Module,
    *,
    num: int = 2,
    normalization: str | None = "filter",
    ignore: str | None = "biasbn",
    seed: Seed = None,
    params=None,
) -> list[Tensor]:
    r"""Gaussian random directions, filter-normalized as in Li et al. (2018) by default.

    Each direction starts as i.i.d. standard normal entries, one per selected parameter entry,
    then, parameter tensor by parameter tensor:

    * tensors with one dimension or none (biases, BatchNorm and LayerNorm weights) are set to
      zero with ``ignore="biasbn"``, and to a copy of the weights with ``ignore=None`` (as in
      the reference implementation);
    * ``normalization="filter"``: every filter ``d[i]`` (slice along the first, output
      dimension: a convolution kernel, a row of a linear layer) is scaled to the norm of the
      matching weight slice, ``d[i] <- d[i] ||w[i]|| / ||d[i]||``;
    * ``normalization="layer"``: the whole tensor is scaled to the norm of the weight tensor;
    * ``normalization=None``: left as drawn.

    Parameters
    ----------
    model
        The model; its current parameters set the filter norms.
    num
        Number of directions.
    normalization
        ``"filter"`` (default), ``"layer"`` or ``None``.
    ignore
        ``"biasbn"`` (default) or ``None``.
    seed
        An int or a ``torch.Generator``. Numbers are drawn on the CPU, so one seed gives the
        same directions on every device. ``None`` draws a fresh seed.
    params
        Parameter selection (see :func:`curvlab.params.select_params`); default: all
        trainable parameters.

    Returns
    -------
    list of Tensor
        ``num`` flat directions of shape ``(n,)``, on the parameters' device and dtype.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from curvlab.landscape import random_directions
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    >>> d1, d2 = random_directions(model, seed=0)
    >>> d1.shape
    torch.Size([21])
    """
    num = check_int(num, "num")
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}.")
    if ignore not in _IGNORES:
        raise ValueError(f"ignore must be one of {_IGNORES}, got {ignore!r}.")
    _, tensors = select_params(model, params)
    gen, _ = make_generator(seed, share=True)  # a Generator is used (and advanced) as is
    out = []
    for _ in range(num):
        parts = []
        for w in tensors:
            w = w.detach()
            d = torch.randn(w.shape, generator=gen, device=gen.device, dtype=torch.float64)
            d = d.to(device=w.device, dtype=w.dtype) if w.is_floating_point() else d
            if w.dim() <= 1:
                d = torch.zeros_like(w) if ignore == "biasbn" else w.clone()
            elif normalization == "filter":
                wn = torch.linalg.vector_norm(w.reshape(w.shape[0], -1), dim=1)
                dn = torch.linalg.vector_norm(d.reshape(d.shape[0], -1), dim=1)
                scale = wn / (dn + 1e-10)
                d = d * scale.reshape(-1, *([1] * (d.dim() - 1)))
            elif normalization == "layer":
                d = d * (torch.linalg.vector_norm(w) / (torch.linalg.vector_norm(d) + 1e-10))
            parts.append(d)
        out.append(flatten(parts))
    return out


def eigen_directions(
    op, *, num: int = 2, seed: Seed = None, return_eigenvalues: bool = False, **eigsh_kwargs
) -> list[Tensor] | tuple[list[Tensor], Tensor]:
    r"""The eigenvectors of the ``num`` largest (algebraic) eigenvalues of a curvature operator.

    Computed with :func:`curvlab.eigsh` (``which="LA"``, and ``criterion="residual"`` unless
    ``eigsh_kwargs`` says otherwise: a direction needs an accurate eigenvector, not only an
    accurate eigenvalue); ordered by decreasing eigenvalue.
    Each vector has unit norm and a fixed sign (its entry of largest magnitude is positive), so
    that the same operator always gives the same directions.

    Parameters
    ----------
    op
        A :class:`~curvlab.CurvatureOperator` (e.g. ``cl.HessianOperator``); its
        vectors are in the order of its parameters, the order ``line`` and ``surface`` use
        with the same parameter selection.
    num
        Number of eigenvectors.
    seed
        Seed of the Lanczos start vector (int or ``torch.Generator``).
    return_eigenvalues
        Also return the ``(num,)`` eigenvalues.
    **eigsh_kwargs
        Passed to :func:`curvlab.eigsh` (``tol``, ``max_matvecs``...).

    Returns
    -------
    list of Tensor
        ``num`` flat unit directions ``(n,)``; with ``return_eigenvalues``, ``(directions,
        eigenvalues)``.

    Examples
    --------
    >>> import torch
    >>> from curvlab import DenseOperator
    >>> from curvlab.landscape import eigen_directions
    >>> op = DenseOperator(torch.diag(torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64)))
    >>> d1, d2 = eigen_directions(op, seed=0)
    >>> d1.abs().argmax().item(), d2.abs().argmax().item()
    (0, 2)
    """
    from .linalg import eigsh

    num = check_int(num, "num")
    n = op.shape[0]
    if num > n:
        raise ValueError(f"num={num} directions asked but the operator has dimension {n}.")
    eigsh_kwargs = {"criterion": "residual", **eigsh_kwargs}
    res = eigsh(op, k=num, which="LA", seed=seed, **eigsh_kwargs)
    vals = res.eigenvalues
    order = torch.argsort(vals, descending=True)
    vecs = res.eigenvectors[:, order]
    out = []
    for i in range(num):
        v = vecs[:, i]
        v = v / torch.linalg.vector_norm(v)
        if v[v.abs().argmax()] < 0:
            v = -v
        out.append(v)
    if return_eigenvalues:
        return out, vals[order]
    return out


# -- conversions ---------------------------------------------------------------------------
def _as_flat(d, tensors: list[Tensor], what: str) -> Tensor:
    """A direction as a flat tensor on the parameters' device and dtype."""
    n = sum(p.numel() for p in tensors)
    ref = tensors[0]
    if isinstance(d, Tensor):
        if d.dim() == 2 and d.shape[1] == 1:
            d = d[:, 0]
        if d.dim() != 1 or d.shape[0] != n:
            raise ValueError(
                f"{what} has shape {tuple(d.shape)}; a flat direction must have shape ({n},), "
                "one entry per selected parameter entry (or pass a list of tensors shaped like "
                "the parameters)."
            )
        flat = d
    elif isinstance(d, Sequence) and all(isinstance(t, Tensor) for t in d):
        d = list(d)
        if len(d) == 1 and d[0].dim() == 1 and d[0].shape[0] == n:
            flat = d[0]
        elif len(d) == len(tensors) and all(t.shape == p.shape for t, p in zip(d, tensors)):
            flat = torch.cat([t.reshape(-1) for t in d])
        else:
            raise ValueError(
                f"{what} is a list of {len(d)} tensors that does not match the {len(tensors)} "
                "selected parameters' shapes; pass one tensor per parameter, or a flat tensor."
            )
    else:
        raise TypeError(
            f"{what} must be a flat tensor or a list of tensors shaped like the parameters, got "
            f"{type(d).__name__}."
        )
    if not flat.is_floating_point():
        raise TypeError(f"{what} must be floating point, got {flat.dtype}.")
    if not torch.isfinite(flat).all():
        raise ValueError(f"{what} has NaN or Inf entries.")
    return flat.detach().to(device=ref.device, dtype=ref.dtype)


def _as_two(directions, tensors: list[Tensor]) -> tuple[Tensor, Tensor]:
    n = sum(p.numel() for p in tensors)
    if isinstance(directions, Tensor):
        if directions.dim() == 2 and directions.shape == (n, 2):
            return (
                _as_flat(directions[:, 0], tensors, "directions[:, 0]"),
                _as_flat(directions[:, 1], tensors, "directions[:, 1]"),
            )
        if directions.dim() == 2 and directions.shape == (2, n):
            return (
                _as_flat(directions[0], tensors, "directions[0]"),
                _as_flat(directions[1], tensors, "directions[1]"),
            )
        raise ValueError(
            f"directions has shape {tuple(directions.shape)}; pass a matrix ({n}, 2) whose "
            "columns are the two directions, or a list of two directions."
        )
    if isinstance(directions, Sequence) and not isinstance(directions, str):
        if len(directions) != 2:
            raise ValueError(
                f"surface needs exactly two directions, got {len(directions)}; use line() for one."
            )
        return (
            _as_flat(directions[0], tensors, "directions[0]"),
            _as_flat(directions[1], tensors, "directions[1]"),
        )
    raise TypeError(
        f"directions must be a list of two directions or an (n, 2) tensor, got "
        f"{type(directions).__name__}."
    )


def _coords(span, steps, what: str) -> Tensor:
    steps = check_int(steps, f"{what}: steps")
    try:
        lo, hi = (float(s) for s in span)
    except (TypeError, ValueError):
        raise ValueError(
            f"{what}: span must be a pair (low, high) of numbers, got {span!r}."
        ) from None
    if not (torch.isfinite(torch.tensor([lo, hi])).all() and lo <= hi):
        raise ValueError(f"{what}: span must be finite with low <= high, got {span!r}.")
    return torch.linspace(lo, hi, steps, dtype=torch.float64)


def _pair(x, what: str):
    """Split a per-axis argument: a pair of pairs for span, a pair of ints for steps."""
    if isinstance(x, Sequence) and len(x) == 2 and all(isinstance(v, Sequence) for v in x):
        return x[0], x[1]
    if (
        isinstance(x, Sequence)
        and len(x) == 2
        and all(isinstance(v, int) for v in x)
        and (what == "steps")
    ):
        return x[0], x[1]
    return x, x


# -- evaluation ----------------------------------------------------------------------------
def _risk(model, loss_fn, data, params, metrics, check_deterministic, process_group, output):
    """The :class:`~curvlab.EmpiricalRisk` a slice evaluates, and the metrics as a dict: the
    same data contract (batches, weights, outputs, train/eval mode) as the operators."""
    if isinstance(data, Iterator):
        raise TypeError(
            "data is a one-shot iterator; a landscape passes over the data once per grid point: "
            "pass a list of (X, y) batches or a DataLoader."
        )
    metrics = check_metrics(metrics)
    risk = EmpiricalRisk(
        model,
        loss_fn,
        data,
        params=params,
        process_group=process_group,
        check_deterministic=check_deterministic,
        output=output,
    )
    return risk, metrics


def _sweep(risk: EmpiricalRisk, metrics, tensors, shape, what, progress, place, callback=None):
    """Evaluate the loss and metrics at every point of a grid of ``shape``.

    ``place(base)``, with ``base`` the saved values of ``tensors``, is a generator that moves
    ``tensors`` to each point in turn and yields once there; the model is restored after.
    Returns ``(loss, metrics, stopped)``, ``loss`` and ``metrics`` shaped ``shape`` (NaN at the
    points not evaluated when ``callback`` stopped the sweep).
    """
    vals = []
    stopped = False
    total = math.prod(shape)
    with _perturbation(tensors) as base:
        with _progress(total, what, progress) as bar:
            for i, _ in enumerate(place(base)):
                ev = risk.evaluate(metrics)
                vals.append(torch.stack([ev.loss, *[ev.metrics[k] for k in metrics]]))
                bar.update(1)
                if notify(callback, i + 1, i + 1, ev.loss, None, index=i, metrics=ev.metrics):
                    stopped = i + 1 < total
                    break
    if stopped:
        vals += [torch.full_like(vals[0], math.nan)] * (total - len(vals))
    return (*_results(vals, list(metrics), shape), stopped)


@contextmanager
def _perturbation(tensors: list[Tensor]):
    """No grad; yields saved copies of ``tensors`` and restores them bit for bit on exit (also
    on exceptions)."""
    saved = [t.detach().clone() for t in tensors]
    try:
        with torch.no_grad():
            yield saved
    finally:
        with torch.no_grad():
            for t, s in zip(tensors, saved):
                t.copy_(s)


def _set_flat(tensors: list[Tensor], base: list[Tensor], delta: Tensor) -> None:
    for p, b, d in zip(tensors, base, unflatten(delta, tensors)):
        p.copy_(b + d)


def _progress(total: int, desc: str, progress: Progress):
    # a bar on a terminal, plain lines in a log, or the user's callable (curvlab/_progress.py)
    return progress_bar(progress, total, desc, unit="points")


def _results(vals: list[Tensor], names: list[str], shape) -> tuple[Tensor, dict[str, Tensor]]:
    arr = torch.stack(vals).cpu().reshape(*shape, -1)
    return arr[..., 0].clone(), {k: arr[..., i + 1].clone() for i, k in enumerate(names)}


def line(
    model: nn.Module,
    loss_fn: Callable,
    data: Iterable,
    direction: Direction,
    *,
    span: tuple[float, float] = (-1.0, 1.0),
    steps: int = 41,
    params=None,
    metrics: Mapping[str, Callable] | None = None,
    progress: Progress = True,
    callback: Callback = None,
    check_deterministic: bool = True,
    process_group=None,
    output: Output = None,
) -> LandscapeLine:
    r"""The loss along a line, ``a -> L(theta + a d)`` for ``steps`` values of ``a`` in ``span``.

    Parameters
    ----------
    model, loss_fn, data
        The model, ``loss_fn(output, y) -> scalar`` and a re-iterable of ``(X, y)`` batches.
    direction
        A flat tensor ``(n,)`` in the order of the selected parameters, or a list of tensors
        shaped like them. It is used as given (normalize it first if needed).
    span, steps
        The coordinates ``torch.linspace(*span, steps)``.
    params
        Parameter selection (default all trainable), the one ``direction`` refers to.
    metrics
        Optional ``{"name": fn(output, y) -> scalar}`` (e.g. accuracy), weighted by batch size.
    progress
        ``True`` (default): a progress bar on a terminal, plain lines in a log (no carriage
        returns); ``False``: silent; or a callable ``progress(done, total, info)``.
    callback
        ``None`` (default) or ``callback(iterate)``, called after every grid point with a
        :class:`curvlab.Iterate`: ``iteration`` and ``products`` the points evaluated so far
        (each a pass over ``data``), ``estimate`` the loss there (a device tensor),
        ``info["index"]`` its flat index in the grid (row-major) and ``info["metrics"]``.
        Returning ``True`` stops the sweep: the result has ``stopped=True`` and NaN at the
        points not evaluated.
    check_deterministic, process_group, output
        As in :class:`~curvlab.EmpiricalRisk`: the data contract of the slice is the one of
        the operators (the model is evaluated in its current train/eval mode).

    Returns
    -------
    LandscapeLine

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from curvlab.landscape import line, random_directions
    >>> model = nn.Linear(2, 1)
    >>> data = [(torch.randn(8, 2), torch.randn(8, 1))]
    >>> (d,) = random_directions(model, num=1, seed=0)
    >>> res = line(model, nn.MSELoss(), data, d, steps=5, progress=False)
    >>> res.loss.shape
    torch.Size([5])
    """
    check_callback(callback)
    risk, metrics = _risk(
        model, loss_fn, data, params, metrics, check_deterministic, process_group, output
    )
    tensors = risk.params
    d = _as_flat(direction, tensors, "direction")
    coords = _coords(span, steps, "line")

    def place(base):
        for a in coords.tolist():
            _set_flat(tensors, base, a * d)
            yield

    loss, mets, stopped = _sweep(
        risk, metrics, tensors, (len(coords),), "line", progress, place, callback
    )
    return LandscapeLine(
        coords=coords,
        loss=loss,
        metrics=mets,
        direction_norm=float(torch.linalg.vector_norm(d)),
        num_data=risk.num_data,
        stopped=stopped,
    )


def surface(
    model: nn.Module,
    loss_fn: Callable,
    data: Iterable,
    directions,
    *,
    span=(-1.0, 1.0),
    steps=41,
    params=None,
    metrics: Mapping[str, Callable] | None = None,
    progress: Progress = True,
    callback: Callback = None,
    check_deterministic: bool = True,
    process_group=None,
    output: Output = None,
) -> LandscapeSurface:
    r"""The loss on a 2D grid, ``(a, b) -> L(theta + a d1 + b d2)``.

    Parameters
    ----------
    model, loss_fn, data
        As in :func:`line`.
    directions
        Two directions: a list ``[d1, d2]`` (each flat ``(n,)`` or a list of tensors shaped like
        the parameters) or a matrix ``(n, 2)`` whose columns are ``d1`` and ``d2`` (a ``(2, n)``
        matrix of rows is accepted when ``n != 2``).
    span
        ``(low, high)`` for both axes, or ``((low_a, high_a), (low_b, high_b))``.
    steps
        Points per axis, or ``(steps_a, steps_b)``.
    params, metrics, progress, callback, check_deterministic, process_group, output
        As in :func:`line`.

    Returns
    -------
    LandscapeSurface
        ``loss[i, j]`` is the loss at ``theta + a[i] d1 + b[j] d2``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from curvlab.landscape import random_directions, surface
    >>> model = nn.Linear(2, 1)
    >>> data = [(torch.randn(8, 2), torch.randn(8, 1))]
    >>> dirs = random_directions(model, normalization=None, ignore=None, seed=0)
    >>> surface(model, nn.MSELoss(), data, dirs, steps=3, progress=False).loss.shape
    torch.Size([3, 3])
    """
    check_callback(callback)
    risk, metrics = _risk(
        model, loss_fn, data, params, metrics, check_deterministic, process_group, output
    )
    tensors = risk.params
    d1, d2 = _as_two(directions, tensors)
    span_a, span_b = _pair(span, "span")
    steps_a, steps_b = _pair(steps, "steps")
    ca = _coords(span_a, steps_a, "surface (first axis)")
    cb = _coords(span_b, steps_b, "surface (second axis)")

    def place(base):
        for a in ca.tolist():
            for b in cb.tolist():
                _set_flat(tensors, base, a * d1 + b * d2)
                yield

    shape = (len(ca), len(cb))
    loss, mets, stopped = _sweep(
        risk, metrics, tensors, shape, "surface", progress, place, callback
    )
    return LandscapeSurface(
        coords=(ca, cb),
        loss=loss,
        metrics=mets,
        direction_norms=(float(torch.linalg.vector_norm(d1)), float(torch.linalg.vector_norm(d2))),
        num_data=risk.num_data,
        stopped=stopped,
    )


def interpolate(
    model_a: nn.Module,
    model_b: nn.Module,
    loss_fn: Callable,
    data: Iterable,
    *,
    span: tuple[float, float] = (-0.5, 1.5),
    steps: int = 41,
    metrics: Mapping[str, Callable] | None = None,
    buffers: bool = True,
    progress: Progress = True,
    callback: Callback = None,
    check_deterministic: bool = True,
    process_group=None,
    output: Output = None,
) -> LandscapeLine:
    r"""The loss on the straight path ``theta(a) = (1 - a) theta_a + a theta_b``.

    ``a = 0`` is ``model_a``, ``a = 1`` is ``model_b``; ``span`` extends the segment on both
    sides. The path is evaluated in ``model_a`` (restored exactly afterwards); ``model_b`` is
    only read. The two models must have the same parameter names and shapes.

    Parameters
    ----------
    model_a, model_b
        Two models of the same architecture.
    loss_fn, data, metrics, progress, callback, check_deterministic, process_group, output
        As in :func:`line`.
    span, steps
        The coordinates ``a = torch.linspace(*span, steps)``.
    buffers
        Also interpolate floating-point buffers (BatchNorm running statistics) along the path
        (default). With ``False``, ``model_a``'s buffers are used throughout.

    Returns
    -------
    LandscapeLine
        ``coords`` are the values of ``a``; ``direction_norm`` is ``||theta_b - theta_a||``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from curvlab.landscape import interpolate
    >>> a, b = nn.Linear(2, 1), nn.Linear(2, 1)
    >>> data = [(torch.randn(8, 2), torch.randn(8, 1))]
    >>> interpolate(a, b, nn.MSELoss(), data, steps=5, progress=False).coords.tolist()
    [-0.5, 0.0, 0.5, 1.0, 1.5]
    """
    check_callback(callback)
    for m in (model_a, model_b):
        if not isinstance(m, nn.Module):
            raise TypeError(f"models must be torch.nn.Module, got {type(m).__name__}.")
    pa, pb = dict(model_a.named_parameters()), dict(model_b.named_parameters())
    if list(pa) != list(pb) or any(pa[k].shape != pb[k].shape for k in pa):
        raise ValueError(
            "model_a and model_b have different parameter names or shapes: interpolate between "
            "two instances of the same architecture."
        )
    if not pa:
        raise ValueError("the models have no parameters.")
    ba = {k: v for k, v in model_a.named_buffers() if v.is_floating_point()} if buffers else {}
    bb = dict(model_b.named_buffers()) if buffers else {}
    for k, v in ba.items():
        if k not in bb or bb[k].shape != v.shape:
            raise ValueError(
                f"buffer {k!r} differs between the models; pass buffers=False to keep model_a's."
            )
    risk, metrics = _risk(
        model_a,
        loss_fn,
        data,
        EVALUATION_ONLY,
        metrics,
        check_deterministic,
        process_group,
        output,
    )
    coords = _coords(span, steps, "interpolate")
    tensors = list(pa.values()) + list(ba.values())
    targets = [pb[k].detach().to(pa[k]) for k in pa] + [bb[k].detach().to(v) for k, v in ba.items()]
    norm = math.nan  # set by place(), from the saved parameters

    def place(base):
        nonlocal norm
        deltas = [t - b for t, b in zip(targets, base)]
        norm = float(
            torch.linalg.vector_norm(torch.cat([deltas[i].reshape(-1) for i in range(len(pa))]))
        )
        for a in coords.tolist():
            for t, b, dl in zip(tensors, base, deltas):
                t.copy_(b + a * dl)
            yield

    shape = (len(coords),)
    loss, mets, stopped = _sweep(
        risk, metrics, tensors, shape, "interpolate", progress, place, callback
    )
    return LandscapeLine(
        coords=coords,
        loss=loss,
        metrics=mets,
        direction_norm=norm,
        num_data=risk.num_data,
        stopped=stopped,
    )
