"""Power iteration with deflation: the classic top-eigenvalue method of the published studies."""

from __future__ import annotations

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
    to_host,
    warn_unconverged,
    work_dtype,
)
from .results import EigenResult

__all__ = ["power_iteration"]

__dir__ = public_dir(globals())

_CRITERIA = ("residual", "eigenvalue")


@defers_checks
def power_iteration(
    op: OperatorLike,
    k: int = 1,
    *,
    tol: float = 1e-4,
    max_iter: int = 100,
    seed: Seed = None,
    criterion: str = "residual",
    callback: Callback = None,
    progress: Progress = False,
) -> EigenResult:
    r"""The ``k`` eigenvalues of largest magnitude by power iteration with deflation.

    For each eigenpair in turn, the iterate ``v <- A v / ||A v||`` is kept orthogonal to the
    eigenvectors already found (projection deflation, as PyHessian does) and the eigenvalue is
    the Rayleigh quotient ``v^T A v``. For ``k > 1`` a final Rayleigh-Ritz step on the span of
    the ``k`` vectors (from the products already done) removes the error that an inexact
    earlier eigenvector leaves in the later ones.

    Power iteration converges to the eigenvalue of largest *magnitude* (a large negative
    eigenvalue wins over a smaller positive one): that is inherent to the method. curvlab
    reports the signed value with its residual. The error shrinks like
    ``(|lambda_2| / |lambda_1|)^t`` per step, so close eigenvalues make it slow;
    :func:`~curvlab.eigsh` needs far fewer products for the same accuracy.

    Parameters
    ----------
    op
        A symmetric operator: a :class:`~curvlab.CurvatureOperator` or anything with
        ``shape``, ``dtype``, ``device`` and ``@`` (:class:`~curvlab.OperatorLike`).
    k
        Number of eigenpairs, ``1 <= k <= n``.
    tol
        Relative tolerance of the stopping rule.
    max_iter
        Maximum number of products per eigenpair.
    seed
        Seed of the random start vectors (int or :class:`torch.Generator`).
    criterion
        ``"residual"`` (default): stop when ``||A v - lambda v|| <= tol |lambda|`` (for the
        deflated operator), which guarantees an eigenvalue within ``tol |lambda|``.
        ``"eigenvalue"``: stop when the Rayleigh quotient changes by at most ``tol``
        relatively between two steps, the rule of PyHessian (``tol=1e-3`` there); cheaper,
        but the error can be several times ``tol`` when the top eigenvalues are close.
    callback
        ``None`` (default) or ``callback(iterate)``, called after every product with a
        :class:`curvlab.Iterate`: ``products`` so far, ``estimate`` the current
        Rayleigh quotient and ``residual`` ``||A v - lambda v||`` of the deflated operator
        (device tensors), ``info["pair"]`` the index of the eigenpair being iterated (from 0).
        Returning ``True`` stops the iteration there: the result then holds the pairs reached
        (the current one included, unconverged: possibly fewer than ``k``), with
        ``converged=False`` and ``stopped=True``, and no :class:`~curvlab.ConvergenceWarning`.
    progress
        ``False`` (default): silent. ``True``: a progress bar on a terminal (products out of
        ``k * max_iter``), plain lines in a log; or a callable ``progress(done, total, info)``.

    Returns
    -------
    EigenResult
        On the operator's device, in its dtype (float32 for a float16/bfloat16 operator: the
        iteration runs in float32 or higher, only the products in half precision; each step
        makes one host transfer, the stopping decision).
        Eigenvalues in ascending algebraic order (as :func:`~curvlab.eigsh` returns them),
        unit eigenvectors, residuals ``||A v - lambda v||`` (of the operator itself), products
        used in total, ``converged`` (every pair met ``criterion`` within ``max_iter``, and
        for ``"residual"`` every final residual is within ``tol |lambda|``), and the seed.

    Examples
    --------
    >>> import torch
    >>> from curvlab import DenseOperator, power_iteration
    >>> A = DenseOperator(torch.diag(torch.tensor([1.0, -2.0, 10.0], dtype=torch.float64)))
    >>> res = power_iteration(A, k=2, tol=1e-8, seed=0)
    >>> [round(x, 6) for x in res.eigenvalues.tolist()]
    [-2.0, 10.0]
    """
    n = check_operator(op)
    k = check_int(k, "k")
    if k > n:
        raise ValueError(f"k={k} must be at most n={n}.")
    max_iter = check_int(max_iter, "max_iter")
    tol = float(check_nonneg(tol, "tol", tensor_ok=True))
    if criterion not in _CRITERIA:
        raise ValueError(f"criterion must be one of {_CRITERIA}, got {criterion!r}.")
    check_callback(callback)
    gen, used_seed = make_generator(seed, op.device)
    with progress_bar(progress, k * max_iter, "power_iteration", "products") as bar:
        return _power(op, n, k, tol, max_iter, criterion, callback, bar, gen, used_seed)


