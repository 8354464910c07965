"""Shared operator check and random draws for the estimators (private).

Argument checks (integers, tolerances) are :mod:`curvlab._checks`'s.

Seeds go through curvlab's one seed policy (``make_generator``: an integer is drawn from a
Generator ``seed``, so that the returned integer reproduces the run).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._protocol import OperatorLike

__all__ = [
    "check_operator",
    "gaussian",
    "rademacher",
    "matmul",
]


def check_operator(op: OperatorLike) -> int:
    """Check that ``op`` looks like a square operator and return ``n``."""
    if isinstance(op, Tensor):
        raise TypeError(
            "expected a CurvatureOperator, got a tensor; wrap a symmetric matrix with "
            "curvlab.DenseOperator(matrix)."
        )
    for attr in ("shape", "dtype", "device"):
        if not hasattr(op, attr):
            raise TypeError(
                f"expected a CurvatureOperator (with shape, dtype, device and @), got "
                f"{type(op).__name__} without .{attr}; wrap a matrix with "
                "curvlab.DenseOperator(matrix)."
            )
    shape = tuple(op.shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"the estimators need a square (symmetric) operator, got shape {shape}.")
    if not op.dtype.is_floating_point or op.dtype.is_complex:
        raise TypeError(f"the operator must have a real floating dtype, got {op.dtype}.")
    if shape[0] < 1:
        raise ValueError("the operator is empty (n = 0).")
    return int(shape[0])


def gaussian(shape, gen: torch.Generator, dtype, device) -> Tensor:
    """Standard normal draws in ``dtype`` (drawn in float64 for low-precision dtypes)."""
    draw_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    return torch.randn(shape, generator=gen, dtype=draw_dtype, device=device).to(dtype)


def rademacher(shape, gen: torch.Generator, dtype, device) -> Tensor:
    """Independent +-1 entries with probability 1/2 each."""
    bits = torch.randint(0, 2, shape, generator=gen, device=device)
    return (2 * bits - 1).to(dtype)


def matmul(op: OperatorLike, V: Tensor) -> Tensor:
    """``op @ V`` with a check that the product is finite (one sync)."""
    out = op @ V
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            "the operator returned NaN or Inf: check the model's loss for overflow (or the "
            "matrix for non-finite entries), or compute in float64."
        )
    return out
