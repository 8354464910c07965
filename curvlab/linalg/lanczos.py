"""The Lanczos process and a restarted Lanczos eigensolver for symmetric operators.

:func:`lanczos` runs the plain three-term recurrence (with full reorthogonalization by
default) and returns the tridiagonal matrix; :func:`eigsh` finds a few extreme eigenpairs with
a thick-restart block Lanczos method.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, check_nonneg
from .._progress import Callback, Progress, check_callback, notify, progress_bar
from .._public import public_dir
from .._random import Seed, make_generator
from ._protocol import OperatorLike
from ._utils import (
    check_operator,
    check_packet,
    defers_checks,
    finite_packet,
    gaussian,
    product,
    to_device,
    to_host,
    warn_unconverged,
    work_dtype,
)
from .results import EigenResult, LanczosResult

__all__ = ["lanczos", "eigsh", "WHICH"]
__dir__ = public_dir(globals())

#: The spectrum ends :func:`eigsh` can target.
WHICH = ("LA", "SA", "LM", "BE")

#: The stopping rules of :func:`eigsh`.
CRITERIA = ("eigenvalue", "residual")


def _breakdown_threshold(dtype: torch.dtype, n: int) -> float:
    """Relative size (to ``||A||``) below which a new Krylov direction counts as zero.

    ``dtype`` is the product's: for float16/bfloat16 products (whose rounding is the noise
    floor, about ``eps ||A||``) a few ``eps``, not the ``100 eps`` margin of float32/64."""
    eps = float(torch.finfo(dtype).eps)
    if dtype not in (torch.float32, torch.float64):
        return 3.0 * eps
    return eps * max(100.0, 10.0 * math.sqrt(n))


# ------------------------------------------------------------------------------------------
# plain Lanczos (several independent recurrences at once)
# ------------------------------------------------------------------------------------------
def _lanczos_batched(
    op,
    V0: Tensor,
    num_iter: int,
    *,
    reorthogonalize: bool = True,
    keep_basis: bool = False,
    bar=None,
    callback=None,
):
    """Run ``P`` independent Lanczos recurrences, one per column of ``V0``, as one block.

    Each step multiplies the operator once by the ``(n, P')`` block of the recurrences still
    running. A recurrence stops (and leaves the block) when its Krylov space becomes
    invariant, that is when the new direction is zero to rounding.

    The bookkeeping runs in :func:`~curvlab.linalg._utils.work_dtype` (float32 for a half
    precision operator), on the operator's device. Reorthogonalization is batched over the
    recurrences (two ``bmm`` per Gram-Schmidt pass, no Python loop over probes), and each step
    makes one host transfer: the stop flags and the finiteness of the step's values (with
    the operator's non-finite flag).

    Returns ``alpha (P, m)``, ``beta (P, m)`` (``beta[:, i]`` is the norm after step ``i``),
    ``lengths`` (steps done per recurrence, a host ``numpy`` array), ``broken`` (host, stopped
    by an invariant subspace), the basis ``(P, m, n)`` (probe-major: row ``i`` of
    ``basis[p]`` is the ``i``-th Lanczos vector of recurrence ``p``) or ``None``, the
    number of products, and whether ``callback`` stopped the run (it receives an
    :class:`~curvlab.Iterate` after every step: the step's ``alpha`` as the estimate and its
    ``beta`` as the residual, device tensors).
    """
    n, P = V0.shape
    device = V0.device
    dtype = work_dtype(V0.dtype)
    m = min(num_iter, n)
    V0 = V0.to(dtype)
    norms = torch.linalg.vector_norm(V0, dim=0)
    if bool((norms == 0).any()):
        raise ValueError("a start vector is zero; pass non-zero start vectors.")
    Q = V0 / norms
    store = reorthogonalize or keep_basis
    basis = torch.zeros((P, m, n), dtype=dtype, device=device) if store else None
    alpha = torch.zeros((P, m), dtype=dtype, device=device)
    beta = torch.zeros((P, m), dtype=dtype, device=device)
    q_prev = torch.zeros_like(Q)
    b_prev = torch.zeros(P, dtype=dtype, device=device)
    anorm = torch.zeros(P, dtype=dtype, device=device)
    active = np.ones(P, dtype=bool)
    lengths = np.zeros(P, dtype=np.int64)
    broken = np.zeros(P, dtype=bool)
    # the product's precision sets the size of a zero direction
    rel = _breakdown_threshold(op.dtype, n)
    tiny = torch.finfo(dtype).tiny
    num_matvecs = 0
    stopped = False
    for i in range(m):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        if store:
            basis[:, i] = Q.T
        if idx.size == P:
            Wm = product(op, Q, dtype)
        else:
            idx_d = torch.from_numpy(idx).to(device)
            Wm = torch.zeros_like(Q)
            Wm[:, idx_d] = product(op, Q[:, idx_d], dtype)
        num_matvecs += int(idx.size)
        if bar is not None:
            bar.update(int(idx.size), step=i + 1)
        a = (Q * Wm).sum(dim=0)
        Wm = Wm - a * Q - b_prev * q_prev
        if reorthogonalize:
            B = basis[:, : i + 1]  # (P, i + 1, n)
            w = Wm.T.unsqueeze(2)  # (P, n, 1)
            for _ in range(2):  # classical Gram-Schmidt twice ("twice is enough")
                w = w - torch.bmm(B.transpose(1, 2), torch.bmm(B, w))
            Wm = w.squeeze(2).T
        b = torch.linalg.vector_norm(Wm, dim=0)
        alpha[:, i] = a
        beta[:, i] = b
        anorm = torch.maximum(anorm, a.abs() + b + b_prev)
        stop = (b <= rel * anorm) | (b <= tiny)
        # the step's one transfer: stop flags, finiteness (NaN in a product reaches a and b)
        host = to_host(torch.cat([stop.to(torch.float64), finite_packet(op, a, b)]))
        check_packet(op, host[P], host[P + 1])
        stop_h = host[:P] != 0
        lengths[active] = i + 1
        broken |= active & stop_h
        active &= ~stop_h
        b_safe = torch.where(stop, torch.ones_like(b), b)
        q_prev, Q = Q, torch.where(stop, torch.zeros_like(Wm), Wm / b_safe)
        b_prev = torch.where(stop, torch.zeros_like(b), b)
        if callback is not None and notify(callback, i + 1, num_matvecs, a, b, step=i + 1):
            stopped = True
            break
    return alpha, beta, lengths, broken, basis, num_matvecs, stopped


@defers_checks
def lanczos(
    op: OperatorLike,
    num_iter: int,
    *,
    v0: Tensor | None = None,
    seed: Seed = None,
    reorthogonalize: bool = True,
) -> LanczosResult:
    r"""Run ``num_iter`` steps of the Lanczos process on a symmetric operator.

    Builds an orthonormal basis ``V`` of the Krylov space
    ``span(v0, A v0, ..., A^{m-1} v0)`` and the tridiagonal ``T = V^T A V``, with
    ``A V = V T + r e_m^T``. The eigenvalues of ``T`` (Ritz values) approximate the extreme
    eigenvalues of ``A``; the squared first components of its eigenvectors are the Gauss
    quadrature weights of the start vector's spectral measure (see
    :meth:`LanczosResult.quadrature`).

    Parameters
    ----------
    op
        A symmetric operator: a :class:`~curvlab.CurvatureOperator` or anything with
        ``shape``, ``dtype``, ``device`` and ``@`` (:class:`~curvlab.OperatorLike`).
    num_iter
        Number of steps ``m`` (one product each), ``>= 1``. The process stops earlier when
        the Krylov space becomes invariant (at the latest after ``n`` steps); the result is
        then exact.
    v0
        Start vector ``(n,)`` (normalized internally); default a Gaussian random vector.
    seed
        Seed for the random start vector (int or :class:`torch.Generator`).
    reorthogonalize
        Full reorthogonalization of every new vector against the basis (twice). Without it
        the basis loses orthogonality once Ritz values converge and ``T`` acquires spurious
        copies of them; memory is ``O(n m)`` either way since the basis is returned.

    Returns
    -------
    LanczosResult
        On the operator's device. ``alpha``, ``beta`` and ``basis`` are in the operator's
        dtype, or in float32 for a float16/bfloat16 operator: the recurrence runs in float32
        or higher whatever the product's dtype (a half-precision basis loses orthogonality).

    Notes
    -----
    Each step makes one host transfer (the stop decision and the finiteness of the step's
    values, with the operator's ``nonfinite_flag`` if it has one); the product itself makes
    none.

    Examples
    --------
    >>> import torch
    >>> from curvlab import DenseOperator, lanczos
    >>> A = DenseOperator(torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64)))
    >>> res = lanczos(A, 10, seed=0)
    >>> torch.allclose(res.ritz()[0], torch.arange(1.0, 11.0, dtype=torch.float64))
    True
    """
    n = check_operator(op)
    num_iter = check_int(num_iter, "num_iter")
    wd = work_dtype(op.dtype)
    if v0 is None:
        gen, used_seed = make_generator(seed, op.device)
        v = gaussian((n, 1), gen, wd, op.device)
    else:
        used_seed = None
        if not isinstance(v0, Tensor) or v0.shape != (n,):
            raise ValueError(f"v0 must be a tensor of shape ({n},).")
        v = v0.to(dtype=wd, device=op.device).reshape(n, 1)
        if not bool(torch.isfinite(v).all()):
            raise ValueError("v0 has NaN or Inf entries.")
    alpha, beta, lengths, broken, basis, nmv, _ = _lanczos_batched(
        op, v, num_iter, reorthogonalize=reorthogonalize, keep_basis=True
    )
    m = int(lengths[0])
    res_norm = 0.0 if broken[0] else float(beta[0, m - 1])
    return LanczosResult(
        alpha=alpha[0, :m].clone(),
        beta=beta[0, : m - 1].clone(),
        basis=basis[0, :m].T.contiguous(),
        residual_norm=res_norm,
        num_matvecs=nmv,
        seed=used_seed,
    )


# ------------------------------------------------------------------------------------------
# restarted block Lanczos eigensolver
# ------------------------------------------------------------------------------------------
def _host_eigh(H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``eigh`` of a small host matrix through torch's LAPACK, not numpy's.

    numpy's BLAS keeps its own thread pool spinning after each call; alternating it with
    torch's pool on every iteration stalled the large products of the next iteration (eigsh
    k=10 on n=26k: 11 ms per product instead of 1). Host arrays in, host arrays out (no
    device involved: the conversions go through DLPack, without a copy)."""
    theta, Y = torch.linalg.eigh(torch.from_numpy(np.ascontiguousarray(H)))
    return np.from_dlpack(theta), np.from_dlpack(Y)


