"""Study A's regularized matrix factorization."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from .._checks import check_int, check_nonneg
from .._public import public_dir
from .._random import check_seed, make_generator
from .problem import ObjectiveLoss, Problem, Seed

__all__ = ["MatrixFactorization", "matrix_factorization"]
__dir__ = public_dir(globals())


class MatrixFactorization(nn.Module):
    r"""The objective of study A's matrix factorization, as a module holding ``P`` and ``Q``.

    .. math::

        F(P, Q) = \frac{1}{B} \sum_{i=1}^{B} \lVert M_i - P Q \rVert_F^2
                  + \lambda \left(\lVert P \rVert_F^2 + \lVert Q \rVert_F^2\right)

    ``forward(M)`` takes a stack ``(B, m, n)`` (or one matrix ``(m, n)``) and returns ``F``.
    ``P`` (``m x rank``) and ``Q`` (``rank x n``) are separate parameters, so that each can go
    to its own optimizer (study A: P on Adam or GD, Q on a damped Newton method).

    Parameters
    ----------
    m, n, rank
        Shapes of the factors.
    reg
        :math:`\lambda` (0.01 in the study).
    init_scale
        ``P`` and ``Q`` start i.i.d. :math:`N(0, \text{init\_scale}^2)`.
    seed
        An int or a ``torch.Generator`` for the initialization (the global RNG is not used).
    dtype
        Floating dtype of ``P`` and ``Q``.

    Examples
    --------
    >>> import torch
    >>> from curvlab.problems import MatrixFactorization
    >>> f = MatrixFactorization(4, 3, 2, reg=0.0)
    >>> M = (f.P @ f.Q).detach().expand(5, 4, 3)
    >>> f(M).detach()
    tensor(0.)
    """

    def __init__(
        self,
        m: int = 100,
        n: int = 100,
        rank: int = 5,
        *,
        reg: float = 0.01,
        init_scale: float = 1.0,
        seed: Seed = 0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        m, n, rank = check_int(m, "m"), check_int(n, "n"), check_int(rank, "rank")
        check_nonneg(reg, "reg", tensor_ok=True)
        gen = make_generator(check_seed(seed, allow_none=False), share=True)[0]
        self.reg = float(reg)
        self.P = nn.Parameter(init_scale * torch.randn(m, rank, generator=gen, dtype=dtype))
        self.Q = nn.Parameter(init_scale * torch.randn(rank, n, generator=gen, dtype=dtype))

    def forward(self, M: Tensor) -> Tensor:
        if M.dim() == 2:
            M = M.unsqueeze(0)
        if M.dim() != 3 or M.shape[1:] != (self.P.shape[0], self.Q.shape[1]):
            raise ValueError(
                f"M must have shape (B, {self.P.shape[0]}, {self.Q.shape[1]}) or "
                f"({self.P.shape[0]}, {self.Q.shape[1]}), got {tuple(M.shape)}."
            )
        fit = (M - self.P @ self.Q).square().sum(dim=(1, 2)).mean()
        return fit + self.reg * (self.P.square().sum() + self.Q.square().sum())


def matrix_factorization(
    *,
    n_matrices: int = 40,
    m: int = 100,
    n: int = 100,
    rank: int = 5,
    reg: float = 0.01,
    init_scale: float = 1.0,
    seed: Seed = 42,
    dtype: torch.dtype = torch.float32,
) -> Problem:
    r"""Study A's matrix factorization: 40 random 100x100 matrices, rank 5, regularization 0.01.

    The matrices ``M_i`` are i.i.d. standard normal (drawn first from the seed, 42 as in the
    study), then ``P`` and ``Q`` (i.i.d. :math:`N(0, \text{init\_scale}^2)`). The model is
    :class:`MatrixFactorization`, which returns the regularized objective itself; ``loss_fn``
    is :class:`ObjectiveLoss` (it returns the model's output), so
    ``loss_fn(model(X), y)`` is the objective like in every other problem. The train loader
    holds the ``n_matrices`` matrices in one full batch (the study runs 100 full-batch
    iterations); there is no test set.

    Parameters
    ----------
    n_matrices, m, n, rank, reg
        The problem's sizes and :math:`\lambda`.
    init_scale
        Standard deviation of the initial ``P`` and ``Q``.
    seed
        An int or a ``torch.Generator`` (default 42); the global RNG is not used.
    dtype
        Floating dtype.

    Returns
    -------
    Problem
        ``model.P`` and ``model.Q`` are the two blocks; ``test_loader`` is ``None``;
        ``info``: ``M`` (the stack of matrices).

    Examples
    --------
    >>> from curvlab.problems import matrix_factorization
    >>> model, loss_fn, train_loader, _ = matrix_factorization()
    >>> M, y = next(iter(train_loader))
    >>> tuple(M.shape), tuple(model.P.shape), tuple(model.Q.shape)
    ((40, 100, 100), (100, 5), (5, 100))
    """
    n_matrices = check_int(n_matrices, "n_matrices")
    gen = make_generator(check_seed(seed, allow_none=False), share=True)[0]
    m, n = check_int(m, "m"), check_int(n, "n")
    M = torch.randn(n_matrices, m, n, generator=gen, dtype=dtype)
    model = MatrixFactorization(m, n, rank, reg=reg, init_scale=init_scale, seed=gen, dtype=dtype)
    data = TensorDataset(M, torch.zeros(n_matrices, dtype=dtype))
    train_loader = DataLoader(
        data, batch_size=n_matrices, shuffle=False, generator=torch.Generator()
    )
    return Problem(
        model,
        ObjectiveLoss(),
        train_loader,
        None,
        name="matrix_factorization",
        seed=seed,
        info={"M": M},
    )