def _power(op, n, k, tol, max_iter, criterion, callback, bar, gen, used_seed) -> EigenResult:
    """The iteration of :func:`power_iteration` (arguments checked)."""
    device, dtype = op.device, work_dtype(op.dtype)

    vecs = torch.zeros((n, 0), dtype=dtype, device=device)
    prods = torch.zeros((n, 0), dtype=dtype, device=device)
    all_converged = True
    stopped = False
    num_matvecs = 0

    def deflate(x: Tensor) -> Tensor:
        if vecs.shape[1] == 0:
            return x
        for _ in range(2):
            x = x - vecs @ (vecs.T @ x)
        return x

    for pair in range(k):
        v = deflate(gaussian((n,), gen, dtype, device))
        v = v / torch.linalg.vector_norm(v)
        lam_prev = None
        converged = False
        for _it in range(max_iter):
            w = product(op, v, dtype)
            num_matvecs += 1
            wd = deflate(w)  # the deflated operator's product (v is orthogonal to vecs)
            lam = torch.dot(v, w)
            wn = torch.linalg.vector_norm(wd)
            residual = None
            if criterion == "residual" or callback is not None:
                residual = torch.linalg.vector_norm(wd - lam * v)
            if criterion == "residual":
                conv = residual <= tol * lam.abs()
            elif lam_prev is not None:
                conv = (lam - lam_prev).abs() <= tol * lam_prev.abs()
            else:
                conv = torch.zeros((), dtype=torch.bool, device=device)
            # the iteration's one transfer: the decision, a null direction, finiteness
            stop, null, bad, flag = to_host(
                torch.cat([torch.stack([conv, wn <= 0]).double(), finite_packet(op, lam, wn)])
            )
            check_packet(op, bad, flag)
            converged = bool(stop)
            bar.update(1)
            if notify(callback, num_matvecs, num_matvecs, lam, residual, pair=pair):
                stopped, converged = True, False
                break
            if converged or _it == max_iter - 1:
                break
            if null:  # v spans a null direction of the deflated operator
                converged = True
                break
            v, lam_prev = wd / wn, lam
        all_converged &= converged
        vecs = torch.cat([vecs, v[:, None]], dim=1)
        prods = torch.cat([prods, w[:, None]], dim=1)
        if stopped:
            break

    # Rayleigh-Ritz on the span of the k vectors, from the products already done: it removes
    # the coupling that an inexact earlier eigenvector leaves in the later ones (no product).
    # The k x k problem is solved on the device, in float64 (float32 where float64 is
    # unsupported).
    hd = torch.float32 if device.type == "mps" else torch.float64
    Hm = (vecs.T @ prods).to(hd)
    lam_t, Y = torch.linalg.eigh(0.5 * (Hm + Hm.T))
    Yd = Y.to(dtype)
    X, AX = vecs @ Yd, prods @ Yd
    lam_t = lam_t.to(dtype)
    res_t = torch.linalg.vector_norm(AX - X * lam_t, dim=0)
    if criterion == "residual":
        all_converged &= bool((res_t <= tol * lam_t.abs()).all())
    result = EigenResult(
        eigenvalues=lam_t,
        eigenvectors=X,
        residuals=res_t,
        num_matvecs=num_matvecs,
        converged=all_converged,
        seed=used_seed,
        stopped=stopped,
    )
    if not all_converged and tol > 0 and not stopped:
        warn_unconverged("power_iteration", result, tol)
    return result
