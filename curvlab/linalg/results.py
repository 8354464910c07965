"""Frozen result dataclasses of the estimators in ``curvlab.linalg``.

Each result carries what a scientist must report with the number: the estimate, its residuals
or standard error, the number of operator products it cost and the seed that reproduces it.
Tensors stay on the operator's device; scalars are Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_positive
from .._public import public_dir
from .solve import CGResult

__all__ = [
    "EigenResult",
    "LanczosResult",
    "TraceResult",
    "DiagonalResult",
    "SpectralDensity",
    "SpectralGap",
    "CGResult",
]

__dir__ = public_dir(globals())


def _g(x, digits: int = 4) -> str:
    """A number in ``digits`` significant digits (``nan`` for ``None``)."""
    return f"{float('nan') if x is None else float(x):.{digits}g}"


def _range(t: Tensor | None) -> str:
    """``[min, max]`` of a tensor's finite entries in 4 significant digits."""
    if t is None or t.numel() == 0:
        return "[]"
    t = t.detach().reshape(-1)
    fin = t[torch.isfinite(t)]
    if fin.numel() == 0:
        return "[nan]"
    return f"[{_g(fin.min())}, {_g(fin.max())}]"


def _stopped(stopped: bool) -> str:
    return ", stopped=True" if stopped else ""


@dataclass(frozen=True, eq=False)
class EigenResult:
    """Eigenpairs from :func:`~curvlab.eigsh` or :func:`~curvlab.power_iteration`.

    Attributes
    ----------
    eigenvalues : Tensor
        Shape ``(k,)``, in ascending algebraic order (as
        ``scipy.sparse.linalg.eigsh(..., return_eigenvectors=True)`` returns them, whatever
        ``which``), for :func:`~curvlab.eigsh` and :func:`~curvlab.power_iteration` alike.
    eigenvectors : Tensor or None
        Shape ``(n, k)``, orthonormal columns matching ``eigenvalues`` (``None`` when not asked
        for).
    residuals : Tensor
        Shape ``(k,)``: ``||A x_i - lambda_i x_i||`` for unit ``x_i``. By Bauer-Fike an exact
        eigenvalue lies within ``residuals[i]`` of ``eigenvalues[i]``.
    num_matvecs : int
        Operator products used (a block of ``b`` columns counts ``b``).
    converged : bool
        ``True`` only when ``residuals[i] <= tol * |eigenvalues[i]|`` for every ``i`` (for
        :func:`~curvlab.power_iteration` with ``criterion="eigenvalue"``, the stopping rule
        of the classic tools instead; see there).
    seed : int or None
        The integer seed that reproduces the random start (``None`` when no randomness was
        used).
    stopped : bool
        ``True`` when a ``callback=`` stopped the solver early (``converged`` is then
        ``False``).
    eigenvalue_errors : Tensor or None
        Shape ``(k,)``: error estimates of the eigenvalues (:func:`~curvlab.eigsh`:
        ``residual^2 / gap`` where the residual is below half the gap to the nearest other
        Ritz value, else the residual); ``None`` where not estimated.
    criterion : str
        The stopping rule ``converged`` refers to (``"eigenvalue"`` or ``"residual"``).

    Examples
    --------
    >>> import torch
    >>> import curvlab as cl
    >>> A = cl.DenseOperator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
    >>> res = cl.eigsh(A, k=2, seed=0)
    >>> [round(x, 6) for x in res.eigenvalues.tolist()], res.eigenvectors.shape
    ([4.0, 5.0], torch.Size([5, 2]))
    """

    eigenvalues: Tensor
    eigenvectors: Tensor | None
    residuals: Tensor
    num_matvecs: int
    converged: bool
    seed: int | None
    stopped: bool = False
    eigenvalue_errors: Tensor | None = None
    criterion: str = "residual"

    def __repr__(self) -> str:
        vals = ", ".join(f"{v:.6g}" for v in self.eigenvalues.tolist())
        return (
            f"EigenResult(eigenvalues=[{vals}], max_residual="
            f"{self.residuals.max().item() if self.residuals.numel() else 0.0:.3g}, "
            f"num_matvecs={self.num_matvecs}, converged={self.converged}, seed={self.seed}"
            f"{_stopped(self.stopped)})"
        )