def _host_svd(Z: np.ndarray, full_matrices: bool = False):
    """``svd`` of a small host matrix through torch (see :func:`_host_eigh`)."""
    Zt = torch.from_numpy(np.ascontiguousarray(Z))
    U, S, Vh = torch.linalg.svd(Zt, full_matrices=full_matrices)
    return np.from_dlpack(U), np.from_dlpack(S), np.from_dlpack(Vh)


def _tall_mm(A: Tensor, B: Tensor) -> Tensor:
    """``A @ B`` for a tall ``A (n, j)`` and a small ``B (j, c)``, computed as
    ``(B^T A^T)^T``: on CPU this picks a kernel 2-6x faster for the column-major bases used
    here (and is no slower for row-major ones)."""
    if B.dim() == 1:
        return A @ B
    return (B.T @ A.T).T


def _priority(theta: np.ndarray, which: str, count: int) -> np.ndarray:
    """Indices of the ``count`` most wanted Ritz values (a host array), most wanted first."""
    count = min(count, theta.size)
    if which == "LA":
        order = np.argsort(-theta, kind="stable")
    elif which == "SA":
        order = np.argsort(theta, kind="stable")
    elif which == "LM":
        order = np.argsort(-np.abs(theta), kind="stable")
    else:  # BE: alternate between the top and the bottom, starting at the top
        asc = np.argsort(theta, kind="stable")
        picks = []
        lo, hi = 0, asc.size - 1
        while lo <= hi:
            picks.append(asc[hi])
            hi -= 1
            if lo <= hi:
                picks.append(asc[lo])
                lo += 1
        order = np.asarray(picks, dtype=np.int64)
    return order[:count]


