"""Linear operators for the curvature of an empirical risk."""

from .base import CurvatureOperator, IdentityOperator, ScaledOperator, SumOperator
from .dense import DenseOperator

__all__ = [
    "CurvatureOperator",
    "IdentityOperator",
    "SumOperator",
    "ScaledOperator",
    "DenseOperator",
]