@dataclass(frozen=True, eq=False)
class LanczosResult:
    """The Lanczos decomposition ``A V = V T + r e_m^T`` from :func:`~curvlab.lanczos`.

    Attributes
    ----------
    alpha : Tensor
        Diagonal of the tridiagonal matrix ``T``, shape ``(m,)``.
    beta : Tensor
        Off-diagonal of ``T``, shape ``(m - 1,)``.
    basis : Tensor or None
        The orthonormal Lanczos vectors ``V``, shape ``(n, m)``; ``None`` when not kept.
    residual_norm : float
        ``||r||``, the norm of the next (unnormalized) Lanczos vector; ``0`` when the Krylov
        space became invariant (the Ritz values are then exact eigenvalues).
    num_matvecs : int
        Operator products used (``m``).
    seed : int or None
        Seed of the random start vector (``None`` when ``v0`` was given).

    ``m`` is ``num_iter`` unless the recurrence found an invariant subspace earlier.

    Examples
    --------
    >>> import torch
    >>> import curvlab as cl
    >>> A = cl.DenseOperator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
    >>> res = cl.lanczos(A, 3, seed=0)
    >>> res.num_iter, tuple(res.tridiagonal().shape), tuple(res.basis.shape)
    (3, (3, 3), (5, 3))
    """

    alpha: Tensor
    beta: Tensor
    basis: Tensor | None
    residual_norm: float
    num_matvecs: int
    seed: int | None

    def __repr__(self) -> str:
        basis = "None" if self.basis is None else "x".join(map(str, self.basis.shape))
        return (
            f"LanczosResult(num_iter={self.num_iter}, alpha in {_range(self.alpha)}, "
            f"residual_norm={_g(self.residual_norm, 3)}, basis={basis}, "
            f"num_matvecs={self.num_matvecs}, seed={self.seed})"
        )

    @property
    def num_iter(self) -> int:
        """Number of Lanczos steps done (``m``)."""
        return int(self.alpha.shape[0])

    def tridiagonal(self) -> Tensor:
        """The ``m x m`` symmetric tridiagonal matrix ``T = V^T A V``."""
        return (
            torch.diag(self.alpha)
            + torch.diag(self.beta, diagonal=1)
            + torch.diag(self.beta, diagonal=-1)
        )

    def ritz(self) -> tuple[Tensor, Tensor]:
        """Ritz values (ascending) and Ritz vectors ``V Y`` (``None`` without a basis)."""
        theta, Y = torch.linalg.eigh(self.tridiagonal())
        return theta, (self.basis @ Y if self.basis is not None else None)

    def quadrature(self) -> tuple[Tensor, Tensor]:
        r"""Gauss quadrature nodes and weights of the start vector's spectral measure.

        With ``v`` the unit start vector, ``sum_i w_i f(t_i)`` approximates
        ``v^T f(A) v`` and is exact for polynomials of degree up to ``2 m - 1``.
        """
        theta, Y = torch.linalg.eigh(self.tridiagonal())
        return theta, Y[0] ** 2


@dataclass(frozen=True, eq=False)
class TraceResult:
    """A stochastic trace estimate from :func:`~curvlab.trace`.

    Attributes
    ----------
    estimate : float
        The trace estimate.
    std_error : float
        Estimated standard error of ``estimate`` (see :func:`~curvlab.trace` for how each
        method estimates it); ``nan`` when it cannot be estimated (a single sample).
    num_matvecs : int
        Operator products used.
    method : str
        ``"hutchinson"``, ``"hutch++"`` or ``"xtrace"``: the estimator of ``estimate``
        (``"hutchinson"`` when a ``callback=`` stopped a sketching method before its sketch was
        complete: see :func:`~curvlab.trace`).
    seed : int
        The integer seed that reproduces the estimate.
    stopped : bool
        ``True`` when a ``callback=`` stopped the estimator before its budget was spent.

    Examples
    --------
    >>> import torch
    >>> import curvlab as cl
    >>> A = cl.DenseOperator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
    >>> res = cl.trace(A, num_matvecs=30, seed=0)  # Hutch++: exact once rank(A) <= 30 / 3
    >>> round(res.estimate, 6), res.method, res.seed
    (15.0, 'hutch++', 0)
    """

    estimate: float
    std_error: float
    num_matvecs: int
    method: str
    seed: int | None
    stopped: bool = False

    def __repr__(self) -> str:
        return (
            f"TraceResult(estimate={_g(self.estimate)}, std_error={_g(self.std_error, 3)}, "
            f"num_matvecs={self.num_matvecs}, method={self.method!r}, seed={self.seed}"
            f"{_stopped(self.stopped)})"
        )