def _project_out(f: Tensor, bases: list[Tensor], passes: int) -> Tensor:
    """``f`` minus its components along the orthonormal columns of each basis in ``bases``,
    in turn, repeated ``passes`` times (classical Gram-Schmidt with reorthogonalization)."""
    for _ in range(passes):
        for B in bases:
            if B.shape[1]:
                f = f - _tall_mm(B, B.T @ f)
    return f


def _random_block(bases: list[Tensor], c: int, gen, n: int, dtype, device) -> Tensor:
    """``c`` random orthonormal columns orthogonal to every basis in ``bases`` (no host
    synchronization: the caller leaves room, so the block has full rank)."""
    if c <= 0:
        return torch.zeros((n, 0), dtype=dtype, device=device)
    G = _project_out(gaussian((n, c), gen, dtype, device), bases, passes=2)
    return torch.linalg.qr(G)[0]


def _orthonormalize_robust(F: Tensor, bases: list[Tensor], thresh: float, gen):
    """``F = Q R`` column by column after an invariant subspace was found (rare: it reads a
    norm per column back to the host). A column that is zero to ``thresh`` is replaced by a
    random direction orthogonal to ``bases`` and to the columns before it (its ``R`` row is
    then zero to rounding). Returns ``Q (n, r)`` and ``R (r, c)`` on the device."""
    n, c = F.shape
    room = n - sum(B.shape[1] for B in bases)
    cols: list[Tensor] = []
    for i in range(min(c, room)):
        done = [torch.stack(cols, dim=1)] if cols else []
        f = _project_out(F[:, i], done, passes=2)
        nrm = float(torch.linalg.vector_norm(f))
        if nrm > thresh:
            cols.append(f / nrm)
            continue
        g = _project_out(gaussian((n,), gen, F.dtype, F.device), [*bases, *done], passes=3)
        cols.append(g / torch.linalg.vector_norm(g))
    Q = torch.stack(cols, dim=1) if cols else F[:, :0]
    return Q, Q.T @ F


def _check_which(which: str) -> None:
    if which not in WHICH:
        raise ValueError(
            f"which must be one of {WHICH} (largest algebraic, smallest algebraic, largest "
            f"magnitude, both ends), got {which!r}."
        )


def _start_block(v0, n: int, b: int) -> Tensor:
    """``v0`` (a vector, a block or an :class:`EigenResult`) as an ``(n, c)`` block, ``c <= b``."""
    if isinstance(v0, EigenResult):
        if v0.eigenvectors is None:
            raise ValueError(
                "v0 is an EigenResult without eigenvectors; compute it with "
                "return_eigenvectors=True."
            )
        X = v0.eigenvectors
        if X.dim() != 2 or X.shape[0] != n:
            raise ValueError(f"v0's eigenvectors have shape {tuple(X.shape)}, not ({n}, c).")
        c = X.shape[1]
        if c > b:  # fold the eigenvectors into b columns: column i goes to column i mod b
            groups = torch.arange(c, device=X.device) % b
            Z = torch.zeros((n, b), dtype=X.dtype, device=X.device)
            X = Z.index_add_(1, groups, X)
        return X
    if not isinstance(v0, Tensor):
        raise TypeError("v0 must be a tensor or an EigenResult.")
    v0m = v0[:, None] if v0.dim() == 1 else v0
    if v0m.dim() != 2 or v0m.shape[0] != n or v0m.shape[1] > b:
        raise ValueError(f"v0 must have shape ({n},) or ({n}, c) with c <= {b}.")
    return v0m


