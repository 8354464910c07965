"""What the estimators need of an operator: :class:`OperatorLike`."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["OperatorLike"]


@runtime_checkable
class OperatorLike(Protocol):
    """A symmetric ``n x n`` linear operator, as the estimators of ``curvlab.linalg`` see it.

    The estimators (:func:`~curvlab.eigsh`, :func:`~curvlab.lanczos`,
    :func:`~curvlab.power_iteration`, :func:`~curvlab.spectral_density`,
    :func:`~curvlab.trace`, :func:`~curvlab.diagonal`, :func:`~curvlab.spectral_gap`,
    :func:`~curvlab.cg`) read ``shape``, ``dtype`` and ``device`` and multiply with ``@``;
    nothing else. ``op @ V`` takes ``V`` of shape ``(n,)`` or ``(n, k)`` (``k`` columns at
    once) in ``dtype`` on ``device`` and returns a tensor of the same shape. Every
    :class:`~curvlab.CurvatureOperator` satisfies this protocol, and so does a plain class of
    your own with these four members: no subclassing is needed (the results report the number
    of products in ``num_matvecs``). ``isinstance(op, OperatorLike)`` checks that the members
    exist, not their types.

    The matrix must be symmetric: the estimators never check it (that would cost products).
    A bare :class:`torch.Tensor` also has these members, but the estimators refuse it: wrap a
    symmetric matrix with :class:`~curvlab.DenseOperator`.

    Examples
    --------
    >>> import torch
    >>> import curvlab as cl
    >>> class Diagonal:
    ...     def __init__(self, d):
    ...         self.d, self.shape, self.dtype, self.device = d, (len(d), len(d)), d.dtype, d.device
    ...     def __matmul__(self, V):
    ...         return self.d[:, None] * V if V.dim() == 2 else self.d * V
    >>> D = Diagonal(torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64))
    >>> isinstance(D, cl.OperatorLike)
    True
    >>> [round(x, 12) for x in cl.eigsh(D, k=1, seed=0).eigenvalues.tolist()]
    [3.0]
    """

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, n)``."""
        ...

    @property
    def dtype(self) -> torch.dtype:
        """A real floating-point dtype: that of the vectors ``@`` takes and returns."""
        ...

    @property
    def device(self) -> torch.device:
        """The device of the vectors ``@`` takes and returns; the estimators run there."""
        ...

    def __matmul__(self, V: Tensor, /) -> Tensor:
        """``op @ V`` for ``V`` of shape ``(n,)`` or ``(n, k)``."""
        ...