@dataclass(frozen=True, eq=False)
class DiagonalResult:
    """A stochastic estimate of the diagonal from :func:`~curvlab.diagonal`.

    Attributes
    ----------
    estimate : Tensor
        Shape ``(n,)``, the diagonal estimate.
    std_error : Tensor or None
        Shape ``(n,)``, entry-wise standard error (``None`` where the method gives none).
    num_matvecs : int
        Operator products used.
    method : str
        ``"hutchinson"`` or ``"xdiag"``: the estimator of ``estimate`` (``"hutchinson"`` when
        a ``callback=`` stopped XDiag before its sketch was complete).
    seed : int
        The integer seed that reproduces the estimate.
    stopped : bool
        ``True`` when a ``callback=`` stopped the estimator before its budget was spent.

    Examples
    --------
    >>> import torch
    >>> import curvlab as cl
    >>> A = cl.DenseOperator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
    >>> res = cl.diagonal(A, num_matvecs=8, method="hutchinson", seed=0)
    >>> res.estimate  # exact for a diagonal matrix
    tensor([1., 2., 3., 4., 5.], dtype=torch.float64)
    """

    estimate: Tensor
    std_error: Tensor | None
    num_matvecs: int
    method: str
    seed: int | None
    stopped: bool = False

    def __repr__(self) -> str:
        est = self.estimate.detach()
        n = est.numel()
        se = ""
        if self.std_error is not None and self.std_error.numel():
            se = f", mean std_error={_g(self.std_error.detach().double().mean(), 3)}"
        mean = _g(est.double().mean()) if n else "nan"
        return (
            f"DiagonalResult(n={n}, estimate in {_range(est)}, mean={mean}{se}, "
            f"num_matvecs={self.num_matvecs}, method={self.method!r}, seed={self.seed}"
            f"{_stopped(self.stopped)})"
        )


@dataclass(frozen=True, eq=False)
class SpectralGap:
    """The two largest algebraic eigenvalues and their gap, from :func:`~curvlab.spectral_gap`.

    Attributes
    ----------
    lambda1, lambda2 : float
        The largest and second largest eigenvalues.
    difference : float
        ``lambda1 - lambda2``.
    ratio : float
        ``lambda1 / lambda2`` (``inf`` or ``nan`` when ``lambda2 == 0``): the "spectral gap"
        of the classic studies.
    residuals : Tensor
        ``(2,)``: ``||A x - lambda x||`` for ``lambda1`` and ``lambda2`` (in that order).
    num_matvecs : int
        Operator products used.
    converged : bool
        Both residuals within ``tol * |lambda|``.
    seed : int or None
        Seed of the eigensolver's random start.
    stopped : bool
        ``True`` when a ``callback=`` stopped the eigensolver early.

    Examples
    --------
    >>> import torch
    >>> import curvlab as cl
    >>> A = cl.DenseOperator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
    >>> gap = cl.spectral_gap(A, seed=0)
    >>> round(gap.lambda1, 6), round(gap.lambda2, 6), round(gap.difference, 6)
    (5.0, 4.0, 1.0)
    """

    lambda1: float
    lambda2: float
    difference: float
    ratio: float
    residuals: Tensor
    num_matvecs: int
    converged: bool = True
    seed: int | None = None
    stopped: bool = False

    def __repr__(self) -> str:
        res = _g(self.residuals.max(), 3) if self.residuals.numel() else "nan"
        return (
            f"SpectralGap(lambda1={self.lambda1:.6g}, lambda2={self.lambda2:.6g}, "
            f"ratio={_g(self.ratio)}, difference={_g(self.difference)}, max_residual={res}, "
            f"num_matvecs={self.num_matvecs}, converged={self.converged}, seed={self.seed}"
            f"{_stopped(self.stopped)})"
        )