def _eigenvalue_errors(
    theta: np.ndarray, sel: np.ndarray, res: np.ndarray, res_all: np.ndarray | None = None
) -> np.ndarray:
    """Error estimates of the Ritz values ``theta[sel]`` whose residuals are ``res``.

    ``res^2 / gap`` (the eigenvalue error of a Rayleigh quotient, Kato-Temple) where the
    residual is below half the gap, else the residual itself (Bauer-Fike, always valid).
    ``gap`` is the distance to the nearest other Ritz value, reduced by that Ritz value's own
    residual (``res_all``, where given): an eigenvalue of the operator lies within its residual
    of every Ritz value, so an unconverged neighbour (large residual) cannot make the gap look
    wider than it may be. This is the check for missed eigenvalues next to the wanted ones.
    """
    if theta.size <= 1:
        return res.copy()
    d = np.abs(theta[sel][:, None] - theta[None, :])
    if res_all is not None:
        d = np.maximum(d - res_all[None, :], 0.0)
    d[np.arange(sel.size), sel] = np.inf
    gap = d.min(axis=1)
    trusted = res < 0.5 * gap
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(trusted, res**2 / np.where(trusted, gap, 1.0), res)


#: Basis size below which eigsh does not trust the gap between Ritz values (a Krylov space
#: of a few vectors has not yet resolved eigenvalues next to the wanted ones: on clustered
#: spectra a gap estimate from 3-4 vectors certified values 3e-5..2e-3 off; from 6 on, none
#: of 360 test spectra was certified wrongly at tol 1e-6).
_MIN_BASIS_FOR_GAP = 6


def _gradient_start(op, n: int) -> Tensor:
    """The operator's loss gradient (flat), for ``v0="gradient"``."""
    grad = getattr(op, "gradient", None)
    if grad is None:
        raise TypeError(
            f"v0='gradient' needs an operator with a loss gradient (a curvlab "
            f"EmpiricalRiskOperator such as HessianOperator or GGNOperator); "
            f"{type(op).__name__} has none. Pass a tensor or an EigenResult as v0."
        )
    g = grad()
    if not isinstance(g, Tensor) or g.shape != (n,):
        raise ValueError(f"op.gradient() must return a tensor of shape ({n},).")
    return g


def _ratios(res: np.ndarray, goal: np.ndarray, floor: float) -> np.ndarray:
    """``res / max(goal, floor)``, with ``0 / 0 = 0`` (a zero operator)."""
    den = np.maximum(goal, floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den > 0, res / np.where(den > 0, den, 1.0), np.where(res > 0, np.inf, 0.0))
    return r


