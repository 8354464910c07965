"""Study B's Rahimi-Recht function: an ill-conditioned linear map fit by a deep linear network."""

from __future__ import annotations

import math

import torch
from torch.utils.data import TensorDataset

from .._checks import check_int, check_real
from .._public import public_dir
from .._random import check_seed, make_generator
from .mlp import DeepLinear
from .problem import Problem, RMSELoss, Seed, loaders

__all__ = ["rahimi_recht", "rahimi_recht_matrix", "PUBLISHED_CONDITION_NUMBERS"]
__dir__ = public_dir(globals())

PUBLISHED_CONDITION_NUMBERS: dict[float, tuple[float, float]] = {
    30.0: (29.3, 0.03),
    1e4: (15099.0, 0.10),
}
"""``c -> (published cond(A), relative half-width of the acceptance window)`` of study B."""

CHUNK = 4096


def _resolve_range(c: float, cond_range) -> tuple[float, float] | None:
    """The acceptance window, or ``None`` for the crossing rule (decided on the first draw)."""
    if isinstance(cond_range, str):
        if cond_range == "published":
            if float(c) in PUBLISHED_CONDITION_NUMBERS:
                target, rtol = PUBLISHED_CONDITION_NUMBERS[float(c)]
                return (target * (1 - rtol), target * (1 + rtol))
            return None
        if cond_range == "crossing":
            return None
        raise ValueError(
            f"cond_range must be 'published', 'crossing' or a (low, high) pair, got {cond_range!r}."
        )
    try:
        lo, hi = (float(v) for v in cond_range)
    except (TypeError, ValueError):
        raise TypeError(
            f"cond_range must be 'published', 'crossing' or a (low, high) pair, got {cond_range!r}."
        ) from None
    if not (1.0 <= lo < hi):
        raise ValueError(f"cond_range must satisfy 1 <= low < high, got {(lo, hi)}.")
    return (lo, hi)


def _cond(A: torch.Tensor) -> torch.Tensor:
    """2-norm condition numbers of a stack of matrices."""
    sv = torch.linalg.svdvals(A)
    return sv[:, 0] / sv[:, -1]