@dataclass(frozen=True, eq=False)
class SpectralDensity:
    r"""The spectral density of an operator from stochastic Lanczos quadrature.

    Every probe ``p`` contributes a discrete measure with nodes ``nodes[p]`` and weights
    ``weights[p]`` (summing to one); the density is their average,

    .. math:: \phi(t) = \frac{1}{P} \sum_{p} \sum_i w_{p,i}\, \delta(t - t_{p,i}),

    an estimate of the normalized eigenvalue distribution ``(1/n) sum_j delta(t - lambda_j)``.
    :meth:`evaluate` smooths it with a Gaussian kernel.

    Attributes
    ----------
    nodes : Tensor
        ``(num_probes, m)`` Gauss quadrature nodes (Ritz values). A probe whose Krylov space
        became invariant before ``m`` steps is padded with copies of its largest node with
        zero weight.
    weights : Tensor
        ``(num_probes, m)`` non-negative weights, each row summing to one.
    num_matvecs : int
        Operator products used.
    seed : int or None
        The integer seed of the probes (``None`` when the probes were given).
    dim : int or None
        ``n``, the operator's size (``dim * moment(1)`` estimates the trace).
    stopped : bool
        ``True`` when a ``callback=`` stopped the recurrences early (fewer nodes per probe).

    Examples
    --------
    >>> import torch
    >>> import curvlab as cl
    >>> A = cl.DenseOperator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
    >>> sd = cl.spectral_density(A, seed=0)
    >>> sd.nodes.shape[0] == sd.num_probes, round(sd.dim * sd.moment(1), 6)  # trace estimate
    (True, 15.0)
    """

    nodes: Tensor
    weights: Tensor
    num_matvecs: int
    seed: int | None
    dim: int | None = None
    stopped: bool = False

    def __repr__(self) -> str:
        m = self.nodes.shape[1] if self.nodes.dim() == 2 else self.nodes.numel()
        live = self.nodes[self.weights > 0] if self.nodes.shape == self.weights.shape else None
        return (
            f"SpectralDensity(num_probes={self.num_probes}, nodes per probe={m}, support "
            f"{_range(live if live is not None else self.nodes)}, dim={self.dim}, "
            f"num_matvecs={self.num_matvecs}, seed={self.seed})"
        )

    @property
    def num_probes(self) -> int:
        """Number of probe vectors (rows of ``nodes``)."""
        return int(self.nodes.shape[0])

    def moment(self, p: int) -> float:
        r"""The ``p``-th moment ``(1/P) sum_p sum_i w_{p,i} t_{p,i}^p`` (estimates tr(A^p)/n)."""
        return float((self.weights * self.nodes**p).sum(dim=1).mean())

    def default_sigma(self) -> float:
        """Default broadening: 1% of the spread of the nodes (or of their scale)."""
        w = self.weights > 0
        lo = float(self.nodes[w].min()) if w.any() else 0.0
        hi = float(self.nodes[w].max()) if w.any() else 0.0
        spread = hi - lo
        if spread > 0:
            return 0.01 * spread
        return 0.01 * max(abs(hi), 1.0)

    def default_grid(self, num: int = 1000, sigma: float | None = None) -> Tensor:
        """An evenly spaced grid covering the nodes with a margin of ``5 sigma``."""
        sigma = self.default_sigma() if sigma is None else float(sigma)
        w = self.weights > 0
        lo = float(self.nodes[w].min()) - 5 * sigma
        hi = float(self.nodes[w].max()) + 5 * sigma
        return torch.linspace(lo, hi, num, dtype=self.nodes.dtype, device=self.nodes.device)

    def evaluate(
        self, grid: Tensor | Sequence[float] | None = None, sigma: float | None = None
    ) -> Tensor:
        r"""The density smoothed by a Gaussian kernel of width ``sigma``, on ``grid``.

        .. math:: \phi_\sigma(x) = \frac{1}{P} \sum_p \sum_i w_{p,i}
            \frac{1}{\sigma\sqrt{2\pi}} e^{-(x - t_{p,i})^2 / (2 \sigma^2)}

        integrates to one over the real line.

        Parameters
        ----------
        grid
            Points ``x`` (tensor, array or list); default :meth:`default_grid`.
        sigma
            Kernel width, positive; default :meth:`default_sigma`.

        Returns
        -------
        Tensor
            The density at ``grid``, same length, on the nodes' device.
        """
        if sigma is None:
            sigma = self.default_sigma()
        sigma = float(check_positive(sigma, "sigma", tensor_ok=True))
        if grid is None:
            grid = self.default_grid(sigma=sigma)
        x = torch.as_tensor(grid, dtype=self.nodes.dtype, device=self.nodes.device).reshape(-1)
        t = self.nodes.reshape(-1)
        w = self.weights.reshape(-1) / self.num_probes
        keep = w > 0
        t, w = t[keep], w[keep]
        out = torch.empty_like(x)
        norm = 1.0 / (sigma * math.sqrt(2 * math.pi))
        chunk = max(1, 2**22 // max(t.numel(), 1))
        for start in range(0, x.numel(), chunk):
            xs = x[start : start + chunk]
            z = (xs[:, None] - t[None, :]) / sigma
            out[start : start + chunk] = norm * (torch.exp(-0.5 * z * z) @ w)
        return out

    def plot(self, ax=None, **kwargs):
        """Plot the density with :func:`curvlab.plot.density` (keywords passed on)."""
        from ..plot import density

        return density(self, ax=ax, **kwargs)