@defers_checks
def eigsh(
    op: OperatorLike,
    k: int = 1,
    *,
    which: str = "LA",
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    seed: Seed = None,
    return_eigenvectors: bool = True,
    v0: Tensor | EigenResult | str | None = None,
    block_size: int | None = None,
    ncv: int | None = None,
    check_multiplicity: bool = True,
    progress: Progress = False,
    criterion: str = "eigenvalue",
    callback: Callback = None,
) -> EigenResult:
    r"""A few extreme eigenpairs of a symmetric operator by thick-restart block Lanczos.

    The method builds an orthonormal basis of a (block) Krylov space with full
    reorthogonalization, takes Ritz pairs from the projected matrix, and when the basis is
    full restarts from the most wanted Ritz vectors plus the current residual block (thick
    restart; no information about the wanted end is discarded). By default it stops as soon
    as every wanted eigenvalue is certified to relative accuracy ``tol`` (its error estimate
    is at most ``tol * |theta|``; ``criterion="residual"`` asks the stricter
    ``||A x - theta x|| <= tol * |theta|`` instead), when the basis spans the whole space (the
    answer is then exact), or after ``max_matvecs`` products.

    Parameters
    ----------
    op
        A symmetric operator: a :class:`~curvlab.CurvatureOperator` or anything with
        ``shape``, ``dtype``, ``device`` and ``@`` (:class:`~curvlab.OperatorLike`).
    k
        Number of eigenpairs, ``1 <= k < n``. For all of them use
        ``torch.linalg.eigh(op.to_dense())``.
    which
        ``"LA"`` largest algebraic (default), ``"SA"`` smallest algebraic, ``"LM"`` largest
        magnitude, ``"BE"`` both ends (``k // 2`` from the bottom and the rest from the
        top, as in ARPACK; ``k = 1`` gives the largest).
    tol
        Relative accuracy. With ``criterion="eigenvalue"`` (default) eigenvalue ``i`` is
        converged when its error estimate ``e_i <= tol |lambda_i|``, where
        ``e_i = r_i^2 / gap_i`` once the residual ``r_i = ||A x_i - lambda_i x_i||`` is below
        half the gap ``gap_i`` to the nearest other Ritz value (less that value's residual,
        so that an unconverged neighbour cannot hide a nearby eigenvalue), and ``e_i = r_i``
        before (the Bauer-Fike bound, always valid). With ``criterion="residual"``: when
        ``r_i <= tol |lambda_i|`` (eigenvectors accurate to about ``tol |lambda_i| / gap``;
        30-60 % more products). Eigenvalues at (or within rounding of) zero cannot meet a
        relative tolerance: read their residuals instead.
    max_matvecs
        Budget of operator products (default ``max(20 ncv, 500)``).
    seed
        Seed of the random start block (int or :class:`torch.Generator`).
    return_eigenvectors
        Return the eigenvectors ``(n, k)`` (default) or ``None``.
    v0
        Warm start: a vector ``(n,)``, a block ``(n, c)`` with ``c <= block_size``, or a
        previous :class:`EigenResult` (of this operator or a nearby one, for instance the
        curvature at the previous training step), whose eigenvectors are used: as the start
        block when it has at most ``block_size`` of them, else folded into ``block_size``
        columns (column ``i`` is the sum of eigenvectors ``i, i + b, i + 2b, ...``; for the
        default ``block_size=1`` their sum). The block is completed with random columns.
        ``"gradient"``: the normalized loss gradient plus a seeded random unit vector, as the
        first column (an operator with ``gradient()``: the empirical-risk operators; free
        for a :class:`~curvlab.HessianOperator` whose graphs are kept, since the first
        product reuses them). Training concentrates the gradient on the top of the
        spectrum, so this start often halves the products of a top-1 search; the random
        part keeps every direction in the Krylov space.
    block_size
        Columns multiplied at once, ``b`` (default 1, the fewest products). Every step adds
        ``b`` new columns to the basis (block Lanczos), whatever ``k``. A larger block costs
        more products for the same accuracy but fewer, wider calls of the operator, which
        pays off where a block of columns costs little more than one column (models on a
        GPU).
    ncv
        Maximum basis size before a restart (default ``max(2k + 2b, 30)``, or ``n`` when
        ``n`` is at most twice that: small problems never restart and are solved exactly
        after at most ``n`` products).
    check_multiplicity
        For ``k > 1``: once every wanted pair has converged, inject a fresh random block and
        follow it for a further ``max(5, num_matvecs / 4)`` products (or until it spans an
        invariant subspace); go on iterating if a wanted Ritz value moves. A Krylov space
        from one start vector holds only one vector of each eigenspace, so without this
        check repeated eigenvalues are reported once and the next eigenvalue takes the
        place of the missing copies. Set ``False`` to save those products when the wanted
        eigenvalues are known to be simple.
    progress
        ``False`` (default): silent. ``True``: a progress bar on a terminal (products out of
        ``max_matvecs``), plain lines in a log. A callable ``progress(done, total, info)`` is
        called after every product block.
    criterion
        ``"eigenvalue"`` (default): stop on the certified eigenvalue error (see ``tol``).
        ``"residual"``: stop on the residual norms.
    callback
        ``callback(iterate)`` after every iteration with a :class:`~curvlab.Iterate`: the
        products so far, the wanted Ritz values (``estimate``, ascending) and their error
        estimates (``residual``; the residual estimates under ``criterion="residual"``), as
        host tensors. Returning ``True`` stops the run: the result is then the current Ritz
        pairs, with ``converged`` telling whether they met ``tol`` (no warning is issued).

    Returns
    -------
    EigenResult
        Eigenvalues in ascending algebraic order whatever ``which`` (the order of
        ``scipy.sparse.linalg.eigsh`` with eigenvectors), the matching unit eigenvectors,
        the residuals ``||A x - lambda x||`` (computed from stored products, not estimated),
        the eigenvalue error estimates the run stopped on (``eigenvalue_errors``, from those
        residuals), the number of products, whether every pair met the tolerance under
        ``criterion``, and the seed.
        Tensors are on the operator's device, in its dtype (float32 for a float16/bfloat16
        operator: the bookkeeping's precision).

    Raises
    ------
    ValueError
        ``k >= n``, unknown ``which``, non-square operator, bad ``tol``/``block_size``/
        ``ncv``/``max_matvecs``, or a non-finite product.

    Notes
    -----
    The method keeps the products ``W = A V`` next to the basis ``V`` (``2 ncv`` vectors of
    length ``n``) and computes the projected matrix ``V^T A V`` explicitly (classical
    Gram-Schmidt twice: four passes over the basis per step, the only ones). It also keeps
    the Krylov decomposition ``A V = V H + Q G``, where ``Q`` spans the residual directions
    not (yet) in the basis (the next block) and ``G`` is small, so the residual of a Ritz
    pair ``(theta, V y)`` is ``||G y||``: the iteration decides on this Lanczos estimate,
    from the projected problem alone. When the estimate meets ``tol``, the true residuals
    ``||A x - theta x||`` are computed from the stored products (two passes) and must
    confirm it; they are the ones reported. The decomposition stays exact through thick
    restarts and through the random block of the multiplicity check (whose residual
    directions are carried in ``Q``).

    The bookkeeping runs on the operator's device in its dtype, or in float32 for a
    float16/bfloat16 operator (only the products are in half precision). The small projected
    eigenproblems are solved in float64 on the host: each step makes one device-to-host
    transfer (the new column of the projected matrix, the residual block's coefficients, the
    finiteness of the product and the operator's ``nonfinite_flag`` if it has one), and a
    product none. A pair whose residual stalls at the rounding floor of the dtype (for
    instance an eigenvalue at zero) stops the iteration without meeting ``tol``:
    ``converged`` is then ``False``, and its residual tells how accurate it is.

    Examples
    --------
    >>> import torch
    >>> from curvlab import DenseOperator, eigsh
    >>> A = DenseOperator(torch.diag(torch.arange(100.0, dtype=torch.float64)))
    >>> res = eigsh(A, k=3, seed=0)
    >>> res.eigenvalues.round(decimals=4)
    tensor([97., 98., 99.], dtype=torch.float64)
    >>> res.converged, bool((res.eigenvalue_errors <= 1e-6 * res.eigenvalues.abs()).all())
    (True, True)

    A warm start from a previous result (for instance at the next training step) pays off
    when its eigenvectors are accurate, that is under the residual rule:

    >>> first = eigsh(A, k=3, seed=0, criterion="residual")
    >>> eigsh(A, k=3, seed=0, v0=first, criterion="residual").num_matvecs < first.num_matvecs
    True
    """
    n = check_operator(op)
    k = check_int(k, "k")
    _check_which(which)
    if k >= n:
        raise ValueError(
            f"k={k} must be smaller than n={n}; for all eigenvalues of a small operator use "
            "torch.linalg.eigh(op.to_dense())."
        )
    tol = float(check_nonneg(tol, "tol", tensor_ok=True))
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    check_callback(callback)
    if isinstance(v0, str) and v0 != "gradient":
        raise ValueError(f"v0 must be a tensor, an EigenResult or 'gradient', got {v0!r}.")
    if block_size is None:
        b = 1
    else:
        b = check_int(block_size, "block_size")
    b = min(b, n)
    if ncv is None:
        ncv = max(2 * k + 2 * b, 30)
        if n <= 2 * ncv:  # small problem: never restart, exact after at most n products
            ncv = n
    else:
        ncv = min(check_int(ncv, "ncv"), n)
        if ncv < n and ncv < k + b:
            raise ValueError(
                f"ncv={ncv} must be at least k + block_size = {k + b} (or n) to make room for "
                "a restart."
            )
    if max_matvecs is None:
        max_matvecs = max(20 * ncv, 500)
    else:
        max_matvecs = check_int(max_matvecs, "max_matvecs")

    device = op.device
    dtype = work_dtype(op.dtype)  # the bookkeeping's dtype
    gen, used_seed = make_generator(seed, device)

    # start block
    X0 = gaussian((n, b), gen, dtype, device)
    if isinstance(v0, str):  # "gradient": one host read of the norm, once per call
        g = _gradient_start(op, n).to(dtype=dtype, device=device)
        gnorm = torch.linalg.vector_norm(g)
        gn = float(gnorm)  # non-finite exactly when an entry of g is
        if not math.isfinite(gn):
            raise ValueError("v0='gradient': the loss gradient has NaN or Inf entries.")
        z = X0[:, 0]
        v = z / torch.linalg.vector_norm(z)
        if gn > 0:  # a zero gradient (a stationary point): the random start alone
            v = v + g / gnorm
        X0[:, 0] = v
    elif v0 is not None:
        v0m = _start_block(v0, n, b).to(dtype=dtype, device=device)
        if not bool(torch.isfinite(v0m).all()) or bool((v0m.abs().sum(0) == 0).any()):
            raise ValueError("v0 must be finite and non-zero.")
        X0[:, : v0m.shape[1]] = v0m
    # the product's precision sets the floors (products in half precision are the noise)
    eps = float(torch.finfo(op.dtype).eps)
    rel = _breakdown_threshold(op.dtype, n)
    floor_rel = 2 * eps
    # Residuals below this (relative to ||A||) may be at the floor that rounding in the
    # products sets: in float32 a Hessian-vector product summed over many samples carries
    # relative errors of 1e-5..1e-4, far above 100 eps. Such residuals count as stalled when
    # they stop halving for 10 iterations (instead of running to max_matvecs).
    stall_rel = max(100 * eps, eps**0.5)
    best_ratio, stalled = math.inf, 0
    Q0, _ = torch.linalg.qr(X0)

    # column-major storage: the first j columns are one contiguous block, so products with
    # V[:, :j] read j n numbers, not the whole basis
    V = torch.empty((ncv, n), dtype=dtype, device=device).T
    W = torch.empty((ncv, n), dtype=dtype, device=device).T
    H = np.zeros((ncv, ncv))  # the projected matrix V^T A V (host, float64)
    V[:, :b] = Q0
    j, p = b, 0
    # Krylov decomposition A V[:, :j] = V[:, :j] H[:j, :j] + Qo Go[:, :j]: Qo (n, ro)
    # orthonormal and orthogonal to the basis; Go on the host. Normally Qo is the last
    # residual block (the next block of the basis); the random block of the multiplicity
    # check parks the old one there until it is followed again.
    Qo = torch.zeros((n, 0), dtype=dtype, device=device)
    Go = np.zeros((0, ncv))
    nf = 0  # the last nf columns of Qo are the residual block of the latest product
    p_last = 0  # the latest product's columns are p_last:p
    num_matvecs = 0
    anorm = 0.0
    theta = Y = None
    correction = 1.0  # true / estimated residual ratio seen at a failed confirmation
    confirmed = False  # the true residuals have confirmed convergence
    final = None  # (sel, X, AX, residuals) computed at a confirmation, reused at the end
    # Multiplicity check: after convergence a fresh random block is injected and its Krylov
    # sequence followed for a while; if no wanted Ritz value moves, no copy was missed.
    verify_ref: np.ndarray | None = None
    verify_start = 0
    res_all = None  # residual estimates of every Ritz pair of the latest projected problem
    stopped = False  # by the callback
    iteration = 0
    bar = progress_bar(progress, max_matvecs, "eigsh", "products").__enter__()
    while True:
        nb = j - p
        budget = max_matvecs - num_matvecs
        if budget <= 0:
            break
        if nb > budget:  # the run ends after this product
            j = p + budget
            nb = budget
        final = None
        Wb = product(op, V[:, p:j], dtype)
        num_matvecs += nb
        bar.update(nb)
        W[:, p:j] = Wb
        Vj = V[:, :j]
        # projected matrix: H[:j, p:j] = V^T A V_new (classical Gram-Schmidt, twice)
        C = Vj.T @ Wb
        F = Wb - _tall_mm(Vj, C)
        C2 = Vj.T @ F
        F = F - _tall_mm(Vj, C2)
        C = C + C2
        parts = [C.reshape(-1)]
        ro = Qo.shape[1]
        if ro:  # residual directions parked outside the basis
            P1 = Qo.T @ F
            F = F - Qo @ P1
            P2 = Qo.T @ F
            F = F - Qo @ P2
            parts.append((P1 + P2).reshape(-1))
        if nb == 1:
            Rf = torch.linalg.vector_norm(F, dim=0, keepdim=True)
            Qf = F / torch.where(Rf > 0, Rf, torch.ones_like(Rf))
        else:
            Qf, Rf = torch.linalg.qr(F)
        parts.append(Rf.reshape(-1))
        parts.append(finite_packet(op, C, Rf))
        # the iteration's one device-to-host transfer
        host = to_host(torch.cat([t.to(torch.float64) for t in parts]))
        check_packet(op, host[-2], host[-1])
        C_h = host[: j * nb].reshape(j, nb)
        off = j * nb
        P_h = host[off : off + ro * nb].reshape(ro, nb)
        off += ro * nb
        R_h = host[off : off + nb * nb].reshape(nb, nb)
        H[:j, p:j] = C_h
        H[p:j, :p] = C_h[:p].T
        H[p:j, p:j] = 0.5 * (C_h[p:j] + C_h[p:j].T)
        theta, Y = _host_eigh(H[:j, :j])
        res_all = None
        iteration += 1
        anorm = max(anorm, float(np.abs(theta).max()), float(np.abs(C_h).max()))
        thresh = rel * max(anorm, 1e-300)
        if bool((np.abs(np.diagonal(R_h)) <= thresh).any()) and j < n:
            # an invariant subspace: replace the zero directions by random ones
            Qf, Rf = _orthonormalize_robust(F, [Vj, Qo], thresh, gen)
            R_h = to_host(Rf).reshape(Qf.shape[1], nb)
        # the new decomposition: Qo <- [Qo, Qf]
        Go[:, p:j] = P_h
        G_new = np.zeros((R_h.shape[0], ncv))
        G_new[:, p:j] = R_h
        Go = np.vstack([Go, G_new])
        Qo = torch.cat([Qo, Qf], dim=1)
        nf = Qf.shape[1]
        p_last, p = p, j
        if j >= n or num_matvecs >= max_matvecs:
            break
        sel = _priority(theta, which, k)
        wanted = theta[sel]
        Ysel = Y[:, sel]
        # the Lanczos residual estimates ||G y|| of every Ritz pair (no pass over the basis)
        res_all = np.linalg.norm(Go[:, :j] @ Y, axis=0) * correction
        res = res_all[sel]
        err = (
            _eigenvalue_errors(theta, sel, res, res_all)
            if criterion == "eigenvalue" and j >= _MIN_BASIS_FOR_GAP
            else res
        )
        goal = tol * np.abs(wanted)
        ratios = _ratios(err, goal, floor_rel * anorm)
        ratio = float(ratios.max())
        done = sel.size >= k and ratio <= 1
        by_stall = False
        if not done and sel.size >= k and float(res.max()) <= stall_rel * anorm:
            if ratio < 0.5 * best_ratio:
                best_ratio, stalled = ratio, 0
            else:
                stalled += 1
            done = by_stall = stalled >= 10
        elif not done:
            best_ratio, stalled = math.inf, 0
        if done and not confirmed:
            # confirm on the true residuals, from the stored products (two passes)
            order = np.argsort(wanted, kind="stable")
            Ys = to_device(Ysel[:, order], device, dtype)
            X = _tall_mm(Vj, Ys)
            AX = _tall_mm(W[:, :j], Ys)
            lam = to_device(wanted[order], device, dtype)
            true_res = torch.linalg.vector_norm(AX - X * lam, dim=0)
            true_h = to_host(true_res)
            true_err = (
                _eigenvalue_errors(theta, sel[order], true_h, res_all)
                if criterion == "eigenvalue" and j >= _MIN_BASIS_FOR_GAP
                else true_h
            )
            true_ratio = float(_ratios(true_err, goal[order], floor_rel * anorm).max())
            if true_ratio <= 1 or (by_stall and float(true_h.max()) <= stall_rel * anorm):
                confirmed = True
                final = (sel[order], X, AX, true_res)
            else:  # the estimate was optimistic: scale it, iterate on
                # (by the residuals: the eigenvalue errors are not linear in them)
                under = float(np.max(true_h / np.maximum(res[order], 1e-300)))
                correction *= max(2.0, under)
                best_ratio, stalled = math.inf, 0
                done = False
        if verify_ref is not None and verify_ref.size == wanted.size:
            slack = 2 * np.maximum(goal, err) + floor_rel * anorm
            # a missed eigenvalue showed up (a wanted value moved), or the wanted pairs no
            # longer meet tol (a new neighbour shrank the gap the estimate relied on):
            # iterate on normally
            if not done or bool((np.abs(wanted - verify_ref) > slack).any()):
                verify_ref = None
                confirmed = False
        if callback is not None:
            order = np.argsort(wanted, kind="stable")
            if notify(
                callback,
                iteration,
                num_matvecs,
                torch.from_numpy(wanted[order].copy()),
                torch.from_numpy(err[order].copy()),
                criterion=criterion,
            ):
                stopped = True
                break
        # choose the next block: directions of (Qo, Go) that enter the basis
        ro = Qo.shape[1]
        if done:
            if k == 1 or not check_multiplicity:
                break
            mode = "inject" if verify_ref is None else "follow"
            if verify_ref is None:
                verify_ref, verify_start = wanted.copy(), num_matvecs
        else:
            mode = "normal" if verify_ref is None else "follow"
        Z = None  # residual coefficients to rotate Qo by (None: take Qo as it is)
        if mode == "follow":
            # the Krylov sequence of the injected block: the residual directions of the
            # latest product (parked directions included)
            Zl = Go[:, p_last:p]
            svals = _host_svd(Zl)[1]
            invariant = svals.size < nb or float(svals.min()) <= thresh
            if done and (invariant or num_matvecs - verify_start >= max(5, verify_start // 4)):
                break
            Z, count = (Zl, nb) if ro > nf else (None, ro)
        elif mode == "normal":
            Z, count = (Go[:, :j] @ Ysel, b) if ro > b else (None, ro)
        if mode == "inject" and min(b, n - j - ro) <= 0:
            if ro == 0:
                break
            mode = "rest"  # no room for a random block: the rest of the space is Qo's
        if mode == "inject":
            c = min(b, n - j - ro)
            Qnew = _random_block([Vj, Qo], c, gen, n, dtype, device)
            Gnew = np.zeros((c, ncv))
        elif Z is None:
            Qnew, Gnew = Qo, Go
            Qo, Go = Qo[:, :0], Go[:0]
        else:  # the count directions of span(Qo) that matter most (left singular vectors)
            U = _host_svd(Z, full_matrices=True)[0]
            Qrot = _tall_mm(Qo, to_device(U, device, dtype))
            Grot = U.T @ Go
            Qnew, Gnew = Qrot[:, :count], Grot[:count]
            Qo, Go = Qrot[:, count:], Grot[count:]
        c = Qnew.shape[1]
        if c == 0:  # cannot happen for j < n, but never loop forever
            break
        room = ncv - j
        if room < c and not (ncv == n and room > 0):
            # thick restart: keep the most wanted Ritz vectors, then the new block
            keep_n = min(k + max(0, (ncv - k - b) // 2), ncv - c, j)
            keep_n = max(keep_n, min(k, j))
            keep = _priority(theta, which, keep_n)
            Yk = to_device(Y[:, keep], device, dtype)
            Vk = _tall_mm(Vj, Yk)
            Wk = _tall_mm(W[:, :j], Yk)
            V[:, :keep_n] = Vk
            W[:, :keep_n] = Wk
            H[:] = 0.0
            H[:keep_n, :keep_n] = np.diag(theta[keep])
            Gk = np.zeros((Go.shape[0], ncv))
            Gk[:, :keep_n] = Go[:, :j] @ Y[:, keep]
            Go = Gk
            Gn = np.zeros((c, ncv))
            Gn[:, :keep_n] = Gnew[:, :j] @ Y[:, keep]
            Gnew = Gn
            j = p = keep_n
        add = min(c, ncv - j)
        V[:, j : j + add] = Qnew[:, :add]
        j += add
        if add < c:  # no room: the rest stays outside the basis
            left = np.flatnonzero(np.abs(Gnew[add:]).sum(axis=1) > 0) + add
            Qo = torch.cat([Qo, Qnew[:, torch.from_numpy(left).to(device)]], dim=1)
            Go = np.vstack([Go, Gnew[left]])

    if theta is None:  # max_matvecs was too small to do anything (cannot happen: >= 1)
        raise ValueError("max_matvecs must allow at least one product.")
    if final is None:
        # final Ritz pairs: the product columns cover V[:, :p]
        sel = _priority(theta, which, k)
        sel = sel[np.argsort(theta[sel], kind="stable")]
        Ys = to_device(Y[:, sel], device, dtype)
        X = _tall_mm(V[:, :p], Ys)
        AX = _tall_mm(W[:, :p], Ys)
        residuals = torch.linalg.vector_norm(AX - X * to_device(theta[sel], device, dtype), dim=0)
    else:
        sel, X, AX, residuals = final
    lam_h = theta[sel]
    host = to_host(torch.cat([residuals.to(torch.float64), finite_packet(op, residuals)]))
    check_packet(op, host[-2], host[-1])  # the end-of-run check of the operator's flag
    res_h = host[:-2]
    if res_all is None:  # the loop ended right after the decomposition's update
        res_all = np.linalg.norm(Go[:, :p] @ Y, axis=0) if Go.shape[0] else np.zeros(theta.size)
    # the gap is trusted from a basis of _MIN_BASIS_FOR_GAP vectors (or the whole space)
    trusted = p >= _MIN_BASIS_FOR_GAP or p >= n
    errors = _eigenvalue_errors(theta, sel, res_h, res_all) if trusted else res_h.copy()
    stop_on = errors if criterion == "eigenvalue" else res_h
    converged = bool((stop_on <= tol * np.abs(lam_h)).all())
    bar.close()
    result = EigenResult(
        eigenvalues=to_device(lam_h, device, dtype),
        eigenvectors=X if return_eigenvectors else None,
        residuals=residuals,
        num_matvecs=num_matvecs,
        converged=converged,
        seed=used_seed,
        stopped=stopped,
        eigenvalue_errors=to_device(errors, device, dtype),
        criterion=criterion,
    )
    if not converged and tol > 0 and not stopped:
        warn_unconverged("eigsh", result, tol)
    return result
