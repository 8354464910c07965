"""Stochastic trace estimators: Hutchinson, Hutch++ and XTrace."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_int
from .._progress import Callback, Progress, check_callback, notify, progress_bar
from .._public import public_dir
from .._random import Seed, make_generator
from ._protocol import OperatorLike
from ._utils import check_finite_end, check_operator, defers_checks, matmul, rademacher
from .results import TraceResult

__all__ = ["trace", "TRACE_METHODS"]

__dir__ = public_dir(globals())

#: Methods of :func:`trace`.
TRACE_METHODS = ("hutch++", "hutchinson", "xtrace")


class _Run:
    """The products of one run of :func:`trace` or :func:`diagonal`, in column chunks.

    After every chunk it reports to ``progress`` (``bar``) and ``callback``; a callback
    returning ``True`` sets :attr:`stopped` and :meth:`apply` returns the columns done so far.
    Nothing here synchronizes with the device.
    """

    def __init__(self, op, batch_size: int | None, callback, bar):
        self.op, self.batch_size, self.callback, self.bar = op, batch_size, callback, bar
        self.products = self.iteration = 0
        self.stopped = False

    def apply(self, V: Tensor, running=None, last: bool = False) -> Tensor:
        """``op @ V`` in chunks of ``batch_size`` columns (all at once for ``None``).

        ``running(AV_so_far) -> (estimate, residual)`` gives the callback what the result
        would hold if it stopped there (``None``: nothing yet). With ``last`` the final chunk
        is not reported here: :meth:`final` reports it with the finished estimate.
        """
        cols = V.shape[1]
        step = max(1, cols if self.batch_size is None else self.batch_size)
        if cols == 0:
            return matmul(self.op, V)
        out = []
        for i in range(0, cols, step):
            out.append(matmul(self.op, V[:, i : i + step]))
            done = out[-1].shape[1]
            self.products += done
            self.iteration += 1
            self.bar.update(done)
            if self.callback is None or (last and i + step >= cols):
                continue
            AV = out[0] if len(out) == 1 else torch.cat(out, dim=1)
            est, err = running(AV) if running is not None else (None, None)
            if notify(self.callback, self.iteration, self.products, est, err):
                self.stopped = True
                return AV
        return out[0] if len(out) == 1 else torch.cat(out, dim=1)

    def final(self, estimate, error) -> None:
        """Report the finished estimate (the work is done: the callback's answer is moot)."""
        if self.callback is not None:

            def as_t(x):
                return (
                    x
                    if isinstance(x, Tensor) or x is None
                    else torch.tensor(x, dtype=torch.float64)
                )

            notify(self.callback, self.iteration, self.products, as_t(estimate), as_t(error))


def _planned(method: str, n: int, m: int) -> int:
    """Products a run of ``method`` with budget ``m`` makes (the progress bar's total)."""
    if method == "hutch++":
        s = m // 3
        return s + min(n, s) + (m - 2 * s)
    if method in ("xtrace", "xdiag"):
        return 2 * (m // 2)
    return m


def _run_estimator(
    op, methods: dict, method: str, num_matvecs, seed, batch_size, callback, progress, desc: str
):
    """Check the common arguments of :func:`trace` and :func:`diagonal`, then run
    ``methods[method](op, n, num_matvecs, gen, run) -> (estimate, error, used, method)``.

    Returns ``(estimate, error, used, method, seed, stopped)`` with the integer seed that
    reproduces the run and the method of the estimate (``"hutchinson"`` when a callback
    stopped a sketching method before its sketch was complete).
    """
    n = check_operator(op)
    num_matvecs = check_int(num_matvecs, "num_matvecs")
    if method not in methods:
        raise ValueError(f"method must be one of {tuple(methods)}, got {method!r}.")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size")
    check_callback(callback)
    gen, used_seed = make_generator(seed, op.device)
    with progress_bar(progress, _planned(method, n, num_matvecs), desc, "products") as bar:
        run = _Run(op, batch_size, callback, bar)
        est, err, used, used_method = methods[method](op, n, num_matvecs, gen, run)
        # the products make no host synchronization: one check at the end (a NaN or Inf in a
        # product reaches the estimate), with the operator's own non-finite flag
        check_finite_end(op, est if isinstance(est, Tensor) else torch.tensor(est))
        if not run.stopped:
            run.final(est, err)
    return est, err, used, used_method, used_seed, run.stopped


def _mean_and_error(samples: Tensor) -> tuple[float, float]:
    m = samples.numel()
    mean = float(samples.mean())
    if m < 2:
        return mean, math.nan
    return mean, float(samples.std(correction=1)) / math.sqrt(m)


def _running(Z: Tensor):
    """``running`` of :meth:`_Run.apply` for Hutchinson probes ``Z``: the mean of
    ``z^T A z`` over the probes done and its standard error, as device tensors."""

    def fn(AZ: Tensor):
        samples = (Z[:, : AZ.shape[1]] * AZ).sum(dim=0)
        m = samples.numel()
        err = samples.std(correction=1) / math.sqrt(m) if m > 1 else samples.new_tensor(math.nan)
        return samples.mean(), err

    return fn


def _hutchinson_of(Z: Tensor, AZ: Tensor):
    """The Hutchinson estimate from the probes ``Z[:, :c]`` done, ``AZ`` their products."""
    c = AZ.shape[1]
    est, err = _mean_and_error((Z[:, :c] * AZ).sum(dim=0))
    return est, err, c, "hutchinson"


def _hutchinson(op, n, m, gen, run):
    Z = rademacher((n, m), gen, op.dtype, op.device)
    return _hutchinson_of(Z, run.apply(Z, _running(Z), last=True))


def _hutchpp(op, n, m, gen, run):
    if m < 3:
        raise ValueError(f"hutch++ needs num_matvecs >= 3, got {m}; use method='hutchinson'.")
    s = m // 3
    g = m - 2 * s
    S = rademacher((n, s), gen, op.dtype, op.device)
    AS = run.apply(S, _running(S))
    if run.stopped:  # the sketch's probes are Rademacher: a Hutchinson estimate
        return _hutchinson_of(S, AS)
    Q, _ = torch.linalg.qr(AS)  # (n, min(n, s)) orthonormal
    G = rademacher((n, g), gen, op.dtype, op.device)
    G = G - Q @ (Q.T @ G)
    q = Q.shape[1]
    sketch = _running(S)(AS) if run.callback is not None else None
    AB = run.apply(torch.cat([Q, G], dim=1), lambda _: sketch, last=True)
    if run.stopped:
        est, err, _, name = _hutchinson_of(S, AS)
        return est, err, run.products, name
    low_rank = float((Q * AB[:, :q]).sum())
    samples = (G * AB[:, q:]).sum(dim=0)
    est, err = _mean_and_error(samples)
    return low_rank + est, err, s + q + g, "hutch++"


def _xsketch(op, n, m, gen, run, method: str, exact: str, running):
    """The shared sketch of XTrace and XDiag from ``m // 2`` Rademacher vectors ``Om``.

    Returns ``(Om, Y, Q, R, Z, Sm)`` with ``Y = A Om = Q R``, ``Z = A Q`` and ``Sm`` the
    normalized columns of ``R^-T`` (``s_i``, that give the leave-one-out bases
    ``Q_i Q_i^T = Q (I - s_i s_i^T) Q^T``), or ``Sm = None`` when ``rank(A) < m // 2``:
    ``Q`` then spans ``range(A)`` and every leave-one-out sketch is exact. ``exact`` ends
    the error raised when ``m // 2 >= n``. ``running(Om)`` is the callback's running
    estimate (:func:`_running` for the trace). When ``run``'s callback stops it, ``Q`` and what
    follows are ``None`` and ``Y`` holds the products done (of ``Om``'s first columns).
    """
    s = m // 2
    if s < 2:
        raise ValueError(f"{method} needs num_matvecs >= 4, got {m}; use method='hutchinson'.")
    if s >= n:
        raise ValueError(
            f"{method} needs num_matvecs / 2 < n = {n}; with that many products {exact}"
        )
    Om = rademacher((n, s), gen, op.dtype, op.device)
    Y = run.apply(Om, running(Om))
    if run.stopped:
        return Om, Y, None, None, None, None
    Q, R = torch.linalg.qr(Y)
    sketch = running(Om)(Y) if run.callback is not None else None
    Z = run.apply(Q, lambda _: sketch, last=True)  # A Q (= A^T Q: the operator is symmetric)
    if run.stopped:
        return Om, Y, None, None, None, None
    d = torch.diagonal(R).abs()
    eps = torch.finfo(op.dtype).eps
    if float(d.min()) <= 100 * eps * s * float(d.max()):
        return Om, Y, Q, R, Z, None
    eye = torch.eye(s, dtype=R.dtype, device=R.device)
    Rinv = torch.linalg.solve_triangular(R, eye, upper=True)
    Sm = Rinv.T / torch.linalg.vector_norm(Rinv.T, dim=0, keepdim=True)
    return Om, Y, Q, R, Z, Sm


def _xtrace(op, n, m, gen, run):
    exact = "compute the trace exactly from op.to_dense()."
    Om, Y, Q, R, Z, Sm = _xsketch(op, n, m, gen, run, "xtrace", exact, _running)
    if run.stopped:
        est, err, c, name = _hutchinson_of(Om, Y)
        return est, err, run.products, name
    s = Om.shape[1]
    H = Q.T @ Z
    H = 0.5 * (H + H.T)
    trH = float(torch.diagonal(H).sum())
    if Sm is None:  # rank(A) < s: Q^T A Q is exact
        return trH, 0.0, 2 * s, "xtrace"
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
    return est, err, 2 * s, "xtrace"


@defers_checks
def trace(
    op: OperatorLike,
    *,
    num_matvecs: int = 100,
    method: str = "hutch++",
    seed: Seed = None,
    batch_size: int | None = None,
    callback: Callback = None,
    progress: Progress = False,
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
    callback
        ``None`` (default) or ``callback(iterate)``, called after every block of products
        (``batch_size`` columns, or a whole phase of the method) with a
        :class:`curvlab.Iterate`: ``products`` so far, ``estimate`` and
        ``residual`` (the standard error) as device tensors, the ones the result would hold
        if stopped there, and after the last block the final estimate. Returning ``True``
        stops the estimator: the result has ``stopped=True`` and the estimate of the
        products done. Hutchinson's is the mean over the probes done; a sketching method
        (Hutch++, XTrace) stopped before its sketch is complete returns the Hutchinson
        estimate of its sketch vectors (Rademacher probes too: unbiased), with
        ``method="hutchinson"``.
    progress
        ``False`` (default): silent. ``True``: a progress bar on a terminal (products out of
        the budget), plain lines in a log; or a callable ``progress(done, total, info)``.

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
    est, err, used, name, used_seed, stopped = _run_estimator(
        op, fn, method, num_matvecs, seed, batch_size, callback, progress, "trace"
    )
    return TraceResult(
        estimate=est,
        std_error=err,
        num_matvecs=used,
        method=name,
        seed=used_seed,
        stopped=stopped,
    )