def _maybe_in_window(A: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Mask of the candidates whose cond(A) may lie in ``[lo, hi]`` (cheap, never too strict).

    With ``G = B^T B = L L^T`` (``B`` = ``A`` or ``A^T``, whichever is tall), the bounds
    ``max_i L_ii / min_i L_ii <= cond(A) <= ||A||_F ||L^{-1}||_F`` hold (the diagonal of the
    triangular ``L`` holds its eigenvalues; ``sigma_min(A) = 1 / ||L^{-1}||_2``). Cholesky and
    a triangular solve cost a third of an SVD, and the upper bound is within a factor ~2 of
    cond(A), so a window far above the typical cond (``c=1e4``) skips most SVDs. A margin of
    1e-3 covers rounding (cond(G) = cond(A)^2 stays far from 1/eps for cond(A) <= 1e6; beyond
    that, or if Cholesky fails, the candidate is kept).
    """
    if lo > 1e6:
        return torch.ones(A.shape[0], dtype=torch.bool)
    B = A if A.shape[-2] >= A.shape[-1] else A.mT
    L, info = torch.linalg.cholesky_ex(B.mT @ B)
    eye = torch.eye(L.shape[-1], dtype=L.dtype).expand_as(L)
    Linv = torch.linalg.solve_triangular(L, eye, upper=False)
    d = L.diagonal(dim1=-2, dim2=-1)
    upper = B.flatten(1).norm(dim=1) * Linv.flatten(1).norm(dim=1)
    lower = d.amax(-1) / d.amin(-1)
    maybe = (upper * (1 + 1e-3) >= lo) & (lower * (1 - 1e-3) <= hi)
    return maybe | (info != 0) | ~torch.isfinite(upper) | ~torch.isfinite(lower)


def _draw_matrix(
    c: float, xdim: int, ydim: int, gen: torch.Generator, cond_range, max_draws: int
) -> tuple[torch.Tensor, float, int, tuple[float, float]]:
    window = _resolve_range(c, cond_range)
    scale = torch.linspace(1.0, float(c), ydim, dtype=torch.float64).unsqueeze(1)
    draws = 0
    while draws < max_draws:
        A = scale * torch.rand(CHUNK, ydim, xdim, generator=gen, dtype=torch.float64)
        if window is None:  # crossing rule: the first candidate says which side c lies on
            first = float(_cond(A[:1])[0])
            window = (float(c), math.inf) if first < c else (1.0, float(c))
        idx = _maybe_in_window(A, *window).nonzero()[:, 0]  # a superset, in draw order
        if idx.numel():
            cond = _cond(A[idx])
            ok = ((cond >= window[0]) & (cond <= window[1])).nonzero()
            if ok.numel():
                j = int(ok[0, 0])
                i = int(idx[j])
                return A[i].clone(), float(cond[j]), draws + i + 1, window
        draws += CHUNK
    raise RuntimeError(
        f"no matrix with cond(A) in {window} among {draws} draws for c={c}: widen cond_range "
        "or raise max_draws."
    )


def _check_c(c) -> float:
    if float(check_real(c, "c")) < 1:
        raise ValueError(f"c must be a finite number >= 1, got {c!r}.")
    return float(c)


def rahimi_recht_matrix(
    c: float = 30.0,
    *,
    xdim: int = 12,
    ydim: int = 14,
    seed: Seed = 0,
    cond_range: str | tuple[float, float] = "published",
    max_draws: int = 10**7,
) -> torch.Tensor:
    r"""The true matrix of the Rahimi-Recht function, ``A = diag(linspace(1, c)) U``.

    ``U`` has i.i.d. :math:`U[0, 1)` entries (``ydim x xdim``) and the rows are scaled by
    ``linspace(1, c, ydim)``. Candidates are redrawn until ``cond(A)`` (2-norm,
    :math:`\sigma_\max / \sigma_\min`) lies in an acceptance window, set by ``cond_range``:

    ``"published"`` (default)
        For the two published instances of study B, within a window around the published
        value: ``c=30`` -> 29.3 +- 3%, ``c=1e4`` -> 15,099 +- 10%
        (``PUBLISHED_CONDITION_NUMBERS``). For any other ``c``, the crossing rule.
    ``"crossing"``
        The original's rule: if the first candidate has ``cond(A) < c``, redraw until
        ``cond(A) >= c``, else until ``cond(A) <= c``. (The typical candidate has cond ~ 100
        whatever ``c``, so ``c=1e4`` waits for a rare near-singular draw and ``c=30`` for a
        rare well-conditioned one; the first crossing has median ~28.7 for ``c=30`` and
        ~14,200 for ``c=1e4``, with a heavy upper tail: the published 29.3 and 15,099 were
        such draws, about 1 in 10^4 candidates.)
    ``(low, high)``
        Any window.

    Candidates are drawn in chunks of 4,096 from the seeded generator (float64) and the first
    acceptable one in draw order is returned, so the result is a function of the seed.

    Parameters
    ----------
    c
        Scale of the last row (``c >= 1``).
    xdim, ydim
        Input and output sizes (``A`` is ``ydim x xdim``).
    seed
        An int or a ``torch.Generator``; the global RNG is not used.
    cond_range
        ``"published"``, ``"crossing"`` or a ``(low, high)`` window.
    max_draws
        Give up (``RuntimeError``) after this many candidates.

    Returns
    -------
    Tensor
        ``A``, float64, shape ``(ydim, xdim)``.

    Examples
    --------
    >>> import torch
    >>> from curvlab.problems import rahimi_recht_matrix
    >>> A = rahimi_recht_matrix(30, seed=0)
    >>> bool(28.4 < torch.linalg.cond(A) < 30.2)
    True
    """
    c = _check_c(c)
    xdim, ydim = check_int(xdim, "xdim"), check_int(ydim, "ydim")
    max_draws = check_int(max_draws, "max_draws")
    gen = make_generator(check_seed(seed, allow_none=False), share=True)[0]
    return _draw_matrix(c, xdim, ydim, gen, cond_range, max_draws)[0]


def rahimi_recht(
    c: float = 30.0,
    *,
    seed: Seed = 0,
    n_train: int = 1000,
    n_test: int = 250,
    xdim: int = 12,
    wdim: int = 13,
    ydim: int = 14,
    batch_size: int = 128,
    test_batch_size: int | None = None,
    cond_range: str | tuple[float, float] = "published",
    dtype: torch.dtype = torch.float32,
) -> Problem:
    r"""Study B's Rahimi-Recht problem: fit ``y = A x`` with ``y = W_2 W_1 x``, RMSE loss.

    ``A`` comes from :func:`rahimi_recht_matrix` (see there for how the condition number is
    controlled: by default ``c=30`` gives cond(A) ~ 29.3 and ``c=1e4`` gives ~15,099, the
    published instances). Inputs are :math:`x \sim N(0, I)`, targets ``Y = X A^T`` without
    noise; the test set is drawn fresh from the same law. The model is
    :class:`DeepLinear` ``(xdim, wdim, ydim)`` without biases, weights :math:`N(0, 1)`
    (12-13-14: 338 parameters); the loss is :class:`RMSELoss`.

    Draw order from the seed: the candidates for ``A`` (in chunks of 4,096), the network's
    weights, ``X`` (train), ``X`` (test), the shuffling order of the train loader.

    Parameters
    ----------
    c
        Scale of the last row of ``A`` (30 and 1e4 in the study).
    seed
        An int or a ``torch.Generator`` (the original had no seed); the global RNG is not used.
    n_train, n_test
        Sample sizes (1000 and 250 in the study).
    xdim, wdim, ydim
        Sizes of input, hidden layer and output.
    batch_size, test_batch_size
        Train batch size (128 in the study; shuffled) and test batch size (default: all).
    cond_range
        Acceptance window of cond(A); see :func:`rahimi_recht_matrix`.
    dtype
        Floating dtype of the model and the data (``A`` is kept in float64 in ``info``).

    Returns
    -------
    Problem
        ``info``: ``A`` (float64), ``cond`` (float, cond(A)), ``num_draws`` (candidates drawn),
        ``cond_range`` (the window used), ``X``, ``Y``, ``X_test``, ``Y_test``.

    Examples
    --------
    >>> from curvlab.problems import rahimi_recht
    >>> p = rahimi_recht(c=1e4, seed=0)
    >>> sum(q.numel() for q in p.model.parameters()), round(p.cond, -3)
    (338, 15000.0)
    """
    c = _check_c(c)
    n_train, n_test = check_int(n_train, "n_train"), check_int(n_test, "n_test")
    xdim, wdim, ydim = check_int(xdim, "xdim"), check_int(wdim, "wdim"), check_int(ydim, "ydim")
    gen = make_generator(check_seed(seed, allow_none=False), share=True)[0]
    A, cond, num_draws, window = _draw_matrix(c, xdim, ydim, gen, cond_range, 10**7)
    model = DeepLinear(xdim, wdim, ydim, seed=gen, dtype=dtype)
    X = torch.randn(n_train, xdim, generator=gen, dtype=torch.float64)
    X_test = torch.randn(n_test, xdim, generator=gen, dtype=torch.float64)
    Y, Y_test = X @ A.T, X_test @ A.T
    X, Y, X_test, Y_test = (t.to(dtype) for t in (X, Y, X_test, Y_test))
    train_loader, test_loader = loaders(
        TensorDataset(X, Y),
        TensorDataset(X_test, Y_test),
        batch_size=batch_size,
        test_batch_size=test_batch_size,
        seed=gen,
    )
    return Problem(
        model,
        RMSELoss(),
        train_loader,
        test_loader,
        name=f"rahimi_recht(c={c:g})",
        seed=seed,
        info={
            "A": A,
            "cond": cond,
            "num_draws": num_draws,
            "cond_range": window,
            "X": X,
            "Y": Y,
            "X_test": X_test,
            "Y_test": Y_test,
        },
    )
