"""A curvature operator backed by an explicit symmetric matrix."""

from __future__ import annotations

import torch
from torch import Tensor

from .._public import public_dir
from .base import CurvatureOperator

__all__ = ["DenseOperator"]
__dir__ = public_dir(globals())


class DenseOperator(CurvatureOperator):
    """Wrap a symmetric ``n x n`` tensor as a :class:`CurvatureOperator`.

    For tests, small problems and dense references: every estimator accepts it.

    Parameters
    ----------
    matrix
        A square tensor; its dtype and device become the operator's.
    check_symmetric
        Raise if ``matrix`` is not symmetric to the dtype's precision (default ``True``).

    Examples
    --------
    >>> import torch
    >>> from curvlab import DenseOperator
    >>> op = DenseOperator(torch.diag(torch.tensor([1.0, 2.0])))
    >>> op @ torch.ones(2)
    tensor([1., 2.])
    """

    def __init__(self, matrix: Tensor, *, check_symmetric: bool = True):
        if not isinstance(matrix, Tensor):
            matrix = torch.as_tensor(matrix)
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"DenseOperator needs a square matrix, got {tuple(matrix.shape)}.")
        if not matrix.is_floating_point():
            raise TypeError(f"DenseOperator needs a floating-point matrix, got {matrix.dtype}.")
        if not torch.isfinite(matrix).all():
            raise ValueError("the matrix has NaN or Inf entries.")
        if check_symmetric and matrix.numel() > 0:
            eps = torch.finfo(matrix.dtype).eps
            scale = matrix.abs().max().clamp_min(1e-300)
            asym = (matrix - matrix.T).abs().max()
            if asym > 100 * eps * matrix.shape[0] * scale:
                raise ValueError(
                    f"the matrix is not symmetric (max |A - A^T| = {asym.item():.3g}); "
                    "pass (A + A.T) / 2, or check_symmetric=False if you know what you do."
                )
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device)
        self.matrix = matrix

    def _matmat(self, V: Tensor) -> Tensor:
        return self.matrix @ V

    def to_dense(self, *, chunk_size: int = 64) -> Tensor:
        return self.matrix.clone()
