"""Stochastic estimators of the diagonal of a symmetric operator: Hutchinson and XDiag."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._progress import Callback, Progress
from .._public import public_dir
from .._random import Seed
from ._protocol import OperatorLike
from ._utils import defers_checks, rademacher
from .results import DiagonalResult
from .trace import _run_estimator, _xsketch

__all__ = ["diagonal", "DIAGONAL_METHODS"]

__dir__ = public_dir(globals())

#: Methods of :func:`diagonal`.
DIAGONAL_METHODS = ("hutchinson", "xdiag")


def _columns_mean_and_error(E: Tensor) -> tuple[Tensor, Tensor]:
    m = E.shape[1]
    mean = E.mean(dim=1)
    if m < 2:
        return mean, torch.full_like(mean, math.nan)
    return mean, E.std(dim=1, correction=1) / math.sqrt(m)


def _running(Z: Tensor):
    """The callback's running estimate for Hutchinson probes ``Z`` (device tensors)."""
    return lambda AZ: _columns_mean_and_error(Z[:, : AZ.shape[1]] * AZ)


def _hutchinson_of(Z: Tensor, AZ: Tensor, used: int | None = None):
    est, err = _columns_mean_and_error(Z[:, : AZ.shape[1]] * AZ)
    return est, err, AZ.shape[1] if used is None else used, "hutchinson"


def _hutchinson(op, n, m, gen, run):
    Z = rademacher((n, m), gen, op.dtype, op.device)
    return _hutchinson_of(Z, run.apply(Z, _running(Z), last=True))


def _xdiag(op, n, m, gen, run):
    exact = "read the diagonal of op.to_dense()."
    Om, Y, Q, R, Z, Sm = _xsketch(op, n, m, gen, run, "xdiag", exact, _running)
    if run.stopped:  # the sketch vectors are Rademacher probes: a Hutchinson estimate
        return _hutchinson_of(Om, Y, run.products)
    s = Om.shape[1]
    dQZ = (Q * Z).sum(dim=1)
    if Sm is None:  # rank(A) < s: Q spans range(A), so diag(Q Q^T A) is the diagonal itself
        return dQZ, torch.zeros_like(dQZ), 2 * s, "xdiag"
    T = Z.T @ Om  # column i: Q^T A omega_i
    QS, ZS = Q @ Sm, Z @ Sm
    # leave-one-out estimate i: diag(Q_i Q_i^T A) + omega_i * ((I - Q_i Q_i^T) A omega_i),
    # with Q_i Q_i^T = Q Q^T - (Q s_i)(Q s_i)^T
    E = (
        dQZ[:, None]
        - QS * ZS
        + Om * Y
        - Om * (Q @ T)
        + Om * (QS * (Sm * T).sum(dim=0, keepdim=True))
    )
    est, err = _columns_mean_and_error(E)
    return est, err, 2 * s, "xdiag"


@defers_checks
def diagonal(
    op: OperatorLike,
    *,
    num_matvecs: int = 100,
    method: str = "hutchinson",
    seed: Seed = None,
    batch_size: int | None = None,
    callback: Callback = None,
    progress: Progress = False,
) -> DiagonalResult:
    r"""Estimate the diagonal of a symmetric operator from matrix-vector products.

    ``"hutchinson"`` (default)
        ``mean_i z_i * (A z_i)`` over Rademacher probes (Bekas, Kokiopoulou and Saad 2007),
        the estimator behind AdaHessian and Sophia. Unbiased; entry ``j`` has variance
        ``sum_{l != j} A_jl^2 / m``. ``std_error`` is the entry-wise sample standard
        deviation over ``sqrt(m)``.
    ``"xdiag"``
        XDiag (Epperly, Tropp and Webber 2024): ``m/2`` vectors sketch the range and serve
        as leave-one-out probes of the remainder, as in XTrace. Unbiased; far more accurate
        than Hutchinson when the matrix has a few dominant eigenvalues (exact when its rank
        is below ``m/2``). ``std_error`` is the spread of the leave-one-out estimates over
        ``sqrt(m/2)`` (a heuristic).

    Parameters
    ----------
    op
        A symmetric operator: a :class:`~curvlab.CurvatureOperator` or anything with
        ``shape``, ``dtype``, ``device`` and ``@`` (:class:`~curvlab.OperatorLike`).
    num_matvecs
        Budget of operator products (XDiag uses an even number, at least 4).
    method
        ``"hutchinson"`` or ``"xdiag"``.
    seed
        Seed of the random vectors (int or :class:`torch.Generator`).
    batch_size
        Largest number of columns multiplied at once (default: all).
    callback
        ``None`` (default) or ``callback(iterate)``, called after every block of products
        (``batch_size`` columns, or a whole phase of the method) with a
        :class:`curvlab.Iterate`: ``products`` so far, ``estimate`` and
        ``residual`` (the entry-wise standard error) as device tensors, the ones the result
        would hold if stopped there, and after the last block the final estimate. Returning
        ``True`` stops the estimator: the result has ``stopped=True`` and the estimate of the
        products done (XDiag stopped before its sketch is complete returns the Hutchinson
        estimate of its sketch vectors, with ``method="hutchinson"``).
    progress
        ``False`` (default): silent. ``True``: a progress bar on a terminal (products out of
        the budget), plain lines in a log; or a callable ``progress(done, total, info)``.

    Returns
    -------
    DiagonalResult

    Examples
    --------
    >>> import torch
    >>> from curvlab import DenseOperator, diagonal
    >>> A = DenseOperator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
    >>> diagonal(A, num_matvecs=1, seed=0).estimate  # exact for a diagonal matrix
    tensor([1., 2., 3., 4., 5.], dtype=torch.float64)
    """
    fn = {"hutchinson": _hutchinson, "xdiag": _xdiag}  # DIAGONAL_METHODS
    est, err, used, name, used_seed, stopped = _run_estimator(
        op, fn, method, num_matvecs, seed, batch_size, callback, progress, "diagonal"
    )
    return DiagonalResult(
        estimate=est,
        std_error=err,
        num_matvecs=used,
        method=name,
        seed=used_seed,
        stopped=stopped,
    )
