"""Conjugate gradients for ``(A + damping I) x = b`` (Newton-type steps)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_int, check_nonneg, check_positive
from .._progress import Callback, Progress, check_callback, notify, progress_bar
from .._public import public_dir
from ._protocol import OperatorLike
from ._utils import defers_checks

__all__ = ["cg", "CGResult"]

__dir__ = public_dir(globals())


@dataclass(frozen=True)
class CGResult:
    """Result of :func:`cg`.

    Attributes
    ----------
    x : Tensor
        The (approximate) solution.
    num_iter : int
        CG iterations done (one operator product each).
    residual_norm : float
        ``||b - (A + damping I) x||`` at the end (the recursively updated residual).
    converged : bool
        ``residual_norm <= tol * ||b||``.
    indefinite : bool
        CG met a direction of non-positive curvature ``p^T (A + damping I) p <= 0`` and stopped
        there; ``x`` is then the last iterate before that direction (not a solution).
    stopped : bool
        ``True`` when a ``callback=`` stopped CG early (``converged`` then says whether the
        residual had reached the tolerance anyway).

    Examples
    --------
    >>> import torch
    >>> import curvlab as cl
    >>> A = cl.DenseOperator(torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)))
    >>> res = cl.cg(A, torch.ones(5, dtype=torch.float64))
    >>> res.converged, torch.allclose(A @ res.x, torch.ones(5, dtype=torch.float64))
    (True, True)
    """

    x: Tensor
    num_iter: int
    residual_norm: float
    converged: bool
    indefinite: bool
    stopped: bool = False

    def __repr__(self) -> str:
        return (
            f"CGResult(x={list(self.x.shape)}, num_iter={self.num_iter}, "
            f"residual_norm={self.residual_norm:.3g}, converged={self.converged}, "
            f"indefinite={self.indefinite}" + (", stopped=True)" if self.stopped else ")")
        )


@defers_checks
def cg(
    op: OperatorLike,
    b: Tensor,
    *,
    damping: float = 0.0,
    tol: float = 1e-8,
    max_iter: int | None = None,
    x0: Tensor | None = None,
    callback: Callback = None,
    progress: Progress = False,
) -> CGResult:
    r"""Solve :math:`(A + \text{damping}\, I) x = b` by conjugate gradients.

    CG needs a positive-definite system. If it finds a direction ``p`` with
    ``p^T (A + damping I) p <= 0`` it stops and reports ``indefinite=True`` instead of returning
    a meaningless iterate (truncated-Newton methods use the iterate reached up to there).

    Parameters
    ----------
    op
        A symmetric operator: a :class:`~curvlab.CurvatureOperator` or anything with
        ``shape``, ``dtype``, ``device`` and ``@`` (:class:`~curvlab.OperatorLike`).
    b
        Right-hand side, shape ``(n,)``.
    damping
        Non-negative shift added to the diagonal.
    tol
        Relative tolerance on the residual norm, ``||r|| <= tol ||b||``.
    max_iter
        Iteration cap (default ``n``, at most 10 n for safety).
    x0
        Starting point (default zero).
    callback
        ``None`` (default) or ``callback(iterate)``, called after every iteration with a
        :class:`curvlab.Iterate`: ``products`` so far, ``estimate`` the current
        iterate ``x`` and ``residual`` the recursive residual norm (device tensors). Returning
        ``True`` stops CG there; the result then has ``stopped=True``.
    progress
        ``False`` (default): silent. ``True``: a progress bar on a terminal (iterations out
        of ``max_iter``), plain lines in a log; or a callable ``progress(done, total, info)``.

    Returns
    -------
    CGResult

    Notes
    -----
    Each iteration makes one host transfer (its three decisions together); the product none.

    Examples
    --------
    >>> import torch
    >>> from curvlab import DenseOperator, cg
    >>> A = DenseOperator(torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64))
    >>> b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    >>> res = cg(A, b)
    >>> res.converged, torch.allclose(A.matrix @ res.x, b)
    (True, True)
    """
    n = op.shape[0]
    if b.dim() != 1 or b.shape[0] != n:
        raise ValueError(f"b must have shape ({n},), got {tuple(b.shape)}.")
    check_nonneg(damping, "damping", tensor_ok=True)
    check_positive(tol, "tol", tensor_ok=True)
    max_iter = n if max_iter is None else check_int(max_iter, "max_iter")
    if not torch.isfinite(b).all():
        raise ValueError("b has NaN or Inf entries.")
    check_callback(callback)

    def apply(v):
        out = op @ v
        return out + damping * v if damping else out

    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    num_iter = 1 if x0 is not None else 0
    b_norm = torch.linalg.vector_norm(b)
    if b_norm == 0:
        return CGResult(torch.zeros_like(b), 0, 0.0, True, False)
    threshold = tol * b_norm
    p = r.clone()
    rr = r @ r
    indefinite = stopped = False
    with progress_bar(progress, max_iter, "cg", "products") as bar:
        if float(torch.sqrt(rr)) > float(threshold):
            x, r, rr, num_iter, indefinite, stopped = _iterate(
                op, apply, x, r, p, rr, threshold, max_iter, num_iter, callback, bar
            )
    res = float(torch.sqrt(rr))
    return CGResult(
        x, num_iter, res, (not indefinite) and res <= float(threshold), indefinite, stopped
    )


def _iterate(op, apply, x, r, p, rr, threshold, max_iter, num_iter, callback, bar):
    """The CG loop of :func:`cg`; returns ``(x, r, rr, num_iter, indefinite, stopped)``."""
    indefinite = stopped = False
    for it in range(max_iter):
        Ap = apply(p)
        num_iter += 1
        pAp = p @ Ap
        alpha = rr / pAp
        x_new = x + alpha * p
        r_new = r - alpha * Ap
        rr_new = r_new @ r_new
        # the iteration's one transfer: non-finite, non-positive curvature, converged
        flag = getattr(op, "nonfinite_flag", None)
        flag = flag if isinstance(flag, Tensor) else torch.zeros((), dtype=torch.bool)
        decisions = [~torch.isfinite(pAp), pAp <= 0, torch.sqrt(rr_new) <= threshold]
        bad, neg, conv, flagged = torch.stack([*decisions, flag.to(pAp.device)]).tolist()
        if flagged and callable(getattr(op, "raise_nonfinite", None)):
            op.raise_nonfinite()
        if bad or flagged:
            raise ValueError("the operator returned NaN or Inf during CG.")
        if neg:
            indefinite = True
            break
        p = r_new + (rr_new / rr) * p
        x, r, rr = x_new, r_new, rr_new
        bar.update(1)
        if notify(callback, it + 1, num_iter, x, torch.sqrt(rr)):
            stopped = not conv
            break
        if conv:
            break
    return x, r, rr, num_iter, indefinite, stopped
