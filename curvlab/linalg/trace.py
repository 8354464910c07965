"""Stochastic trace estimators: Hutchinson, Hutch++ and XTrace."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_int
from .._random import Seed, make_generator
from ._protocol import OperatorLike
from ._utils import check_finite_end, check_operator, defers_checks, matmul, rademacher
from .results import TraceResult

__all__ = ["trace", "TRACE_METHODS"]

#: Methods of :func:`trace`.
TRACE_METHODS = ("hutch++", "hutchinson", "xtrace")


def _apply(op, V: Tensor, batch_size: int | None) -> Tensor:
    """``op @ V`` in column chunks of ``batch_size`` (all at once for ``None``); no host
    synchronization per chunk."""
    if batch_size is None or V.shape[1] <= batch_size:
        return matmul(op, V)
    return torch.cat(
        [matmul(op, V[:, i : i + batch_size]) for i in range(0, V.shape[1], batch_size)], dim=1
    )


def _run_estimator(op, methods: dict, method: str, num_matvecs, seed, batch_size):
    """Check the common arguments of :func:`trace` and :func:`diagonal`, then run
    ``methods[method](op, n, num_matvecs, gen, batch_size) -> (estimate, error, used)``.

    Returns ``(estimate, error, used, seed)`` with the integer seed that reproduces the run.
    """
    n = check_operator(op)
    num_matvecs = check_int(num_matvecs, "num_matvecs")
    if method not in methods:
        raise ValueError(f"method must be one of {tuple(methods)}, got {method!r}.")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size")
    gen, used_seed = make_generator(seed, op.device)
    est, err, used = methods[method](op, n, num_matvecs, gen, batch_size)
    # the products make no host synchronization: one check at the end (a NaN or Inf in a
    # product reaches the estimate), with the operator's own non-finite flag
    check_finite_end(op, est if isinstance(est, Tensor) else torch.tensor(est))
    return est, err, used, used_seed


def _mean_and_error(samples: Tensor) -> tuple[float, float]:
    m = samples.numel()
    mean = float(samples.mean())
    if m < 2:
        return mean, math.nan
    return mean, float(samples.std(correction=1)) / math.sqrt(m)


def _hutchinson(op, n, m, gen, batch_size):
    Z = rademacher((n, m), gen, op.dtype, op.device)
    samples = (Z * _apply(op, Z, batch_size)).sum(dim=0)
    est, err = _mean_and_error(samples)
    return est, err, m


def _hutchpp(op, n, m, gen, batch_size):
    if m < 3:
        raise ValueError(f"hutch++ needs num_matvecs >= 3, got {m}; use method='hutchinson'.")
    s = m // 3
    g = m - 2 * s
    S = rademacher((n, s), gen, op.dtype, op.device)
    Q, _ = torch.linalg.qr(_apply(op, S, batch_size))  # (n, min(n, s)) orthonormal
    G = rademacher((n, g), gen, op.dtype, op.device)
    G = G - Q @ (Q.T @ G)
    q = Q.shape[1]
    AB = _apply(op, torch.cat([Q, G], dim=1), batch_size)
    low_rank = float((Q * AB[:, :q]).sum())
    samples = (G * AB[:, q:]).sum(dim=0)
    est, err = _mean_and_error(samples)
    return low_rank + est, err, s + q + g


def _xsketch(op, n, m, gen, batch_size, method: str, exact: str):
    """The shared sketch of XTrace and XDiag from ``m // 2`` Rademacher vectors ``Om``.

    Returns ``(Om, Y, Q, R, Z, Sm)`` with ``Y = A Om = Q R``, ``Z = A Q`` and ``Sm`` the
    normalized columns of ``R^-T`` (``s_i``, that give the leave-one-out bases
    ``Q_i Q_i^T = Q (I - s_i s_i^T) Q^T``), or ``Sm = None`` when ``rank(A) < m // 2``:
    ``Q`` then spans ``range(A)`` and every leave-one-out sketch is exact. ``exact`` ends
    the error raised when ``m // 2 >= n``.
    """
    s = m // 2
    if s < 2:
        raise ValueError(f"{method} needs num_matvecs >= 4, got {m}; use method='hutchinson'.")
    if s >= n:
        raise ValueError(
            f"{method} needs num_matvecs / 2 < n = {n}; with that many products {exact}"
        )
    Om = rademacher((n, s), gen, op.dtype, op.device)
    Y = _apply(op, Om, batch_size)
    Q, R = torch.linalg.qr(Y)
    Z = _apply(op, Q, batch_size)  # A Q (= A^T Q: the operator is symmetric)
    d = torch.diagonal(R).abs()
    eps = torch.finfo(op.dtype).eps
    if float(d.min()) <= 100 * eps * s * float(d.max()):
        return Om, Y, Q, R, Z, None
    eye = torch.eye(s, dtype=R.dtype, device=R.device)
    Rinv = torch.linalg.solve_triangular(R, eye, upper=True)
    Sm = Rinv.T / torch.linalg.vector_norm(Rinv.T, dim=0, keepdim=True)
    return Om, Y, Q, R, Z, Sm


def _xtrace(op, n, m, gen, batch_size):
    exact = "compute the trace exactly from op.to_dense()."
    Om, Y, Q, R, Z, Sm = _xsketch(op, n, m, gen, batch_size, "xtrace", exact)
    s = Om.shape[1]
    H = Q.T @ Z
    H = 0.5 * (H + H.T)
    trH = float(torch.diagonal(H).sum())
    if Sm is None:  # rank(A) < s: Q^T A Q is exact
        return trH, 0.0, 2 * s
    Wm = Q.T @ Om  # column i: Q^T omega_i
    Cm = Wm - Sm * (Sm * Wm).sum(dim=0, keepdim=True)  # c_i = (I - s_i s_i^T) Q^T omega_i
    T = Z.T @ Om  # column i: Q^T A omega_i
    HC = H @ Cm
    ests = (
        trH
        - (Sm * (H @ Sm)).sum(dim=0)
        + (Om * Y).sum(dim=0)
        - (T * Cm).sum(dim=0)
        - (Cm * R).sum(dim=0)
        + (Cm * HC).sum(dim=0)
    )
    est, err = _mean_and_error(ests)
    return est, err, 2 * s


@defers_checks
def trace(
    op: OperatorLike,
    *,
    num_matvecs: int = 100,
    method: str = "hutch++",
    seed: Seed = None,
    batch_size: int | None = None,
) -> TraceResult:
    r"""Estimate the trace of a symmetric operator from matrix-vector products.

    ``"hutchinson"``
        The mean of ``z^T A z`` over ``num_matvecs`` Rademacher probes: unbiased, with
        variance ``2 (||A||_F^2 - sum_i A_ii^2) / m``, so the error shrinks like
        ``m^{-1/2}``. ``std_error`` is the sample standard deviation over ``sqrt(m)``.
    ``"hutch++"`` (default)
        Hutch++ (Meyer, Musco, Musco and Woodruff 2021): a third of the products sketch the
        range, ``Q = orth(A S)``; the trace on that range, ``tr(Q^T A Q)``, is exact (another
        third), and Hutchinson with the last third estimates the trace of the deflated
        ``(I - QQ^T) A (I - QQ^T)``. Unbiased; exact when ``rank(A) <= num_matvecs / 3``;
        for matrices with a decaying spectrum the error shrinks like ``m^{-1}`` instead of
        ``m^{-1/2}`` (on a flat spectrum it is about twice Hutchinson's, having fewer
        probes). ``std_error`` is that of the Hutchinson part, conditional on the
        sketch (the sketch's own randomness is not included).
    ``"xtrace"``
        XTrace (Epperly, Tropp and Webber 2024) with Rademacher vectors: ``m/2`` vectors
        both sketch and probe, and the estimate averages the ``m/2`` Hutch++ estimates that
        leave one vector out of the sketch and use it as the probe. Unbiased; on a decaying
        spectrum about twice as accurate as Hutch++ at the same number of products.
        ``std_error`` is the standard deviation of the leave-one-out estimates over
        ``sqrt(m/2)``, the estimate of the paper (a heuristic, since they are dependent).

    Products go through the operator in blocks (``op @ V``), the fast path of model-based
    operators.

    Parameters
    ----------
    op
        A symmetric operator: a :class:`~curvlab.CurvatureOperator` or anything with
        ``shape``, ``dtype``, ``device`` and ``@`` (:class:`~curvlab.OperatorLike`).
    num_matvecs
        Budget of operator products (``>= 3`` for Hutch++, ``>= 4`` for XTrace, which uses
        an even number).
    method
        ``"hutch++"``, ``"hutchinson"`` or ``"xtrace"``.
    seed
        Seed of the random vectors (int or :class:`torch.Generator`).
    batch_size
        Largest number of columns multiplied at once (default: all of a block), to bound
        memory on large models.

    Returns
    -------
    TraceResult

    Examples
    --------
    >>> import torch
    >>> from curvlab import DenseOperator, trace
    >>> A = DenseOperator(torch.ones(50, 50, dtype=torch.float64))  # rank 1, trace 50
    >>> res = trace(A, num_matvecs=9, seed=0)  # Hutch++ is exact for rank <= 9 / 3
    >>> round(res.estimate, 8), res.num_matvecs
    (50.0, 9)
    """
    fn = {"hutch++": _hutchpp, "hutchinson": _hutchinson, "xtrace": _xtrace}  # TRACE_METHODS
    est, err, used, used_seed = _run_estimator(op, fn, method, num_matvecs, seed, batch_size)
    return TraceResult(estimate=est, std_error=err, num_matvecs=used, method=method, seed=used_seed)
