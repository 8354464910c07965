"""The spectral gap between the two largest eigenvalues."""

from __future__ import annotations

import math

import torch

from .._progress import Callback, Progress, check_callback
from .._public import public_dir
from .._random import Seed
from ._protocol import OperatorLike
from ._utils import check_operator, defers_checks
from .lanczos import eigsh
from .results import SpectralGap

__all__ = ["spectral_gap"]

__dir__ = public_dir(globals())


@defers_checks
def spectral_gap(
    op: OperatorLike,
    *,
    tol: float = 1e-6,
    seed: Seed = None,
    max_matvecs: int | None = None,
    callback: Callback = None,
    progress: Progress = False,
) -> SpectralGap:
    r"""The two largest algebraic eigenvalues, their difference and their ratio.

    Study C reports the "spectral gap" of the Hessian as the ratio ``lambda1 / lambda2``
    (and the difference). Both eigenvalues come from one :func:`~curvlab.eigsh` call
    (``k=2, which="LA", criterion="residual"``), with their residuals; unlike the power
    iteration of the original studies, they are the largest *signed* eigenvalues, not the
    largest in magnitude.

    Parameters
    ----------
    op
        A symmetric operator with ``n >= 2``: a :class:`~curvlab.CurvatureOperator` or
        anything with ``shape``, ``dtype``, ``device`` and ``@`` (:class:`~curvlab.OperatorLike`).
    tol
        Relative residual tolerance passed to :func:`~curvlab.eigsh`.
    seed
        Seed of the eigensolver's start vector (int or :class:`torch.Generator`).
    max_matvecs
        Product budget passed to :func:`~curvlab.eigsh`.
    callback, progress
        Passed to :func:`~curvlab.eigsh` (see there). A callback that stops the run gives a
        result with ``stopped=True``, ``converged`` telling whether both residuals met ``tol``
        and, when eigsh had only one Ritz pair then, ``lambda2`` (and ``ratio``, ``difference``)
        NaN. Unused for ``n == 2`` (two products, no iteration).

    Returns
    -------
    SpectralGap
        ``ratio`` is ``inf`` (or ``nan``) when ``lambda2 == 0``: the ratio is only
        meaningful when both eigenvalues are clearly positive.

    Examples
    --------
    >>> import torch
    >>> from curvlab import DenseOperator, spectral_gap
    >>> A = DenseOperator(torch.diag(torch.tensor([4.0, 2.0, 1.0, 0.5], dtype=torch.float64)))
    >>> gap = spectral_gap(A, seed=0)
    >>> round(gap.lambda1, 6), round(gap.lambda2, 6), round(gap.ratio, 6)
    (4.0, 2.0, 2.0)
    """
    n = check_operator(op)
    check_callback(callback)
    if n < 2:
        raise ValueError("spectral_gap needs an operator with n >= 2.")
    if n == 2:
        # two products give the matrix (the protocol has no to_dense)
        A = op @ torch.eye(2, dtype=op.dtype, device=op.device)
        ev, U = torch.linalg.eigh(0.5 * (A + A.T))
        res = torch.linalg.vector_norm(op @ U - U * ev, dim=0)
        lam2, lam1 = float(ev[0]), float(ev[1])
        residuals = res.flip(0)
        converged = bool((residuals <= tol * ev.flip(0).abs()).all())
        num_matvecs, used_seed, stopped = 4, None, False
    else:
        r = eigsh(
            op,
            k=2,
            which="LA",
            tol=tol,
            seed=seed,
            max_matvecs=max_matvecs,
            criterion="residual",
            callback=callback,
            progress=progress,
        )
        if r.eigenvalues.numel() < 2:  # a callback stopped eigsh before it had two Ritz pairs
            nan = torch.full((2 - r.eigenvalues.numel(),), math.nan, dtype=r.residuals.dtype)
            lam1 = float(r.eigenvalues[-1]) if r.eigenvalues.numel() else math.nan
            lam2 = math.nan
            residuals = torch.cat([r.residuals.flip(0), nan.to(r.residuals.device)])
        else:
            lam2, lam1 = float(r.eigenvalues[0]), float(r.eigenvalues[1])
            residuals = r.residuals.flip(0)
        num_matvecs, converged, used_seed = r.num_matvecs, r.converged, r.seed
        stopped = bool(getattr(r, "stopped", False))
    if math.isnan(lam2):
        ratio = math.nan
    elif lam2 != 0:
        ratio = lam1 / lam2
    else:
        ratio = math.copysign(math.inf, lam1) if lam1 != 0 else math.nan
    return SpectralGap(
        lambda1=lam1,
        lambda2=lam2,
        difference=lam1 - lam2,
        ratio=ratio,
        residuals=residuals,
        num_matvecs=num_matvecs,
        converged=converged,
        seed=used_seed,
        stopped=stopped,
    )
